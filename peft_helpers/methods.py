"""The three parameter-efficient methods, written here rather than imported.

- ``SoftPromptModel``: prompt tuning (Lester et al. 2021).
- ``add_lora`` / ``LoRALayer``: low-rank adapters (Hu et al. 2021).
- ``prepare_last_layer``: train only the LM head, or the last k blocks.

Each marks the model it changes, so a second method (or the same one twice)
on one model raises instead of silently stacking.

LoRA, for a layer with frozen weight W (d_out x d_in)::

    h = W x + (alpha / r) * B A dropout(x)      A: r x d_in, Kaiming-uniform
                                                B: d_out x r, zeros
    so at init B A = 0 and the wrapped model equals the base model.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from transformers.pytorch_utils import Conv1D

from .config import FAMILIES, ConfigError, LoRAConfig
from .results import adapter_path, atomic_write_json, atomic_write_safetensors, read_safetensors

_MARK = "_peft_helpers_method"


class AdapterError(ValueError):
    """Adapter weights or a wrapping request that do not fit the model."""


def _claim(model: nn.Module, method: str) -> None:
    previous = next((getattr(m, _MARK) for m in model.modules() if getattr(m, _MARK, None)), None)
    if previous is not None:
        raise AdapterError(
            f"this model already carries {previous!r}; load a fresh base model before applying {method!r} "
            "(re-running a notebook cell from the model-loading cell does this)."
        )
    setattr(model, _MARK, method)


def freeze(model: nn.Module) -> None:
    for p in model.parameters():
        p.requires_grad_(False)


def parameter_report(model: nn.Module, verbose: bool = True) -> dict:
    """Trainable and total parameters (shared tensors counted once) and the percentage."""
    seen: dict[int, nn.Parameter] = {id(p): p for p in model.parameters()}
    total = sum(p.numel() for p in seen.values())
    trainable = sum(p.numel() for p in seen.values() if p.requires_grad)
    report = {"trainable": trainable, "total": total, "percent": 100.0 * trainable / total}
    if verbose:
        print(f"trainable {trainable:,} / total {total:,} parameters ({report['percent']:.4f}%)")
    return report


# ---------------------------------------------------------------------------
# Prompt tuning
# ---------------------------------------------------------------------------


class SoftPromptModel(nn.Module):
    """A frozen causal LM with ``n`` trainable input vectors in front of every sequence.

    Everything that knows about the soft prompt is in this section: the
    wrapper, ``language_model`` (the LM inside), ``embed_batch`` (a
    right-padded training batch) and ``embed_prompts`` (a left-padded
    generation batch). Training and generation call those two for any model.
    """

    def __init__(self, model: nn.Module, prompt: torch.Tensor):
        super().__init__()
        self.model = model
        self.prompt = nn.Parameter(prompt.detach().clone().float())  # (n, d)
        self.config = model.config

    @property
    def n_tokens(self) -> int:
        return self.prompt.shape[0]

    def prepend(self, inputs_embeds, attention_mask, labels=None):
        """Put the soft prompt before each row: embeddings, mask (ones) and labels (-100)."""
        batch = inputs_embeds.shape[0]
        prompt = self.prompt.to(inputs_embeds.dtype).unsqueeze(0).expand(batch, -1, -1)  # (B, n, d)
        inputs_embeds = torch.cat([prompt, inputs_embeds], dim=1)  # (B, n+T, d)
        ones = attention_mask.new_ones(batch, self.n_tokens)
        attention_mask = torch.cat([ones, attention_mask], dim=1)  # (B, n+T)
        if labels is not None:
            ignore = labels.new_full((batch, self.n_tokens), -100)
            labels = torch.cat([ignore, labels], dim=1)  # (B, n+T)
        return inputs_embeds, attention_mask, labels

    def forward(self, input_ids, attention_mask=None, labels=None, **kwargs):
        """The wrapped model on ``input_ids`` with the soft prompt in front, as ``peft``'s ``PeftModel`` does: the
        four steps of prompt tuning (embed the ids, prepend the prompt, extend the mask, extend the labels with
        -100). Returns the LM's output; its logits cover the prompt's positions too, and its loss only the labels."""
        embeds = self.model.get_input_embeddings()(input_ids)  # (B, T, d)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        embeds, attention_mask, labels = self.prepend(embeds, attention_mask, labels)  # (B, n+T, d), (B, n+T)
        return self.model(inputs_embeds=embeds, attention_mask=attention_mask, labels=labels, **kwargs)


def save_prompt_adapter(model: nn.Module, folder: str | Path, base_name: str, init_text: str | None = None) -> Path:
    """The soft prompt in ``peft``'s prompt-tuning format (``adapter_config.json`` with ``PROMPT_TUNING`` +
    ``adapter_model.safetensors`` holding ``prompt_embeddings`` (n, d)), loadable with ``PeftModel.from_pretrained``."""
    if not isinstance(model, SoftPromptModel):
        raise AdapterError("this model has no soft prompt to save.")
    config = model.config
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    adapter_config = {
        "peft_type": "PROMPT_TUNING", "task_type": "CAUSAL_LM", "base_model_name_or_path": base_name,
        "num_virtual_tokens": model.n_tokens, "token_dim": model.prompt.shape[1], "num_transformer_submodules": 1,
        "num_attention_heads": config.num_attention_heads, "num_layers": config.num_hidden_layers,
        # RANDOM: with TEXT, peft would fetch the tokenizer to initialise a prompt that loading then overwrites
        "prompt_tuning_init": "RANDOM", "prompt_tuning_init_text": init_text, "tokenizer_name_or_path": None,
        "inference_mode": True,
    }
    atomic_write_safetensors({"prompt_embeddings": model.prompt.detach().float().cpu().contiguous()},
                             folder / "adapter_model.safetensors")
    atomic_write_json(adapter_config, folder / "adapter_config.json")
    return folder


def language_model(model: nn.Module) -> nn.Module:
    """The Hugging Face causal LM inside ``model`` (itself, or inside a soft-prompt wrapper)."""
    return model.model if isinstance(model, SoftPromptModel) else model


def embed_batch(model: nn.Module, input_ids, attention_mask, labels=None):
    """Input embeddings of a right-padded batch, the soft prompt (if any) before each row; with mask and labels."""
    embeds = language_model(model).get_input_embeddings()(input_ids)  # (B, T, d)
    if isinstance(model, SoftPromptModel):
        return model.prepend(embeds, attention_mask, labels)
    return embeds, attention_mask, labels


def embed_prompts(model: nn.Module, prompts: list[list[int]]):
    """Left-padded input embeddings and mask for generation; each row is [pad.., soft prompt, prompt ids]."""
    table = language_model(model).get_input_embeddings()
    device = table.weight.device
    rows = []
    for ids in prompts:
        embeds = table(torch.tensor(ids, device=device))  # (T_i, d)
        if isinstance(model, SoftPromptModel):
            embeds = torch.cat([model.prompt.to(embeds.dtype), embeds], dim=0)  # (n + T_i, d)
        rows.append(embeds)
    length = max(r.shape[0] for r in rows)
    batch = rows[0].new_zeros(len(rows), length, rows[0].shape[1])  # (B, T, d)
    mask = torch.zeros(len(rows), length, dtype=torch.long, device=device)
    for i, r in enumerate(rows):
        batch[i, length - r.shape[0]:] = r
        mask[i, length - r.shape[0]:] = 1
    return batch, mask


def add_soft_prompt(model: nn.Module, tokenizer, n_tokens: int, init_text: str | None, seed: int = 0,
                    uniform: bool = False) -> SoftPromptModel:
    """Freeze ``model`` and wrap it with a soft prompt of ``n_tokens`` vectors.

    The vectors start as the embeddings of ``init_text`` (repeated or cut to
    ``n_tokens``), or, when ``init_text`` is None, as rows of the embedding
    matrix sampled from the 5,000 most frequent-looking (lowest) token ids,
    following Lester et al. (2021, sec. 3.2); ``uniform=True`` draws them
    uniformly from [-0.5, 0.5] instead, Lester et al.'s random initialisation.
    """
    if isinstance(model, SoftPromptModel):
        raise AdapterError("this model already has a soft prompt; load a fresh base model first.")
    if isinstance(n_tokens, bool) or not isinstance(n_tokens, int) or n_tokens <= 0:
        raise ConfigError(f"prompt length must be a positive integer, got {n_tokens!r}.")
    _claim(model, "prompt_tuning")
    freeze(model)
    embedding = model.get_input_embeddings().weight  # (V, d)
    if uniform:
        generator = torch.Generator().manual_seed(seed)
        prompt = torch.rand(n_tokens, embedding.shape[1], generator=generator) - 0.5
        return SoftPromptModel(model, prompt.to(embedding.device, embedding.dtype))
    if init_text:
        ids = tokenizer(init_text, add_special_tokens=False)["input_ids"]
        ids = (ids * math.ceil(n_tokens / len(ids)))[:n_tokens]
    else:
        generator = torch.Generator().manual_seed(seed)
        ids = torch.randint(0, min(5000, embedding.shape[0]), (n_tokens,), generator=generator).tolist()
    prompt = embedding[torch.tensor(ids, device=embedding.device)]  # (n, d)
    return SoftPromptModel(model, prompt)


@torch.no_grad()
def nearest_tokens(model: SoftPromptModel, tokenizer, k: int = 3) -> list[dict]:
    """What a learned prompt is near in the vocabulary: for each soft token, the ``k`` token embeddings of highest
    cosine similarity, with that similarity. A soft prompt is continuous: nothing forces its vectors to be words, and
    how close they stay to one is a measure of how interpretable it is (Lester et al. 2021, sec. 7)."""
    if not isinstance(model, SoftPromptModel):
        raise AdapterError("nearest_tokens needs a prompt-tuned model (add_soft_prompt).")
    table = F.normalize(model.model.get_input_embeddings().weight.float(), dim=-1)  # (V, d)
    prompt = F.normalize(model.prompt.float(), dim=-1)  # (n, d)
    similarity, ids = (prompt @ table.T).topk(k, dim=-1)  # (n, k)
    return [{"position": i, "tokens": [tokenizer.decode([t]) for t in row], "cosine": [round(c, 3) for c in sims]}
            for i, (row, sims) in enumerate(zip(ids.tolist(), similarity.tolist()))]


# ---------------------------------------------------------------------------
# LoRA
# ---------------------------------------------------------------------------


def _layer_shape(layer: nn.Module) -> tuple[int, int, bool]:
    """(d_in, d_out, transposed): the one place that knows Conv1D stores W as (in, out)."""
    if isinstance(layer, Conv1D):
        d_in, d_out = layer.weight.shape
        return d_in, d_out, True
    if isinstance(layer, nn.Linear):
        return layer.in_features, layer.out_features, False
    raise AdapterError(f"LoRA supports nn.Linear and Conv1D layers, not {type(layer).__name__}.")


class LoRALayer(nn.Module):
    """Wraps a frozen ``nn.Linear`` or ``Conv1D`` and adds a trainable low-rank update."""

    def __init__(self, base: nn.Module, r: int, alpha: float, dropout: float):
        super().__init__()
        d_in, d_out, self.transposed = _layer_shape(base)
        self.base = base
        self.r, self.alpha, self.scaling = r, alpha, alpha / r
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        weight = base.weight
        self.lora_A = nn.Parameter(torch.empty(r, d_in, dtype=torch.float32, device=weight.device))
        self.lora_B = nn.Parameter(torch.zeros(d_out, r, dtype=torch.float32, device=weight.device))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # as nn.Linear (and peft) initialise
        self.merged = False
        self._saved_weight: torch.Tensor | None = None

    def delta_weight(self) -> torch.Tensor:
        """``scaling * B A`` in the base layer's own weight layout."""
        delta = (self.lora_B @ self.lora_A) * self.scaling  # (d_out, d_in)
        return delta.T if self.transposed else delta

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base(x)
        if self.merged:
            return out
        x = self.dropout(x).to(self.lora_A.dtype)
        update = (x @ self.lora_A.T) @ self.lora_B.T  # (..., d_out)
        return out + (update * self.scaling).to(out.dtype)

    @torch.no_grad()
    def merge(self) -> None:
        """Fold the update into the base weight (idempotent); ``unmerge`` restores it bit for bit."""
        if self.merged:
            return
        delta = self.delta_weight()
        if not torch.isfinite(delta).all():
            raise AdapterError("LoRA update has NaN or inf values; refusing to merge it into the weights.")
        self._saved_weight = self.base.weight.detach().clone()
        self.base.weight += delta.to(self.base.weight.dtype)
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        if not self.merged:
            return
        self.base.weight.copy_(self._saved_weight)
        self._saved_weight = None
        self.merged = False


def lora_targets_for(model: nn.Module, targets: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The layer names to adapt: ``targets`` or the model family's default."""
    if targets:
        return tuple(targets)
    family = getattr(model.config, "model_type", "")
    if family not in FAMILIES:
        raise ConfigError(f"no default LoRA targets for model type {family!r}; name them in LoRAConfig.targets.")
    return FAMILIES[family].lora_default


def _candidate_names(model: nn.Module) -> list[str]:
    names = {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, (nn.Linear, Conv1D))}
    return sorted(names)


def add_lora(model: nn.Module, config: LoRAConfig) -> list[str]:
    """Freeze ``model`` and wrap every layer whose last name part is in the targets.

    Returns the wrapped module paths. Raises with the candidate names when a
    target matches nothing, and refuses a model that already has adapters.
    """
    targets = lora_targets_for(model, config.targets)
    if any(isinstance(m, LoRALayer) for m in model.modules()):
        raise AdapterError("this model already has LoRA layers; load a fresh base model before adding LoRA.")
    matches = [
        (name, module)
        for name, module in model.named_modules()
        if name.rsplit(".", 1)[-1] in targets and name
    ]
    missing = [t for t in targets if not any(n.rsplit(".", 1)[-1] == t for n, _ in matches)]
    if missing:
        raise ConfigError(
            f"LoRA target(s) {missing} match no layer of this model; candidates: {', '.join(_candidate_names(model))}."
        )
    not_layers = sorted({n.rsplit(".", 1)[-1] for n, m in matches if not isinstance(m, (nn.Linear, Conv1D))})
    if not_layers:  # checked before anything is wrapped, so the model is left as it was
        raise ConfigError(
            f"LoRA target(s) {not_layers} name modules that are not linear layers; candidates: "
            f"{', '.join(_candidate_names(model))}."
        )
    too_small = sorted({f"{n.rsplit('.', 1)[-1]} ({min(_layer_shape(m)[:2])})" for n, m in matches
                        if config.r > min(_layer_shape(m)[:2])})
    if too_small:  # a rank above min(d_in, d_out) adds parameters without adding directions (and can exhaust memory)
        raise ConfigError(f"LoRA rank r={config.r} exceeds the smaller side of {', '.join(too_small)}; choose r at most "
                          "that (a few to a few dozen is usual).")
    _claim(model, "lora")
    freeze(model)
    for name, module in matches:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        setattr(parent, child, LoRALayer(module, config.r, config.alpha, config.dropout))
    return [name for name, _ in matches]


def lora_layers(model: nn.Module) -> dict[str, LoRALayer]:
    """Module path (as in the unwrapped model) -> LoRA layer."""
    return {name: m for name, m in model.named_modules() if isinstance(m, LoRALayer)}


def merge_lora(model: nn.Module) -> None:
    for layer in lora_layers(model).values():
        layer.merge()


def unmerge_lora(model: nn.Module) -> None:
    for layer in lora_layers(model).values():
        layer.unmerge()


def save_lora_adapter(model: nn.Module, folder: str | Path, config: LoRAConfig, base_name: str) -> Path:
    """Write ``adapter_config.json`` + ``adapter_model.safetensors`` in ``peft``'s format."""
    layers = lora_layers(model)
    if not layers:
        raise AdapterError("this model has no LoRA layers to save.")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for name, layer in layers.items():
        tensors[f"base_model.model.{name}.lora_A.weight"] = layer.lora_A.detach().float().cpu().contiguous()
        tensors[f"base_model.model.{name}.lora_B.weight"] = layer.lora_B.detach().float().cpu().contiguous()
    any_layer = next(iter(layers.values()))
    adapter_config = {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base_name,
        "r": any_layer.r,
        "lora_alpha": any_layer.alpha,
        "lora_dropout": config.dropout,
        "target_modules": sorted({n.rsplit(".", 1)[-1] for n in layers}),
        "fan_in_fan_out": any_layer.transposed,
        "bias": "none",
        "inference_mode": True,
        "init_lora_weights": True,
        "use_rslora": False,
        "use_dora": False,
        "modules_to_save": None,
    }
    atomic_write_safetensors(tensors, folder / "adapter_model.safetensors")
    atomic_write_json(adapter_config, folder / "adapter_config.json")
    return folder


def load_lora_adapter(model: nn.Module, folder: str | Path) -> None:
    """Load a ``peft``-format LoRA adapter into a model already wrapped with ``add_lora``."""
    folder = Path(folder)
    tensors = read_safetensors(folder / "adapter_model.safetensors", "lora")
    layers = lora_layers(model)
    if not layers:
        raise AdapterError("this model has no LoRA layers; wrap it with add_lora before loading an adapter.")
    for name, layer in layers.items():
        for part in ("lora_A", "lora_B"):
            key = f"base_model.model.{name}.{part}.weight"
            if key not in tensors:
                raise AdapterError(f"adapter in {folder} has no tensor {key}; it was trained for other targets.")
            param = getattr(layer, part)
            if tensors[key].shape != param.shape:
                raise AdapterError(
                    f"adapter tensor {key} has shape {tuple(tensors[key].shape)}, the model expects "
                    f"{tuple(param.shape)}; the adapter belongs to another model or rank."
                )
            with torch.no_grad():
                param.copy_(tensors[key])


# ---------------------------------------------------------------------------
# Last-layer fine-tuning
# ---------------------------------------------------------------------------


def _body_part(model: nn.Module, names: tuple[str, ...], kind: type, what: str):
    body = model.base_model
    for attr in names:
        if isinstance(getattr(body, attr, None), kind):
            return getattr(body, attr)
    raise ConfigError(f"cannot find the {what} of {type(model).__name__}.")


def transformer_blocks(model: nn.Module) -> nn.ModuleList:
    """The list of transformer blocks of a GPT-2 (``h``) or Llama (``layers``) causal LM."""
    return _body_part(model, ("h", "layers"), nn.ModuleList, "transformer blocks")


def final_norm(model: nn.Module) -> nn.Module:
    """The norm after the last block: GPT-2's ``ln_f``, Llama's ``norm``."""
    return _body_part(model, ("ln_f", "norm"), nn.Module, "final norm")


def prepare_last_layer(model: nn.Module, n_blocks: int = 0) -> list[str]:
    """Freeze everything but the last layer(s); returns the names of what trains.

    ``n_blocks=0`` trains the LM head alone. Because the head shares its
    weight with the input embedding, it gets its own copy first (untied),
    so training it leaves the input embedding exactly as loaded.
    ``n_blocks=k`` trains the last k transformer blocks and the final norm
    (the head stays tied and frozen).
    """
    if isinstance(model, SoftPromptModel):
        raise AdapterError("this model already carries a soft prompt; load a fresh base model before last-layer "
                           "fine-tuning (re-running a notebook cell from the model-loading cell does this).")
    if isinstance(n_blocks, bool) or not isinstance(n_blocks, int) or n_blocks < 0:  # True is an int in Python
        raise ConfigError(f"n_blocks must be an integer >= 0, got {n_blocks!r}.")
    blocks = transformer_blocks(model)
    if n_blocks > len(blocks):
        raise ConfigError(f"n_blocks={n_blocks} but the model has only {len(blocks)} blocks.")
    _claim(model, "last_layer" if n_blocks == 0 else "last_blocks")
    freeze(model)
    if n_blocks == 0:
        head = model.get_output_embeddings()
        head.weight = nn.Parameter(head.weight.detach().clone())
        model.config.tie_word_embeddings = False
        head.weight.requires_grad_(True)
    else:
        for module in [*blocks[-n_blocks:], final_norm(model)]:
            for p in module.parameters():
                p.requires_grad_(True)
    return [n for n, p in model.named_parameters() if p.requires_grad]


def prepare_full_fine_tuning(model: nn.Module, n_blocks: int | None = None, name: str = "full_ft") -> list[str]:
    """Train every weight (the ceiling the other methods are measured against); returns the names of what trains.

    The embedding stays tied to the LM head, so the shared matrix trains once, as both. ``n_blocks``, where given,
    must be the model's number of blocks (the older ``last_blocks`` form with ``embeddings=True`` says so).
    """
    blocks = transformer_blocks(model)
    if n_blocks is not None and n_blocks != len(blocks):
        raise ConfigError(f"full fine-tuning (embeddings=True) needs n_blocks={len(blocks)}, every block of this "
                          f"model, got {n_blocks}.")
    _claim(model, name)
    for p in model.parameters():
        p.requires_grad_(True)
    return [n for n, p in model.named_parameters() if p.requires_grad]


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Copies of the trainable tensors, by parameter name: what a method saves."""
    return {n: p.detach().float().cpu().clone().contiguous() for n, p in model.named_parameters() if p.requires_grad}


def load_trainable_state(model: nn.Module, state: dict[str, torch.Tensor], source: str = "weights") -> None:
    """Copy ``state`` into the model's parameters of the same names, checking shapes."""
    params = dict(model.named_parameters())
    missing = sorted(n for n, p in params.items() if p.requires_grad and n not in state)
    if missing:
        raise AdapterError(f"{source} lacks {missing[:3]}{' ...' if len(missing) > 3 else ''}: it was saved for "
                           "another method or model.")
    for name, tensor in state.items():
        if name not in params:
            raise AdapterError(f"{source} holds {name!r}, which this model does not have.")
        if params[name].shape != tensor.shape:
            raise AdapterError(
                f"{source}: {name} has shape {tuple(tensor.shape)}, the model expects {tuple(params[name].shape)}."
            )
        with torch.no_grad():
            params[name].copy_(tensor)


def save_weights(model: nn.Module, path: str | Path) -> Path:
    return atomic_write_safetensors(trainable_state(model), Path(path))


def load_weights(model: nn.Module, path: str | Path) -> None:
    load_trainable_state(model, read_safetensors(path), source=str(path))


def fingerprint(model: nn.Module) -> dict[str, str]:
    """A digest of every parameter's bytes, by name as in the unwrapped model.

    Compare a fingerprint taken before a method is applied with one taken
    after training to show the frozen weights are bit-identical.
    """
    import hashlib

    out = {}
    for name, p in model.named_parameters():
        name = name.replace(".base.", ".")  # LoRA wraps the original layer as .base
        if model is not language_model(model):  # inside a soft-prompt wrapper
            name = name.removeprefix("model.")
        data = p.detach().cpu().contiguous().view(torch.uint8).numpy()
        out[name] = hashlib.blake2b(data.tobytes(), digest_size=16).hexdigest()
    return out


# ---------------------------------------------------------------------------
# Each method as one object: how it applies itself, what it adds to the context, how its weights are saved and
# loaded. ``METHOD_OBJECTS`` is the one place a method's name becomes behaviour; its label, colour and notebook are in
# ``config.METHOD_TABLE``, its settings in the Profile section that table names.
# ---------------------------------------------------------------------------


class ZeroShot:
    """The base model as loaded: nothing trains."""

    def apply(self, model: nn.Module, settings, tokenizer, seed: int) -> nn.Module:
        freeze(model)
        return model

    def virtual_tokens(self, settings) -> int:
        """Positions the method adds in front of every input (they count against the model's context)."""
        return 0

    def save(self, model: nn.Module, folder: Path, profile, base_name: str) -> None:
        """Write the trained weights into the results folder ``folder`` (zero-shot: nothing)."""

    def load(self, model: nn.Module, folder: Path) -> None:
        """Read the trained weights from the results folder ``folder`` into ``model`` (zero-shot: nothing)."""


class PromptTuning(ZeroShot):
    """Soft prompt (Lester et al. 2021): saved as one tensor, and as a peft prompt-tuning adapter beside it."""

    def apply(self, model, settings, tokenizer, seed):
        return add_soft_prompt(model, tokenizer, settings.n_tokens, settings.init_text, seed, settings.uniform_init)

    def virtual_tokens(self, settings) -> int:
        return settings.n_tokens

    def save(self, model, folder, profile, base_name):
        weights = adapter_path(folder, "prompt_tuning")
        save_weights(model, weights)
        save_prompt_adapter(model, weights.parent / "peft", base_name, profile.prompt_tuning.init_text)

    def load(self, model, folder):
        load_weights(model, adapter_path(folder, "prompt_tuning"))


class LastLayers(ZeroShot):
    """The LM head alone (n_blocks = 0) or the last k blocks + final norm; with ``embeddings``, every weight (full
    fine-tuning). Saved as the trained tensors in one safetensors file named after ``name``."""

    def __init__(self, name: str):
        self.name = name

    def apply(self, model, settings, tokenizer, seed):
        if settings.embeddings:  # the sweeps' first full fine-tuning runs (results made before full_ft was a method)
            prepare_full_fine_tuning(model, settings.n_blocks, name=self.name)
        else:
            prepare_last_layer(model, settings.n_blocks)
        return model

    def save(self, model, folder, profile, base_name):
        save_weights(model, adapter_path(folder, self.name))

    def load(self, model, folder):
        load_weights(model, adapter_path(folder, self.name))


class FullFineTuning(LastLayers):
    """Every weight trains (the embedding tied to the LM head, once); saved as the trained tensors (538 MB for
    SmolLM2: never committed)."""

    def __init__(self):
        super().__init__("full_ft")

    def apply(self, model, settings, tokenizer, seed):
        prepare_full_fine_tuning(model)
        return model


class LoRA(ZeroShot):
    """Low-rank adapters (Hu et al. 2021) on the targeted layers; saved in peft's adapter format."""

    def apply(self, model, settings, tokenizer, seed):
        add_lora(model, settings)
        return model

    def save(self, model, folder, profile, base_name):
        save_lora_adapter(model, adapter_path(folder, "lora"), profile.lora, base_name)

    def load(self, model, folder):
        load_lora_adapter(model, adapter_path(folder, "lora"))


METHOD_OBJECTS = {"zero_shot": ZeroShot(), "prompt_tuning": PromptTuning(), "last_layer": LastLayers("last_layer"),
                  "last_blocks": LastLayers("last_blocks"), "lora": LoRA(), "full_ft": FullFineTuning()}


def method_object(name: str):
    """The object behind a method's name (the one lookup), or a clear error naming the methods."""
    if name not in METHOD_OBJECTS:
        raise ConfigError(f"unknown method {name!r}; choose one of {', '.join(METHOD_OBJECTS)}.")
    return METHOD_OBJECTS[name]
