"""Speed and memory of every method, ours against peft's, on one machine in one run.

    python benchmarks/bench.py            # or: make bench

For each model (GPT-2 small's architecture with random weights, which costs
the same compute as the real checkpoint, and SmolLM2-135M) and each method
(prompt tuning 20 tokens, last-layer = LM head, LoRA r=8 on the default
targets, full fine-tuning as the reference), in a fresh subprocess per case
so peak memory is that case's own:

- training: median step time after warm-up, tokens/s (non-pad tokens), peak
  memory (RSS on CPU, max allocated on GPU);
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
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CASES = [("prompt_tuning", "ours"), ("prompt_tuning", "peft"), ("last_layer", "ours"), ("last_layer", "plain"),
         ("lora", "ours"), ("lora", "peft"), ("full", "plain")]


def build(model_name: str):
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from peft_helpers import get_profile, load_model

    if model_name == "gpt2-arch":
        torch.manual_seed(0)
        return GPT2LMHeadModel(GPT2Config()).eval()
    return load_model(get_profile("smollm2-aclsum"))


def wrap(model, method: str, impl: str):
    """The model prepared for ``method`` by ``impl``; returns (trainable module, forward-loss function)."""

    from peft_helpers import LoRAConfig, add_lora, add_soft_prompt, prepare_last_layer, summary_loss

    if impl == "ours":
        if method == "prompt_tuning":
            model = add_soft_prompt(model, None, 20, None)
        elif method == "last_layer":
            prepare_last_layer(model, 0)
        elif method == "lora":
            add_lora(model, LoRAConfig(r=8, dropout=0.05))
        return model, lambda m, b: (lambda s, n: s / n)(*summary_loss(m, b))
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
    return model, lambda m, b: m(input_ids=b["input_ids"], attention_mask=b["attention_mask"], labels=b["labels"]).loss


def batch_for(batch_size: int, length: int, vocab: int, device):
    import torch

    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, vocab - 1, (batch_size, length), generator=g)
    labels = ids.clone()
    labels[:, : length * 3 // 4] = -100  # document 3/4, summary 1/4, as in the task
    mask = torch.ones_like(ids)
    return {"input_ids": ids.to(device), "attention_mask": mask.to(device), "labels": labels.to(device)}


def run_case(model_name: str, method: str, impl: str, batch_size: int, length: int, steps: int,
             gen_batch: int, gen_prompt: int, gen_new: int) -> dict:
    """One measurement in this process (called in a fresh subprocess by ``main``)."""
    import torch

    from peft_helpers.evaluation import generate_ids, merged
    from peft_helpers.training import peak_memory_mib, reset_peak_memory

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = build(model_name)
    vocab = model.config.vocab_size
    model, loss_fn = wrap(model, method, impl)
    model.to(device).train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-5)
    batch = batch_for(batch_size, length, vocab, device)
    reset_peak_memory()
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast("cpu", enabled=False)
    times = []
    for step in range(steps + 2):
        if device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        with autocast:
            loss = loss_fn(model, batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if step >= 2:  # two warm-up steps
            times.append(time.perf_counter() - started)
    step_s = statistics.median(times)
    out = {"train_step_s": step_s, "train_tokens_per_s": batch_size * length / step_s,
           "train_peak_mib": peak_memory_mib(), "trainable": sum(p.numel() for p in params)}
    del optimizer
    model.eval()
    if method != "full":
        g = torch.Generator().manual_seed(1)
        prompts = torch.randint(0, vocab - 1, (gen_batch, gen_prompt), generator=g)
        eos = vocab  # never produced: every row generates gen_new tokens
        started = time.perf_counter()
        with torch.no_grad(), autocast:
            if impl == "ours":
                from peft_helpers.config import GenerationConfig

                with merged(model):
                    produced = generate_ids(model, prompts.tolist(), GenerationConfig(max_new_tokens=gen_new),
                                            eos_id=eos, pad_id=0)
                new_tokens = sum(len(p) for p in produced)
            else:
                ids = prompts.to(device)
                result = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=gen_new,
                                        min_new_tokens=gen_new, do_sample=False, pad_token_id=0)
                new_tokens = (result.shape[1] - ids.shape[1]) * gen_batch
        out["gen_tokens_per_s"] = new_tokens / (time.perf_counter() - started)
        out["gen_new_tokens"] = new_tokens
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="*", default=["gpt2-arch", "smollm2-135m"])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--length", type=int, default=256)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--gen-batch", type=int, default=8)
    parser.add_argument("--gen-prompt", type=int, default=200)
    parser.add_argument("--gen-new", type=int, default=32)
    parser.add_argument("--case", nargs=3, help=argparse.SUPPRESS)  # internal: model method impl
    args = parser.parse_args(argv)
    sizes = dict(batch_size=args.batch, length=args.length, steps=args.steps, gen_batch=args.gen_batch,
                 gen_prompt=args.gen_prompt, gen_new=args.gen_new)
    if args.case:
        print("RESULT " + json.dumps(run_case(*args.case, **sizes)))
        return 0
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    results = []
    for model_name in args.models:
        for method, impl in CASES:
            cmd = [sys.executable, __file__, "--case", model_name, method, impl] + [
                f"--{k.replace('_', '-').replace('batch-size', 'batch')}={v}" for k, v in sizes.items()]
            proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TQDM_DISABLE": "1"})
            line = next((l for l in proc.stdout.splitlines() if l.startswith("RESULT ")), None)
            if line is None:
                print(f"{model_name} {method} {impl}: failed\n{proc.stderr[-2000:]}")
                continue
            row = {"model": model_name, "method": method, "impl": impl, **json.loads(line[7:])}
            results.append(row)
            print(json.dumps(row), flush=True)
    ratios = []
    for model_name in args.models:
        for method in ("prompt_tuning", "last_layer", "lora"):
            ours = next((r for r in results if (r["model"], r["method"], r["impl"]) == (model_name, method, "ours")), None)
            other = next((r for r in results if r["model"] == model_name and r["method"] == method and r["impl"] != "ours"), None)
            if ours and other:
                ratios.append({"model": model_name, "method": method, "vs": other["impl"],
                               "train_tokens_per_s": ours["train_tokens_per_s"] / other["train_tokens_per_s"],
                               "train_peak_memory": ours["train_peak_mib"] / other["train_peak_mib"],
                               "gen_tokens_per_s": ours.get("gen_tokens_per_s", 0) / max(other.get("gen_tokens_per_s", 0), 1e-9)})
    import peft
    import transformers

    env = {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__,
           "platform": platform.platform(), "processor": platform.processor(), "cpu_count": os.cpu_count(),
           "gpu": torch.cuda.get_device_name(0) if device == "cuda" else None}
    out = ROOT / "benchmarks" / "results" / f"{device}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"sizes": sizes, "environment": env, "results": results, "ratios_ours_over_peft": ratios},
                              indent=2) + "\n")
    print(f"\n{'model':14} {'method':14} {'vs':6} {'train tok/s':>12} {'peak mem':>9} {'gen tok/s':>10}  (ours / theirs)")
    for r in ratios:
        print(f"{r['model']:14} {r['method']:14} {r['vs']:6} {r['train_tokens_per_s']:12.2f} "
              f"{r['train_peak_memory']:9.2f} {r['gen_tokens_per_s']:10.2f}")
    print("written", out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
