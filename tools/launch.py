"""Train the methods on several processes (GPUs, or CPU processes), then let the notebooks evaluate.

    accelerate launch --num_processes 4 -m tools.launch --profile gpt2-cnndm     # 4 GPUs
    torchrun --nproc_per_node 2 -m tools.launch --profile smoke --methods lora    # 2 CPU processes

(On a CPU, ``accelerate launch --cpu --num_processes N`` starts one process unless an MPI hostfile is given;
``torchrun``, which comes with torch, starts N, and accelerate joins them over gloo.)

Every process runs the same loop on its share of each batch (``training.sum_across_processes``: the
gradients add up to the whole batch's, so the effective batch is the profile's batch size whatever the
number of processes) and the first process writes each method's checkpoint, keyed by its training
settings. Then the first process alone evaluates and writes each method's results unit, resuming the
finished checkpoint; ``make run`` or the notebooks afterwards reuse those results (or, for a method
whose results were removed, the finished checkpoint) instead of training again.
"""

from __future__ import annotations

import argparse
import os
import sys

from peft_helpers.config import METHOD_TABLE, ConfigError, get_profile
from peft_helpers.data import DataError
from peft_helpers.methods import AdapterError
from peft_helpers.results import ResultsError


def process_rank() -> tuple[int, int]:
    """(rank, number of processes) as ``accelerate launch`` or ``torchrun`` set them; (0, 1) in a plain process."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def main(argv=None) -> int:
    trained = [m for m, spec in METHOD_TABLE.items() if spec.settings]
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default=None, help="default: $PEFT_PROFILE or auto")
    parser.add_argument("--methods", nargs="+", choices=trained, default=trained)
    parser.add_argument("--root", default="results", help="results folder (default: results)")
    parser.add_argument("--checkpoints", default="checkpoints")
    args = parser.parse_args(argv)
    rank, world = process_rank()
    try:
        return _train_then_evaluate(args, rank, world)
    except (ConfigError, DataError, ResultsError, AdapterError) as err:  # settings or files the user can fix
        if rank == 0:  # every process meets the same error: one message, not one traceback per process
            print(f"error: {err}", file=sys.stderr, flush=True)
        return 2


def _train_then_evaluate(args, rank: int, world: int) -> int:
    from peft_helpers.experiment import build_model, prepare, run_method, train_method

    profile = get_profile(args.profile)
    if rank == 0:
        setup = prepare(profile)  # the first process writes the data cache, the others read it after the barrier
    _barrier(world)
    if rank > 0:
        setup = prepare(profile)
    for method in args.methods:
        if rank == 0:
            print(f"{method}: training on {world} process(es)", flush=True)
        train_method(setup, method, build_model(setup, method), checkpoints=args.checkpoints)
    _barrier(world)
    if rank == 0:  # evaluation and results files: one process, from the finished checkpoints
        for method in args.methods:
            run_method(setup, method, build_model(setup, method), root=args.root, checkpoints=args.checkpoints)
    return 0


def _barrier(world: int) -> None:
    if world > 1:
        import torch
        from accelerate import PartialState

        PartialState(cpu=not torch.cuda.is_available()).wait_for_everyone()


if __name__ == "__main__":
    raise SystemExit(main())
