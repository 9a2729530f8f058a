"""LoRA: equals the base at init, trains only A and B, agrees with peft, merges and exports exactly."""

import pytest
import torch
from torch import nn
from transformers.pytorch_utils import Conv1D

from conftest import make_gpt2, make_llama, toy_batch, train_steps
from peft_helpers import (
    AdapterError, ConfigError, LoRAConfig, LoRALayer, add_lora, fingerprint, load_lora_adapter, merge_lora,
    model_logits, save_lora_adapter, summary_loss, unmerge_lora,
)
from peft_helpers.methods import lora_layers


def randomize_b(model, seed=3):
    """Give every B non-zero values, as training would."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in lora_layers(model).values():
            layer.lora_B.copy_(torch.randn(layer.lora_B.shape, generator=g) * 0.1)


def test_wrapped_equals_base_at_init(make_model):
    base, wrapped = make_model(), make_model()
    add_lora(wrapped, LoRAConfig(r=4, dropout=0.0))
    ids = toy_batch()["input_ids"]
    assert torch.equal(model_logits(base, ids), model_logits(wrapped, ids))


def test_only_adapters_get_gradients(make_model):
    model = make_model()
    add_lora(model, LoRAConfig(r=4))
    model.train()
    loss, n = summary_loss(model, toy_batch())
    (loss / n).backward()
    for name, p in model.named_parameters():
        if "lora_" in name:
            assert p.grad is not None, name
        else:
            assert p.grad is None, name
    # B starts at zero so only B gets a non-zero gradient on the first step; A's is exactly zero
    assert any(p.grad.abs().sum() > 0 for n, p in model.named_parameters() if "lora_B" in n)


def test_training_lowers_loss_and_keeps_base_bit_identical(make_model):
    model = make_model()
    before = fingerprint(model)
    add_lora(model, LoRAConfig(r=4, dropout=0.0))
    losses = train_steps(model, steps=8, lr=1e-2)
    assert losses[-1] < losses[0] - 0.05
    after = fingerprint(model)
    frozen = {k: v for k, v in after.items() if "lora_" not in k}
    assert frozen == before


def peft_lora(model, r, alpha, targets, fan_in_fan_out):
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=0.0, target_modules=list(targets),
                        fan_in_fan_out=fan_in_fan_out, task_type="CAUSAL_LM")
    return get_peft_model(model, config)


@pytest.mark.parametrize("family,targets", [("gpt2", ("c_attn", "c_fc")), ("llama", ("q_proj", "v_proj", "down_proj"))])
def test_matches_peft_with_identical_weights(family, targets):
    maker = {"gpt2": make_gpt2, "llama": make_llama}[family]
    ours = maker()
    add_lora(ours, LoRAConfig(r=4, alpha=8, dropout=0.0, targets=targets))
    randomize_b(ours)
    theirs = peft_lora(maker(), 4, 8, targets, fan_in_fan_out=family == "gpt2")
    copied = 0
    for name, module in theirs.named_modules():
        if hasattr(module, "lora_A") and isinstance(module.lora_A, nn.ModuleDict):
            path = name.removeprefix("base_model.model.")
            mine = ours.get_submodule(path)
            with torch.no_grad():
                module.lora_A["default"].weight.copy_(mine.lora_A)
                module.lora_B["default"].weight.copy_(mine.lora_B)
            copied += 1
    assert copied == len(lora_layers(ours)) > 0
    batch = toy_batch()
    ours_logits = model_logits(ours, batch["input_ids"], batch["attention_mask"])
    theirs_logits = theirs(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    torch.testing.assert_close(ours_logits, theirs_logits, rtol=1e-5, atol=1e-5)
    base_logits = model_logits(maker(), batch["input_ids"], batch["attention_mask"])
    assert not torch.allclose(ours_logits, base_logits, atol=1e-3)  # B != 0: the comparison is not vacuous


def test_merge_equals_unmerged_and_unmerge_restores_bits(make_model):
    model = make_model()
    add_lora(model, LoRAConfig(r=4, dropout=0.0))
    randomize_b(model)
    ids = toy_batch()["input_ids"]
    weights = {n: l.base.weight.detach().clone() for n, l in lora_layers(model).items()}
    unmerged = model_logits(model, ids)
    merge_lora(model)
    merge_lora(model)  # idempotent: a second call must not add the update twice
    merged = model_logits(model, ids)
    torch.testing.assert_close(merged, unmerged, rtol=1e-4, atol=1e-5)
    base = make_model()
    assert not torch.allclose(merged, model_logits(base, ids), atol=1e-3)
    unmerge_lora(model)
    for n, layer in lora_layers(model).items():
        assert torch.equal(layer.base.weight, weights[n])
    assert torch.equal(model_logits(model, ids), unmerged)


def test_conv1d_and_linear_holding_transpose_agree():
    torch.manual_seed(0)
    conv = Conv1D(12, 8)  # weight (in=8, out=12)
    linear = nn.Linear(8, 12)
    with torch.no_grad():
        linear.weight.copy_(conv.weight.T)
        linear.bias.copy_(conv.bias)
    a, b = LoRALayer(conv, 3, 6.0, 0.0), LoRALayer(linear, 3, 6.0, 0.0)
    with torch.no_grad():
        b.lora_A.copy_(a.lora_A)
        a.lora_B.normal_()
        b.lora_B.copy_(a.lora_B)
    x = torch.randn(2, 5, 8)
    torch.testing.assert_close(a(x), b(x))
    a.merge(), b.merge()
    torch.testing.assert_close(a(x), b(x))
    torch.testing.assert_close(a.base.weight, b.base.weight.T)


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_export_loads_in_peft_with_same_logits(family, tmp_path):
    from peft import PeftModel

    maker = {"gpt2": make_gpt2, "llama": make_llama}[family]
    config = LoRAConfig(r=4, alpha=8, dropout=0.0)
    ours = maker()
    add_lora(ours, config)
    randomize_b(ours)
    save_lora_adapter(ours, tmp_path / "adapter", config, base_name=family)
    theirs = PeftModel.from_pretrained(maker(), tmp_path / "adapter")
    ids = toy_batch()["input_ids"]
    torch.testing.assert_close(theirs(input_ids=ids).logits, model_logits(ours, ids), rtol=1e-5, atol=1e-5)
    # and our own loader round-trips it
    again = maker()
    add_lora(again, config)
    load_lora_adapter(again, tmp_path / "adapter")
    assert torch.equal(model_logits(again, ids), model_logits(ours, ids))


def test_adapter_with_wrong_shapes_is_refused(tmp_path):
    small, large = make_gpt2(), make_gpt2()
    add_lora(small, LoRAConfig(r=2))
    save_lora_adapter(small, tmp_path, LoRAConfig(r=2), "gpt2")
    add_lora(large, LoRAConfig(r=4))
    with pytest.raises(AdapterError, match="shape"):
        load_lora_adapter(large, tmp_path)


def test_refuses_double_wrap_and_bad_settings():
    model = make_gpt2()
    add_lora(model, LoRAConfig(r=2))
    with pytest.raises(AdapterError, match="fresh base model"):
        add_lora(model, LoRAConfig(r=2))
    with pytest.raises(ConfigError, match="candidates: .*c_attn"):
        add_lora(make_gpt2(), LoRAConfig(targets=("q_proj",)))
    with pytest.raises(ConfigError, match="rank"):
        LoRAConfig(r=0)
    with pytest.raises(ConfigError, match="rank"):
        LoRAConfig(r=-3)


def test_default_targets_and_parameter_count():
    model = make_llama()
    wrapped = add_lora(model, LoRAConfig(r=4))
    assert sorted({w.rsplit(".", 1)[-1] for w in wrapped}) == ["q_proj", "v_proj"]
    # q: 4 * (48 + 48), v: 4 * (48 + 24) (2 kv heads of 12), 2 layers
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == 2 * (4 * (48 + 48) + 4 * (48 + 24))
