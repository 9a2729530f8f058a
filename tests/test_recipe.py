"""The training loop in view: the loss, the optimizer and the schedule a notebook names (``training.Recipe``), the
line printed at each validation check, and the same documents summarised before training and after."""

import re

import pytest
import torch

from peft_helpers import Recipe, build_model, get_profile, prepare, run_method, sample_summaries
from peft_helpers.experiment import config_hash, recipe_hash, training_hash
from peft_helpers.plots import before_after
from peft_helpers.results import results_dir
from peft_helpers.training import adamw, linear_schedule, summary_loss


@pytest.fixture(scope="module")
def setup():
    return prepare(get_profile("smoke"))


def sgd(params, lr, weight_decay):
    return torch.optim.SGD(params, lr=lr)


def doubled_loss(model, batch):
    loss, count = summary_loss(model, batch)
    return 2 * loss, count


def test_the_default_recipe_is_every_committed_results_so_its_hashes_are_the_plain_ones(setup):
    recipe = Recipe(loss=summary_loss, optimizer=adamw, schedule=linear_schedule)
    assert recipe.default and Recipe().default
    for method in ("prompt_tuning", "lora", "last_layer"):
        assert recipe_hash(setup.profile, method, recipe) == config_hash(setup.profile, method)
        assert recipe_hash(setup.profile, method, recipe, training_hash) == training_hash(setup.profile, method)
    other = [Recipe(optimizer=sgd), Recipe(loss=doubled_loss), Recipe(schedule=lambda o, w, t: linear_schedule(o, 0, t))]
    hashes = {recipe_hash(setup.profile, "lora", r) for r in other}
    assert not any(r.default for r in other) and len(hashes) == 3 and config_hash(setup.profile, "lora") not in hashes


def test_another_optimizer_trains_into_its_own_folder_with_other_weights_and_the_units_stay(setup, tmp_path):
    unit = run_method(setup, "lora", build_model(setup, "lora"), root=tmp_path, checkpoints=tmp_path / "ck")
    files = {p: p.read_bytes() for p in results_dir("smoke", "lora", tmp_path).rglob("*") if p.is_file()}
    mine = run_method(setup, "lora", build_model(setup, "lora"), root=tmp_path, checkpoints=tmp_path / "ck",
                      recipe=Recipe(optimizer=sgd))
    assert mine["folder"] != unit["folder"] and mine["folder"].parent.name == "lora"
    assert mine["folder"].name == f"recipe-{recipe_hash(setup.profile, 'lora', Recipe(optimizer=sgd))[:6]}"
    assert mine["config"]["recipe"]["optimizer"]["name"] == "sgd"
    assert mine["history"].eval_loss.tolist() != unit["history"].eval_loss.tolist()  # SGD moved other weights
    assert {p: p.read_bytes() for p in results_dir("smoke", "lora", tmp_path).rglob("*") if p.is_file()} == files
    # the same recipe again is the same experiment: reused, not trained
    again = run_method(setup, "lora", build_model(setup, "lora"), root=tmp_path, checkpoints=tmp_path / "ck",
                       recipe=Recipe(optimizer=sgd))
    assert again["folder"] == mine["folder"] and again["metrics"]["eval_loss"] == mine["metrics"]["eval_loss"]


def test_the_recipes_loss_is_the_one_trained_on_and_the_cache_is_not_used_for_it(setup, tmp_path, capsys):
    """Doubling the loss doubles every gradient; AdamW is invariant to that scale (up to eps), so the weights
    barely move apart, but the loss the loop lowers is the recipe's: the printed training loss doubles."""
    model = build_model(setup, "last_layer")
    plain = run_method(setup, "last_layer", model, root=tmp_path, checkpoints=tmp_path / "ck")
    model = build_model(setup, "last_layer")
    capsys.readouterr()
    doubled = run_method(setup, "last_layer", model, root=tmp_path, checkpoints=tmp_path / "ck",
                         recipe=Recipe(loss=doubled_loss))
    assert "frozen part of the model was run once" not in capsys.readouterr().out
    train_plain, train_doubled = (r["history"].train_loss.dropna().to_numpy() for r in (plain, doubled))
    assert train_doubled == pytest.approx(2 * train_plain, rel=1e-3)
    assert doubled["history"].eval_loss.tolist() == pytest.approx(plain["history"].eval_loss.tolist(), rel=1e-3)


def test_each_validation_check_prints_one_line_with_both_losses(setup, tmp_path, capsys):
    result = run_method(setup, "prompt_tuning", build_model(setup, "prompt_tuning"), root=tmp_path,
                        checkpoints=tmp_path / "ck")
    lines = [line for line in capsys.readouterr().out.splitlines() if "validation loss" in line]
    history = result["history"]
    assert len(lines) == len(history)
    assert lines[0].startswith("before training") and f"{history.eval_loss.iloc[0]:.4f}" in lines[0]
    for line, row in zip(lines[1:], history.iloc[1:].itertuples()):
        assert f"train loss {row.train_loss:.4f}" in line and f"validation loss {row.eval_loss:.4f}" in line
        assert re.search(rf"update +{row.step} ", line)
    best = history.eval_loss.cummin()
    improved = [i for i in range(1, len(history)) if history.eval_loss.iloc[i] < best.iloc[i - 1] - 1e-6]
    assert [i for i, line in enumerate(lines) if "best so far" in line] == [0, *improved]
    # a reused result prints the same lines, rebuilt from its history
    run_method(setup, "prompt_tuning", build_model(setup, "prompt_tuning"), root=tmp_path, checkpoints=tmp_path / "ck")
    reused = [line.strip() for line in capsys.readouterr().out.splitlines() if "validation loss" in line]
    assert reused == [line.strip() for line in lines]


def test_before_and_after_summarise_the_same_documents_and_score_each(setup, tmp_path):
    model = build_model(setup, "lora")
    before = sample_summaries(setup, model)
    run_method(setup, "lora", model, root=tmp_path, checkpoints=tmp_path / "ck")
    after = sample_summaries(setup, model)
    rows = [setup.splits["validation"][i] for i in (0, 1)]
    assert [b["id"] for b in before] == [a["id"] for a in after] == [r["id"] for r in rows]
    assert all(0 <= s["rouge1"] <= 1 and s["reference"] == r["summary"] for s, r in zip(after, rows))
    table = before_after(before, after)
    assert list(table.columns) == ["id", "reference", "before training", "after training"]
    assert table["after training"].iloc[0].endswith(f"(ROUGE-1 {after[0]['rouge1']:.2f})")
    with pytest.raises(ValueError, match="same documents"):
        before_after(before, after[::-1])
