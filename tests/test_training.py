"""The shared training loop: loss falls, best weights kept, resume after interruption, results reused."""

import json
import shutil

import pytest
import torch

import peft_helpers.training as training
from peft_helpers import ResultsError, build_model, get_profile, load_results, prepare, run_method
from peft_helpers.config import TrainConfig
from peft_helpers.methods import trainable_state
from peft_helpers.results import file_sha256


@pytest.fixture(scope="module")
def setup():
    return prepare(get_profile("smoke"))


def test_training_lowers_validation_loss_and_records_history(setup):
    model = build_model(setup, "lora")
    config = TrainConfig(batch_size=4, epochs=3, evals_per_epoch=2, patience=10)
    history, stats = training.train(model, setup.splits, setup.pad_id, config, lr=1e-2, seed=0)
    assert list(history.columns) == ["step", "epoch", "train_loss", "eval_loss", "lr", "elapsed"]
    assert len(history) == 1 + 3 * 2  # the start, then twice per epoch
    assert history.eval_loss.iloc[-1] < history.eval_loss.iloc[0]
    assert stats["best_eval_loss"] == pytest.approx(history.eval_loss.min())
    assert stats["updates"] == 3 * 4 and stats["tokens_per_s"] > 0
    assert stats["peak_memory_mib"] > 0  # the training peak, kept in checkpoints for resumed runs


def test_early_stopping_restores_the_best_weights(setup):
    model = build_model(setup, "last_layer")
    config = TrainConfig(batch_size=4, epochs=6, evals_per_epoch=1, patience=1)
    history, stats = training.train(model, setup.splits, setup.pad_id, config, lr=0.5, seed=0)  # lr far too high
    assert stats["stopped_early"] and stats["epochs_run"] < 6
    best = history.eval_loss.min()
    current = training.evaluate_loss(model, setup.splits["validation"], setup.pad_id)
    assert current == pytest.approx(best, rel=1e-5)


def test_interrupted_run_resumes_to_the_same_weights(setup, tmp_path, monkeypatch):
    config = TrainConfig(batch_size=4, epochs=2, evals_per_epoch=1, patience=10)
    straight = build_model(setup, "prompt_tuning")
    training.train(straight, setup.splits, setup.pad_id, config, lr=3e-2, seed=0)

    original = training.save_checkpoint

    def save_then_crash(*args, **kwargs):
        original(*args, **kwargs)
        raise KeyboardInterrupt("simulated crash after the first checkpoint")

    monkeypatch.setattr(training, "save_checkpoint", save_then_crash)
    interrupted = build_model(setup, "prompt_tuning")
    with pytest.raises(KeyboardInterrupt):
        training.train(interrupted, setup.splits, setup.pad_id, config, lr=3e-2, seed=0,
                       checkpoint_dir=tmp_path, config_hash="h")
    monkeypatch.setattr(training, "save_checkpoint", original)
    resumed = build_model(setup, "prompt_tuning")
    history, stats = training.train(resumed, setup.splits, setup.pad_id, config, lr=3e-2, seed=0,
                                    checkpoint_dir=tmp_path, config_hash="h")
    assert stats["epochs_run"] == 2 and len(history) == 3 and stats["peak_memory_mib"] > 0
    torch.testing.assert_close(trainable_state(resumed), trainable_state(straight), rtol=1e-5, atol=1e-6)
    assert not torch.equal(resumed.prompt, build_model(setup, "prompt_tuning").prompt)


def test_results_are_written_reused_and_corruption_is_reported(setup, tmp_path, monkeypatch, capsys):
    model = build_model(setup, "lora")
    first = run_method(setup, "lora", model, root=tmp_path, checkpoints=tmp_path / "ckpt")
    folder = tmp_path / "smoke" / "lora"
    for name in ("config.json", "history.csv", "metrics.json", "predictions.jsonl",
                 "adapter/adapter_config.json", "adapter/adapter_model.safetensors"):
        assert (folder / name).is_file(), name
    assert len(first["predictions"]) == len(setup.splits["test"])
    assert not list(folder.glob(".*.tmp"))  # atomic writes leave no temp files

    def no_training(*args, **kwargs):
        raise AssertionError("finished results should have been reused")

    monkeypatch.setattr("peft_helpers.experiment.train", no_training)
    again = build_model(setup, "lora")
    second = run_method(setup, "lora", again, root=tmp_path)
    assert "reusing" in capsys.readouterr().out
    assert second["metrics"] == json.loads(json.dumps(first["metrics"]))
    assert torch.equal(trainable_state(again)["transformer.h.0.attn.c_attn.lora_B"],
                       trainable_state(model)["transformer.h.0.attn.c_attn.lora_B"])

    (folder / "metrics.json").write_text("{ not json")
    with pytest.raises(ResultsError, match="metrics.json changed after the run of 'lora' finished.*03_lora"):
        load_results("smoke", "lora", tmp_path)  # the completion record's checksum catches it first
    record = json.loads((folder / "complete.json").read_text())
    record["files"]["metrics.json"] = file_sha256(folder / "metrics.json")  # a record that vouches for the bad file
    (folder / "complete.json").write_text(json.dumps(record))
    with pytest.raises(ResultsError, match="corrupt.*03_lora"):  # the parse error names the file
        load_results("smoke", "lora", tmp_path)
    (folder / "metrics.json").unlink()
    with pytest.raises(ResultsError, match="metrics.json missing from the result of 'lora'.*03_lora.ipynb"):
        load_results("smoke", "lora", tmp_path)
    (folder / "complete.json").unlink()
    with pytest.raises(ResultsError, match="complete.json is missing.*03_lora.ipynb"):
        load_results("smoke", "lora", tmp_path)
    shutil.rmtree(folder)
    with pytest.raises(ResultsError, match="Run notebooks/03_lora.ipynb"):
        load_results("smoke", "lora", tmp_path)


def test_search_records_validation_losses_and_notebook_runs_resume_from_its_checkpoints(setup, tmp_path, monkeypatch):
    from tools import search as search_module
    from peft_helpers.experiment import training_hash

    monkeypatch.chdir(tmp_path)  # results/, data/ and checkpoints/ of this test stay in tmp_path
    profile = get_profile("smoke")
    rows = search_module.search(profile, methods=["lora"])
    assert [r["method"] for r in rows] == ["lora"] * 2
    assert all(r["best val loss"] > 0 for r in rows)
    assert len({r["training hash"] for r in rows}) == 2
    # the default setting was searched, so the notebook path finds its finished checkpoint and trains nothing
    calls = []
    original = training.save_checkpoint
    monkeypatch.setattr(training, "save_checkpoint", lambda *a, **k: calls.append(1) or original(*a, **k))
    fresh = prepare(profile)
    result = run_method(fresh, "lora", build_model(fresh, "lora"))
    assert calls == []
    assert result["metrics"]["best_eval_loss"] == pytest.approx(rows[0]["best val loss"], abs=1e-4)
    assert (tmp_path / "checkpoints" / "smoke" / f"lora-{training_hash(profile, 'lora')}").is_dir()


def test_a_method_can_have_its_own_epoch_budget(setup):
    import dataclasses

    from peft_helpers import ConfigError, PromptTuningConfig
    from peft_helpers.experiment import train_config, training_hash

    profile = get_profile("smoke")
    longer = profile.replace(prompt_tuning=dataclasses.replace(profile.prompt_tuning, epochs=3))
    assert train_config(profile, "prompt_tuning").epochs == profile.train.epochs == 2
    assert train_config(longer, "prompt_tuning").epochs == 3
    assert train_config(longer, "lora") == profile.train  # other methods keep the shared budget
    # the same run, however it is spelled, has the same hash; a different budget a different one
    assert training_hash(longer, "prompt_tuning") != training_hash(profile, "prompt_tuning")
    same = profile.replace(train=dataclasses.replace(profile.train, epochs=3))
    assert training_hash(longer, "prompt_tuning") == training_hash(same, "prompt_tuning")
    assert training_hash(longer, "lora") == training_hash(profile, "lora")
    with pytest.raises(ConfigError, match="epochs"):
        PromptTuningConfig(epochs=0)
    model = build_model(setup, "prompt_tuning")
    config = dataclasses.replace(train_config(longer, "prompt_tuning"), patience=10)
    history, stats = training.train(model, setup.splits, setup.pad_id, config, lr=0.1, seed=0)
    assert history.epoch.max() == 3 and stats["epochs_run"] == 3


def test_micro_batches_give_the_whole_batch_update(setup):
    """Length-sorted micro-batches of 1, 2 or 4 rows: the same losses and the same weights as one batch of 4."""
    import torch.nn as nn

    weights, curves = {}, {}
    for micro in (1, 2, 4):
        model = build_model(setup, "prompt_tuning")
        for module in model.modules():
            if isinstance(module, nn.Dropout):
                module.p = 0.0  # no random masks, so the three runs see identical arithmetic
        config = TrainConfig(batch_size=4, epochs=2, evals_per_epoch=1, patience=10, micro_batch_size=micro)
        history, stats = training.train(model, setup.splits, setup.pad_id, config, lr=3e-2, seed=0)
        assert stats["micro_batch_size"] == micro
        weights[micro], curves[micro] = trainable_state(model), history
    for micro in (1, 2):
        for name, value in weights[4].items():
            torch.testing.assert_close(weights[micro][name], value, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(torch.tensor(curves[micro].train_loss.iloc[1:].values),
                                   torch.tensor(curves[4].train_loss.iloc[1:].values), rtol=1e-5, atol=1e-6)
    assert not torch.equal(weights[4]["prompt"], build_model(setup, "prompt_tuning").prompt.detach())  # it trained


def test_micro_batches_sort_by_length_and_keep_every_row():
    lengths = {0: 30, 1: 10, 2: 20, 3: 10, 4: 50}
    parts = training.micro_batches([0, 1, 2, 3, 4], lengths, 2)
    assert parts == [[1, 3], [2, 0], [4]]
    assert training.micro_batch_size(TrainConfig(batch_size=8), "cpu") == 2
    assert training.micro_batch_size(TrainConfig(batch_size=8), "cuda") == 8
    assert training.micro_batch_size(TrainConfig(batch_size=4, micro_batch_size=16), "cpu") == 4
