"""Data: truncation keeps the separator, summary and eos; labels are -100 exactly on prompt and padding."""

import json

import pytest

from peft_helpers import ConfigError, DataError, TrainCollator, clean_rows, clean_text, encode_example, get_profile
from peft_helpers.data import aclsum_rows, check_context, cnndm_rows, load_splits, tokenize_splits
from datasets import Dataset, DatasetDict

SEP = "\nTL;DR:"


def test_long_document_never_cuts_summary_separator_or_eos(tokenizer):
    document, summary = "word " * 500, "The method works well."
    out = encode_example(tokenizer, document, summary, max_doc=32, max_summary=64, separator=SEP)
    sep = tokenizer(SEP, add_special_tokens=False)["input_ids"]
    assert len(out["prompt_ids"]) == 32 + len(sep)
    assert out["prompt_ids"][-len(sep):] == sep
    assert tokenizer.decode(out["target_ids"][:-1]) == " " + summary
    assert out["target_ids"][-1] == tokenizer.eos_token_id


def test_long_summary_is_capped_but_keeps_eos(tokenizer):
    out = encode_example(tokenizer, "short doc", "long " * 200, max_doc=32, max_summary=10, separator=SEP)
    assert len(out["target_ids"]) == 11 and out["target_ids"][-1] == tokenizer.eos_token_id


def test_labels_are_ignored_exactly_on_prompt_and_padding_by_position():
    eos = 7  # pad == eos, as for GPT-2: masking by id would also hide the real eos
    rows = [{"prompt_ids": [1, 2, 3], "target_ids": [4, eos]}, {"prompt_ids": [1], "target_ids": [5, 6, eos]}]
    batch = TrainCollator(pad_id=eos)(rows)
    assert batch["input_ids"].tolist() == [[1, 2, 3, 4, eos], [1, 5, 6, eos, eos]]
    assert batch["labels"].tolist() == [[-100, -100, -100, 4, eos], [-100, 5, 6, eos, -100]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 1, 0]]


def test_generation_batches_are_left_padded_with_the_soft_prompt_before_each_prompt():
    import torch

    from conftest import make_gpt2
    from peft_helpers import add_soft_prompt
    from peft_helpers.methods import embed_prompts

    model = make_gpt2()
    table = model.get_input_embeddings().weight.detach()
    embeds, mask = embed_prompts(model, [[1, 2, 3], [4]])
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    assert torch.equal(embeds[0], table[[1, 2, 3]]) and torch.equal(embeds[1, 2], table[4])
    assert not embeds[1, :2].any()  # padding is zeros, masked out

    wrapped = add_soft_prompt(make_gpt2(), None, 2, None)
    embeds, mask = embed_prompts(wrapped, [[1, 2, 3], [4]])
    prompt = wrapped.prompt.detach()
    assert mask.tolist() == [[1, 1, 1, 1, 1], [0, 0, 1, 1, 1]]
    assert torch.equal(embeds[0, :2], prompt) and torch.equal(embeds[1, 2:4], prompt)  # right before each row's ids
    assert torch.equal(embeds[1, 4], table[4])


def test_cleaning_removes_control_characters_and_bad_bytes():
    assert clean_text("a\x00b\x07  c\u200b d\r\n e") == "a b c d e"
    assert clean_text(b"caf\xc3\xa9 \xff ok") == "café \ufffd ok"
    assert clean_text("e\u0301") == "é"  # NFC
    assert clean_text(None) == ""


def test_empty_rows_are_dropped_and_counted():
    rows = [{"id": 1, "document": "doc", "summary": "sum"}, {"id": 2, "document": "  \t ", "summary": "s"},
            {"id": 3, "document": "d", "summary": "\n"}, {"id": 4, "document": "\x00", "summary": "s"}]
    kept, dropped = clean_rows(rows)
    assert [r["id"] for r in kept] == ["1"]
    assert dropped == {"empty document": 2, "empty summary": 1}


def test_cnndm_schema_and_missing_columns(tokenizer):
    table = [{"id": "a1", "article": "LONDON (CNN) -- A story.\x0b", "highlights": "Point one .\nPoint two ."}]
    rows = cnndm_rows(table)
    kept, _ = clean_rows(rows)
    assert kept == [{"id": "a1", "document": "LONDON (CNN) -- A story.", "summary": "Point one . Point two ."}]
    profile = get_profile("gpt2-cnndm")
    encoded = tokenize_splits(DatasetDict({"test": Dataset.from_list(kept)}), tokenizer, profile)
    assert encoded["test"][0]["target_ids"][-1] == tokenizer.eos_token_id
    with pytest.raises(DataError, match=r"^the CNN/DailyMail table, row 1, lacks column\(s\) \['highlights'\]"):
        cnndm_rows([{"id": "a", "article": "x"}])


def test_aclsum_files_are_read_as_document_and_summary(tmp_path):
    record = {"id": "P1", "summary": {"challenge": "C.", "approach": "A.", "outcome": "O."},
              "sentences": {"abstract": ["First .", "Second ."], "introduction": [], "conclusion": []}}
    (tmp_path / "train.jsonl").write_text(json.dumps(record) + "\n")
    assert aclsum_rows("train", tmp_path) == [{"id": "P1", "document": "First . Second .", "summary": "C. A. O."}]
    (tmp_path / "val.jsonl").write_text(json.dumps({"id": "x", "title": "t"}) + "\n")
    with pytest.raises(DataError, match="lacks column"):
        aclsum_rows("val", tmp_path)


def test_real_aclsum_splits_have_the_design_sizes():
    splits, report = load_splits(get_profile("smollm2-aclsum"))
    assert {k: len(v) for k, v in splits.items()} == {"train": 100, "validation": 50, "test": 100}
    assert all(report[split]["dropped"] == {} for split in splits)
    assert all(counts == {"same id": 0, "same document": 0} for counts in report["overlaps"].values())


def test_context_overflow_is_a_clear_error():
    profile = get_profile("gpt2-cnndm")

    class Small:
        n_positions = 512

    with pytest.raises(ConfigError, match="context overflow"):
        check_context(profile, Small(), n_virtual=20)
    check_context(profile, type("GPT2", (), {"n_positions": 1024})(), n_virtual=20)  # the real one fits


def test_profiles_and_bad_names(monkeypatch):
    with pytest.raises(ConfigError, match="unknown profile"):
        get_profile("gpt5-wiki")
    monkeypatch.setenv("PEFT_PROFILE", "smoke")
    assert get_profile().name == "smoke"
    assert get_profile("smollm2-aclsum", n_train=10).n_train == 10
    with pytest.raises(ConfigError):
        get_profile("smoke", n_train=0)


def test_auto_falls_back_quickly_when_offline(monkeypatch, capsys):
    import time

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)  # the caller's shell must not decide the outcome
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens on the discard port
    monkeypatch.setattr("torch.cuda.is_available", lambda: True)  # a GPU machine whose hub is unreachable
    started = time.perf_counter()
    profile = get_profile("auto")
    assert profile.name == "smollm2-aclsum"
    assert time.perf_counter() - started < 5
    assert "did not answer" in capsys.readouterr().out


def test_auto_never_picks_the_course_profile_without_a_gpu(monkeypatch, capsys):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    monkeypatch.setattr("peft_helpers.config.hub_reachable", lambda: (True, "the hub answered"))
    assert get_profile("auto").name == "smollm2-aclsum"
    assert "no GPU" in capsys.readouterr().out
    monkeypatch.setattr("torch.cuda.is_available", lambda: True)
    assert get_profile("auto").name == "gpt2-cnndm"


def test_a_tokenizer_that_yields_nothing_is_refused():
    class Broken:  # e.g. tokenizer files that load but hold no merges or vocabulary
        eos_token_id = 0

        def __call__(self, text, add_special_tokens=False):
            return {"input_ids": []}

    with pytest.raises(DataError, match="separator into no tokens"):
        encode_example(Broken(), "A document.", "A summary.", max_doc=32, max_summary=16, separator=SEP)


def test_the_chat_form_puts_instruction_and_cut_document_in_the_users_turn(tokenizer):
    """The zero-shot chat baseline's prompt: the instruction and the document (cut to max_doc tokens) in the user's
    turn, the assistant's turn opened; the target is the summary (cut) and eos."""
    import copy

    from peft_helpers.data import CHAT_INSTRUCTION, encode_chat_example

    plain = copy.deepcopy(tokenizer)
    plain.chat_template = None  # as GPT-2's
    with pytest.raises(DataError, match="needs a tokenizer with a chat template"):
        encode_chat_example(plain, "a document", "a summary", max_doc=8, max_summary=8)
    chat = copy.deepcopy(tokenizer)
    chat.chat_template = ("{% for m in messages %}[{{ m['role'] }}]{{ m['content'] }}[end]{% endfor %}"
                          "{% if add_generation_prompt %}[assistant]{% endif %}")
    document = " ".join(f"word{i}" for i in range(60))
    out = encode_chat_example(chat, document, "the short summary here", max_doc=12, max_summary=3)
    first_12 = tokenizer.decode(tokenizer(document, add_special_tokens=False)["input_ids"][:12])
    assert tokenizer.decode(out["prompt_ids"]) == f"[user]{CHAT_INSTRUCTION}\n\n{first_12}[end][assistant]"
    assert out["target_ids"][:-1] == tokenizer("the short summary here", add_special_tokens=False)["input_ids"][:3]
    assert out["target_ids"][-1] == tokenizer.eos_token_id
