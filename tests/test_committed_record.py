"""The committed record: every results unit carries its completion record (settings hash, method, checksums, which
files are weights) in git, and one rule follows from it for notebooks, sweeps and the report.

Each test is one case of a probe of c889686 (issue 33), where the case lost or misreported a result.
"""

import dataclasses
import json
import shutil
import subprocess
from pathlib import Path

import pytest

import tools.sweep as sweep_module
from peft_helpers import METHODS, ResultsError, build_model, get_profile, load_results, prepare, run_method
from peft_helpers.experiment import config_hash
from peft_helpers.results import (
    COMPLETE, file_sha256, read_record, results_dir, sweep_dir, unfinished_reason, verified_rows,
)
from tools.sweep import run_sweep, runs

ROOT = Path(__file__).resolve().parent.parent


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def small_grid(monkeypatch):
    """The tuning protocol on the smoke profile with a two-rate grid of one cheap method, one epoch per run."""
    monkeypatch.setattr(sweep_module, "TUNE_GRIDS", {"last_layer": (1e-3, 1e-2)})
    monkeypatch.setattr(sweep_module, "TUNE_EPOCHS", 1)
    monkeypatch.setattr(sweep_module, "TUNE_MAX_STEPS", 0)  # the two rates are the whole grid
    return get_profile("smoke")


# ---------------------------------------------------------------------------
# Data lost
# ---------------------------------------------------------------------------


def test_case1_a_sweep_run_with_other_settings_does_not_replace_a_finished_run_nor_drop_summary_rows(
        small_grid, tmp_path, capsys):
    profile = small_grid
    run_sweep(profile, "tune", root=tmp_path, checkpoints=tmp_path / "ck")
    folder = sweep_dir("smoke", "tune", tmp_path)
    before = snapshot(folder / "last_layer-lr0.001")
    changed = profile.replace(train=dict(weight_decay=0.5))  # as PEFT_OVERRIDES would change it
    with pytest.raises(ResultsError, match=r"made with other settings \(train.weight_decay: 0.0 -> 0.5\).*--retrain"):
        run_sweep(changed, "tune", root=tmp_path, checkpoints=tmp_path / "ck", only=["last_layer-lr0.001"])
    assert snapshot(folder / "last_layer-lr0.001") == before
    assert [r["run"] for r in verified_rows("smoke", "tune", tmp_path)] == ["last_layer-lr0.001", "last_layer-lr0.01"]
    capsys.readouterr()
    summary = run_sweep(changed, "tune", root=tmp_path, checkpoints=tmp_path / "ck", only=["last_layer-lr0.001"],
                        retrain=True)  # asked for: replaced, and the other run's row stays
    assert json.loads((folder / "last_layer-lr0.001" / "config.json").read_text())["profile"]["train"][
        "weight_decay"] == 0.5
    assert [r["run"] for r in summary["rows"]] == ["last_layer-lr0.001", "last_layer-lr0.01"]
    with pytest.raises(Exception, match="name them with --runs"):
        run_sweep(changed, "tune", root=tmp_path, checkpoints=tmp_path / "ck", retrain=True)


def test_case2_a_fresh_clone_reuses_every_committed_sweep_run_for_the_same_settings(monkeypatch):
    """`make sweep` in a fresh clone trains nothing that is committed: every committed run of every sweep's plan is
    finished for the plan's settings, from its committed record, without its (uncommitted) weights."""
    monkeypatch.setitem(sweep_module._DEPTHS, "smollm2-135m", 30)  # the plan's full fine-tuning, without loading it
    monkeypatch.chdir(ROOT)
    profile = get_profile("smollm2-aclsum")
    committed = {str(p.parent) for p in Path("results/smollm2-aclsum/sweeps").glob(f"*/*/{COMPLETE}")}
    checked = 0
    for sweep in ("lora_rank", "prompt_length", "prompt_init", "full_ft", "seeds", "tune"):
        for name, (method, variant) in runs(profile, sweep).items():
            folder = sweep_dir(profile.name, sweep) / name
            if str(folder) in committed:
                assert sweep_module.scored(folder, method, config_hash(variant, method)), folder
                checked += 1
    assert checked >= 40


def test_case2_the_untuned_seeds_are_kept_when_the_settings_change(tmp_path):
    """The seeds runs at today's settings are the comparison's "before": a seeds run at other (tuned) settings is
    refused instead of replacing one."""
    profile = get_profile("smoke")
    run_sweep(profile, "seeds", root=tmp_path, checkpoints=tmp_path / "ck", only=["prompt_tuning-s0"])
    folder = sweep_dir("smoke", "seeds", tmp_path) / "prompt_tuning-s0"
    before = snapshot(folder)
    tuned = profile.replace(prompt_tuning=dict(lr=0.3))
    with pytest.raises(ResultsError, match=r"prompt_tuning.lr: [0-9.e-]+ -> 0.3"):
        run_sweep(tuned, "seeds", root=tmp_path, checkpoints=tmp_path / "ck", only=["prompt_tuning-s0"])
    assert snapshot(folder) == before


def test_case3_a_last_layer_unit_without_its_weights_is_not_replaced_by_other_settings(tmp_path):
    setup = prepare(get_profile("smoke"))
    run_method(setup, "last_layer", build_model(setup, "last_layer"), root=tmp_path, checkpoints=tmp_path / "ck")
    folder = results_dir("smoke", "last_layer", tmp_path)
    (folder / "adapter" / "last_layer.safetensors").unlink()  # a fresh clone: the head's weights are not committed
    before = snapshot(folder)
    for changed in (setup.profile.replace(last_layer=dict(lr=0.01)), setup.profile.replace(seed=2)):
        other = prepare(changed)
        with pytest.raises(ResultsError, match="made with other settings"):
            run_method(other, "last_layer", build_model(other, "last_layer"), root=tmp_path,
                       checkpoints=tmp_path / "ck")
        assert snapshot(folder) == before


# ---------------------------------------------------------------------------
# Silently wrong in the report
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_units(tmp_path_factory):
    """Finished smoke results of prompt tuning and LoRA in a temporary results folder."""
    root = tmp_path_factory.mktemp("units")
    setup = prepare(get_profile("smoke"))
    for method in ("prompt_tuning", "lora"):
        run_method(setup, method, build_model(setup, method), root=root, checkpoints=root / "ck")
    return root


@pytest.fixture
def units(two_units, tmp_path):
    shutil.copytree(two_units, tmp_path / "r")
    return tmp_path / "r"


def test_case4_any_edited_number_in_metrics_is_refused(units):
    metrics = results_dir("smoke", "lora", units) / "metrics.json"
    m = json.loads(metrics.read_text())
    m["test_loss"] -= 1.0  # a field the consistency check of c889686 did not read
    metrics.write_text(json.dumps(m))
    with pytest.raises(ResultsError, match="metrics.json changed after the run of 'lora' finished"):
        load_results("smoke", "lora", units)


@pytest.mark.parametrize("copied", ["files", "folder"])
def test_case5_another_methods_files_in_a_folder_are_refused(units, copied):
    source, target = results_dir("smoke", "prompt_tuning", units), results_dir("smoke", "lora", units)
    if copied == "files":
        for name in ("metrics.json", "predictions.jsonl", "history.csv"):
            shutil.copy(source / name, target / name)
        match = "changed after the run of 'lora' finished"
    else:  # the whole unit, its record included
        shutil.rmtree(target)
        shutil.copytree(source, target)
        match = "holds a result of 'prompt_tuning', not of 'lora'"
    with pytest.raises(ResultsError, match=match):
        load_results("smoke", "lora", units)


def test_case5_a_record_that_matches_but_a_method_field_that_does_not_is_refused(units):
    folder = results_dir("smoke", "lora", units)
    metrics = json.loads((folder / "metrics.json").read_text())
    (folder / "metrics.json").write_text(json.dumps({**metrics, "method": "prompt_tuning"}))
    record = read_record(folder)
    record["files"]["metrics.json"] = file_sha256(folder / "metrics.json")  # the record forged to match
    (folder / COMPLETE).write_text(json.dumps(record))
    with pytest.raises(ResultsError, match="metrics.json is a result of 'prompt_tuning', not of 'lora'"):
        load_results("smoke", "lora", units)


def test_case6_a_summary_row_must_be_its_runs_in_every_column_and_listed_once(small_grid, tmp_path):
    run_sweep(small_grid, "tune", root=tmp_path, checkpoints=tmp_path / "ck")
    path = sweep_dir("smoke", "tune", tmp_path) / "summary.json"
    good = json.loads(path.read_text())
    assert len(verified_rows("smoke", "tune", tmp_path)) == 2
    for edit, match in ((lambda rows: rows[0].update(epochs_run=7), "epochs_run 7"),
                        (lambda rows: rows[1].update(val_rouge1=0.61), "val_rouge1 0.61 \\(its run has none\\)"),
                        (lambda rows: rows.append(dict(rows[0])), "lists run 'last_layer-lr0.001' twice")):
        bad = json.loads(json.dumps(good))
        edit(bad["rows"])
        path.write_text(json.dumps(bad))
        with pytest.raises(ResultsError, match=match):
            verified_rows("smoke", "tune", tmp_path)
    path.write_text(json.dumps(good))
    run = sweep_dir("smoke", "tune", tmp_path) / "last_layer-lr0.01"
    (run / "history.csv").write_text((run / "history.csv").read_text() + "\n")  # the run itself edited
    with pytest.raises(ResultsError, match="not as its completion record says"):
        verified_rows("smoke", "tune", tmp_path)


def test_case7_make_report_builds_the_profile_it_is_given():
    dry = subprocess.run(["make", "-n", "report", "PROFILE=smoke"], cwd=ROOT, capture_output=True, text=True).stdout
    assert "report.build --profile smoke" in dry
    from report.build import main

    assert main(["--profile", "no-such-profile"]) == 1  # a profile is looked up, not ignored


# ---------------------------------------------------------------------------
# Messages
# ---------------------------------------------------------------------------


def test_case8_a_refusal_lists_every_real_difference_and_no_setting_added_since(tmp_path):
    setup = prepare(get_profile("smoke"))
    run_method(setup, "zero_shot", build_model(setup, "zero_shot"), root=tmp_path)
    folder = results_dir("smoke", "zero_shot", tmp_path)
    config = json.loads((folder / "config.json").read_text())
    del config["profile"]["prompt_format"]  # a record made before these settings existed
    del config["profile"]["last_layer"]["embeddings"]
    (folder / "config.json").write_text(json.dumps(config))
    record = read_record(folder)
    record["files"]["config.json"] = file_sha256(folder / "config.json")
    (folder / COMPLETE).write_text(json.dumps(record))
    changes = dict(max_new_tokens=5, num_beams=2, no_repeat_ngram_size=2, repetition_penalty=1.5, batch_size=3)
    changed = setup.profile.replace(generation=changes, train=dict(weight_decay=0.5, max_grad_norm=2.0))
    with pytest.raises(ResultsError) as err:
        run_method(prepare(changed), "zero_shot", build_model(setup, "zero_shot"), root=tmp_path)
    message = str(err.value)
    listed = message[message.index("(") + 1:message.index(")")].split("; ")
    assert sorted(item.split(":")[0] for item in listed) == sorted(
        [f"generation.{k}" for k in changes] + ["train.max_grad_norm", "train.weight_decay"])  # all 7, none cut
    assert "prompt_format" not in message and "embeddings" not in message


def test_case9_the_report_reads_a_unit_that_a_kill_left_between_two_renames(units, capsys):
    folder = results_dir("smoke", "lora", units)
    want = load_results("smoke", "lora", units)["metrics"]
    folder.rename(folder.parent / f".{folder.name}.x1.tmp")  # the new unit, whole, not yet renamed into place
    assert load_results("smoke", "lora", units)["metrics"] == want
    assert "finished replacing it" in capsys.readouterr().out


def test_case9_a_missing_sweep_file_names_the_command_with_its_profile(tmp_path):
    from peft_helpers.results import read_json

    with pytest.raises(ResultsError, match=r"python -m tools.sweep --profile smoke --sweep tune"):
        read_json(tmp_path / "smoke" / "sweeps" / "tune" / "lora-lr0.001" / "metrics.json", "lora")
    assert unfinished_reason(tmp_path / "nothing", "lora", "h") == f"{tmp_path / 'nothing'} does not exist"


# ---------------------------------------------------------------------------
# The tuned seeds: computed once, the untuned ones kept
# ---------------------------------------------------------------------------


def test_the_tuned_seeds_score_the_tuning_run_as_seed_0_and_train_seeds_1_and_2(small_grid, tmp_path, monkeypatch,
                                                                                 capsys):
    profile = small_grid
    assert runs(profile, "seeds_tuned", tmp_path) == {}  # no grid finished: nothing to seed yet
    run_sweep(profile, "tune", root=tmp_path, checkpoints=tmp_path / "ck")
    choice = sweep_module.tune_choice(profile, "last_layer", tmp_path)
    plan = runs(profile, "seeds_tuned", tmp_path)
    assert list(plan) == ["last_layer-s0", "last_layer-s1", "last_layer-s2"]
    assert {(p.last_layer.lr, p.seed) for _, p in plan.values()} == {(choice["lr"], s) for s in (0, 1, 2)}
    twin = sweep_dir("smoke", "tune", tmp_path) / f"last_layer-lr{choice['lr']:g}"
    capsys.readouterr()
    summary = run_sweep(profile, "seeds_tuned", root=tmp_path, checkpoints=tmp_path / "ck2")
    out = capsys.readouterr().out
    assert out.count("are scored instead of training again") == 1
    folder = sweep_dir("smoke", "seeds_tuned", tmp_path)
    s0 = json.loads((folder / "last_layer-s0" / "metrics.json").read_text())
    assert s0["reused_from"] == f"tune/{twin.name}" and s0["eval_loss"] == json.loads(
        (twin / "metrics.json").read_text())["eval_loss"]
    assert (folder / "last_layer-s0" / "history.csv").read_bytes() == (twin / "history.csv").read_bytes()
    assert "reused_from" not in json.loads((folder / "last_layer-s1" / "metrics.json").read_text())
    assert [r["run"] for r in summary["rows"]] == list(plan)
    assert all(0 <= r["test_rouge1"] <= 1 and r["test_loss"] > 0 for r in summary["rows"])


# ---------------------------------------------------------------------------
# A student's experiment: its own folder, the comparison's unit untouched
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["prompt_tuning", "last_layer", "last_blocks", "lora"])
def test_a_changed_setting_trains_into_its_own_folder_and_leaves_the_committed_unit_as_it_was(method, tmp_path):
    from peft_helpers import experiment_name
    from peft_helpers.config import METHOD_TABLE
    from peft_helpers.results import weight_files

    setup = prepare(get_profile("smoke"))
    assert experiment_name(setup.profile, method) is None  # the profile's own settings: the comparison's unit
    run_method(setup, method, build_model(setup, method), root=tmp_path, checkpoints=tmp_path / "ck")
    unit = results_dir("smoke", method, tmp_path)
    if method.startswith("last_"):  # a fresh clone: these weights are not committed
        for name in weight_files(method):
            (unit / name).unlink()
    before = snapshot(unit)
    section = METHOD_TABLE[method].settings
    changed = prepare(setup.profile.replace(**{section: {"lr": 0.02}}, seed=1))
    run = experiment_name(changed.profile, method)
    assert run == "lr=0.02_seed=1"
    result = run_method(changed, method, build_model(changed, method), root=tmp_path, checkpoints=tmp_path / "ck",
                        run=run)
    assert result["folder"] == tmp_path / "smoke" / "experiments" / method / run
    assert result["config"]["profile"]["seed"] == 1 and load_results(
        "smoke", method, tmp_path, folder=result["folder"])["metrics"] == json.loads(json.dumps(result["metrics"]))
    assert snapshot(unit) == before
    with pytest.raises(ResultsError, match="run name"):
        run_method(changed, method, build_model(changed, method), root=tmp_path, run="../escape")


def test_the_quick_real_mode_is_the_committed_setup_made_small_and_writes_nothing_committed():
    from peft_helpers.plots import output_dirs

    quick, full = get_profile("smollm2-quick"), get_profile("smollm2-aclsum")
    assert (quick.model, quick.dataset, quick.generation) == (full.model, full.dataset, full.generation)
    for method in ("prompt_tuning", "last_layer", "last_blocks", "lora", "full_ft"):  # the tuned rates, 2 epochs
        assert getattr(quick, method) == dataclasses.replace(getattr(full, method), epochs=None)
    assert (quick.n_train, quick.n_val, quick.n_test, quick.train.epochs) == (24, 10, 10, 2)
    assert all(config_hash(quick, m) != config_hash(full, m) for m in METHODS)
    figures, report = output_dirs("smollm2-quick")
    assert figures.parts[:2] == report.parts[:2] == ("results", "smollm2-quick")
    ignored = subprocess.run(["git", "check-ignore", "-q", "--no-index", "results/smollm2-quick/lora/metrics.json"],
                             cwd=ROOT)
    assert ignored.returncode == 0


def test_a_whole_run_with_overrides_is_not_an_experiment_but_a_notebook_change_on_top_of_it_is(monkeypatch):
    from peft_helpers import experiment_name

    monkeypatch.setenv("PEFT_OVERRIDES", '{"n_train": 8}')  # make run with other sizes: the comparison's own units
    base = get_profile("smoke")
    assert experiment_name(base, "lora", base) is None
    assert experiment_name(base.replace(lora=dict(r=2)), "lora", base) == "r=2"
    assert experiment_name(base, "lora") == "n_train=8"  # against the project's own profile, it is one


def test_the_committed_notebooks_results_and_report_come_from_one_make_run_of_committed_code():
    """One top-to-bottom ``make run`` (tools.run_notebooks without --only) made what is committed: every notebook's
    metadata names the run that results/<profile>/run.json and timings.json name, that run ran committed code, the
    report's title block names it, and each notebook unit holds the settings the profile gives its method now (a
    unit of other settings would be refused by that run, not reused)."""
    from pypdf import PdfReader

    from peft_helpers.config import COMMITTED_PROFILE
    from peft_helpers.results import unfinished_reason
    from tools.run_notebooks import NOTEBOOKS

    profile = get_profile(COMMITTED_PROFILE)
    run = json.loads((ROOT / "results" / profile.name / "run.json").read_text())
    assert run["profile"] == profile.name and run["uncommitted_changes"] is False, run
    for name in NOTEBOOKS:
        notebook = json.loads((ROOT / "notebooks" / f"{name}.ipynb").read_text())
        assert notebook["metadata"].get("peft_run") == run, f"{name} was executed by another run (or by --only)"
    assert json.loads((ROOT / "results" / profile.name / "timings.json").read_text())["run"] == run
    title_page = " ".join(PdfReader(ROOT / "report" / "report.pdf").pages[0].extract_text().split())
    assert f"make run of {run['id']}, commit {run['commit'][:10]}" in title_page
    for method in METHODS:
        folder = ROOT / "results" / profile.name / method
        assert unfinished_reason(folder, method, config_hash(profile, method), weights=False) is None, method
