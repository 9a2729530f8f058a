"""The sweeps: one resumable command per sweep, results units like a method's, and the geometry of LoRA updates."""

import json
import math

import numpy as np
import pytest
import torch

import tools.sweep as sweep_module
from peft_helpers import get_profile
from peft_helpers.config import ConfigError
from report.tables import sweep_data
from report.words import geometry_sentences
from conftest import fake_unit
from peft_helpers.results import run_row
from tools.sweep import amplification, lora_geometry, run_sweep, runs, subspace_similarity, sweep_dir




def orthonormal_rows(k: int, d: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.linalg.qr(torch.randn(d, k, generator=g, dtype=torch.float64)).Q.T  # (k, d)


def test_phi_is_one_for_a_span_inside_the_other_and_zero_for_orthogonal_spans():
    basis = orthonormal_rows(24, 40, seed=0)
    g = torch.Generator().manual_seed(1)
    small = torch.randn(4, 4, generator=g, dtype=torch.float64) @ basis[:4]  # 4 directions, mixed
    large = torch.randn(16, 16, generator=g, dtype=torch.float64) @ basis[:16]  # a span containing them
    phi = subspace_similarity(small, large)
    assert phi.shape == (4, 16)
    assert phi[-1, -1] == pytest.approx(1.0, abs=1e-9)  # all 4 directions lie inside the 16
    assert torch.all((phi >= -1e-12) & (phi <= 1 + 1e-12))
    apart = subspace_similarity(small, basis[16:24])  # spans with no direction in common
    assert apart.abs().max() < 1e-9
    same = subspace_similarity(small, small)
    assert torch.allclose(same.diagonal(), torch.ones(4, dtype=torch.float64))


def test_phi_of_random_spans_is_near_chance():
    d = 400
    values = [subspace_similarity(orthonormal_rows(8, d, s), orthonormal_rows(64, d, s + 100))[-1, -1].item()
              for s in range(5)]
    assert sum(values) / len(values) == pytest.approx(64 / d, rel=0.25)  # E = max(i, j) / d


def test_amplification_measures_w_along_the_update_directions():
    g = torch.Generator().manual_seed(0)
    u = torch.linalg.qr(torch.randn(30, 30, generator=g, dtype=torch.float64)).Q
    v = torch.linalg.qr(torch.randn(20, 20, generator=g, dtype=torch.float64)).Q
    sigma = torch.linspace(10, 1, 20, dtype=torch.float64)
    weight = u[:, :20] @ torch.diag(sigma) @ v.T
    top = 0.5 * torch.outer(u[:, 0], v[:, 0])  # along W's strongest direction
    out = amplification(weight, top, 1, torch.Generator().manual_seed(0))
    assert out["along_delta"] == pytest.approx(10.0) and out["along_weight"] == pytest.approx(10.0)
    assert out["factor"] == pytest.approx(0.5 / 10.0)
    weak = 0.5 * torch.outer(u[:, 19], v[:, 19])  # along its weakest direction: a large amplification
    out = amplification(weight, weak, 1, torch.Generator().manual_seed(0))
    assert out["along_delta"] == pytest.approx(1.0) and out["factor"] == pytest.approx(0.5)
    assert out["weight_norm"] == pytest.approx(sigma.norm().item())


def test_the_sweeps_name_their_runs_and_refuse_unknown_ones():
    profile = get_profile("smoke")
    plan = runs(profile, "lora_rank")
    assert list(plan) == ["r1", "r2", "r4", "r8", "r16", "r64"]
    assert {p.lora.r for _, p in plan.values()} == {1, 2, 4, 8, 16, 64}
    assert all(p.lora.targets == ("c_attn",) and p.lora.alpha == profile.lora.alpha for _, p in plan.values())
    assert [p.prompt_tuning.n_tokens for _, p in runs(profile, "prompt_length").values()] == [1, 5, 20, 50, 100]
    ceiling = runs(profile, "full_ft")
    assert {m for m, _ in ceiling.values()} == {"last_blocks"} and len(ceiling) == 3
    assert {(p.last_blocks.n_blocks, p.last_blocks.embeddings) for _, p in ceiling.values()} == {(2, True)}
    init = runs(profile, "prompt_init")
    assert init["vocab"][1].prompt_tuning.init_text is None and init["uniform"][1].prompt_tuning.uniform_init
    # every trained run is fp32 on every device; the methods sweep scores the notebooks' own runs
    assert all(p.train.precision == "fp32" for s in ("lora_rank", "prompt_length", "prompt_init", "full_ft", "seeds")
               for _, p in runs(profile, s).values())
    assert all(p == profile for _, p in runs(profile, "methods").values())
    with pytest.raises(ValueError, match="unknown sweep"):
        runs(profile, "learning_rate")
    with pytest.raises(ValueError, match="no run"):
        run_sweep(profile, "lora_rank", only=["r3"])


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """r8 and r64 of the smoke profile's rank sweep, in a temporary results folder."""
    root = tmp_path_factory.mktemp("sweep")
    summary = run_sweep(get_profile("smoke"), "lora_rank", root=root, checkpoints=root / "ck", only=["r8", "r64"])
    return root, summary


def test_a_sweep_writes_units_and_a_summary_and_skips_finished_runs(swept, capsys):
    root, summary = swept
    assert [r["run"] for r in summary["rows"]] == ["r8", "r64"] and summary["n_runs"] == 6
    folder = sweep_dir("smoke", "lora_rank", root)
    metrics = json.loads((folder / "r8" / "metrics.json").read_text())
    assert metrics["split"] == "validation" and metrics["n_val"] == 8 and metrics["trainable_params"] == 8 * 2 * (64 + 192)
    assert json.loads((folder / "r8" / "config.json").read_text())["profile"]["lora"]["r"] == 8
    before = {name: (folder / name / "metrics.json").read_bytes() for name in ("r8", "r64")}
    run_sweep(get_profile("smoke"), "lora_rank", root=root, checkpoints=root / "ck", only=["r8", "r64"])
    assert capsys.readouterr().out.count("finished earlier") == 2
    assert {name: (folder / name / "metrics.json").read_bytes() for name in ("r8", "r64")} == before


def test_a_killed_sweep_continues_where_it_stopped(tmp_path, monkeypatch, capsys):
    profile = get_profile("smoke")
    real, calls = sweep_module.validation_scores, []

    def killed_on_second_run(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # the user stops the sweep while r2 is being scored
        return real(*args, **kwargs)

    monkeypatch.setattr(sweep_module, "validation_scores", killed_on_second_run)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(profile, "lora_rank", root=tmp_path, checkpoints=tmp_path / "ck", only=["r1", "r2"])
    folder = sweep_dir("smoke", "lora_rank", tmp_path)
    assert (folder / "r1" / "complete.json").is_file() and not (folder / "r2").exists()
    monkeypatch.setattr(sweep_module, "validation_scores", real)
    capsys.readouterr()
    summary = run_sweep(profile, "lora_rank", root=tmp_path, checkpoints=tmp_path / "ck", only=["r1", "r2"])
    log = capsys.readouterr().out
    assert "r1: finished earlier" in log and "r2: trained and scored" in log
    assert [r["run"] for r in summary["rows"]] == ["r1", "r2"]


def test_lora_geometry_of_the_smoke_sweep(swept):
    root, _ = swept
    geometry = json.loads((sweep_dir("smoke", "lora_rank", root) / "geometry.json").read_text())
    assert geometry == json.loads(json.dumps(lora_geometry(get_profile("smoke"), root)))  # recomputed: the same
    entry = geometry["matrices"]["c_attn"]
    assert entry["layers"] == 2 and entry["d_in"] == 64
    phi = torch.tensor(entry["phi_mean"])
    assert phi.shape == (8, 64) and bool(((phi >= 0) & (phi <= 1 + 1e-9)).all())
    assert entry["phi_8_64"] == pytest.approx(1.0)  # 64 directions span all of a width-64 input
    for name in ("r8", "r64"):
        a = entry[f"amplification_{name}"]
        assert a["factor"] > 0 and a["delta_norm"] > 0
        assert a["along_weight"] >= a["along_delta"] - 1e-9  # nothing beats W's own top directions
    sentences = geometry_sentences(geometry)
    assert len(sentences) == 2 and "φ(1, 1)" in sentences[0] and math.isfinite(entry["phi_1_1"])


def test_the_report_shows_the_sweeps_when_they_exist(swept, tmp_path):
    root, _ = swept
    data = sweep_data("smoke", tmp_path, root=root)
    assert data["rank"]["done"] == " (2 of 6 planned ranks)" and data["prompt"] is None
    assert [row[0] for row in data["rank"]["rows"]] == ["8", "64"]
    assert (tmp_path / "sweep_budget.png").stat().st_size > 10_000
    assert "c_attn" in data["geometry"]["text"][0] and len(data["geometry"]["text"]) == 2


def test_the_methods_sweep_skips_a_method_whose_run_is_missing(tmp_path, capsys):
    summary = run_sweep(get_profile("smoke"), "methods", root=tmp_path, checkpoints=tmp_path / "ck")
    log = capsys.readouterr().out
    assert "prompt_tuning: skipped: the notebooks' run of prompt_tuning is not here" in log
    assert [r["run"] for r in summary["rows"]] == []  # zero-shot too needs the notebooks' metrics


def test_the_seeds_sweep_adds_full_fine_tuning_at_the_learning_rate_validation_chose(tmp_path):
    profile = get_profile("smoke")
    plan = runs(profile, "seeds", tmp_path)
    assert list(plan)[0] == "zero_shot" and len(plan) == 1 + 4 * 3  # no full_ft summary yet
    assert {p.seed for name, (_, p) in plan.items() if name.endswith("-s2")} == {2}
    folder = sweep_dir("smoke", "full_ft", tmp_path)
    losses = {"lr1e-05": 3.0, "lr3e-05": 2.5, "lr0.0001": 2.7}
    for run, loss in losses.items():  # each summary row stands for a finished run on disk (checked against it)
        fake_unit(folder / run, "last_blocks", loss)
    rows = [run_row(folder / run, "full_ft") for run in losses]
    (folder / "summary.json").write_text(json.dumps({"rows": rows[:2]}))
    assert sweep_module.chosen_full_ft_lr(profile, tmp_path) is None  # one learning rate has not finished
    (folder / "summary.json").write_text(json.dumps({"rows": rows}))
    assert sweep_module.chosen_full_ft_lr(profile, tmp_path) == 3e-5
    plan = runs(profile, "seeds", tmp_path)
    full = {name: p for name, (m, p) in plan.items() if name.startswith("full_ft")}
    assert list(full) == ["full_ft-s0", "full_ft-s1", "full_ft-s2"]
    assert {(p.last_blocks.lr, p.last_blocks.embeddings, p.seed) for p in full.values()} == {
        (3e-5, True, 0), (3e-5, True, 1), (3e-5, True, 2)}


def test_the_seeds_sweep_scores_validation_and_test_and_its_summary_survives_missing_weights(tmp_path):
    profile = get_profile("smoke")
    summary = run_sweep(profile, "seeds", root=tmp_path, checkpoints=tmp_path / "ck", only=["zero_shot", "lora-s1"])
    assert [r["run"] for r in summary["rows"]] == ["zero_shot", "lora-s1"]
    row = summary["rows"][1]
    assert row["seed"] == 1 and 0 <= row["test_rouge1_low"] <= row["test_rouge1"] <= row["test_rouge1_high"] <= 1
    folder = sweep_dir("smoke", "seeds", tmp_path) / "lora-s1"
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["test"]["n_test"] == 8 and metrics["n_val"] == 8 and metrics["seed"] == 1
    splits = [json.loads(line)["split"] for line in (folder / "predictions.jsonl").read_text().splitlines()]
    assert splits == ["validation"] * 8 + ["test"] * 8
    assert json.loads((folder / "config.json").read_text())["profile"]["train"]["precision"] == "fp32"
    digest = json.loads((folder / "complete.json").read_text())["hash"]
    import shutil

    shutil.rmtree(folder / "adapter")  # weights not committed: the scores still count
    assert sweep_module.scored(folder, "lora", digest)
    assert [r["run"] for r in sweep_module.summarize(profile, "seeds", tmp_path)["rows"]] == ["zero_shot", "lora-s1"]
    (folder / "metrics.json").write_text(json.dumps({**metrics, "eval_loss": 0.0}))  # edited after the run: not
    assert not sweep_module.scored(folder, "lora", digest)
    assert not sweep_module.scored(folder, "lora", "another settings hash")


def _seed_row(run, seed, params, val_loss, val_r1, test_r1, half=0.02, test_loss=None):
    return {"run": run, "method": run.split("-s")[0], "seed": seed, "trainable_params": params, "val_loss": val_loss,
            "val_rouge1": val_r1, "test_loss": val_loss if test_loss is None else test_loss, "test_rouge1": test_r1,
            "test_rouge1_low": test_r1 - half, "test_rouge1_high": test_r1 + half, "test_rouge2": test_r1 / 3,
            "test_rougeL": test_r1 / 2, "device": "GPU"}


def _doc_scores(groups, spread=0.15, noise=0.01, seed=0):
    """Per-document ROUGE-1 whose seed means are the rows' test_rouge1: documents differ a lot, methods a little."""
    rng = np.random.default_rng(seed)
    hardness = rng.normal(0, spread, 100)
    out = {}
    for m, rows in groups.items():
        per_seed = []
        for r in rows:
            x = hardness + rng.normal(0, noise, 100)
            per_seed.append(x - x.mean() + r["test_rouge1"])
        out[m] = np.stack(per_seed)
    return out


def test_the_seeds_table_states_the_ranking_and_the_share_of_the_full_fine_tuning_gain_from_the_numbers():
    from report.inputs import seed_groups
    from report.tables import seeds_data

    rows = [_seed_row("zero_shot", 0, 0, 3.0, 0.30, 0.30)]
    for s, (lora, prompt) in enumerate([(0.47, 0.44), (0.46, 0.45), (0.48, 0.43)]):
        rows += [_seed_row(f"lora-s{s}", s, 1_000_000, 2.05, 0.46, lora),
                 _seed_row(f"prompt_tuning-s{s}", s, 10_000, 2.5, 0.42, prompt),
                 _seed_row(f"full_ft-s{s}", s, 100_000_000, 2.0, 0.50, 0.465)]
    groups = seed_groups(rows)
    assert list(groups) == ["zero_shot", "prompt_tuning", "lora", "full_ft"]
    data = seeds_data(rows, None, _doc_scores(groups))
    text = data["ranking"]
    assert text.index("LoRA 0.470") < text.index("full fine-tuning 0.465") < text.index("prompt tuning 0.440")
    # 0.470 vs 0.465 with a 0.01 seed spread: a tie; 0.465 vs 0.440 over 100 paired documents: a lead
    assert "LoRA tied with full fine-tuning" in text and "full fine-tuning ahead of prompt tuning" in text
    verdicts = {row[0]: row[-1] for row in data["pairwise"]["rows"]}
    assert verdicts["LoRA vs full fine-tuning"] == "tied" and verdicts["LoRA vs prompt tuning"] == "ahead"
    share = {row[0]: row for row in data["share"]["rows"]}
    # test loss (3.0 - 2.05) / (3.0 - 2.0) = 95% with 1% of the weights; ROUGE-1 (.47 - .30) / (.465 - .30) = 103%
    assert share["LoRA"][2:] == ["1%", "95%", "95×", "103%", "100×"]
    assert share["prompt tuning"][2:5] == ["0.01%", "50%", "5,000×"]  # 50% with 0.01% of the weights
    assert data["lora_share"]["verdict"].startswith("the two are tied on ROUGE-1")
    assert data["lora_share"]["verdict"].endswith("full fine-tuning reaches the lower test loss in every seed")
    assert "smaller for prompt tuning (0.010 vs 0.010), LoRA" in data["spread"] and "larger for" not in data["spread"]
    rows = [r if not r["run"].startswith("lora") else {**r, "test_rouge1": 0.49 + 0.02 * r["seed"], "test_loss": 2.8}
            for r in rows if not r["run"].startswith("prompt")]
    flat = [{**r, "test_rouge1": 0.3} for r in rows]  # e.g. a random tiny model: no ROUGE gain to share
    share = {row[0]: row for row in seeds_data(flat, None)["share"]["rows"]}
    assert share["LoRA"][5:] == ["n/a", "n/a"] and share["LoRA"][3] == "20%"  # (3.0 - 2.8) / (3.0 - 2.0)
    data = seeds_data(rows, None, _doc_scores(seed_groups(rows)))
    assert "LoRA ahead of full fine-tuning" in data["ranking"] and "larger for LoRA (0.020 vs 0.010)" in data["spread"]
    assert data["lora_share"]["verdict"].startswith("LoRA is ahead on ROUGE-1")


def test_the_prompt_sentences_follow_the_numbers():
    from report.words import prompt_sentences

    def row(n, loss, r1):
        return {"run": f"n{n}", "trainable_params": 10 * n, "val_loss": loss, "val_rouge1": r1,
                "val_rouge1_low": r1 - 0.02, "val_rouge1_high": r1 + 0.02}

    lengths = [row(1, 3.1, 0.36), row(20, 2.86, 0.43), row(50, 2.83, 0.43), row(100, 2.823, 0.44)]
    tie = {"mean": 0.009, "low": -0.01, "high": 0.027}
    text = prompt_sentences(lengths, [], tie, drift=0.013)[0]
    assert "shortest prompt within 0.013 of the lowest (the yardstick) is n = 50" in text
    assert "(0.007 of it from n = 50 to 100, inside the yardstick (0.013))" in text
    assert "+0.009 [-0.010, +0.027], a tie" in text
    lead = {"mean": 0.05, "low": 0.02, "high": 0.08}
    text = prompt_sentences(lengths, [], lead, drift=0.001)[0]
    assert "the longer prompt ahead" in text and "a tie" not in text and "inside the yardstick" not in text
    assert "within 0.001 of the lowest (the yardstick) is n = 100" in text  # the yardstick decides what is enough
    init = [{**row(20, 2.86, 0.43), "init": "text"}, {**row(20, 2.87, 0.43), "init": "vocab"},
            {**row(20, 2.95, 0.42), "init": "uniform"}]
    assert "still matters" in prompt_sentences([], init)[0]
    same = [{**r, "val_loss": 2.86 + i * 0.005} for i, r in enumerate(init)]
    assert "changes little" in prompt_sentences([], same)[0]
    assert "changes little" in prompt_sentences([], init, drift=0.1)[0]  # a spread inside the yardstick is no spread
    assert "shortest prompt within 0.020 of the lowest is n = 50" in prompt_sentences(lengths, [])[0]  # no seeds


def test_the_command_names_a_bad_run_without_a_traceback(capsys):
    assert sweep_module.main(["--profile", "smoke", "--sweep", "seeds", "--runs", "lora-s9"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: sweep seeds has no run(s) ['lora-s9']") and "lora-s2" in err and "Traceback" not in err
    assert sweep_module.main(["--profile", "smoke", "--sweep", "prompt_init", "--list"]) == 0
    assert capsys.readouterr().out.split("\n")[:2] == ["prompt_init vocab", "prompt_init uniform"]


def test_learning_rates_step_along_the_one_three_ten_ladder():
    from tools.sweep import lr_step

    assert [lr_step(lr, up=True) for lr in (1e-4, 3e-4, 1e-3, 3e-2, 0.3)] == [3e-4, 1e-3, 3e-3, 0.1, 1.0]
    assert [lr_step(lr, up=False) for lr in (1e-4, 3e-4, 3e-5, 1e-2)] == [3e-5, 1e-4, 1e-5, 3e-3]


def test_the_tuning_grid_grows_past_an_edge_until_the_best_rate_is_inside(monkeypatch):
    """Finished runs are read from their units; here their validation losses come from a bowl around a chosen rate."""
    best_at = {"last_layer": 1e-2, "lora": 1e-3, "prompt_tuning": 1e-2, "last_blocks": 1e-5, "full_ft": 3e-5}
    finished: set[str] = set()

    def loss(profile, sweep, name, method, variant, root):
        group, lr = name.rsplit("-lr", 1)
        return (math.log10(float(lr)) - math.log10(best_at[group.split("_n100")[0].split("_qv")[0]])) ** 2 \
            if name in finished else None

    monkeypatch.setattr(sweep_module, "_finished_loss", loss)
    monkeypatch.setattr(sweep_module, "model_depth", lambda profile: 2)
    profile = get_profile("smoke")
    plan = sweep_module.tune_plan(profile)
    assert list(plan)[:4] == ["last_layer-lr3e-05", "last_layer-lr0.0001", "last_layer-lr0.0003", "last_layer-lr0.001"]
    assert all(variant.train.precision == "fp32" for _, variant in plan.values())
    method, variant = plan["full_ft-lr1e-05"]
    assert method == "full_ft" and variant.full_ft.lr == 1e-5 and variant.full_ft.epochs == 8  # its own method
    for _ in range(12):  # run whatever is planned, as the sweep does, until the plan stops growing
        plan = sweep_module.tune_plan(profile)
        if set(plan) <= finished:
            break
        finished |= set(plan)
    chosen = {group: sweep_module.tune_choice(profile, group) for group in sweep_module.TUNE_GRIDS}
    # last_layer's best (1e-2) lay above its grid: extended to 3e-2 so that 1e-2 is inside
    assert chosen["last_layer"]["grid"][-2:] == [1e-2, 3e-2] and chosen["last_layer"]["interior"]
    assert chosen["lora"]["lr"] == 1e-3 and chosen["lora"]["grid"] == [3e-4, 1e-3, 3e-3, 1e-2]
    assert chosen["full_ft"]["lr"] == 3e-5 and chosen["full_ft"]["interior"]
    # last_blocks' bowl is at 1e-5, below the grid: it grows down, three steps at most, so 1e-5 is inside
    assert chosen["last_blocks"]["grid"][:2] == [3e-6, 1e-5] and chosen["last_blocks"]["lr"] == 1e-5
    # the variants run at their method's chosen rate
    assert "lora_qv-lr0.001" in plan and "prompt_tuning_n100-lr0.01" in plan
    assert plan["prompt_tuning_n100-lr0.01"][1].prompt_tuning.n_tokens == 100


def test_a_grid_stops_growing_after_three_steps_and_says_its_best_is_on_the_edge(monkeypatch):
    finished: set[str] = set()
    monkeypatch.setattr(sweep_module, "_finished_loss",
                        lambda profile, sweep, name, *rest: -float(name.rsplit("-lr", 1)[1]) if name in finished
                        else None)  # larger is always better
    monkeypatch.setattr(sweep_module, "model_depth", lambda profile: 2)
    profile = get_profile("smoke")
    for _ in range(12):
        plan = sweep_module.tune_plan(profile)
        finished |= set(plan)
    choice = sweep_module.tune_choice(profile, "last_layer")
    assert choice["grid"] == [3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2] and not choice["interior"]


def test_a_sweeps_summary_keeps_every_finished_run_and_no_unfinished_one(tmp_path):
    """The summary is the union of the finished runs on disk: a run without its record (it did not finish) or with a
    file changed after it finished is left out; one made with other settings is kept (it is a finished run)."""
    profile = get_profile("smoke")
    run_sweep(profile, "seeds", root=tmp_path, checkpoints=tmp_path / "ck", only=["zero_shot"])
    folder = sweep_dir("smoke", "seeds", tmp_path)
    fake_unit(folder / "lora-s7", "lora", 2.5, digest="made with other settings")
    assert [r["run"] for r in sweep_module.summarize(profile, "seeds", tmp_path)["rows"]] == ["zero_shot", "lora-s7"]
    (folder / "lora-s7" / "metrics.json").write_text("{}")
    assert [r["run"] for r in sweep_module.summarize(profile, "seeds", tmp_path)["rows"]] == ["zero_shot"]
    (folder / "zero_shot" / "complete.json").unlink()
    assert sweep_module.summarize(profile, "seeds", tmp_path)["rows"] == []


def test_the_tuning_protocol_does_not_train_again_a_committed_run(tmp_path, monkeypatch, capsys):
    """In a fresh clone the tune runs have their completion record but no weights; their scores are enough to select."""
    monkeypatch.setattr(sweep_module, "TUNE_GRIDS", {"last_layer": (1e-3, 3e-3, 1e-2, 3e-2)})
    monkeypatch.setattr(sweep_module, "TUNE_EPOCHS", 1)
    profile = get_profile("smoke")
    run_sweep(profile, "tune", root=tmp_path, checkpoints=tmp_path / "ck", only=["last_layer-lr0.001"])
    folder = sweep_dir("smoke", "tune", tmp_path) / "last_layer-lr0.001"
    for weights in (folder / "adapter").glob("*"):
        weights.unlink()
    capsys.readouterr()
    run_sweep(profile, "tune", root=tmp_path, checkpoints=tmp_path / "ck", only=["last_layer-lr0.001"])
    assert "last_layer-lr0.001: finished earlier" in capsys.readouterr().out


def test_a_sweep_that_trains_nothing_rewrites_nothing(swept):
    """make sweep in a fresh clone finds every committed run finished: the summary comes out byte-identical and the
    rank sweep's geometry is not recomputed (its SVDs differ in the last digits from machine to machine)."""
    root, _ = swept
    folder = sweep_dir("smoke", "lora_rank", root)
    geometry = folder / "geometry.json"
    geometry.write_text(geometry.read_text().replace("{", '{"kept": true, ', 1))
    before = {p.name: p.read_bytes() for p in (folder / "summary.json", geometry)}
    run_sweep(get_profile("smoke"), "lora_rank", root=root, checkpoints=root / "ck", only=["r8", "r64"])
    assert {p.name: p.read_bytes() for p in (folder / "summary.json", geometry)} == before


def test_loss_and_rouge_disagreements_are_named_only_beyond_their_noise():
    from report.words import loss_rouge_sentence

    def rows(loss, r1):
        return [{"val_loss": loss, "test_rouge1": r1}]

    groups = {"zero_shot_chat": rows(3.32, 0.41), "zero_shot": rows(3.26, 0.35), "lora": rows(2.70, 0.47),
              "prompt_tuning": rows(2.705, 0.44)}
    pair = lambda a, b, verdict="ahead": {"a": a, "b": b, "mean": 0.06, "low": 0.04, "high": 0.08,  # noqa: E731
                                          "holm_verdict": verdict}
    noise = {"lora": 0.0075, "prompt_tuning": 0.0126}
    text = loss_rouge_sentence(groups, [pair("zero_shot_chat", "zero_shot"), pair("lora", "prompt_tuning")], noise)
    assert text.startswith("Loss and ROUGE disagree on 1 pair: zero-shot, chat template has the higher validation "
                           "loss (3.320 against 3.260 for zero-shot)") and "hypothesis" in text
    # a loss gap inside the yardstick (LoRA 0.005 worse, prompt tuning's yardstick 0.0126) is no disagreement
    worse_lora = {**groups, "lora": rows(2.71, 0.47)}
    assert "prompt tuning" not in loss_rouge_sentence(worse_lora, [pair("lora", "prompt_tuning")], noise)
    # nor is a ROUGE lead that Holm's adjustment turns into a tie
    assert loss_rouge_sentence(groups, [pair("zero_shot_chat", "zero_shot", "tied")], noise).startswith(
        "Validation loss and test ROUGE-1 order every pair")


def test_no_run_starts_that_could_not_finish_before_until(tmp_path, capsys):
    """On a machine that is not kept, ``--until`` starts no run that would be cut short: with nothing finished to
    measure, a run is expected to take an hour, so a minute left starts none, and the summary is still written."""
    import datetime
    import time

    from tools.sweep import until_time

    summary = run_sweep(get_profile("smoke"), "lora_rank", root=tmp_path, checkpoints=tmp_path / "ck",
                        until=time.time() + 60)
    assert "r8: not started: it may take 60 min and would run past --until" in capsys.readouterr().out
    assert summary["rows"] == [] and summary["n_runs"] == 6
    eight = datetime.datetime(2026, 12, 4, 8, 0).timestamp()
    assert until_time("07:20", now=eight) - eight == pytest.approx(23 * 3600 + 20 * 60)  # tomorrow, 7:20
    assert until_time("09:30", now=eight) - eight == pytest.approx(90 * 60)
    with pytest.raises(ConfigError, match="HH:MM"):
        until_time("7h", now=eight)


def test_a_notebook_run_at_a_sweeps_settings_takes_that_training_instead_of_repeating_it(tmp_path, monkeypatch):
    """The notebook's run of a method at the tuned settings is seed 0 of the comparison: one computation. run_method
    finds the finished sweep run with the same settings hash, takes its weights, history and training statistics, and
    only scores them; with another seed it trains."""
    import peft_helpers.experiment as experiment
    from peft_helpers import build_model, prepare, run_method
    from tools.sweep import tune_variant

    smoke = get_profile("smoke")
    run_sweep(smoke, "tune", root=tmp_path, checkpoints=tmp_path / "ck", only=["prompt_tuning-lr0.01"])
    twin = sweep_dir("smoke", "tune", tmp_path) / "prompt_tuning-lr0.01"
    _, profile = tune_variant(smoke, "prompt_tuning", 0.01)
    # the notebooks' setting, which on a CPU means fp32, as the sweeps train (on a GPU it means bf16: another computation)
    profile = profile.replace(train=dict(precision="fp32" if torch.cuda.is_available() else "auto"))

    def no_training(*args, **kwargs):
        raise AssertionError("trained again")

    monkeypatch.setattr(experiment, "train_method", no_training)
    setup = prepare(profile)
    out = run_method(setup, "prompt_tuning", build_model(setup, "prompt_tuning"), root=tmp_path,
                     checkpoints=tmp_path / "ck")
    made = json.loads((twin / "metrics.json").read_text())
    assert out["metrics"]["reused_from"] == "sweeps/tune/prompt_tuning-lr0.01"
    assert out["metrics"]["eval_loss"] == made["eval_loss"] and out["metrics"]["epochs_run"] == made["epochs_run"]
    assert out["history"]["eval_loss"].tolist() == pytest.approx(
        __import__("pandas").read_csv(twin / "history.csv")["eval_loss"].tolist())
    __import__("shutil").rmtree(out["folder"])
    other = prepare(profile.replace(seed=1))
    with pytest.raises(AssertionError, match="trained again"):  # another seed is another computation
        run_method(other, "prompt_tuning", build_model(other, "prompt_tuning"), root=tmp_path,
                   checkpoints=tmp_path / "ck")


def test_a_pool_of_processes_makes_the_runs_one_process_makes(tmp_path, capsys):
    """``--jobs 2``: each run in its own process, both at once, the summary written once they end; every run is the
    computation a single process makes (its settings hash, its validation loss within float noise: one thread each
    instead of the test's threads), and a pool called again finds them all finished."""
    import time

    from tools.sweep import run_pool

    smoke = get_profile("smoke")
    counts = run_pool(smoke, ["prompt_init"], 2, root=tmp_path / "pool", checkpoints=tmp_path / "ck")
    out = capsys.readouterr().out
    assert counts == {"finished earlier": 0, "made": 2, "failed": 0, "left": 0}, out
    assert out.count("[pool] started prompt_init/") == 2 and "(2 running)" in out  # both at once
    pooled = json.loads((sweep_dir("smoke", "prompt_init", tmp_path / "pool") / "summary.json").read_text())
    run_sweep(smoke, "prompt_init", root=tmp_path / "one", checkpoints=tmp_path / "ck1")
    single = json.loads((sweep_dir("smoke", "prompt_init", tmp_path / "one") / "summary.json").read_text())
    assert [r["run"] for r in pooled["rows"]] == [r["run"] for r in single["rows"]] == ["vocab", "uniform"]
    for a, b in zip(pooled["rows"], single["rows"]):
        assert a["val_loss"] == pytest.approx(b["val_loss"], abs=1e-4)
    for name in ("vocab", "uniform"):
        config = lambda root: json.loads((sweep_dir("smoke", "prompt_init", root) / name / "config.json").read_text())  # noqa: E731
        assert config(tmp_path / "pool")["hash"] == config(tmp_path / "one")["hash"]
    again = run_pool(smoke, ["prompt_init"], 2, root=tmp_path / "pool", checkpoints=tmp_path / "ck")
    assert again == {"finished earlier": 2, "made": 0, "failed": 0, "left": 0}
    # with no time left before --until, nothing starts: the runs are left for the next call
    late = run_pool(smoke, ["prompt_init"], 2, root=tmp_path / "late", checkpoints=tmp_path / "ck2",
                    until=time.time() + 5)
    assert late == {"finished earlier": 0, "made": 0, "failed": 0, "left": 2}
    assert "prompt_init/vocab: not started: it may take 60 min and would run past --until" in capsys.readouterr().out
    assert not sweep_dir("smoke", "prompt_init", tmp_path / "late").joinpath("vocab").exists()


def test_a_pool_is_asked_for_clearly(capsys):
    from tools.sweep import main

    assert main(["--profile", "smoke", "--sweep", "prompt_init", "--jobs", "0"]) == 2
    assert "--jobs takes a count of processes of 1 or more, not 0" in capsys.readouterr().err
    assert main(["--profile", "smoke", "--sweep", "prompt_init", "--jobs", "2", "--runs", "vocab"]) == 2
    assert "does not combine with --runs" in capsys.readouterr().err
