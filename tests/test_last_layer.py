"""Last-layer fine-tuning: the head is untied and trains alone; the input embedding never moves."""

import pytest
import torch

from conftest import make_gpt2, make_llama, toy_batch, train_steps
from transformers import GPT2LMHeadModel

from peft_helpers import (
    AdapterError, ConfigError, LoRAConfig, add_lora, fingerprint, model_logits, prepare_last_layer, summary_loss,
)
from peft_helpers.models import tiny_gpt2_config
from peft_helpers.methods import prepare_full_fine_tuning, transformer_blocks


def test_head_is_untied_and_alone_trainable(make_model):
    base, model = make_model(), make_model()
    names = prepare_last_layer(model, n_blocks=0)
    assert names == ["lm_head.weight"]
    head, embedding = model.get_output_embeddings().weight, model.get_input_embeddings().weight
    assert head.data_ptr() != embedding.data_ptr() and torch.equal(head, embedding)
    ids = toy_batch()["input_ids"]
    assert torch.equal(model_logits(model, ids), model_logits(base, ids))  # untying changes nothing yet
    model.train()
    loss, n = summary_loss(model, toy_batch())
    (loss / n).backward()
    assert head.grad is not None and embedding.grad is None
    assert all(p.grad is None for name, p in model.named_parameters() if name != "lm_head.weight")


def test_training_head_keeps_input_embedding_and_body_bit_identical(make_model):
    model = make_model()
    before = fingerprint(model)
    prepare_last_layer(model, n_blocks=0)
    losses = train_steps(model)
    assert losses[-1] < losses[0] - 0.05
    after = fingerprint(model)
    assert "lm_head.weight" not in before  # tied: the embedding and the head were one tensor
    embedding_name = next(k for k in before if "embed_tokens" in k or ".wte." in k)
    assert after.pop("lm_head.weight") != before[embedding_name]  # the head trained away from its start
    assert after == before  # the input embedding and every other weight are bit-identical


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_last_blocks_and_norm_train_alone(family):
    model = {"gpt2": make_gpt2, "llama": make_llama}[family]()
    before = fingerprint(model)
    names = prepare_last_layer(model, n_blocks=1)
    assert all(".1." in n or "ln_f" in n or n.endswith("norm.weight") for n in names)
    assert any("ln_f" in n or n == "model.norm.weight" for n in names)
    losses = train_steps(model)
    assert losses[-1] < losses[0] - 0.05
    after = fingerprint(model)
    assert all(after[k] == v for k, v in before.items() if k not in names)
    assert any(after[k] != before[k] for k in names)


def test_refuses_twice_and_bad_block_count():
    model = make_gpt2()
    prepare_last_layer(model)
    with pytest.raises(AdapterError):
        prepare_last_layer(model)
    with pytest.raises(ConfigError, match="only 2 blocks"):
        prepare_last_layer(make_gpt2(), n_blocks=3)
    with pytest.raises(ConfigError):
        prepare_last_layer(make_gpt2(), n_blocks=-1)


def rows(seed: int = 3, n: int = 6, vocab: int = 100):
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        p, t = 5 + (i * 3) % 7, 2 + i % 4  # lengths differ, so batches carry padding
        out.append({"prompt_ids": torch.randint(0, vocab, (p,), generator=g).tolist(),
                    "target_ids": torch.randint(0, vocab, (t,), generator=g).tolist() + [vocab]})
    return out


@pytest.mark.parametrize("n_blocks", [0, 1])
def test_cached_frozen_features_give_the_full_models_loss_and_gradients(n_blocks):
    """Last-layer training on cached features of the frozen part is the same computation as the full forward."""
    from peft_helpers import TrainCollator, summary_loss
    from peft_helpers.training import FrozenFeatures

    model = make_llama()
    prepare_last_layer(model, n_blocks)
    assert FrozenFeatures.frozen_depth(model) == n_blocks
    data, blocks = rows(), list(transformer_blocks(model))
    cache = FrozenFeatures(model, data, pad_id=100, batch_size=4, device="cpu", n_blocks=n_blocks, desc="test")
    params = [p for p in model.parameters() if p.requires_grad]
    for indices in ([0, 1, 2], [5, 3]):
        full, n_full = summary_loss(model, TrainCollator(100)([data[i] for i in indices]))
        full_grads = torch.autograd.grad(full, params)
        cached, n_cached = cache.loss(model, indices)
        cached_grads = torch.autograd.grad(cached, params)
        assert int(n_full) == int(n_cached)
        torch.testing.assert_close(cached, full, rtol=1e-5, atol=1e-5)
        for a, b in zip(cached_grads, full_grads):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    assert all(a is b for a, b in zip(transformer_blocks(model), blocks))  # the frozen blocks are back in place


@pytest.mark.parametrize("n_blocks", [0, 1])
def test_the_cached_validation_loss_is_the_full_models_token_weighted_loss(n_blocks):
    """The last-layer methods' validation loss (reported as their eval loss) comes from the cache: it must be the
    full model's token-weighted mean over batches of unequal token counts, not a mean of batch means."""
    from peft_helpers import evaluate_loss
    from peft_helpers.training import FrozenFeatures

    model = make_llama()
    prepare_last_layer(model, n_blocks)
    data = rows(n=11)  # batches of 4, 4, 3 rows with different summary lengths
    cache = FrozenFeatures(model, data, pad_id=100, batch_size=4, device="cpu", n_blocks=n_blocks, desc="test")
    whole = evaluate_loss(model, data, pad_id=100, batch_size=len(data), show=False)  # one batch: no averaging at all
    assert cache.mean_loss(model, batch_size=4) == pytest.approx(whole, rel=1e-5)
    assert cache.mean_loss(model, batch_size=3) == pytest.approx(whole, rel=1e-5)


def test_no_cache_where_the_frozen_part_is_random_or_trains():
    from peft_helpers.training import FrozenFeatures

    gpt2 = make_gpt2()  # the conftest GPT-2 has no dropout: the head alone may be cached
    prepare_last_layer(gpt2, 0)
    assert FrozenFeatures.frozen_depth(gpt2) == 0
    with_dropout = GPT2LMHeadModel(tiny_gpt2_config(101))  # GPT-2's default dropout 0.1: features would differ
    prepare_last_layer(with_dropout, 0)
    assert FrozenFeatures.frozen_depth(with_dropout) is None
    lora = make_llama()
    add_lora(lora, LoRAConfig(r=2))
    assert FrozenFeatures.frozen_depth(lora) is None


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_full_fine_tuning_trains_every_weight_and_keeps_the_head_tied(family):
    model = {"gpt2": make_gpt2, "llama": make_llama}[family]()
    depth = len(transformer_blocks(model))
    with pytest.raises(ConfigError, match="every block"):
        prepare_full_fine_tuning({"gpt2": make_gpt2, "llama": make_llama}[family](), n_blocks=depth - 1)
    before = fingerprint(model)
    names = prepare_full_fine_tuning(model, n_blocks=depth)
    assert set(names) == set(before)  # every weight, the shared embedding/head once
    head, embedding = model.get_output_embeddings().weight, model.get_input_embeddings().weight
    assert head is embedding
    losses = train_steps(model)
    assert losses[-1] < losses[0] - 0.05
    after = fingerprint(model)
    assert all(after[k] != before[k] for k in before if "norm" not in k and "ln_" not in k)


def test_full_fine_tuning_needs_blocks_in_the_settings():
    from peft_helpers import LastLayerConfig

    with pytest.raises(ConfigError, match="full fine-tuning"):
        LastLayerConfig(n_blocks=0, embeddings=True)
    with pytest.raises(ConfigError, match="True or False"):
        LastLayerConfig(n_blocks=2, embeddings="yes")


def test_full_fine_tuning_is_its_own_method_training_every_weight_once(tmp_path):
    """full_ft (the sweeps' ceiling) has its own name, settings and hash: every weight trains, the embedding tied to
    the head is one parameter trained once, and its weights round-trip through its own file."""
    import tools.sweep as sweep_module
    from peft_helpers import build_model, get_profile, prepare
    from peft_helpers.experiment import training_hash
    from peft_helpers.methods import method_object, trainable_state

    setup = prepare(get_profile("smoke"))
    model = build_model(setup, "full_ft")
    params = list(model.parameters())
    assert params and all(p.requires_grad for p in params)
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight  # tied, trained once
    with torch.no_grad():
        model.get_input_embeddings().weight.add_(0.5)
    method_object("full_ft").save(model, tmp_path, setup.profile, "tiny")
    assert (tmp_path / "adapter" / "full_ft.safetensors").is_file()
    again = build_model(setup, "full_ft")
    method_object("full_ft").load(again, tmp_path)
    assert all(torch.equal(a, b) for a, b in zip(trainable_state(again).values(), trainable_state(model).values()))
    method, variant = sweep_module.tune_variant(setup.profile, "full_ft", 3e-5)
    assert method == "full_ft" and variant.full_ft.lr == 3e-5 and variant.full_ft.epochs == sweep_module.TUNE_EPOCHS
    old_form = setup.profile.replace(train=dict(precision="fp32"), last_blocks=dict(
        n_blocks=2, lr=3e-5, embeddings=True, epochs=variant.full_ft.epochs))
    assert training_hash(variant, "full_ft") != training_hash(old_form, "last_blocks")  # hashes made once, its own
