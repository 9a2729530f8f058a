"""Bad input and bad settings: each ends in one clear error naming what is wrong, never a silent wrong result."""

import json
import math

import pytest
import torch

from conftest import make_gpt2, make_llama
from peft_helpers import (
    AdapterError, ConfigError, DataError, LoRAConfig, LoRALayer, add_lora, add_soft_prompt, get_profile,
    prepare_last_layer,
)
from peft_helpers.data import aclsum_rows, clean_rows, read_jsonl, split_overlaps
from peft_helpers.methods import load_weights, save_weights

# ---------------------------------------------------------------------------
# Settings: every one is checked where it is made (the override fails, not the training step)
# ---------------------------------------------------------------------------

BAD_OVERRIDES = [
    ({"n_trian": 5}, "unknown profile setting"),
    ({"n_train": 0}, "n_train"),
    ({"n_train": 2.5}, "n_train"),
    ({"n_test": True}, "n_test"),
    ({"seed": -1}, "seed"),
    ({"separator": ""}, "separator"),
    ({"max_doc_tokens": "256"}, "max_doc_tokens"),
    ({"lora": {"rank": 4}}, "unknown lora setting"),
    ({"lora": {"alpha": "16"}}, "LoRA alpha"),
    ({"lora": {"r": 0}}, "rank r"),
    ({"lora": {"r": 2.0}}, "rank r"),
    ({"lora": {"dropout": 1.0}}, "dropout"),
    ({"lora": {"dropout": -0.1}}, "dropout"),
    ({"lora": {"lr": math.inf}}, "LoRA lr"),
    ({"lora": {"lr": 0}}, "LoRA lr"),
    ({"lora": {"targets": "q_proj"}}, "tuple of layer names"),
    ({"lora": {"epochs": 0}}, "epochs"),
    ({"lora": "r=4"}, "must be a LoRAConfig"),
    ({"prompt_tuning": {"n_tokens": 0}}, "n_tokens"),
    ({"prompt_tuning": {"n_tokens": -3}}, "n_tokens"),
    ({"prompt_tuning": {"lr": math.nan}}, "prompt tuning lr"),
    ({"prompt_tuning": {"init_text": ""}}, "init_text"),
    ({"last_layer": {"n_blocks": -1}}, "n_blocks"),
    ({"last_blocks": {"n_blocks": 0}}, "n_blocks >= 1"),
    ({"train": {"batch_size": 2.5}}, "batch_size"),
    ({"train": {"batch_size": 0}}, "batch_size"),
    ({"train": {"max_grad_norm": -1}}, "max_grad_norm"),
    ({"train": {"max_grad_norm": 0}}, "max_grad_norm"),
    ({"train": {"warmup_ratio": 1.5}}, "warmup_ratio"),
    ({"train": {"weight_decay": -0.01}}, "weight_decay"),
    ({"train": {"precision": "bf32"}}, "precision"),
    ({"train": {"patience": 0}}, "patience"),
    ({"train": {"lr": 1e-3}}, "unknown train setting"),
    ({"generation": {"repetition_penalty": 0}}, "repetition_penalty"),
    ({"generation": {"max_new_tokens": 0}}, "max_new_tokens"),
    ({"generation": {"num_beams": 1.5}}, "num_beams"),
    ({"generation": {"no_repeat_ngram_size": -1}}, "no_repeat_ngram_size"),
]


@pytest.mark.parametrize("override, message", BAD_OVERRIDES, ids=[str(o) for o, _ in BAD_OVERRIDES])
def test_bad_setting_fails_where_it_is_made(override, message):
    with pytest.raises(ConfigError, match=message):
        get_profile("smoke", **override)


def test_a_dict_override_changes_only_the_fields_it_names():
    profile = get_profile("smoke", lora={"r": 16})
    assert profile.lora.r == 16 and profile.lora.lr == get_profile("smoke").lora.lr


# ---------------------------------------------------------------------------
# Applying methods: refused before anything changes
# ---------------------------------------------------------------------------


def test_lora_target_that_is_not_a_layer_leaves_the_model_untouched():
    model = make_llama()
    with pytest.raises(ConfigError, match="not linear layers.*candidates"):
        add_lora(model, LoRAConfig(targets=("q_proj", "self_attn")))
    assert not any(isinstance(m, LoRALayer) for m in model.modules())
    assert all(p.requires_grad for p in model.parameters())  # not even frozen
    add_lora(model, LoRAConfig(targets=("q_proj",)))  # and it can still be wrapped properly


def test_lora_on_a_soft_prompt_model_is_refused():
    wrapped = add_soft_prompt(make_gpt2(), None, 4, None)
    with pytest.raises(AdapterError, match="already carries 'prompt_tuning'"):
        add_lora(wrapped, LoRAConfig())
    assert wrapped.prompt.requires_grad  # the prompt was not frozen on the way


@pytest.mark.parametrize("first, second", [("lora", "last_layer"), ("last_layer", "lora"),
                                           ("last_layer", "last_blocks"), ("lora", "prompt_tuning")])
def test_a_second_method_on_one_model_is_refused(first, second):
    apply = {"lora": lambda m: add_lora(m, LoRAConfig()), "last_layer": lambda m: prepare_last_layer(m, 0),
             "last_blocks": lambda m: prepare_last_layer(m, 1),
             "prompt_tuning": lambda m: add_soft_prompt(m, None, 4, None)}
    model = make_gpt2()
    apply[first](model)
    with pytest.raises(AdapterError, match="already carries"):
        apply[second](model)


def test_weights_saved_for_another_method_are_refused(tmp_path):
    head = make_gpt2()
    prepare_last_layer(head, 0)
    save_weights(head, tmp_path / "head.safetensors")
    blocks = make_gpt2()
    prepare_last_layer(blocks, 1)
    with pytest.raises(AdapterError, match="head.safetensors"):
        load_weights(blocks, tmp_path / "head.safetensors")


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_a_damaged_weights_file_names_its_path(tmp_path, damage):
    from peft_helpers import ResultsError

    model = make_gpt2()
    prepare_last_layer(model, 0)
    path = save_weights(model, tmp_path / "head.safetensors")
    data = path.read_bytes()
    path.write_bytes({"truncate": data[: len(data) // 2], "garbage": b"not safetensors at all", "empty": b""}[damage])
    with pytest.raises(ResultsError, match="head.safetensors"):
        load_weights(model, path)


def test_a_damaged_lora_adapter_names_its_path(tmp_path):
    from peft_helpers import ResultsError
    from peft_helpers.methods import load_lora_adapter, save_lora_adapter

    model = make_gpt2()
    add_lora(model, LoRAConfig(r=4))
    folder = save_lora_adapter(model, tmp_path / "adapter", LoRAConfig(r=4), "tiny")
    weights = folder / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(ResultsError, match="adapter_model.safetensors"):
        load_lora_adapter(model, folder)


# ---------------------------------------------------------------------------
# Data: non-text values, broken lines, duplicates and overlaps
# ---------------------------------------------------------------------------


def record(row_id="P1", abstract=("First .", "Second ."), challenge="C.", approach="A.", outcome="O."):
    return {"id": row_id, "summary": {"challenge": challenge, "approach": approach, "outcome": outcome},
            "sentences": {"abstract": list(abstract) if isinstance(abstract, tuple) else abstract}}


@pytest.mark.parametrize("field, value, column", [
    ("challenge", float("nan"), "summary.challenge"),
    ("approach", ["a", "b"], "summary.approach"),
    ("outcome", 42, "summary.outcome"),
    ("abstract", "Hello", "sentences.abstract"),
    ("abstract", ["fine", 3], "sentences.abstract"),
    ("abstract", {"a": 1}, "sentences.abstract"),
])
def test_non_text_fields_name_file_row_and_column(tmp_path, field, value, column):
    (tmp_path / "train.jsonl").write_text(json.dumps(record("P7", **{field: value}), allow_nan=True) + "\n")
    with pytest.raises(DataError) as err:
        aclsum_rows("train", tmp_path)
    assert "train.jsonl" in str(err.value) and "'P7'" in str(err.value) and column in str(err.value)


@pytest.mark.parametrize("value", [float("nan"), ["a", "b"], 7, {"x": 1}])
def test_clean_rows_refuses_non_text(value):
    with pytest.raises(DataError, match="row id 'r2'.*'summary'"):
        clean_rows([{"id": "r1", "document": "d", "summary": "s"}, {"id": "r2", "document": "d", "summary": value}],
                   "table.parquet")


@pytest.mark.parametrize("line, message", [
    ('{"id": "P1", "summary": {', "line 2: not valid JSON"),
    ('[1, 2]', "line 2: a JSON object was expected"),
    ('"text"', "line 2: a JSON object was expected"),
])
def test_unreadable_json_lines_name_file_and_line(tmp_path, line, message):
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps(record()) + "\n" + line + "\n")
    with pytest.raises(DataError, match=message) as err:
        read_jsonl(path)
    assert "train.jsonl" in str(err.value)


def test_an_empty_source_file_is_a_clear_error(tmp_path):
    (tmp_path / "train.jsonl").write_text("\n")
    with pytest.raises(DataError, match="has no rows"):
        aclsum_rows("train", tmp_path)


def test_repeated_ids_are_dropped_and_counted():
    rows = [{"id": "a", "document": "d1", "summary": "s"}, {"id": "a", "document": "d2", "summary": "s"},
            {"id": 3, "document": "d3", "summary": "s"}]
    kept, dropped = clean_rows(rows)
    assert [r["id"] for r in kept] == ["a", "3"] and dropped["repeated id"] == 1


def test_a_bad_id_is_refused():
    with pytest.raises(DataError, match="ids must be text"):
        clean_rows([{"id": None, "document": "d", "summary": "s"}])


def row(i, doc):
    return {"id": i, "document": doc, "summary": "s"}


def test_test_rows_seen_in_training_stop_the_run():
    with pytest.raises(DataError, match="1 test row id"):
        split_overlaps({"train": [row("a", "x")], "validation": [], "test": [row("a", "y")]})
    with pytest.raises(DataError, match="1 test document"):
        split_overlaps({"train": [row("a", "same")], "validation": [], "test": [row("b", "same")]})


def test_validation_overlap_is_counted_not_fatal():
    counts = split_overlaps({"train": [row("a", "x"), row("b", "y")], "validation": [row("a", "z"), row("c", "y")],
                             "test": [row("d", "w")]})
    assert counts["train/validation"] == {"same id": 1, "same document": 1}
    assert counts["train/test"] == {"same id": 0, "same document": 0}


def test_the_data_cache_key_covers_the_source_content(tmp_path, monkeypatch):
    """Editing a source row rebuilds the tokenized splits instead of reusing the old ones."""
    import shutil

    import peft_helpers.data as data
    from peft_helpers import prepare

    source = tmp_path / "aclsum"
    shutil.copytree(data.package_folder("aclsum", "aclsum") / "dataset", source / "dataset")
    monkeypatch.setattr(data, "package_folder",
                        lambda name, pip: source if name == "aclsum" else data.package_folder.__wrapped__(name, pip))
    profile = get_profile("smoke")
    first = prepare(profile, tmp_path / "data")
    path = source / "dataset" / "test.jsonl"
    edited = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    for r in edited:
        r["summary"]["challenge"] = "Edited. " + r["summary"]["challenge"]
    path.write_text("".join(json.dumps(r) + "\n" for r in edited))
    second = prepare(profile, tmp_path / "data")
    assert all(s.startswith("Edited. ") for s in second.splits["test"]["summary"])
    assert not any(s.startswith("Edited. ") for s in first.splits["test"]["summary"])
    assert second.splits["train"]["summary"] == first.splits["train"]["summary"]


def test_context_overflow_names_the_numbers():
    from peft_helpers.data import check_context

    profile = get_profile("smoke", max_doc_tokens=500)
    with pytest.raises(ConfigError, match="context overflow.*512 positions"):
        check_context(profile, type("C", (), {"n_positions": 512})(), n_virtual=4)


def test_hub_unreachable_names_the_offline_profile(monkeypatch):
    from peft_helpers import HubUnavailableError, load_tokenizer

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HubUnavailableError, match="smollm2-aclsum"):
        load_tokenizer(get_profile("gpt2-cnndm"))


def test_prompt_length_must_be_a_positive_integer():
    for bad in (0, -1, True, 2.0):
        with pytest.raises(ConfigError, match="positive integer"):
            add_soft_prompt(make_gpt2(), None, bad, None)
    assert torch.is_tensor(add_soft_prompt(make_gpt2(), None, 3, None).prompt)
