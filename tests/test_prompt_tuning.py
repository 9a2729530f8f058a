"""Prompt tuning: only the prompt trains, logits equal peft's, generation equals a plain greedy loop."""

import pytest
import torch

from conftest import greedy_reference, make_gpt2, make_llama, toy_batch, train_steps
from peft_helpers import (
    AdapterError, ConfigError, GenerationConfig, SoftPromptModel, add_soft_prompt, fingerprint,
    model_logits, summary_loss,
)
from peft_helpers.evaluation import generate_ids
from peft_helpers.methods import load_weights, save_weights


def wrap(model, n=5, seed=0):
    """A soft prompt from sampled vocabulary rows (no tokenizer needed)."""
    return add_soft_prompt(model, tokenizer=None, n_tokens=n, init_text=None, seed=seed)


def test_prompt_from_text_uses_its_embeddings(tokenizer):
    model = make_gpt2(vocab=len(tokenizer))
    wrapped = add_soft_prompt(model, tokenizer, 8, "Summarize the following text:")
    ids = tokenizer("Summarize the following text:", add_special_tokens=False)["input_ids"]
    expected = (ids * 8)[:8]
    assert torch.equal(wrapped.prompt.data, model.transformer.wte.weight[expected])


def test_only_the_prompt_gets_gradients(make_model):
    wrapped = wrap(make_model())
    wrapped.train()
    loss, n = summary_loss(wrapped, toy_batch())
    (loss / n).backward()
    assert wrapped.prompt.grad is not None and wrapped.prompt.grad.abs().sum() > 0
    assert all(p.grad is None for name, p in wrapped.named_parameters() if name != "prompt")


def test_training_lowers_loss_and_keeps_base_bit_identical(make_model):
    model = make_model()
    before = fingerprint(model)
    wrapped = wrap(model)
    losses = train_steps(wrapped, steps=20, lr=1e-1)
    assert losses[-1] < losses[0] - 0.02  # a random tiny model is near-uniform: little for a prompt to steer
    after = fingerprint(wrapped)
    after.pop("prompt")
    assert after == before


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_logits_match_peft_prompt_tuning(family):
    from peft import PromptTuningConfig, PromptTuningInit, get_peft_model

    maker = {"gpt2": make_gpt2, "llama": make_llama}[family]
    ours = wrap(maker(), n=6)
    config = PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=6, prompt_tuning_init=PromptTuningInit.RANDOM)
    theirs = get_peft_model(maker(), config)
    with torch.no_grad():
        theirs.prompt_encoder["default"].embedding.weight.copy_(ours.prompt)
    batch = toy_batch()
    mine = model_logits(ours, batch["input_ids"], batch["attention_mask"])
    peft_logits = theirs(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, 6:]
    torch.testing.assert_close(mine, peft_logits, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(mine, model_logits(maker(), batch["input_ids"]), atol=1e-3)


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_batched_cached_generation_equals_plain_greedy_loop(family):
    maker = {"gpt2": make_gpt2, "llama": make_llama}[family]
    wrapped = wrap(maker(), n=4)
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():  # a prompt as large as a trained one, so it visibly steers a random model
        wrapped.prompt.copy_(torch.randn(wrapped.prompt.shape, generator=g))
    prompts = [torch.randint(0, 100, (k,), generator=g).tolist() for k in (9, 4, 13)]  # padding differs per row
    settings = GenerationConfig(max_new_tokens=10)
    batched = generate_ids(wrapped, prompts, settings, eos_id=100, pad_id=100)
    for prompt, got in zip(prompts, batched):
        assert got == greedy_reference(wrapped, prompt, 10, eos_id=100)
    assert any(len(g) > 0 for g in batched)
    if family == "gpt2":  # (the random tiny Llama echoes its last input token whatever comes before it)
        plain = generate_ids(maker(), prompts, settings, eos_id=100, pad_id=100)
        assert plain != batched  # the soft prompt changes what is generated


def test_saved_prompt_round_trips_and_wrong_shape_is_refused(tmp_path):
    wrapped = wrap(make_gpt2(), n=5, seed=1)
    save_weights(wrapped, tmp_path / "prompt.safetensors")
    other = wrap(make_gpt2(), n=5, seed=2)
    assert not torch.equal(other.prompt, wrapped.prompt)
    load_weights(other, tmp_path / "prompt.safetensors")
    assert torch.equal(other.prompt, wrapped.prompt)
    with pytest.raises(AdapterError, match="shape"):
        load_weights(wrap(make_gpt2(), n=7), tmp_path / "prompt.safetensors")


def test_refuses_double_wrap_and_bad_length():
    wrapped = wrap(make_gpt2())
    with pytest.raises(AdapterError):
        wrap(wrapped)
    with pytest.raises(AdapterError):
        wrap(wrapped.model)
    for bad in (0, -2):
        with pytest.raises(ConfigError, match="positive"):
            wrap(make_gpt2(), n=bad)
    assert isinstance(wrapped, SoftPromptModel) and wrapped.n_tokens == 5


def test_trigram_blocking_counts_generated_tokens_only():
    model = make_gpt2()
    prompts = [[1, 2, 3, 1, 2, 3], [7, 7]]  # the prompt's own repeated trigram must not block anything
    plain = generate_ids(model, prompts, GenerationConfig(max_new_tokens=16), eos_id=100, pad_id=100)
    blocked = generate_ids(model, prompts, GenerationConfig(max_new_tokens=16, no_repeat_ngram_size=3),
                           eos_id=100, pad_id=100)
    for row in blocked:
        trigrams = [tuple(row[i:i + 3]) for i in range(len(row) - 2)]
        assert len(trigrams) == len(set(trigrams))
    assert any(len(set(tuple(r[i:i + 3]) for i in range(len(r) - 2))) < len(r) - 2 for r in plain)  # greedy loops


def test_uniform_initialisation_draws_from_minus_half_to_half_and_follows_the_seed():
    model = make_gpt2()
    a = add_soft_prompt(model, tokenizer=None, n_tokens=30, init_text="ignored", seed=3, uniform=True).prompt.data
    b = add_soft_prompt(make_gpt2(), tokenizer=None, n_tokens=30, init_text=None, seed=3, uniform=True).prompt.data
    c = add_soft_prompt(make_gpt2(), tokenizer=None, n_tokens=30, init_text=None, seed=4, uniform=True).prompt.data
    assert a.shape == (30, model.config.n_embd) and torch.equal(a, b) and not torch.equal(a, c)
    assert a.min() >= -0.5 and a.max() <= 0.5 and a.std() == pytest.approx(1 / 12 ** 0.5, rel=0.1)
    assert not any(torch.equal(row, w) for row in a[:3] for w in model.transformer.wte.weight[:5000])


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_the_saved_soft_prompt_loads_in_peft_and_gives_our_logits(family, tmp_path):
    from peft import PeftModel

    from peft_helpers.methods import save_prompt_adapter

    maker = {"gpt2": make_gpt2, "llama": make_llama}[family]
    ours = wrap(maker(), n=5)
    with torch.no_grad():
        ours.prompt.normal_(0, 0.5, generator=torch.Generator().manual_seed(3))  # as if trained: not the init
    folder = save_prompt_adapter(ours, tmp_path / "peft", "tiny", init_text="Summarize:")
    theirs = PeftModel.from_pretrained(maker(), folder)
    assert theirs.peft_config["default"].peft_type == "PROMPT_TUNING"
    batch = toy_batch()
    mine = model_logits(ours, batch["input_ids"], batch["attention_mask"])
    peft_logits = theirs(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, 5:]
    torch.testing.assert_close(mine, peft_logits, rtol=1e-5, atol=1e-5)
    with pytest.raises(Exception, match="soft prompt"):
        save_prompt_adapter(maker(), tmp_path / "none", "tiny")


def test_the_soft_prompt_model_can_be_called_like_the_model_it_wraps(tokenizer):
    """model(input_ids=...) on a prompt-tuned model works as on peft's PeftModel: same loss as the training path,
    logits for the prompt's positions too."""
    from conftest import make_gpt2, toy_batch
    from peft_helpers import summary_loss
    from peft_helpers.methods import add_soft_prompt

    model = add_soft_prompt(make_gpt2(), tokenizer, n_tokens=3, init_text=None, seed=0)
    batch = toy_batch()
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"])
    assert out.logits.shape[:2] == (batch["input_ids"].shape[0], batch["input_ids"].shape[1] + 3)
    loss, n = summary_loss(model, batch)
    torch.testing.assert_close(out.loss, loss / n, rtol=1e-5, atol=1e-6)
    assert model(input_ids=batch["input_ids"]).logits.shape == out.logits.shape  # no mask: every position counts


def test_the_learned_prompts_nearest_tokens_start_as_the_tokens_it_was_initialised_from(tokenizer):
    """Initialised from vocabulary rows, each soft token is exactly its row's token (cosine 1) until training moves
    it."""
    from conftest import make_llama
    from peft_helpers.methods import add_soft_prompt, nearest_tokens

    model = add_soft_prompt(make_llama(), tokenizer, n_tokens=4, init_text=None, seed=0)  # sampled vocabulary rows
    table = model.model.get_input_embeddings().weight
    started_as = [int((table == row).all(dim=1).nonzero()[0]) for row in model.prompt]
    rows = nearest_tokens(model, tokenizer, k=2)
    assert [r["tokens"][0] for r in rows] == [tokenizer.decode([i]) for i in started_as]
    assert all(r["cosine"][0] == 1.0 and r["cosine"][0] >= r["cosine"][1] for r in rows)
    with torch.no_grad():
        model.prompt.add_(torch.randn_like(model.prompt) * 10)  # moved far: no longer a word
    assert max(r["cosine"][0] for r in nearest_tokens(model, tokenizer)) < 1.0
