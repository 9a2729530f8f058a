"""The real models' paths: SmolLM2 from its GGUF file, GPT-2 small's architecture, the hub offline."""

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from peft_helpers import (
    HubUnavailableError, LoRAConfig, add_lora, add_soft_prompt, get_profile, load_model, load_splits,
    load_tokenizer, parameter_report, prepare_last_layer, summary_loss,
)
from peft_helpers.data import TrainCollator, encode_example

SEP = "\nTL;DR:"


def counts(make, tokenizer=None):
    """Trainable parameters of each method on a fresh copy of a model (defaults of the real profiles)."""
    model = make()
    out = {"total": parameter_report(model, verbose=False)["total"]}
    out["prompt_tuning"] = parameter_report(add_soft_prompt(make(), tokenizer, 20, None), verbose=False)["trainable"]
    for name, k in (("last_layer", 0), ("last_blocks", 2)):
        m = make()
        prepare_last_layer(m, k)
        out[name] = parameter_report(m, verbose=False)["trainable"]
    m = make()
    add_lora(m, LoRAConfig(r=8))
    out["lora"] = parameter_report(m, verbose=False)["trainable"]
    return out


def on_meta(cls, config):
    """The architecture without memory or init time: counting needs shapes, not values."""
    def make():
        with torch.device("meta"):
            return cls(config)
    return make


def test_gpt2_small_architecture_takes_every_method():
    config = GPT2Config()  # GPT-2 small: 12 layers, width 768, vocabulary 50,257
    found = counts(on_meta(GPT2LMHeadModel, config))
    print("GPT-2 small trainable parameters:", found)
    assert found == {
        "total": 124_439_808,
        "prompt_tuning": 20 * 768,
        "last_layer": 50_257 * 768,  # the untied LM head
        "last_blocks": 2 * 7_087_872 + 2 * 768,  # two blocks + ln_f
        "lora": 12 * 8 * (768 + 3 * 768),  # c_attn: A (8 x 768) + B (2304 x 8) per layer
    }


@pytest.fixture(scope="module")
def smollm2():
    profile = get_profile("smollm2-aclsum")
    return profile, load_tokenizer(profile), load_model(profile)


def test_smollm2_gguf_loads_offline_and_trains_a_lora_step(smollm2):
    profile, tokenizer, model = smollm2
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
    assert model.config.num_hidden_layers == 30 and model.config.hidden_size == 576
    assert tokenizer.eos_token == "<|im_end|>"
    splits, _ = load_splits(profile)
    rows = [encode_example(tokenizer, r["document"], r["summary"], 64, 32, SEP) for r in splits["train"].select(range(2))]
    batch = TrainCollator(tokenizer.pad_token_id)(rows)
    add_lora(model, LoRAConfig(r=8))
    assert parameter_report(model)["trainable"] == 460_800  # the figure the peft reference reports
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    model.train()
    loss, n = summary_loss(model, batch)
    (loss / n).backward()
    optimizer.step()
    assert torch.isfinite(loss) and 0 < (loss / n).item() < 10  # a pretrained model: far below ln(49152) = 10.8
    assert any(p.abs().sum() > 0 for name, p in model.named_parameters() if "lora_B" in name)


def test_smollm2_cache_gives_the_gguf_weights_bit_for_bit(smollm2, tmp_path, monkeypatch):
    import peft_helpers.models as models

    monkeypatch.setattr(models, "CACHE", tmp_path)
    profile = get_profile("smollm2-aclsum")
    first = load_model(profile)  # from the GGUF file, writing the cache
    assert (tmp_path / "smollm2-135m-fp32" / "model.safetensors").exists()
    second = load_model(profile)  # from the cache
    a, b = first.state_dict(), second.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert second.lm_head.weight is second.model.embed_tokens.weight  # still tied
    assert type(second).__name__ == "LlamaForCausalLM" and getattr(second.config, "quantization_config", None) is None


def test_smollm2_method_counts(smollm2):
    profile, tokenizer, model = smollm2
    found = counts(on_meta(type(model), model.config), tokenizer)
    print("SmolLM2-135M trainable parameters:", found)
    assert found["prompt_tuning"] == 11_520 and found["lora"] == 460_800
    assert found["last_blocks"] == 7_080_768 and found["last_layer"] == 49_152 * 576


def test_hub_paths_fail_clearly_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    profile = get_profile("gpt2-cnndm")
    with pytest.raises(HubUnavailableError, match="PEFT_PROFILE=smollm2-aclsum"):
        load_tokenizer(profile)
    with pytest.raises(HubUnavailableError, match="gpt2 checkpoint"):
        load_model(profile)
    with pytest.raises(HubUnavailableError, match="cnn_dailymail"):
        load_splits(profile)
