"""Command-line tools around the teaching package, run from the repository root (``python -m tools.<name>``).

No notebook imports them: ``run_notebooks`` (the main job), ``sweep`` (tuning protocol, seeds, rank, prompt length),
``search`` (the first defaults by validation loss), ``parity`` (against a peft reference run), ``verify_adapter``
(our LoRA adapter loaded by peft regenerates the committed summaries), ``launch`` (several processes), ``summarize`` (the trained methods on your own text).
"""
