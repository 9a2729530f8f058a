"""Last-layer fine-tuning: the head is untied and trains alone; the input embedding never moves."""

import pytest
import torch

from conftest import make_gpt2, make_llama, toy_batch, train_steps
from peft_helpers import AdapterError, ConfigError, fingerprint, model_logits, prepare_last_layer, summary_loss


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
