"""Several processes (`torchrun --nproc_per_node 2`, CPU): the same training as one process with the same effective
batch, and the launch command that trains the methods and writes each results unit once."""

import json
import os
import subprocess
import sys
from pathlib import Path

from safetensors import safe_open
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]


def launch(args: list[str], processes: int, tmp: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    command = ([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes), "--master_port",
                str(29500 + os.getpid() % 1000)] if processes > 1 else [sys.executable]) + args
    env = {**os.environ, "PEFT_PROFILE": "smoke", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": str(ROOT)}
    run = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return run


def test_two_processes_train_what_one_process_trains(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    launch([str(ROOT / "tests" / "multiprocess_train.py"), str(one)], 1, tmp_path)
    launch([str(ROOT / "tests" / "multiprocess_train.py"), str(two)], 2, tmp_path)
    for method in ("prompt_tuning", "last_blocks", "lora"):
        a, b = load_file(one / f"{method}.safetensors"), load_file(two / f"{method}.safetensors")
        assert safe_open(str(two / f"{method}.safetensors"), "pt").metadata()["world"] == "2"  # really two processes
        assert a.keys() == b.keys()
        start = {k: v for k, v in a.items() if k != "history.eval_loss"}
        assert len(a["history.eval_loss"]) == len(b["history.eval_loss"]) >= 3
        # the same updates up to the order of float sums: validation loss to 1e-5, weights to 1e-4
        assert (a["history.eval_loss"] - b["history.eval_loss"]).abs().max() < 1e-5, method
        for name in start:
            assert (a[name] - b[name]).abs().max() < 1e-4, (method, name)
        assert a["history.eval_loss"][-1] < a["history.eval_loss"][0]  # it trained


def test_the_launch_command_trains_on_two_processes_and_writes_each_unit_once(tmp_path):
    run = launch(["-m", "tools.launch", "--profile", "smoke", "--methods", "lora", "--root",
                  str(tmp_path / "results"), "--checkpoints", str(tmp_path / "ck")], 2, tmp_path)
    assert "lora: training on 2 process(es)" in run.stdout
    folder = tmp_path / "results" / "smoke" / "lora"
    metrics = json.loads((folder / "metrics.json").read_text())
    assert (folder / "complete.json").is_file() and metrics["learned"] and metrics["n_test"] == 8
    assert not list((tmp_path / "results" / "smoke").glob(".*"))  # no half-written unit left by a second process
    assert len(list((tmp_path / "ck" / "smoke").iterdir())) == 1  # one checkpoint, written by the first process
