"""Shared fixtures: tiny GPT-2 (Conv1D) and tiny Llama (nn.Linear) models, CPU, seconds each."""

import json
import sys
from pathlib import Path

import pytest
import torch
from transformers import GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from peft_helpers import get_profile, load_tokenizer  # noqa: E402
from peft_helpers.models import tiny_gpt2_config  # noqa: E402
from peft_helpers.results import write_unit  # noqa: E402

VOCAB = 101


def make_gpt2(seed: int = 0, vocab: int = VOCAB) -> GPT2LMHeadModel:
    torch.manual_seed(seed)
    config = tiny_gpt2_config(vocab, n_positions=128, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    return GPT2LMHeadModel(config).eval()


def make_llama(seed: int = 0, vocab: int = VOCAB) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=vocab, hidden_size=48, intermediate_size=96, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                         tie_word_embeddings=True, bos_token_id=vocab - 1, eos_token_id=vocab - 1,
                         pad_token_id=vocab - 1)
    return LlamaForCausalLM(config).eval()


MAKERS = {"gpt2": make_gpt2, "llama": make_llama}


@pytest.fixture(params=["gpt2", "llama"])
def make_model(request):
    return MAKERS[request.param]


def toy_batch(seed: int = 1, batch: int = 3, length: int = 12, prompt: int = 7, vocab: int = VOCAB):
    """A right-padded batch whose labels cover positions prompt..length of each row (last row shorter)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab - 1, (batch, length), generator=g)
    mask = torch.ones_like(ids)
    mask[-1, length - 3:] = 0
    ids[-1, length - 3:] = vocab - 1
    labels = ids.clone()
    labels[:, :prompt] = -100
    labels[mask == 0] = -100
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def train_steps(model, steps: int = 8, lr: float = 1e-2, batch=None) -> list[float]:
    """A few AdamW steps on one repeated batch; the per-token loss before each step."""
    from peft_helpers import summary_loss

    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    batch, losses = batch or toy_batch(), []
    for _ in range(steps):
        loss, n = summary_loss(model, batch)
        optimizer.zero_grad()
        (loss / n).backward()
        optimizer.step()
        losses.append((loss / n).item())
    return losses


@pytest.fixture(scope="session")
def tokenizer():
    return load_tokenizer(get_profile("smoke"))


@torch.no_grad()
def greedy_reference(model, prompt: list[int], max_new_tokens: int, eos_id: int) -> list[int]:
    """A plain greedy loop, one sequence, no cache, no padding: the yardstick for batched cached generation."""
    from peft_helpers import model_logits

    device = next(model.parameters()).device
    ids, new = list(prompt), []
    for _ in range(max_new_tokens):
        token = int(model_logits(model, torch.tensor([ids], device=device))[0, -1].argmax())
        if token == eos_id:
            break
        ids.append(token)
        new.append(token)
    return new


def fake_unit(folder, method, val_loss, digest="h", seed=0, lr=1e-3):
    """A finished run's files (config, metrics, history, predictions, record) without training: what a sweep's
    summary and its checks read."""

    def write(tmp):
        (tmp / "config.json").write_text(json.dumps({"hash": digest, "method": method, "profile": {"seed": seed},
                                                     "method_settings": {"lr": lr}, "environment": {}}))
        (tmp / "metrics.json").write_text(json.dumps({"method": method, "eval_loss": val_loss, "rouge": None,
                                                      "trainable_params": 1000, "generation_s": 0.0}))
        (tmp / "history.csv").write_text(f"step,epoch,train_loss,eval_loss\n1,1.0,3.0,{val_loss}\n")
        (tmp / "predictions.jsonl").write_text("")

    return write_unit(folder, digest, write, method)


@pytest.fixture(scope="session")
def committed_report_data():
    """The report's data made from the committed results/, as ``make report`` makes it (figures to a scratch folder
    inside the project, removed afterwards): what the PDF, notebook 04's theory answers and the README print."""
    import os
    import tempfile
    from pathlib import Path

    from peft_helpers.config import COMMITTED_PROFILE, METHODS
    from report.build import typeset_minus
    from report.inputs import collect
    from report.tables import report_data

    root = Path(__file__).resolve().parents[1]
    here = os.getcwd()
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        os.chdir(root)
        try:
            results = collect(COMMITTED_PROFILE, METHODS, strict=True)
            return typeset_minus(report_data(COMMITTED_PROFILE, results, Path(tmp).relative_to(root), {}))
        finally:
            os.chdir(here)
