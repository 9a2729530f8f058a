"""Run by test_multiprocess.py, in one process or under `accelerate launch --num_processes 2 --cpu`.

Trains prompt tuning, last blocks and LoRA of the smoke profile with every dropout off (so the only difference
between the runs is how the batch is split across processes) and writes, from the first process, each method's
trained weights and validation-loss history to <out>/<method>.safetensors.
"""

import sys
from pathlib import Path

import torch
from torch import nn

from peft_helpers import get_profile, prepare
from peft_helpers.experiment import build_model, train_config
from tools.launch import _barrier, process_rank
from peft_helpers.methods import trainable_state
from peft_helpers.results import atomic_write_safetensors
from peft_helpers.training import train

out = Path(sys.argv[1])
rank, world = process_rank()
profile = get_profile("smoke", lora=dict(dropout=0.0))
if rank == 0:
    setup = prepare(profile)
_barrier(world)
setup = prepare(profile) if rank > 0 else setup
for method in ("prompt_tuning", "last_blocks", "lora"):
    model = build_model(setup, method)
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
    settings = getattr(profile, method)
    history, stats = train(model, setup.splits, setup.pad_id, train_config(profile, method), settings.lr, profile.seed)
    if rank == 0:
        tensors = {k: v.contiguous() for k, v in trainable_state(model).items()}
        tensors["history.eval_loss"] = torch.tensor(history.eval_loss.tolist(), dtype=torch.float64)
        atomic_write_safetensors(tensors, out / f"{method}.safetensors", metadata={"world": str(world)})
