"""What decides how a run trains and when it is reused, pinned by definition rather than by today's numbers:
the stopping rule's count, the learning rate at every update, and which settings the training hash covers."""

import dataclasses
import math

import pytest
import torch

import peft_helpers.training as training
from peft_helpers import build_model, get_profile, prepare
from peft_helpers.config import METHOD_TABLE, TrainConfig
from peft_helpers.experiment import config_hash, training_hash


@pytest.fixture(scope="module")
def setup():
    return prepare(get_profile("smoke"))


def scripted(losses):
    """A validation loss that follows ``losses`` (then stays at its last value), one value per check."""
    calls = iter(losses)
    last = [losses[-1]]

    def next_loss(*args, **kwargs):
        last[0] = next(calls, last[0])
        return last[0]

    return next_loss


# ---------------------------------------------------------------------------
# The stopping rule: after the best check, exactly `patience` checks without improvement
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["prompt_tuning", "last_layer"])  # the plain loop and the cached-features loop
@pytest.mark.parametrize("patience,evals_per_epoch", [(1, 1), (2, 1), (3, 2)])
def test_a_run_stops_after_exactly_patience_checks_without_improvement(setup, monkeypatch, method, patience,
                                                                       evals_per_epoch):
    losses = [5.0, 4.0, 3.0, 2.5] + [2.6] * 30  # the best at the third check after the start
    if method == "last_layer":
        monkeypatch.setattr(training.FrozenFeatures, "mean_loss", lambda self, model, batch: fake(model))
    else:
        monkeypatch.setattr(training, "evaluate_loss", lambda *a, **k: fake(a[0]))
    fake = scripted(losses)
    config = TrainConfig(batch_size=4, epochs=12, patience=patience, evals_per_epoch=evals_per_epoch,
                         precision="fp32")
    model = build_model(setup, method)
    if method == "last_layer":  # no dropout: the frozen part's output is cached once and the head trains on it
        for module in model.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
    history, stats = training.train(model, setup.splits, setup.pad_id, config, lr=1e-3)
    checks = list(history["eval_loss"])
    assert stats["cached_features"] == (method == "last_layer")
    assert checks[:4] == losses[:4]
    best = checks.index(min(checks))
    assert best == 3 and len(checks) - 1 - best == patience  # checks after the best one: patience, no more
    assert stats["stopped_early"] and stats["best_eval_loss"] == 2.5
    assert stats["epochs_run"] == math.ceil((len(checks) - 1) / evals_per_epoch)  # the epoch it stopped in counts


def test_a_run_that_keeps_improving_runs_its_whole_budget(setup, monkeypatch):
    monkeypatch.setattr(training, "evaluate_loss", scripted([5.0 - 0.1 * i for i in range(40)]))
    config = TrainConfig(batch_size=4, epochs=3, patience=1, evals_per_epoch=2, precision="fp32")
    history, stats = training.train(build_model(setup, "prompt_tuning"), setup.splits, setup.pad_id, config, lr=1e-3)
    assert len(history) == 1 + 3 * 2 and stats["epochs_run"] == 3 and not stats["stopped_early"]


def test_a_plateau_is_no_improvement_and_each_check_is_recorded_where_it_was_made(setup, monkeypatch):
    """An equal loss, or one lower by less than rounding (1e-6), does not reset the patience count, so a run on a
    plateau stops ``patience`` checks after its best; each check's row carries the fractional epoch it was made at,
    and the time spent in checks is recorded as the positive duration it is."""
    import time

    fake = scripted([5.0, 4.0, 4.0, 4.0 - 5e-7] + [4.0] * 30)

    def slow_check(*args, **kwargs):
        time.sleep(0.02)  # a check that takes measurable time
        return fake()

    monkeypatch.setattr(training, "evaluate_loss", slow_check)
    config = TrainConfig(batch_size=4, epochs=6, patience=2, evals_per_epoch=2, precision="fp32")
    model = build_model(setup, "prompt_tuning")
    started = time.perf_counter()
    history, stats = training.train(model, setup.splits, setup.pad_id, config, lr=1e-3)
    wall = time.perf_counter() - started
    assert list(history["eval_loss"]) == [5.0, 4.0, 4.0, 4.0 - 5e-7]  # stopped two checks after the best (4.0)
    assert stats["stopped_early"] and stats["best_eval_loss"] == 4.0
    epochs = list(history["epoch"])
    assert epochs[0] == 0 and 0 < epochs[1] < 1 and epochs == sorted(set(epochs))  # mid-epoch checks kept as such
    assert 0.02 * len(epochs) - 0.01 <= stats["validation_s"] <= wall  # every check's time, and no more than ran


def test_each_epoch_takes_every_training_row_once_and_a_check_reports_the_mean_loss_since_the_last(setup,
                                                                                                  monkeypatch):
    """An epoch is one pass: every training row once, in batches of at most ``batch_size``; the training loss a check
    records is the mean of the updates' losses since the previous check; a fresh run records that it resumed nothing
    and a positive training time."""
    seen, values = [], iter(range(1, 10_000))

    def fake_step(self, indices):  # records the batch, takes a little time, returns a known loss (1, 2, 3, ...)
        seen.append(list(indices))
        __import__("time").sleep(0.01)
        return float(next(values))

    monkeypatch.setattr(training.Loop, "step", fake_step)
    monkeypatch.setattr(training, "evaluate_loss", scripted([5.0 - 0.1 * i for i in range(40)]))
    config = TrainConfig(batch_size=4, epochs=2, patience=5, evals_per_epoch=2, precision="fp32")
    history, stats = training.train(build_model(setup, "prompt_tuning"), setup.splits, setup.pad_id, config, lr=1e-3)
    n = len(setup.splits["train"])
    per_epoch = math.ceil(n / config.batch_size)
    assert len(seen) == 2 * per_epoch
    for e in range(2):
        batches = seen[e * per_epoch:(e + 1) * per_epoch]
        assert all(0 < len(b) <= config.batch_size for b in batches)
        assert sorted(i for b in batches for i in b) == list(range(n))  # each row once
    points = sorted({round(per_epoch * (i + 1) / config.evals_per_epoch) for i in range(config.evals_per_epoch)})
    ends = [e * per_epoch + p for e in range(2) for p in points]
    expected = [sum(range(a + 1, b + 1)) / (b - a) for a, b in zip([0] + ends, ends)]  # losses a+1 .. b
    assert list(history["train_loss"])[1:] == pytest.approx(expected)
    assert stats["resumed_after_epoch"] == 0 and stats["train_time_s"] > 0


# ---------------------------------------------------------------------------
# The learning rate at every update: warm-up, then linear decay to zero
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("epochs,warmup_ratio,grad_accum", [(3, 0.25, 1), (4, 0.1, 2), (2, 0.0, 1)])
def test_the_learning_rate_of_every_update_follows_the_documented_curve(setup, monkeypatch, epochs, warmup_ratio,
                                                                         grad_accum):
    used = []
    step = torch.optim.AdamW.step

    def recording(self, *args, **kwargs):
        used.append(self.param_groups[0]["lr"])
        return step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", recording)
    lr = 1e-3
    config = TrainConfig(batch_size=4, epochs=epochs, warmup_ratio=warmup_ratio, grad_accum=grad_accum, patience=99,
                         precision="fp32")
    history, stats = training.train(build_model(setup, "prompt_tuning"), setup.splits, setup.pad_id, config, lr=lr)
    per_epoch = math.ceil(len(setup.splits["train"]) / config.batch_size)
    total = math.ceil(per_epoch / grad_accum) * epochs  # optimizer updates
    warmup = round(warmup_ratio * total)
    # the documented curve (training.linear_schedule): update k (from 0) uses lr * (k + 1) / warmup during the
    # warm-up, then lr * (total - k) / (total - warmup), so that the rate reaches 0 after the last update
    want = [lr * (k + 1) / warmup if k < warmup else lr * (total - k) / (total - warmup) for k in range(total)]
    assert stats["updates"] == total == len(used)  # with accumulation the optimizer steps once per update
    assert used == pytest.approx(want, rel=1e-9)
    assert history["lr"].iloc[-1] == pytest.approx(0.0, abs=1e-15)  # the schedule ends at zero


# ---------------------------------------------------------------------------
# The training hash: every setting that can change the trained weights, and nothing else
# ---------------------------------------------------------------------------

# Settings that cannot change a method's trained weights: generation (decoding happens after training), the other
# methods' sections, and the profile's name (a profile is not renamed). n_test is the one setting hashed although it
# cannot change the weights: it belongs to the data cache's key (data_hash), which the training hash includes; the
# cost is a retrain, never a wrong reuse.
HASHED_ANYWAY = {"n_test"}


def _other_value(path: str, value):
    special = {"model": "smollm2-135m", "dataset": "cnn_dailymail", "prompt_format": "chat",
               "separator": "\nSummary:", "train.precision": "bf16", "prompt_tuning.init_text": "Shorten this:",
               "lora.targets": ("c_attn", "c_proj")}
    if path in special:
        return special[path]
    if path.endswith(".epochs"):
        return 7  # a budget of its own, unlike the profile's
    if path == "train.micro_batch_size":
        return 1
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value * 0.5 if value else 0.1
    raise AssertionError(f"no other value for {path}={value!r}: add it to this test")


def _changes(profile):
    """(path, changed profile) for every setting of the profile, each changed alone."""
    for field in dataclasses.fields(profile):
        value = getattr(profile, field.name)
        if field.name == "name":
            continue
        if dataclasses.is_dataclass(value):
            for inner in dataclasses.fields(value):
                path = f"{field.name}.{inner.name}"
                change = {inner.name: _other_value(path, getattr(value, inner.name))}
                if path == "last_layer.embeddings":  # full fine-tuning needs blocks: both change together
                    change["n_blocks"] = 2
                yield path, profile.replace(**{field.name: change})
        else:
            yield field.name, profile.replace(**{field.name: _other_value(field.name, value)})


@pytest.mark.parametrize("method", [m for m, spec in METHOD_TABLE.items() if spec.trains])
def test_the_training_hash_changes_exactly_with_the_settings_that_can_change_the_trained_weights(method):
    profile = get_profile("smoke")
    own = METHOD_TABLE[method].settings
    sections = {spec.settings for spec in METHOD_TABLE.values() if spec.settings}
    base = training_hash(profile, method)
    seen = set()
    for path, changed in _changes(profile):
        seen.add(path)
        section = path.split(".")[0]
        can_change_weights = not (section == "generation" or (section in sections and section != own))
        moved = training_hash(changed, method) != base
        assert moved == (can_change_weights or path in HASHED_ANYWAY), (
            f"{method}: changing {path} {'changes' if moved else 'leaves'} the training hash")
        if section == "generation":
            assert config_hash(changed, method) != config_hash(profile, method)  # results still tell them apart
    assert {"seed", "train.patience", "train.evals_per_epoch", f"{own}.lr", "generation.max_new_tokens"} <= seen
