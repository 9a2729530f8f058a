"""The run contract: a result is reused only as a whole unit, a kill never leaves a result that lies,
retraining starts from fresh weights, diverged or idle runs are never saved as trained, and the report is
written completely or not at all. Plus tests that catch three realistic bugs the suite used to miss."""

import dataclasses
import json
import subprocess
from pathlib import Path

import pytest
import torch

import peft_helpers.results as results_module
import peft_helpers.training as training
from conftest import make_gpt2, make_llama, toy_batch
from peft_helpers import (
    METHODS, ResultsError, build_model, get_profile, load_results, prepare, run_method, summary_loss,
)
from peft_helpers.experiment import config_hash
from peft_helpers.methods import trainable_state
from peft_helpers.results import COMPLETE, unfinished_reason, unit_files

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def setup():
    return prepare(get_profile("smoke"))


def with_profile(setup, **overrides):
    return dataclasses.replace(setup, profile=setup.profile.replace(**overrides))


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------------------
# Results as one unit
# ---------------------------------------------------------------------------


def test_a_kill_while_results_are_written_leaves_the_old_unit_and_no_false_reuse(setup, tmp_path, monkeypatch):
    first = run_method(setup, "zero_shot", build_model(setup, "zero_shot"), root=tmp_path)
    folder = tmp_path / "smoke" / "zero_shot"
    before = snapshot(folder)
    short = with_profile(setup, generation={"max_new_tokens": 3})

    def killed(*args, **kwargs):
        raise KeyboardInterrupt("simulated kill after config.json, before predictions and metrics")

    monkeypatch.setattr("peft_helpers.experiment.atomic_write_jsonl", killed)
    with pytest.raises(KeyboardInterrupt):  # asked to replace the finished result, and killed while writing
        run_method(short, "zero_shot", build_model(short, "zero_shot"), root=tmp_path, retrain=True)
    monkeypatch.undo()
    assert snapshot(folder) == before  # nothing of the killed run landed
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]  # no temporary folders left
    assert unfinished_reason(folder, "zero_shot", config_hash(short.profile, "zero_shot")) == \
        "the settings changed since those results were made"
    with pytest.raises(ResultsError, match="other settings"):  # a finished result is replaced only when asked
        run_method(short, "zero_shot", build_model(short, "zero_shot"), root=tmp_path)
    assert snapshot(folder) == before
    again = run_method(short, "zero_shot", build_model(short, "zero_shot"), root=tmp_path, retrain=True)
    assert again["metrics"]["mean_new_tokens"] <= 3 < first["metrics"]["mean_new_tokens"]
    assert load_results("smoke", "zero_shot", tmp_path)["metrics"] == json.loads(json.dumps(again["metrics"]))


@pytest.mark.parametrize("damage", ["no record", "weights missing", "file edited", "record unreadable"])
def test_an_incomplete_unit_is_trained_again_and_the_log_says_why(setup, tmp_path, capsys, damage):
    run_method(setup, "last_layer", build_model(setup, "last_layer"), root=tmp_path, checkpoints=tmp_path / "c")
    folder = tmp_path / "smoke" / "last_layer"
    assert unfinished_reason(folder, "last_layer", config_hash(setup.profile, "last_layer")) is None
    if damage == "no record":  # a fresh clone: the record is not committed
        (folder / COMPLETE).unlink()
    elif damage == "weights missing":  # a fresh clone: the head's weights are not committed either
        (folder / "adapter" / "last_layer.safetensors").unlink()
    elif damage == "file edited":
        (folder / "predictions.jsonl").write_text((folder / "predictions.jsonl").read_text().replace("a", "b"))
    else:
        (folder / COMPLETE).write_text("{")
    capsys.readouterr()
    run_method(setup, "last_layer", build_model(setup, "last_layer"), root=tmp_path, checkpoints=tmp_path / "c2")
    out = capsys.readouterr().out
    assert "last_layer: training, because" in out and "reusing" not in out
    assert unfinished_reason(folder, "last_layer", config_hash(setup.profile, "last_layer")) is None


def test_unit_files_are_what_the_notebooks_load():
    assert set(unit_files("lora")) >= {"metrics.json", "predictions.jsonl", "history.csv", "config.json",
                                       "adapter/adapter_config.json", "adapter/adapter_model.safetensors"}
    assert "adapter/prompt_tuning.safetensors" in unit_files("prompt_tuning")
    assert "history.csv" not in unit_files("zero_shot")


# ---------------------------------------------------------------------------
# Checkpoints as one unit; retraining from fresh weights
# ---------------------------------------------------------------------------


def test_a_kill_while_a_checkpoint_is_written_resumes_to_the_uninterrupted_weights(setup, tmp_path, monkeypatch):
    from peft_helpers.config import TrainConfig

    config = TrainConfig(batch_size=4, epochs=3, evals_per_epoch=1, patience=10)
    straight = build_model(setup, "lora")
    training.train(straight, setup.splits, setup.pad_id, config, lr=1e-2, seed=0)

    original, calls = results_module.save_file, []

    def dies_in_second_write(tensors, path, metadata=None):
        calls.append(path)
        if len(calls) == 2:  # epoch 2's checkpoint: half a file, then the kill
            Path(path).write_bytes(b"half")
            raise KeyboardInterrupt("killed while writing the epoch-2 checkpoint")
        return original(tensors, path, metadata=metadata)

    monkeypatch.setattr(results_module, "save_file", dies_in_second_write)
    with pytest.raises(KeyboardInterrupt):
        training.train(build_model(setup, "lora"), setup.splits, setup.pad_id, config, lr=1e-2, seed=0,
                       checkpoint_dir=tmp_path, config_hash="h")
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == [training.CHECKPOINT]  # epoch 1's, whole
    resumed = build_model(setup, "lora")
    history, stats = training.train(resumed, setup.splits, setup.pad_id, config, lr=1e-2, seed=0,
                                    checkpoint_dir=tmp_path, config_hash="h")
    assert stats["epochs_run"] == 3 and len(history) == 4
    torch.testing.assert_close(trainable_state(resumed), trainable_state(straight), rtol=1e-5, atol=1e-6)


def test_a_corrupt_checkpoint_names_its_path(setup, tmp_path):
    from peft_helpers.config import TrainConfig

    (tmp_path / training.CHECKPOINT).write_bytes(b"not a checkpoint")
    with pytest.raises(ResultsError, match="checkpoint.safetensors"):
        training.train(build_model(setup, "lora"), setup.splits, setup.pad_id, TrainConfig(batch_size=4, epochs=1),
                       lr=1e-2, checkpoint_dir=tmp_path, config_hash="h")


def test_retrain_on_the_same_model_starts_from_the_initial_weights(setup, tmp_path):
    model = build_model(setup, "prompt_tuning")
    initial = trainable_state(model)
    first = run_method(setup, "prompt_tuning", model, root=tmp_path, checkpoints=tmp_path / "c")
    trained = trainable_state(model)
    assert not torch.equal(trained["prompt"], initial["prompt"])
    again = run_method(setup, "prompt_tuning", model, retrain=True, root=tmp_path, checkpoints=tmp_path / "c")
    torch.testing.assert_close(trainable_state(model), trained)  # the same run again, not a continuation
    assert again["metrics"]["eval_loss"] == pytest.approx(first["metrics"]["eval_loss"], abs=1e-6)
    assert list(again["history"].eval_loss) == pytest.approx(list(first["history"].eval_loss), abs=1e-6)


# ---------------------------------------------------------------------------
# Runs that diverge or never learn
# ---------------------------------------------------------------------------


def test_a_nan_loss_stops_training_and_writes_nothing(setup, tmp_path, monkeypatch):
    calls = []

    def poisoned(model, batch):
        loss, n = summary_loss(model, batch)
        calls.append(1)
        return (loss * float("nan"), n) if len(calls) == 5 else (loss, n)

    monkeypatch.setattr(training, "summary_loss", poisoned)
    with pytest.raises(training.TrainingError, match="loss became nan.*no result is written"):
        run_method(setup, "lora", build_model(setup, "lora"), root=tmp_path, checkpoints=tmp_path / "c")
    assert not (tmp_path / "smoke" / "lora").exists()


def test_an_absurd_learning_rate_is_refused_before_training():
    from peft_helpers import ConfigError

    for lr in (1e38, 11.0, float("inf")):
        with pytest.raises(ConfigError, match="lr must be"):
            get_profile("smoke", last_layer={"lr": lr})


def test_a_run_that_never_beats_its_start_is_recorded_as_did_not_learn(setup, tmp_path, capsys):
    from peft_helpers.plots import comparison_table

    idle = with_profile(setup, lora={"lr": 1e-12})
    result = run_method(idle, "lora", build_model(idle, "lora"), root=tmp_path, checkpoints=tmp_path / "c")
    assert result["metrics"]["learned"] is False
    assert "did not learn" in capsys.readouterr().out
    assert comparison_table({"lora": result}).method[0] == "LoRA (did not learn)"
    learned = run_method(setup, "lora", build_model(setup, "lora"), root=tmp_path / "b", checkpoints=tmp_path / "c")
    assert learned["metrics"]["learned"] is True


# ---------------------------------------------------------------------------
# The report: completely or not at all
# ---------------------------------------------------------------------------


def test_the_report_is_built_whole_or_the_previous_one_stays(setup, tmp_path, monkeypatch):
    from peft_helpers.plots import output_dirs
    from report.build import build_report

    monkeypatch.chdir(tmp_path)
    for method in METHODS:
        run_method(setup, method, build_model(setup, method))
    pdf = build_report("smoke")
    figures, report = output_dirs("smoke")
    before = {**snapshot(report), **{f"fig/{k}": v for k, v in snapshot(figures).items()}}
    build_report("smoke")  # the same results make the same bytes: a rebuild leaves git status clean
    assert {**snapshot(report), **{f"fig/{k}": v for k, v in snapshot(figures).items()}} == before
    assert pdf.read_bytes()[:5] == b"%PDF-" and {"fig/fit.png", "fig/cost.png", "fig/pairwise.png"} <= set(before)
    (Path("results/smoke/last_blocks/metrics.json")).write_text('{"method": "last_blocks"}')  # valid JSON, no data
    (Path("results/smoke/lora/predictions.jsonl")).unlink()
    with pytest.raises(ResultsError) as err:
        build_report("smoke")
    message = str(err.value)
    for needed in ("nothing was written", "last_blocks", "metrics.json", "02_last_layer_ft.ipynb",
                   "lora", "predictions.jsonl", "03_lora.ipynb"):
        assert needed in message
    assert {**snapshot(report), **{f"fig/{k}": v for k, v in snapshot(figures).items()}} == before
    assert not [p for p in report.iterdir() if p.name.startswith(".build")]


# ---------------------------------------------------------------------------
# The committed results keep the contract
# ---------------------------------------------------------------------------


def test_committed_results_are_complete_for_the_report_and_carry_their_completion_record():
    tracked = subprocess.run(["git", "ls-files", "results"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    if not tracked:
        pytest.skip("not a git checkout")
    units = {str(Path(name).parent) for name in tracked if name.endswith("/metrics.json")
             and (Path(name).parts[2] in METHODS or Path(name).parts[2] == "sweeps")}  # not parity's copies
    records = {str(Path(name).parent) for name in tracked if name.endswith("/" + COMPLETE)}
    assert units and units <= records  # every committed unit with its record: a fresh clone knows what is finished
    for method in METHODS:
        loaded = load_results("smollm2-aclsum", method, ROOT / "results")
        assert len(loaded["predictions"]) == loaded["metrics"]["n_test"] == 100
        folder = ROOT / "results" / "smollm2-aclsum" / method
        if unfinished_reason(folder, method, loaded["config"]["hash"]) is None:  # what a re-run here would reuse
            assert all((folder / name).is_file() for name in unit_files(method))


# ---------------------------------------------------------------------------
# Three realistic bugs, each caught
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("make", [make_gpt2, make_llama])
def test_summary_loss_equals_the_models_own_shifted_loss(make):
    """Dropping the one-position shift between logits and labels changes this by far more than rounding."""
    model, batch = make(), toy_batch()
    loss, n = summary_loss(model, batch)
    theirs = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"]).loss
    torch.testing.assert_close(loss / n, theirs, rtol=1e-5, atol=1e-6)
    assert n == (batch["labels"][:, 1:] != -100).sum()


def test_what_is_scored_is_the_continuation_only(setup):
    from peft_helpers import generate_summaries

    model = build_model(setup, "zero_shot")
    rows = generate_summaries(model, setup.tokenizer, setup.splits["test"], setup.profile.generation)
    for row, source in zip(rows, setup.splits["test"]):
        assert row["id"] == source["id"] and row["reference"] == source["summary"]
        assert source["document"][:40] not in row["prediction"]
        assert "TL;DR" not in row["prediction"]
        assert row["new_tokens"] <= setup.profile.generation.max_new_tokens
        assert len(setup.tokenizer(row["prediction"], add_special_tokens=False)["input_ids"]) <= row["new_tokens"] + 2


def test_evaluation_is_deterministic_with_lora_dropout(setup):
    from peft_helpers import generate_summaries
    from peft_helpers.methods import lora_layers
    from peft_helpers.training import evaluate_loss

    noisy = with_profile(setup, lora={"dropout": 0.5})
    model = build_model(noisy, "lora")
    with torch.no_grad():
        for layer in lora_layers(model).values():
            layer.lora_B.normal_(0, 0.5)  # a trained-looking adapter, so dropout would matter
    model.train()  # as a notebook leaves it after training: evaluation must switch dropout off itself
    losses = [evaluate_loss(model, setup.splits["validation"], setup.pad_id, show=False) for _ in range(2)]
    for layer in lora_layers(model).values():
        layer.dropout = torch.nn.Identity()
    assert losses[0] == losses[1] == pytest.approx(
        evaluate_loss(model, setup.splits["validation"], setup.pad_id, show=False), abs=1e-6)
    for layer in lora_layers(model).values():
        layer.dropout = torch.nn.Dropout(0.5)
    model.train()
    texts = [[r["prediction"] for r in generate_summaries(model, setup.tokenizer, setup.splits["test"],
                                                          setup.profile.generation)] for _ in range(2)]
    assert texts[0] == texts[1]


def test_rouge_lsum_scores_sentences_one_per_line():
    from rouge_score import rouge_scorer

    from peft_helpers.evaluation import _sentences, rouge_per_example

    assert _sentences("The cat sat. A dog ran!  Did it? yes") == "The cat sat.\nA dog ran!\nDid it?\nyes"
    reference = "The model is small. It runs on a laptop."
    swapped = "It runs on a laptop. The model is small."
    scores = rouge_per_example([swapped], [reference])
    assert scores["rougeLsum"][0] == pytest.approx(1.0)  # the same sentences, in another order
    assert scores["rougeL"][0] < 0.75  # one long common subsequence only
    direct = rouge_scorer.RougeScorer(["rougeLsum"], use_stemmer=True).score(
        "The model is small.\nIt runs on a laptop.", "It runs on a laptop.\nThe model is small.")
    assert scores["rougeLsum"][0] == pytest.approx(direct["rougeLsum"].fmeasure)


def test_a_whole_run_records_its_stage_timings_and_which_methods_it_made(tmp_path):
    import os
    import time

    from tools.run_notebooks import write_timings

    started = time.time() - 1  # the run began a second ago; its methods' metrics are written after
    for method, seconds in (("zero_shot", 1.5), ("lora", 12.0)):
        folder = tmp_path / "results" / "smoke" / method
        folder.mkdir(parents=True)
        (folder / "metrics.json").write_text(json.dumps({"train_time_s": seconds, "validation_s": 2.0,
                                                         "test_loss_s": 3.0, "generation_s": 4.0}))
    os.utime(tmp_path / "results" / "smoke" / "zero_shot" / "metrics.json", (started - 60, started - 60))  # older
    path = write_timings(tmp_path, "smoke", {"00_data_prep": 3.04}, 30.0, started)
    record = json.loads(path.read_text())
    assert record["notebooks_s"] == {"00_data_prep": 3.0} and record["total_s"] == 30.0
    assert record["methods"]["lora"] == {"made_by_this_run": True, "train_time_s": 12.0, "validation_s": 2.0,
                                         "test_loss_s": 3.0, "generation_s": 4.0}
    assert record["methods"]["zero_shot"]["made_by_this_run"] is False
    assert set(record["methods"]) == {"zero_shot", "lora"}
    assert record["environment"]["processor"] and "torch_threads" in record["environment"]


def test_the_runner_executes_a_notebook_of_the_smoke_profile(monkeypatch):
    """`make run`'s entry point, on the first notebook (the smoke profile writes under results/smoke/, ignored by git)."""
    from tools.run_notebooks import main

    monkeypatch.setenv("PEFT_PROFILE", "smoke")  # main sets these two; monkeypatch puts them back
    monkeypatch.setenv("PEFT_PLAIN_PROGRESS", "1")
    executed = ROOT / "results" / "smoke" / "notebooks" / "00_data_prep.ipynb"
    executed.unlink(missing_ok=True)
    main(["--profile", "smoke", "--only", "00_data_prep"])
    cells = [c for c in json.loads(executed.read_text())["cells"] if c["cell_type"] == "code"]
    assert cells and all(c.get("execution_count") for c in cells)  # every cell ran
    run = json.loads(executed.read_text())["metadata"]["peft_run"]  # which run and commit made it
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    assert run["profile"] == "smoke" and run["commit"] == (head or "unknown") and run["id"].endswith("Z")


def test_the_report_names_the_run_that_made_its_results(tmp_path):
    from report.tables import run_words

    assert run_words("p", tmp_path) is None
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "run.json").write_text(json.dumps({"id": "2026-12-03T21:00:00Z", "commit": "0123456789abcdef",
                                                         "uncommitted_changes": True}))
    assert run_words("p", tmp_path) == "make run of 2026-12-03T21:00:00Z, commit 0123456789 with changes not committed"


def test_settings_added_later_keep_the_committed_results_valid_and_count_once_set():
    """uniform_init and embeddings were added after the smollm2-aclsum runs: at their defaults the hash is unchanged."""
    profile = get_profile("smollm2-aclsum")
    for method in ("prompt_tuning", "last_layer", "last_blocks", "lora", "zero_shot"):
        committed = json.loads((Path(__file__).resolve().parents[1] / "results" / "smollm2-aclsum" / method /
                                "config.json").read_text())
        assert committed["hash"] == config_hash(profile, method), method
    assert config_hash(profile.replace(prompt_tuning=dict(uniform_init=True)), "prompt_tuning") != \
        config_hash(profile, "prompt_tuning")
    assert config_hash(profile.replace(last_blocks=dict(n_blocks=30, embeddings=True)), "last_blocks") != \
        config_hash(profile.replace(last_blocks=dict(n_blocks=30)), "last_blocks")
