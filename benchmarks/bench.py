"""Speed and memory of every method, ours against peft's, on one machine in one run.

    python benchmarks/bench.py            # or: make bench

For each model (GPT-2 small's architecture with random weights, which costs
the same compute as the real checkpoint, and SmolLM2-135M) and each method
(prompt tuning 20 tokens, last-layer = LM head, LoRA r=8 on the default
targets, full fine-tuning as the reference), in a fresh subprocess per case
so peak memory is that case's own:

- training: median step time after warm-up, tokens/s (non-pad tokens), peak
  memory (RSS on CPU, max allocated on GPU). The batch's rows have lengths
  spread from half to all of ``--length`` (ACLSum rows run 152-358 tokens),
  right-padded; ours runs the step as ``train`` does (length-sorted
  micro-batches, 2 rows on CPU), theirs as one padded batch;
- generation: new tokens/s of batched greedy decoding with the KV cache
  (ours: LoRA merged, soft prompt via inputs_embeds; peft: its ``generate``).

"peft" for last-layer and full fine-tuning is plain PyTorch freezing with the
model's own loss (peft has no last-layer method). Writes
``benchmarks/results/<device>.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from contextlib import nullcontext
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CASES = [("prompt_tuning", "ours"), ("prompt_tuning", "peft"), ("last_layer", "ours"), ("last_layer", "plain"),
         ("lora", "ours"), ("lora", "peft"), ("full", "plain"),
         ("base", "ours"),  # generation only, our decoding loop on the bare base: the speed merged LoRA should match
         ("lora", "ours-bf16")]  # the bf16-autocast lever, measured rather than assumed (CPU: needs AMX/AVX512-BF16)
# Default sizes: small enough for a few minutes on a 2-core CPU; the GPU setting on a GPU.
SIZES = {"cpu": dict(batch_size=4, length=256, steps=5, gen_batch=8, gen_prompt=256, gen_new=48),
         "cuda": dict(batch_size=16, length=512, steps=10, gen_batch=32, gen_prompt=400, gen_new=100)}


def build(model_name: str):
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from peft_helpers import get_profile, load_model

    if model_name == "gpt2-arch":
        torch.manual_seed(0)
        return GPT2LMHeadModel(GPT2Config()).eval()
    return load_model(get_profile("smollm2-aclsum"))


def our_step(model, batch: dict, autocast) -> float:
    """Forward and backward of one batch as ``training.train`` runs it: length-sorted micro-batches."""
    from peft_helpers import TrainConfig, summary_loss
    from peft_helpers.training import micro_batch_size, micro_batches

    lengths = batch["attention_mask"].sum(1).tolist()
    count = (batch["labels"][:, 1:] != -100).sum()
    micro = micro_batch_size(TrainConfig(batch_size=len(lengths)), batch["input_ids"].device)
    total = 0.0
    for part in micro_batches(range(len(lengths)), lengths, micro):
        longest = max(lengths[i] for i in part)
        with autocast:
            loss_sum, _ = summary_loss(model, {k: v[part, :longest] for k, v in batch.items()})
            loss = loss_sum / count
        loss.backward()
        total += loss.item()
    return total


def their_step(model, batch: dict, autocast) -> float:
    """Forward and backward of the whole padded batch with the model's own loss."""
    with autocast:
        loss = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"]).loss
    loss.backward()
    return loss.item()


def wrap(model, method: str, impl: str):
    """The model prepared for ``method`` by ``impl``; returns (trainable module, step function)."""

    from peft_helpers import LoRAConfig, add_lora, add_soft_prompt, prepare_last_layer

    if impl.startswith("ours"):
        if method == "prompt_tuning":
            model = add_soft_prompt(model, None, 20, None)
        elif method == "last_layer":
            prepare_last_layer(model, 0)
        elif method == "lora":
            add_lora(model, LoRAConfig(r=8, dropout=0.05))
        return model, our_step
    if impl == "peft":
        from peft import LoraConfig, PromptTuningConfig, get_peft_model

        from peft_helpers.methods import lora_targets_for

        if method == "prompt_tuning":
            config = PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=20)
        else:
            config = LoraConfig(task_type="CAUSAL_LM", r=8, lora_alpha=16, lora_dropout=0.05,
                                target_modules=list(lora_targets_for(model)),
                                fan_in_fan_out=model.config.model_type == "gpt2")
        model = get_peft_model(model, config)
    else:  # plain PyTorch freezing: last layer (head untied) or everything
        if method == "last_layer":
            prepare_last_layer(model, 0)
    return model, their_step


def batch_for(batch_size: int, length: int, vocab: int, device):
    import torch

    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, vocab - 1, (batch_size, length), generator=g)
    labels = ids.clone()
    mask = torch.ones_like(ids)
    for row in range(batch_size):  # lengths spread from length/2 to length, right-padded as the collator makes
        real = length - (length // 2) * row // max(batch_size - 1, 1)
        mask[row, real:] = 0
        labels[row, real:] = -100
        labels[row, : real * 3 // 4] = -100  # document 3/4 of the row, summary 1/4, as in the task
    return {"input_ids": ids.to(device), "attention_mask": mask.to(device), "labels": labels.to(device)}


def run_case(model_name: str, method: str, impl: str, batch_size: int, length: int, steps: int,
             gen_batch: int, gen_prompt: int, gen_new: int) -> dict:
    """One measurement in this process (called in a fresh subprocess by ``main``)."""
    import torch

    from peft_helpers.training import peak_memory_mib, reset_peak_memory

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = build(model_name)
    vocab = model.config.vocab_size
    if method == "base":
        model.to(device).eval()
        return {**generation_speed(model, impl, vocab, gen_batch, gen_prompt, gen_new, device, nullcontext()),
                "trainable": 0}
    model, step_fn = wrap(model, method, impl)
    model.to(device).train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-5)
    batch = batch_for(batch_size, length, vocab, device)
    reset_peak_memory()
    bf16 = device.type == "cuda" or impl.endswith("bf16")
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)
    times = []
    for step in range(steps + 2):
        if device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        step_fn(model, batch, autocast)
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if step >= 2:  # two warm-up steps
            times.append(time.perf_counter() - started)
    step_s = statistics.median(times)
    real_tokens = int(batch["attention_mask"].sum())  # non-pad tokens per step
    out = {"train_step_s": step_s, "train_tokens_per_s": real_tokens / step_s,
           "train_peak_mib": peak_memory_mib(), "trainable": sum(p.numel() for p in params)}
    del optimizer
    model.eval()
    if method != "full":
        out.update(generation_speed(model, impl, vocab, gen_batch, gen_prompt, gen_new, device, autocast))
    return out


def generation_speed(model, impl: str, vocab: int, gen_batch: int, gen_prompt: int, gen_new: int, device,
                     autocast) -> dict:
    """New tokens/s of batched greedy decoding with the KV cache, every row producing ``gen_new`` tokens."""
    import torch

    from peft_helpers.config import GenerationConfig
    from peft_helpers.evaluation import generate_ids, merged

    g = torch.Generator().manual_seed(1)
    prompts = torch.randint(0, vocab - 1, (gen_batch, gen_prompt), generator=g)
    if gen_new > 2:  # warm-up: one short untimed run of the same path (first calls pay one-off costs)
        generation_speed(model, impl, vocab, 2, gen_prompt, 2, device, autocast)
    started = time.perf_counter()
    with torch.no_grad(), autocast:
        if impl.startswith("ours"):
            with merged(model):  # LoRA folded into the weights; a soft prompt goes in through inputs_embeds
                produced = generate_ids(model, prompts.tolist(), GenerationConfig(max_new_tokens=gen_new),
                                        eos_id=vocab, pad_id=0)  # eos = vocab: never produced
            new_tokens = sum(len(p) for p in produced)
        else:
            ids = prompts.to(device)
            result = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=gen_new,
                                    min_new_tokens=gen_new, do_sample=False, pad_token_id=0)
            new_tokens = (result.shape[1] - ids.shape[1]) * gen_batch
    elapsed = time.perf_counter() - started
    return {"gen_tokens_per_s": new_tokens / elapsed, "gen_new_tokens": new_tokens, "gen_s": elapsed}


def find(results, model, method, impl):
    return next((r for r in results if (r["model"], r["method"], r["impl"]) == (model, method, impl)), None)


COMPARISONS = [  # (label, ours, theirs): each a (method, impl) case
    ("prompt_tuning", ("prompt_tuning", "ours"), ("prompt_tuning", "peft")),
    ("last_layer", ("last_layer", "ours"), ("last_layer", "plain")),
    ("lora", ("lora", "ours"), ("lora", "peft")),
    ("lora, bf16 vs fp32", ("lora", "ours-bf16"), ("lora", "ours")),
    ("lora merged vs base", ("lora", "ours"), ("base", "ours")),
]


def ratios_for(results, models) -> list[dict]:
    """ours / theirs per model and measure (> 1: faster for tokens/s; < 1: lighter for memory)."""
    rows = []
    for model in models:
        for label, mine, theirs in COMPARISONS:
            a, b = find(results, model, *mine), find(results, model, *theirs)
            if not (a and b):
                continue
            row = {"model": model, "comparison": label, "ours": "/".join(mine), "theirs": "/".join(theirs)}
            if "train_tokens_per_s" in b:
                row["train_tokens_per_s"] = a["train_tokens_per_s"] / b["train_tokens_per_s"]
                row["train_peak_memory"] = a["train_peak_mib"] / b["train_peak_mib"]
            row["gen_tokens_per_s"] = a["gen_tokens_per_s"] / b["gen_tokens_per_s"]
            rows.append(row)
    return rows


def main(argv=None) -> int:
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    default = SIZES[device]
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="*", default=["gpt2-arch", "smollm2-135m"])
    parser.add_argument("--batch", type=int, default=default["batch_size"])
    parser.add_argument("--length", type=int, default=default["length"])
    parser.add_argument("--steps", type=int, default=default["steps"], help="timed steps, after 2 warm-up steps")
    parser.add_argument("--gen-batch", type=int, default=default["gen_batch"])
    parser.add_argument("--gen-prompt", type=int, default=default["gen_prompt"])
    parser.add_argument("--gen-new", type=int, default=default["gen_new"])
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / f"{device}.json"))
    parser.add_argument("--case", nargs=3, help=argparse.SUPPRESS)  # internal: model method impl
    args = parser.parse_args(argv)
    sizes = dict(batch_size=args.batch, length=args.length, steps=args.steps, gen_batch=args.gen_batch,
                 gen_prompt=args.gen_prompt, gen_new=args.gen_new)
    if args.case:
        print("RESULT " + json.dumps(run_case(*args.case, **sizes)))
        return 0
    results, started = [], time.perf_counter()
    for model_name in args.models:
        for method, impl in CASES:
            cmd = [sys.executable, __file__, "--case", model_name, method, impl] + [
                f"--{k.replace('_', '-').replace('batch-size', 'batch')}={v}" for k, v in sizes.items()]
            proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TQDM_DISABLE": "1"})
            line = next((l for l in proc.stdout.splitlines() if l.startswith("RESULT ")), None)
            if line is None:
                print(f"{model_name} {method} {impl}: failed\n{proc.stderr[-2000:]}", flush=True)
                continue
            row = {"model": model_name, "method": method, "impl": impl, **json.loads(line[7:])}
            results.append(row)
            print(f"{model_name:13} {method:14} {impl:9} train {row.get('train_tokens_per_s', 0):7.0f} tok/s "
                  f"{row.get('train_peak_mib', 0):6.0f} MiB   generate {row.get('gen_tokens_per_s', 0):6.1f} tok/s",
                  flush=True)
    ratios = ratios_for(results, args.models)
    import peft
    import transformers

    from peft_helpers.training import cpu_flags

    env = {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__,
           "platform": platform.platform(), "processor": _cpu_name(), "cpu_count": os.cpu_count(),
           "cpu_flags": cpu_flags(), "gpu": torch.cuda.get_device_name(0) if device == "cuda" else None,
           "precision": "bf16 autocast" if device == "cuda" else "fp32 (ours-bf16 row: bf16 autocast)",
           "wall_s": round(time.perf_counter() - started)}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    # the main job stage by stage, as the last whole `make run` recorded it (with the CPU it ran on)
    timings = ROOT / "results" / "smollm2-aclsum" / "timings.json"
    stages = json.loads(timings.read_text()) if timings.exists() else None
    out.write_text(json.dumps({"sizes": sizes, "environment": env, "results": results,
                               "ratios_ours_over_theirs": ratios, "main_job_stages": stages}, indent=2) + "\n")
    print(f"\n{'model':13} {'comparison':20} {'train tok/s':>11} {'peak mem':>9} {'gen tok/s':>9}   (ours / theirs)")
    for r in ratios:
        train = f"{r['train_tokens_per_s']:11.2f} {r['train_peak_memory']:9.2f}" if "train_tokens_per_s" in r else " " * 21
        print(f"{r['model']:13} {r['comparison']:20} {train} {r['gen_tokens_per_s']:9.2f}")
    print("written", out)
    return 0


def _cpu_name() -> str:
    from peft_helpers.experiment import environment

    return environment()["processor"]


if __name__ == "__main__":
    raise SystemExit(main())
