"""The course's own profile, gpt2-cnndm, from local files: a GPT-2-shaped model and a CNN/DailyMail-shaped table.

The model has GPT-2's architecture and tokenizer kind (byte-level BPE, no pad
token, eos ``<|endoftext|>``) at a reduced size with random weights; the BPE is
trained here on ACLSum text. The table has the hub's columns and is written in
each of the three formats the loader reads.
"""

import json

import pytest
import torch

from peft_helpers import ConfigError, DataError, get_profile, load_model, load_tokenizer
from peft_helpers.config import METHODS, cpu_estimate
from peft_helpers.data import aclsum_rows, source_rows

EOS = "<|endoftext|>"
SMALL = dict(n_train=8, n_val=4, n_test=4, max_doc_tokens=48, max_summary_tokens=16,
             train=dict(batch_size=4, epochs=1), generation=dict(max_new_tokens=8, batch_size=4),
             prompt_tuning=dict(n_tokens=4), last_blocks=dict(n_blocks=1), lora=dict(r=4, lr=5e-3))


def _write_table(path, rows):
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        return
    import pyarrow as pa

    table = pa.Table.from_pylist(rows)
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        pq.write_table(table, path)
    else:  # .arrow: the IPC stream format datasets stores
        with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)


@pytest.fixture(scope="module")
def course_copy(tmp_path_factory):
    """(model folder, data folder) as a student would have them on a compute node without the hub."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

    base = tmp_path_factory.mktemp("course")
    rows = aclsum_rows("train") + aclsum_rows("val") + aclsum_rows("test")
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator([r["document"] + " " + r["summary"] for r in rows], vocab_size=800,
                            special_tokens=[EOS], show_progress=False)
    tokenizer = GPT2TokenizerFast(tokenizer_object=bpe._tokenizer, eos_token=EOS, bos_token=EOS, unk_token=EOS)
    assert tokenizer.pad_token is None  # as GPT-2's own
    assert len(tokenizer("\nTL;DR:", add_special_tokens=False)["input_ids"]) >= 3  # a working byte-level BPE
    model_dir = base / "gpt2"
    tokenizer.save_pretrained(model_dir)
    torch.manual_seed(0)
    config = GPT2Config(n_layer=2, n_head=2, n_embd=64, vocab_size=len(tokenizer),
                        bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id)
    GPT2LMHeadModel(config).save_pretrained(model_dir)  # config.json + model.safetensors
    data_dir = base / "cnndm"
    data_dir.mkdir()
    table = [{"id": f"cnn-{i}", "article": r["document"], "highlights": r["summary"]} for i, r in enumerate(rows)]
    for split, start, ending in (("train", 0, "parquet"), ("validation", 60, "jsonl"), ("test", 90, "arrow")):
        _write_table(data_dir / f"{split}.{ending}", table[start:start + 30])
    return model_dir, data_dir


@pytest.fixture
def offline_course(course_copy, monkeypatch):
    model_dir, data_dir = course_copy
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # nothing may come from the hub
    monkeypatch.setenv("PEFT_GPT2_PATH", str(model_dir))
    monkeypatch.setenv("PEFT_CNNDM_PATH", str(data_dir))
    return model_dir, data_dir


def test_local_gpt2_and_cnndm_load_offline(offline_course):
    model_dir, data_dir = offline_course
    profile = get_profile("gpt2-cnndm")
    tokenizer = load_tokenizer(profile)
    assert tokenizer.eos_token == EOS and tokenizer.pad_token == EOS and tokenizer.padding_side == "left"
    model = load_model(profile)
    assert model.config.model_type == "gpt2" and model.config.n_layer == 2
    raw, digest = source_rows(profile)
    assert {k: len(v) for k, v in raw.items()} == {"train": 30, "validation": 30, "test": 30}
    assert raw["test"][0]["id"] == "cnn-90" and raw["validation"][0]["document"]
    rows = [json.loads(line) for line in (data_dir / "validation.jsonl").read_text().splitlines()]
    rows[0]["highlights"] = "Edited."
    (data_dir / "validation.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert source_rows(profile)[1] != digest  # edited data is never mistaken for the cached splits


def test_local_copies_that_do_not_fit_fail_clearly(offline_course, tmp_path, monkeypatch):
    profile = get_profile("gpt2-cnndm")
    monkeypatch.setenv("PEFT_GPT2_PATH", str(tmp_path / "nowhere"))
    with pytest.raises(ConfigError, match="PEFT_GPT2_PATH.*not a folder"):
        load_model(profile)
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("PEFT_GPT2_PATH", str(tmp_path / "empty"))
    with pytest.raises(ConfigError, match="config.json"):
        load_model(profile)
    with pytest.raises(ConfigError, match="tokenizer.json or vocab.json"):
        load_tokenizer(profile)
    data = tmp_path / "data"
    data.mkdir()
    _write_table(data / "train.jsonl", [{"id": "a", "article": "x", "highlights": "y"}])
    monkeypatch.setenv("PEFT_CNNDM_PATH", str(data))
    with pytest.raises(DataError, match="validation.parquet"):
        source_rows(profile)
    for split in ("validation", "test"):
        _write_table(data / f"{split}.jsonl", [{"id": "b", "article": "y", "highlights": "z"}])
    _write_table(data / "test.parquet", [{"id": "c", "article": "y", "highlights": "z"}])
    with pytest.raises(DataError, match=r"test.parquet', 'test.jsonl"):  # two files for one split: which one?
        source_rows(profile)
    (data / "test.parquet").unlink()
    _write_table(data / "train.jsonl", [{"id": "a", "article": "x"}])
    with pytest.raises(DataError, match="train.jsonl.*highlights"):
        source_rows(profile)


def test_overrides_from_the_environment(monkeypatch):
    monkeypatch.setenv("PEFT_OVERRIDES", '{"n_train": 500, "lora": {"r": 16}}')
    profile = get_profile("gpt2-cnndm")
    assert profile.n_train == 500 and profile.lora.r == 16 and profile.lora.targets == ()
    assert get_profile("gpt2-cnndm", n_train=7).n_train == 7  # arguments win over the environment
    monkeypatch.setenv("PEFT_OVERRIDES", '{"n_train": 0}')
    with pytest.raises(ConfigError, match="n_train"):
        get_profile("gpt2-cnndm")
    monkeypatch.setenv("PEFT_OVERRIDES", "n_train=5")
    with pytest.raises(ConfigError, match="PEFT_OVERRIDES is not valid JSON"):
        get_profile("smoke")


def test_cpu_estimate_scales_with_the_run():
    full, small = get_profile("gpt2-cnndm"), get_profile("gpt2-cnndm", n_train=2100)
    assert "hours" in cpu_estimate(full) and "n_train=500" in cpu_estimate(full)
    hours = lambda text: float(text.split("about ")[1].split(" hours")[0].replace(",", ""))  # noqa: E731
    assert hours(cpu_estimate(full)) == pytest.approx(10 * hours(cpu_estimate(small)), rel=0.05)
    assert hours(cpu_estimate(full)) > 48  # 21,000 documents x 4 trained methods: days, as auto says


def test_gpt2_context_budget_fits_1024_positions():
    from peft_helpers.data import check_context

    profile = get_profile("gpt2-cnndm")
    soft = profile.prompt_tuning.n_tokens
    longest = soft + profile.max_doc_tokens + 16 + max(profile.max_summary_tokens + 1, profile.generation.max_new_tokens)
    assert longest == 20 + 768 + 16 + 129 == 933 <= 1024
    check_context(profile, type("GPT2Config", (), {"n_positions": 1024})(), soft)  # fits: no error
    with pytest.raises(ConfigError, match="context overflow"):
        check_context(profile.replace(max_doc_tokens=900), type("GPT2Config", (), {"n_positions": 1024})(), soft)


def test_the_five_notebooks_and_make_report_run_on_local_gpt2_and_cnndm(offline_course, tmp_path):
    """What a student runs: ``make run PROFILE=gpt2-cnndm`` then ``make report``, offline, in a copy of the project."""
    import os
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    project = tmp_path / "project"  # results, data, checkpoints and the report land here, not in the repository
    for folder in ("notebooks", "peft_helpers", "tools", "report"):  # report/: the builder and its template
        shutil.copytree(root / folder, project / folder,
                        ignore=shutil.ignore_patterns("__pycache__", ".ipynb*", "*.pdf", ".build-*"))
    env = {**os.environ, "PYTHONPATH": str(project), "PEFT_OVERRIDES": json.dumps(SMALL)}  # the copy's package first
    for command in (["-m", "tools.run_notebooks", "--profile", "gpt2-cnndm"],
                    ["-m", "report.build", "--profile", "gpt2-cnndm"]):
        run = subprocess.run([sys.executable, *command], cwd=project, env=env, capture_output=True, text=True,
                             timeout=600)
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    out = project / "results" / "gpt2-cnndm"
    assert sorted(p.name for p in (out / "notebooks").glob("*.ipynb")) == [
        "00_data_prep.ipynb", "01_prompt_tuning.ipynb", "02_last_layer_ft.ipynb", "03_lora.ipynb", "04_comparison.ipynb"]
    for method in METHODS:
        metrics = json.loads((out / method / "metrics.json").read_text())
        config = json.loads((out / method / "config.json").read_text())
        assert metrics["n_test"] == 4 and config["profile"]["model"] == "gpt2" and config["profile"]["n_train"] == 8
    assert (out / "report" / "report.pdf").read_bytes()[:5] == b"%PDF-" and any((out / "figures").glob("*.png"))
    assert "wrote" in run.stdout and (out / "timings.json").is_file()
