"""One training loop for every method, on ``accelerate``.

AdamW over the trainable parameters only, linear warm-up and decay, gradient
clipping, gradient accumulation, validation loss at a fixed cadence, early
stopping that keeps the best weights, a checkpoint each epoch (safetensors,
resumable), mixed precision on GPU.

The loss runs the LM head only at the positions that have a label (the
summary and eos): the head over document positions is wasted work and its
B x T x V logits would dominate memory.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
import resource
import time
import warnings
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from .config import ConfigError, TrainConfig
from .progress import progress, tqdm_write as _write
from .data import TrainCollator
from .methods import (
    embed_batch, final_norm, language_model, load_trainable_state, trainable_state, transformer_blocks,
)
from .results import ResultsError, atomic_write_safetensors, disk_writes, read_safetensors


def reset_peak_memory() -> None:
    """Start peak-memory accounting now (after loading: reading a GGUF file peaks higher than training)."""
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
        return
    try:
        Path("/proc/self/clear_refs").write_text("5")  # Linux: resets VmHWM, the peak resident set size
    except OSError:
        pass  # elsewhere the peak stays that of the whole process


def peak_memory_mib() -> float:
    """Peak GPU memory allocated (GPU) or peak resident memory since ``reset_peak_memory`` (CPU), in MiB."""
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def summary_loss(model: nn.Module, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum of next-token cross-entropy over labelled positions, and their count."""
    lm = language_model(model)
    embeds, mask, labels = embed_batch(model, batch["input_ids"], batch["attention_mask"], batch["labels"])
    hidden = lm.base_model(inputs_embeds=embeds, attention_mask=mask, use_cache=False).last_hidden_state
    targets = labels[:, 1:]  # position t predicts token t+1
    keep = targets != -100  # (B, T-1)
    logits = lm.get_output_embeddings()(hidden[:, :-1][keep])  # (N, V), N = labelled tokens
    loss = F.cross_entropy(logits.float(), targets[keep], reduction="sum")
    return loss, keep.sum()


def model_logits(model: nn.Module, input_ids, attention_mask=None) -> torch.Tensor:
    """Full logits over the real token positions (the soft prompt's are dropped): (B, T, V)."""
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    lm = language_model(model)
    embeds, mask, _ = embed_batch(model, input_ids, attention_mask)
    logits = lm(inputs_embeds=embeds, attention_mask=mask, use_cache=False).logits
    return logits[:, logits.shape[1] - input_ids.shape[1]:]


def row_length(row: dict) -> int:
    """Tokens in a tokenized row (prompt and target)."""
    return len(row["prompt_ids"]) + len(row["target_ids"])


def by_length(indices, lengths) -> list[int]:
    """``indices`` ordered by ``lengths[i]`` (stable): neighbours pad each other little."""
    return sorted(indices, key=lambda i: lengths[i])


def micro_batches(indices: list[int], lengths, size: int) -> list[list[int]]:
    """A batch's row indices, sorted by length and cut into groups of ``size`` rows.

    The batch's loss is the sum over its labelled tokens divided by their count,
    so running the groups one by one and adding their gradients gives the
    batch's gradient, with each group padded only to its own longest row.
    """
    ordered = by_length(indices, lengths)
    return [ordered[i:i + size] for i in range(0, len(ordered), size)]


def micro_batch_size(config: TrainConfig, device) -> int:
    """Rows per forward pass: the setting, else 2 on CPU (less padding pays there) and the whole batch on GPU."""
    if config.micro_batch_size:
        return min(config.micro_batch_size, config.batch_size)
    return config.batch_size if torch.device(device).type == "cuda" else min(2, config.batch_size)


@torch.no_grad()
def evaluate_loss(model: nn.Module, dataset, pad_id: int, batch_size: int = 8, device=None, desc="eval loss",
                  show: bool = True) -> float:
    """Token-weighted mean cross-entropy over the summary tokens (and eos) of ``dataset``."""
    was_training = model.training
    model.eval()
    device = device or next(model.parameters()).device
    order = by_length(range(len(dataset)), [row_length(r) for r in dataset])  # the sum does not depend on order
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    loader = DataLoader(dataset, batch_sampler=batches, collate_fn=TrainCollator(pad_id))
    total, count = 0.0, 0
    for batch in progress(loader, desc=desc, leave=False, disable=not show):
        loss, n = summary_loss(model, {k: v.to(device) for k, v in batch.items()})
        total, count = total + loss.item(), count + n.item()
    model.train(was_training)
    return total / max(count, 1)


class _PassThrough(nn.Module):
    """Stands in for a frozen block whose output is already cached: returns its input."""

    def forward(self, hidden_states, *args, **kwargs):
        return hidden_states


class FrozenFeatures:
    """What the frozen part of the model computes on a split, computed once and reused every epoch.

    Last-layer tuning trains only the top of the model, so the frozen part
    gives the same hidden states in every epoch (it has no dropout; see
    ``frozen_depth``). With ``n_blocks == 0`` (the LM head alone) the cache
    holds the final hidden states at the labelled positions; with
    ``n_blocks == k`` it holds the input of the first trained block at every
    position, and training runs only the last k blocks, the norm and the head.
    """

    def __init__(self, model: nn.Module, dataset, pad_id: int, batch_size: int, device, n_blocks: int, desc: str):
        self.n_blocks, lm, collate = n_blocks, language_model(model), TrainCollator(pad_id)
        blocks = transformer_blocks(lm)
        captured = []
        hook = (blocks[len(blocks) - n_blocks].register_forward_pre_hook(
            lambda module, args, kwargs: captured.append(args[0] if args else kwargs["hidden_states"]),
            with_kwargs=True) if n_blocks else None)
        was_training = model.training
        model.eval()
        self.rows: list[tuple[torch.Tensor, torch.Tensor]] = [None] * len(dataset)  # filled in length order
        order = by_length(range(len(dataset)), [row_length(r) for r in dataset])
        try:
            with torch.no_grad():
                for start in progress(range(0, len(order), batch_size), desc=desc, leave=False):
                    chunk = order[start:start + batch_size]
                    batch = collate([dataset[i] for i in chunk])
                    batch = {k: v.to(device) for k, v in batch.items()}
                    captured.clear()
                    hidden = lm.base_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                           use_cache=False).last_hidden_state
                    lengths, labels = batch["attention_mask"].sum(1).tolist(), batch["labels"]
                    for b, (index, length) in enumerate(zip(chunk, lengths)):
                        if n_blocks:  # (block input over the row's real positions, its labels)
                            self.rows[index] = (captured[0][b, :length].clone(), labels[b, :length].clone())
                        else:  # (final hidden states where a label follows, those labels)
                            keep = labels[b, 1:] != -100
                            self.rows[index] = (hidden[b, :-1][keep].clone(), labels[b, 1:][keep].clone())
        finally:
            if hook:
                hook.remove()
            model.train(was_training)

    @staticmethod
    def frozen_depth(model: nn.Module) -> int | None:
        """k when exactly the last k blocks + final norm train (0: the head alone) and nothing frozen is random."""
        lm = language_model(model)
        trainable = {id(p) for p in model.parameters() if p.requires_grad}
        if any(isinstance(m, nn.Dropout) and m.p > 0 for m in lm.modules()):
            return None
        if getattr(lm.config, "attention_dropout", 0.0) or getattr(lm.config, "hidden_dropout", 0.0):
            return None
        if trainable == {id(lm.get_output_embeddings().weight)}:
            return 0
        if getattr(lm.config, "model_type", "") != "llama":  # replaying cached block inputs is checked on Llama only
            return None
        blocks = transformer_blocks(lm)
        for k in range(1, len(blocks)):
            top = {id(p) for module in [*blocks[-k:], final_norm(lm)] for p in module.parameters()}
            if trainable == top:
                return k
        return None

    @contextmanager
    def _without_frozen_blocks(self, model: nn.Module):
        blocks = transformer_blocks(language_model(model))
        frozen = len(blocks) - self.n_blocks
        kept = [blocks[i] for i in range(frozen)]
        for i in range(frozen):
            blocks[i] = _PassThrough()
        try:
            yield
        finally:
            for i, block in enumerate(kept):
                blocks[i] = block

    def loss(self, model: nn.Module, indices) -> tuple[torch.Tensor, torch.Tensor]:
        """Summed cross-entropy over the labelled positions of rows ``indices``, and their count (as ``summary_loss``)."""
        lm = language_model(model)
        head = lm.get_output_embeddings()
        if not self.n_blocks:
            features = torch.cat([self.rows[i][0] for i in indices])
            targets = torch.cat([self.rows[i][1] for i in indices])
            return F.cross_entropy(head(features).float(), targets, reduction="sum"), torch.tensor(len(targets))
        rows = [self.rows[i] for i in indices]
        length, width = max(len(r[1]) for r in rows), rows[0][0].shape[1]
        inputs = rows[0][0].new_zeros(len(rows), length, width)  # (B, T, d); padding after each row, masked
        labels = rows[0][1].new_full((len(rows), length), -100)
        mask = torch.zeros(len(rows), length, dtype=torch.long, device=inputs.device)
        for b, (hidden, row_labels) in enumerate(rows):
            inputs[b, :len(row_labels)], labels[b, :len(row_labels)], mask[b, :len(row_labels)] = hidden, row_labels, 1
        with self._without_frozen_blocks(model):
            hidden = lm.base_model(inputs_embeds=inputs, attention_mask=mask, use_cache=False).last_hidden_state
        targets = labels[:, 1:]
        keep = targets != -100
        return F.cross_entropy(head(hidden[:, :-1][keep]).float(), targets[keep], reduction="sum"), keep.sum()

    def mean_loss(self, model: nn.Module, batch_size: int) -> float:
        was_training = model.training
        model.eval()
        total, count = 0.0, 0
        order = by_length(range(len(self.rows)), [len(r[1]) for r in self.rows])
        with torch.no_grad():
            for start in range(0, len(order), batch_size):
                loss, n = self.loss(model, order[start:start + batch_size])
                total, count = total + loss.item(), count + int(n)
        model.train(was_training)
        return total / max(count, 1)


def cpu_flags() -> dict:
    """The CPU features that decide fp32 vs bf16 speed (Linux; empty elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                return {name: name in flags for name in ("avx2", "avx512f", "avx512_bf16", "amx_bf16")}
    except OSError:
        pass
    return {}


def bf16_matmul_speedup(m: int = 2048, k: int = 576, n: int = 1536, repeats: int = 3) -> float:
    """How much faster a bf16 matmul runs than an fp32 one here, on SmolLM2's own shapes (best of ``repeats``)."""
    a, b = torch.randn(m, k), torch.randn(k, n)

    def best(x, y) -> float:
        x @ y  # warm-up
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            for _ in range(5):
                x @ y
            times.append(time.perf_counter() - started)
        return min(times)

    return best(a, b) / best(a.bfloat16(), b.bfloat16())


def cpu_bf16_advice(flags: dict | None = None, measure=bf16_matmul_speedup) -> dict:
    """Whether bf16 would pay on this CPU: the flags (AVX512-BF16 or AMX), then a short measured check.

    ``auto`` stays fp32 on every CPU for now: bf16 training has not yet been checked against the fp32 seeds' spread
    (docs/performance.md); this says what a run with ``precision="bf16"`` could gain, and is recorded with results.
    """
    flags = cpu_flags() if flags is None else flags
    if not (flags.get("avx512_bf16") or flags.get("amx_bf16")):
        return {"bf16_capable": False, "speedup": None,
                "why": "no AVX512-BF16 or AMX: bf16 runs slower than fp32 here (0.34x measured on such a Xeon)"}
    speedup = measure()
    return {"bf16_capable": True, "speedup": round(speedup, 2),
            "why": f"bf16 matmul {speedup:.1f}x fp32 on the model's shapes" + (
                "" if speedup >= 1.3 else ", too little to pay for the casts")}


def pick_precision(precision: str, flags: dict | None = None) -> str:
    """accelerate's mixed_precision for a setting: auto -> bf16 (or fp16) on GPU, no (fp32) on CPU.

    bf16 on a CPU is refused without AVX512-BF16 or AMX (it would run slower than fp32), fp16 on any CPU.
    """
    if precision == "fp32":
        return "no"
    if precision == "bf16" and not torch.cuda.is_available():
        flags = cpu_flags() if flags is None else flags
        if not (flags.get("avx512_bf16") or flags.get("amx_bf16")):
            raise ConfigError("precision='bf16' on this CPU would run slower than fp32: it has neither AVX512-BF16 "
                              "nor AMX. Use 'fp32' (or 'auto').")
    if precision == "fp16" and not torch.cuda.is_available():  # accelerate would train in fp32 and say nothing
        raise ConfigError("precision='fp16' needs a GPU; on a CPU choose 'fp32', or 'bf16' on a CPU with "
                          "AVX512-BF16 or AMX.")
    if precision != "auto":
        return precision
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "no"  # CPUs without AMX/AVX512-BF16 run bf16 slower than fp32


def make_accelerator(config: TrainConfig):
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(True)  # a notebook may train several methods in one process
    # cpu=True on a machine without CUDA: under torchrun, accelerate then joins the processes over gloo (MULTI_CPU)
    return Accelerator(mixed_precision=pick_precision(config.precision), cpu=not torch.cuda.is_available(),
                       gradient_accumulation_steps=config.grad_accum)


def sum_across_processes(params: list[nn.Parameter], batch_loss: float) -> float:
    """Data parallelism without a wrapper, for N processes (``torchrun``, or ``accelerate launch`` on GPUs).

    Each process ran its share of the batch's rows, each part's loss already divided by the token count of the
    whole batch, so the sum of the processes' gradients is the batch's gradient: after this every process holds it
    and takes the same optimizer step (same weights, same state, no broadcast needed). Returns the batch's loss.
    """
    import torch.distributed as dist

    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]  # a process may get no rows
    flat = torch.cat([g.reshape(-1).float() for g in grads] + [torch.tensor([batch_loss], device=grads[0].device)])
    dist.all_reduce(flat)
    offset = 0
    for p, g in zip(params, grads):
        p.grad = flat[offset:offset + g.numel()].view_as(g).to(g.dtype)
        offset += g.numel()
    return flat[-1].item()


def linear_schedule(optimizer, warmup: int, total: int):
    """Linear warm-up over ``warmup`` updates, then linear decay to 0 at ``total``.

    transformers' ``get_linear_schedule_with_warmup`` is the same shape but gives the first update a learning rate
    of 0; here it gets lr / warmup. Every committed result was trained with this one, so it stays until they are
    all made again."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(1, warmup)
        return max(0.0, (total - step) / max(1, total - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def adamw(params: list[nn.Parameter], lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """AdamW (Loshchilov & Hutter 2019) over ``params``, the trainable parameters only: every committed result's."""
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


def _source(function) -> str:
    try:
        return inspect.getsource(function)
    except (OSError, TypeError):  # a builtin, or defined where no source is kept
        return f"{getattr(function, '__module__', '')}.{getattr(function, '__qualname__', repr(function))}"


@dataclass(frozen=True)
class Recipe:
    """The three choices that make the training loop, as functions a notebook can name and replace.

    - ``loss(model, batch) -> (summed loss, labelled tokens)``: what each update lowers;
    - ``optimizer(params, lr, weight_decay) -> torch optimizer``: how it moves the trainable parameters;
    - ``schedule(optimizer, warmup, total) -> LR scheduler``: the learning rate at each update.

    The default is the one every committed result was trained with. The validation loss stays ``summary_loss``
    whatever ``loss`` is (it is the measure the methods are compared on); early stopping reads it. Another recipe
    trains into an experiment folder of its own (``run_method``), and its hash includes the functions' source.
    """

    loss: Callable = summary_loss
    optimizer: Callable = adamw
    schedule: Callable = linear_schedule

    @property
    def default(self) -> bool:
        return self == Recipe()

    def describe(self) -> dict:
        """Each choice's name and the SHA-256 of its source (what a result made with this recipe records)."""
        return {part: {"name": getattr(f, "__qualname__", repr(f)),
                       "source_sha256": hashlib.sha256(_source(f).encode()).hexdigest()}
                for part, f in (("loss", self.loss), ("optimizer", self.optimizer), ("schedule", self.schedule))}


def _optimizer_tensors(optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    state = optimizer.state_dict()
    tensors = {}
    for index, entry in state["state"].items():
        for key, value in entry.items():
            tensors[f"optimizer.{index}.{key}"] = torch.as_tensor(value).detach().cpu().contiguous()
    return tensors, {"param_groups": state["param_groups"]}


def _restore_optimizer(optimizer, tensors: dict[str, torch.Tensor], groups: dict) -> None:
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": groups["param_groups"]})


class TrainingError(RuntimeError):
    """Training that cannot give a usable model (NaN or inf loss); nothing is written."""


@dataclass
class TrainState:
    """Everything a checkpoint must restore besides tensors: where the run is and what it has seen."""

    hash: str = ""
    epoch: int = 0  # finished epochs
    update: int = 0  # optimizer updates so far
    history: list = field(default_factory=list)
    best: float = math.inf  # best validation loss so far
    since_best: int = 0  # evaluations without improvement
    train_time: float = 0.0
    validation_time: float = 0.0  # the validation checks during training (not part of train_time)
    tokens: int = 0
    stopped_early: bool = False
    peak_memory_mib: float = 0.0


CHECKPOINT = "checkpoint.safetensors"


def save_checkpoint(folder: Path, model, optimizer, best_weights: dict, state: TrainState) -> Path:
    """One file, written atomically: current and best weights, optimizer state, and the run state.

    A kill leaves either the previous epoch's checkpoint or this one, never
    weights of one epoch with the state of another.
    """
    tensors = {f"model.{k}": v for k, v in trainable_state(model).items()}
    tensors.update({f"best.{k}": v for k, v in best_weights.items()})
    opt_tensors, groups = _optimizer_tensors(optimizer)
    tensors.update(opt_tensors)
    meta = {"state": json.dumps(asdict(state)), "optimizer": json.dumps(groups)}
    with disk_writes(f"the checkpoint {Path(folder) / CHECKPOINT}",
                     f"Training stopped after epoch {state.epoch}; nothing else was lost (the previous checkpoint, if "
                     f"any, is whole): free space or choose a writable checkpoints folder (run_method(..., "
                     f"checkpoints=...)), then run again to resume."):
        return atomic_write_safetensors(tensors, Path(folder) / CHECKPOINT, metadata=meta)


def load_checkpoint(folder: Path, model, optimizer, config_hash: str):
    """(state, best weights) from a checkpoint of the same run, loaded into model and optimizer; else None."""
    path = Path(folder) / CHECKPOINT
    if not path.exists():
        return None
    tensors, meta = read_safetensors(path, metadata=True)
    try:
        state = TrainState(**json.loads(meta["state"]))
        groups = json.loads(meta["optimizer"])
    except (KeyError, TypeError, json.JSONDecodeError) as err:
        raise ResultsError(f"{path} has no readable run state ({err}); delete it to train from the start.") from err
    if state.hash != config_hash:
        return None
    part = lambda prefix: {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}  # noqa: E731
    load_trainable_state(model, part("model."), source=str(path))
    _restore_optimizer(optimizer, tensors, groups)
    return state, part("best.")


def _check_finite(value: float, what: str, state: TrainState, lr: float) -> None:
    if not math.isfinite(value):
        raise TrainingError(
            f"{what} became {value} in epoch {state.epoch + 1} (after {state.update} updates, lr {lr:g}): the run "
            "diverged, so no result is written. Lower the learning rate, or check max_grad_norm."
        )


def _resume(folder: Path | None, model, optimizer, scheduler, config_hash: str):
    """(state, best weights, finished epochs) from a checkpoint of this run, with the schedule fast-forwarded; or None."""
    resumed = load_checkpoint(folder, model, optimizer.optimizer, config_hash) if folder else None
    if not resumed:
        return None
    state, best_weights = resumed
    with warnings.catch_warnings():  # fast-forwarding the schedule, not skipping an optimizer step
        warnings.simplefilter("ignore", UserWarning)
        for _ in range(state.update):
            scheduler.step()
    print(f"resuming from {folder} after epoch {state.epoch} ({state.update} updates)")
    return state, best_weights, state.epoch


def _cache_frozen_part(model, splits, pad_id: int, config: TrainConfig, device, state: TrainState):
    """``FrozenFeatures`` for train and validation when only the top of the model trains, else None."""
    depth = FrozenFeatures.frozen_depth(model)
    if depth is None:
        return None
    started = time.perf_counter()
    features = {split: FrozenFeatures(model, splits[split], pad_id, config.batch_size, device, depth,
                                      f"frozen part ({split})") for split in ("train", "validation")}
    state.train_time += time.perf_counter() - started
    print(f"the frozen part of the model was run once on train and validation "
          f"({time.perf_counter() - started:.0f} s); each epoch trains the top "
          f"{'(the LM head)' if depth == 0 else f'{depth} block(s), the norm and the head'} on its output")
    return features


def _trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The parameters that train, or a clear error when there are none or LoRA is merged (no gradient reaches it)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters; apply a method (soft prompt, LoRA, last layer) first.")
    if any(getattr(m, "merged", False) for m in model.modules()):  # gradients would not reach A and B
        raise ConfigError("the model's LoRA layers are merged into their weights; unmerge them (unmerge_lora(model), "
                          "or leave the `with merged(model):` block) before training.")
    return params


def improves(loss: float, best: float) -> bool:
    """The loop's one rule for "better": lower than the best so far by more than rounding (1e-6)."""
    return bool(loss < best - 1e-6)


def check_line(row: dict, improved: bool, since_best: int, patience: int) -> str:
    """One validation check as the loop prints it: where the run is, the training loss since the last check, the
    validation loss, and whether it is the best so far (else how many checks in a row were not)."""
    seen = ("before training" if math.isnan(row["train_loss"]) else
            f"epoch {row['epoch']:5.2f}  update {int(row['step']):5d}  train loss {row['train_loss']:.4f}")
    return f"{seen}  validation loss {row['eval_loss']:.4f}  " + (
        "best so far" if improved else f"not better ({since_best} of {patience} allowed)")


def check_lines(history: pd.DataFrame, patience: int) -> list[str]:
    """The lines a finished run printed at its validation checks, rebuilt from its history."""
    lines, best, since = [], math.inf, 0
    for row in history.to_dict("records"):
        improved = improves(row["eval_loss"], best)
        best, since = (row["eval_loss"], 0) if improved else (best, since + 1)
        lines.append(check_line(row, improved, since, patience))
    return lines


@dataclass
class Loop:
    """The moving parts of one training run, so that ``train`` reads as its steps: a batch, a validation check, an
    epoch."""

    model: nn.Module
    params: list
    optimizer: object  # accelerate's wrapper of AdamW
    scheduler: object
    accelerator: object
    state: TrainState
    best_weights: dict
    features: dict | None  # cached frozen-part features (last-layer methods), else None
    splits: object
    pad_id: int
    config: TrainConfig
    lr: float
    micro: int  # rows per forward pass
    lengths: list = field(default_factory=list)  # tokens per training row
    loss: Callable = summary_loss  # the recipe's training loss
    show: bool = True  # print each validation check

    def evaluate(self, epoch_float: float, train_loss: float) -> None:
        """One validation check: the history row, the best weights, the patience count."""
        state, started = self.state, time.perf_counter()
        eval_loss = (self.features["validation"].mean_loss(self.model, self.config.batch_size) if self.features else
                     evaluate_loss(self.model, self.splits["validation"], self.pad_id, self.config.batch_size,
                                   self.accelerator.device, show=False))
        state.validation_time += time.perf_counter() - started
        _check_finite(eval_loss, "the validation loss", state, self.lr)
        state.history.append({"step": state.update, "epoch": round(epoch_float, 3), "train_loss": train_loss,
                              "eval_loss": eval_loss, "lr": self.scheduler.get_last_lr()[0],
                              "elapsed": round(state.train_time, 2)})
        improved = improves(eval_loss, state.best)
        if improved:
            state.best, state.since_best = eval_loss, 0
            self.best_weights.update(trainable_state(self.model))
        else:
            state.since_best += 1
        if self.show:
            _write(check_line(state.history[-1], improved, state.since_best, self.config.patience))

    def part_loss(self, part: list[int], count: int) -> torch.Tensor:
        """The summed loss of training rows ``part`` divided by ``count``, the labelled tokens of their whole batch."""
        if self.features:
            loss_sum, _ = self.features["train"].loss(self.model, part)
        else:
            batch = TrainCollator(self.pad_id)([self.splits["train"][j] for j in part])
            loss_sum, _ = self.loss(self.model, {k: v.to(self.accelerator.device) for k, v in batch.items()})
        return loss_sum / count

    def step(self, indices: list[int]) -> float:
        """One batch: its micro-batches' gradients added up, then one optimizer update; returns the batch loss."""
        accelerator, state = self.accelerator, self.state
        world, rank = accelerator.num_processes, accelerator.process_index
        rows = [self.splits["train"][j] for j in indices]
        count = max(int((TrainCollator(self.pad_id)(rows)["labels"][:, 1:] != -100).sum()), 1)
        with accelerator.accumulate(self.model):
            batch_loss = 0.0
            share = by_length(indices, self.lengths)[rank::world] if world > 1 else indices  # this process's rows
            for part in micro_batches(share, self.lengths, self.micro):
                with accelerator.autocast():
                    loss = self.part_loss(part, count)  # this part's share of the batch's mean loss
                batch_loss += loss.item()
                _check_finite(batch_loss, "the training loss", state, self.lr)
                accelerator.backward(loss)
            if world > 1:
                batch_loss = sum_across_processes(self.params, batch_loss)
            if accelerator.sync_gradients:
                accelerator.clip_grad_norm_(self.params, self.config.max_grad_norm)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            if accelerator.sync_gradients:
                self.scheduler.step()
                state.update += 1
        state.tokens += sum(self.lengths[j] for j in indices)
        return batch_loss

    def epoch(self, seed: int, per_epoch: int, bar) -> None:
        """One pass over the training rows in a seeded order, with validation checks at the fixed cadence; stops
        early once validation has not improved ``patience`` times in a row."""
        state, config = self.state, self.config
        eval_points = {round(per_epoch * (i + 1) / config.evals_per_epoch) for i in range(config.evals_per_epoch)}
        epoch = state.epoch
        self.model.train()
        order = torch.randperm(len(self.lengths), generator=torch.Generator().manual_seed(seed + epoch)).tolist()
        torch.manual_seed(seed + 1000 * (epoch + 1))  # dropout stream, reproducible on resume
        losses, started = [], time.perf_counter()
        for i in range(per_epoch):
            losses.append(self.step(order[i * config.batch_size:(i + 1) * config.batch_size]))
            bar.update(1)
            bar.set_postfix(epoch=epoch + 1, loss=f"{losses[-1]:.3f}", best_val=f"{state.best:.3f}")
            if i + 1 in eval_points:
                state.train_time += time.perf_counter() - started
                self.evaluate(epoch + (i + 1) / per_epoch, sum(losses) / len(losses))
                losses, started = [], time.perf_counter()
                self.model.train()
                if state.since_best >= config.patience:
                    state.stopped_early = True
                    break
        state.epoch = epoch + 1
        state.peak_memory_mib = max(state.peak_memory_mib, peak_memory_mib())


def train(model: nn.Module, splits, pad_id: int, config: TrainConfig, lr: float, seed: int = 0,
          checkpoint_dir: str | Path | None = None, config_hash: str = "",
          recipe: Recipe | None = None) -> tuple[pd.DataFrame, dict]:
    """Train the parameters of ``model`` that require grad; returns (history, stats).

    ``splits`` needs tokenized ``train`` and ``validation``. With a
    ``checkpoint_dir``, the state is saved after each epoch and a run with
    the same ``config_hash`` resumes from it. On return the model holds the
    weights with the best validation loss; ``stats["learned"]`` says whether
    they beat the starting validation loss. NaN or inf losses raise
    ``TrainingError``. ``recipe`` names the loss, the optimizer and the schedule (default: ``Recipe()``). Each
    validation check prints a line: the training loss since the last check and the validation loss.
    """
    recipe = recipe or Recipe()
    accelerator = make_accelerator(config)  # one process unless torchrun or accelerate launch started several
    torch.manual_seed(seed)
    params = _trainable_parameters(model)
    optimizer = recipe.optimizer(params, lr, config.weight_decay)
    per_epoch = math.ceil(len(splits["train"]) / config.batch_size)
    total = math.ceil(per_epoch / config.grad_accum) * config.epochs  # optimizer updates
    scheduler = recipe.schedule(optimizer, round(config.warmup_ratio * total), total)
    device = accelerator.device
    model.to(device)  # one process; accelerate handles precision, accumulation and the optimizer
    optimizer = accelerator.prepare(optimizer)

    ckpt = Path(checkpoint_dir) if checkpoint_dir else None
    state, best_weights, resumed_after = (_resume(ckpt, model, optimizer, scheduler, config_hash)
                                          or (TrainState(hash=config_hash), trainable_state(model), 0))
    # the cache holds hidden states for summary_loss; another training loss runs the whole model
    features = _cache_frozen_part(model, splits, pad_id, config, device, state) if recipe.loss is summary_loss else None
    loop = Loop(model, params, optimizer, scheduler, accelerator, state, best_weights, features, splits, pad_id,
                config, lr, micro_batch_size(config, device), [row_length(r) for r in splits["train"]],
                recipe.loss, show=accelerator.process_index == 0)
    if not state.history:
        loop.evaluate(0.0, float("nan"))  # the starting point of the loss curve
    bar = progress(total=per_epoch * config.epochs, initial=per_epoch * state.epoch, desc="training", unit="batch",
                   disable=accelerator.process_index > 0)
    while state.epoch < config.epochs and not state.stopped_early:
        loop.epoch(seed, per_epoch, bar)
        if ckpt and accelerator.process_index == 0:  # every process holds the same weights and state
            save_checkpoint(ckpt, model, optimizer.optimizer, best_weights, state)
        if accelerator.num_processes > 1:
            accelerator.wait_for_everyone()
    bar.close()
    load_trainable_state(model, best_weights)
    model.eval()
    return pd.DataFrame(state.history), _summary(state, accelerator.mixed_precision, device, features is not None,
                                                 loop.micro, resumed_after)


def _summary(state: TrainState, mixed_precision: str, device, cached_features: bool, micro: int,
             resumed_after: int) -> dict:
    """The stats of a finished run (recorded in metrics.json); says so when the model did not learn."""
    start_loss = state.history[0]["eval_loss"]
    stats = {"train_time_s": round(state.train_time, 2), "validation_s": round(state.validation_time, 2),
             "train_tokens": state.tokens, "tokens_per_s": round(state.tokens / max(state.train_time, 1e-9), 1),
             "updates": state.update, "epochs_run": state.epoch, "stopped_early": state.stopped_early,
             "best_eval_loss": state.best, "start_eval_loss": start_loss,
             "learned": improves(state.best, start_loss), "mixed_precision": mixed_precision,
             "peak_memory_mib": round(state.peak_memory_mib, 1) or None, "device": str(device),
             "cached_features": cached_features, "micro_batch_size": micro, "resumed_after_epoch": resumed_after}
    if not stats["learned"]:
        print(f"did not learn: the best validation loss ({state.best:.4f}) never beat the starting value "
              f"({start_loss:.4f}); the results are recorded as 'did not learn'.")
    return stats
