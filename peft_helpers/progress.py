"""Progress bars: a widget in an interactive notebook, plain text under the batch runner and in scripts."""

from __future__ import annotations

import os

PLAIN_PROGRESS = "PEFT_PLAIN_PROGRESS"  # set by the batch runner: text bars survive in saved notebooks


def progress(*args, **kwargs):
    """A tqdm bar (arguments as ``tqdm``'s)."""
    if os.environ.get(PLAIN_PROGRESS):
        from tqdm.std import tqdm
    else:
        from tqdm.auto import tqdm
    return tqdm(*args, **kwargs)


def tqdm_write(line: str) -> None:
    """Print ``line`` without breaking a progress bar that is being drawn."""
    from tqdm import tqdm

    tqdm.write(line)
