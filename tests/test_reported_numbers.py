"""The numbers a reader takes from the report, each pinned by a case that fails if it goes wrong: gradient clipping
and weight decay reach the optimizer step, generation stops at the end token, the evaluation loss weights every token
alike, and the paired gap pairs the same documents (interval levels: test_statistics.py)."""

import pytest
import torch
import torch.nn.functional as F

import peft_helpers.training as training
from peft_helpers import build_model, get_profile, prepare
from peft_helpers.config import GenerationConfig, TrainConfig
from peft_helpers.data import TrainCollator
from peft_helpers.evaluation import generate_summaries
from peft_helpers.methods import language_model


@pytest.fixture(scope="module")
def setup():
    return prepare(get_profile("smoke"))


class RecordingAdamW(torch.optim.AdamW):
    """AdamW that records, at every step, the gradient norm it is given and its weight decay."""

    seen: list[tuple[float, float]] = []

    def step(self, closure=None):
        grads = [p.grad for group in self.param_groups for p in group["params"] if p.grad is not None]
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])).item()
        RecordingAdamW.seen.append((norm, self.param_groups[0]["weight_decay"]))
        return super().step(closure)


@pytest.mark.parametrize("method", ["lora", "last_layer"])  # the plain step and the cached-features step
def test_every_update_sees_gradients_clipped_to_max_grad_norm_and_the_weight_decay(setup, monkeypatch, method):
    monkeypatch.setattr(training.torch.optim, "AdamW", RecordingAdamW)
    norms = {}
    for clip in (1e6, 1e-3):
        RecordingAdamW.seen = []
        config = TrainConfig(batch_size=4, epochs=1, evals_per_epoch=1, max_grad_norm=clip, weight_decay=0.1)
        training.train(build_model(setup, method), setup.splits, setup.pad_id, config, lr=1e-2, seed=0)
        assert len(RecordingAdamW.seen) == 4 and {decay for _, decay in RecordingAdamW.seen} == {0.1}
        norms[clip] = [norm for norm, _ in RecordingAdamW.seen]
    assert min(norms[1e6]) > 1e-2  # unclipped, these gradients are far larger than the bound below
    assert max(norms[1e-3]) <= 1e-3 * (1 + 1e-4)


def test_the_evaluation_loss_weights_every_summary_token_alike(setup):
    """Rows of unequal summary length: the loss is the token-weighted mean over the split, whatever the batch size."""
    model = build_model(setup, "zero_shot")
    # summaries cut to 3, 6, 9, ... tokens
    rows = setup.splits["validation"].map(lambda r, i: {"target_ids": r["target_ids"][:3 + 3 * i]}, with_indices=True)
    lengths = [len(r["target_ids"]) for r in rows]
    assert len(set(lengths)) > 1  # the case where a mean of batch means would differ
    batch = TrainCollator(setup.pad_id)([rows[i] for i in range(len(rows))])
    with torch.no_grad():
        logits = language_model(model)(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    targets = batch["labels"][:, 1:]
    direct = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100,
                             reduction="sum") / (targets != -100).sum()
    for batch_size in (1, 3, len(rows)):
        got = training.evaluate_loss(model, rows, setup.pad_id, batch_size=batch_size, show=False)
        assert got == pytest.approx(direct.item(), rel=1e-5)
    per_row = [training.evaluate_loss(model, rows.select([i]), setup.pad_id, show=False) for i in range(len(rows))]
    assert abs(sum(per_row) / len(per_row) - direct.item()) > 1e-4  # the unweighted mean is another number


def test_generation_stops_at_the_end_token_and_scores_only_what_came_before(setup):
    """A scripted decoder: row 0 ends after two tokens and then emits garbage, row 1 never ends."""
    model = build_model(setup, "zero_shot")
    tokenizer, eos = setup.tokenizer, setup.tokenizer.eos_token_id
    words = tokenizer(" alpha beta gamma delta epsilon", add_special_tokens=False)["input_ids"][:5]
    settings = GenerationConfig(max_new_tokens=5, batch_size=2)
    rows = setup.splits["test"].select([0, 1])

    start = tokenizer.convert_tokens_to_ids("<|im_start|>")  # a special token an instruct model may emit

    def scripted(**kwargs):
        n = kwargs["inputs_embeds"].shape[0]
        # a special token, two words, the end token, then garbage (as a sampler or a bad pad could leave)
        ended = [start] + words[:2] + [eos] + words[2:3]
        return torch.tensor([ended] + [words] * (n - 1))

    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setattr(language_model(model), "generate", scripted)
    try:
        out = generate_summaries(model, tokenizer, rows, settings)
    finally:
        monkeypatch.undo()
    by_length = sorted(range(2), key=lambda i: len(rows[i]["prompt_ids"]))  # generation runs the shorter prompt first
    first, second = out[by_length[0]], out[by_length[1]]
    assert first["new_tokens"] == 3 and not first["hit_cap"]
    assert first["prediction"] == tokenizer.decode(words[:2]).strip()  # the special token is not scored as text
    assert second["new_tokens"] == 5 and second["hit_cap"]
    assert second["prediction"] == tokenizer.decode(words).strip()
    # each row keeps its own document's id and reference (the rows are generated in another order)
    assert [r["id"] for r in out] == rows["id"] and [r["reference"] for r in out] == rows["summary"]


def test_the_paired_gap_compares_each_document_with_itself():
    """Method A recalls one more reference word than B on every document; documents differ widely in difficulty."""
    from report.stats import paired_gap

    vocab = [f"w{i}" for i in range(400)]
    a, b = [], []
    for i in range(60):
        reference = vocab[i * 5: i * 5 + 20]
        known = 2 + (i * 7) % 15  # how many reference words B recalls: 2..16
        filler = [f"z{i}q{j}" for j in range(20)]  # one token each for rouge_score, in no reference
        b.append({"id": str(i), "reference": " ".join(reference), "prediction": " ".join(reference[:known] + filler[known:])})
        a.append({"id": str(i), "reference": " ".join(reference),
                  "prediction": " ".join(reference[:known + 1] + filler[known + 1:])})
    gap, low, high = paired_gap(a, b)
    assert gap == pytest.approx(0.05) and low == pytest.approx(0.05) and high == pytest.approx(0.05)
    with pytest.raises(Exception, match=r"lora \(60 rows\) and prompt_tuning \(60 rows\) cover different test "
                                        r"rows \(the same ids in another order\)"):
        paired_gap(a, b[::-1], names=("lora", "prompt_tuning"))
    with pytest.raises(Exception, match=r"5 ids in one only, e.g. \['55', '56', '57'\]\)"):
        paired_gap(a, b[:-5])


def test_the_paired_gap_interval_is_reproducible_and_follows_its_seed():
    """Noisy per-document gaps: the interval comes from a seeded bootstrap, so the report's numbers recompute."""
    from report.stats import paired_gap

    vocab = [f"w{i}" for i in range(200)]
    a, b = [], []
    for i in range(40):
        reference = vocab[i * 4: i * 4 + 12]
        a.append({"id": str(i), "reference": " ".join(reference), "prediction": " ".join(reference[: 3 + i % 7])})
        b.append({"id": str(i), "reference": " ".join(reference), "prediction": " ".join(reference[: 2 + i % 5])})
    first = paired_gap(a, b)
    assert first == paired_gap(a, b) == paired_gap(a, b, seed=0)
    assert first != paired_gap(a, b, seed=1)
    assert first[1] < first[0] < first[2]


def test_committed_rouge_means_and_intervals_recompute_from_their_predictions():
    """Every committed result's ROUGE (mean and 95% interval) is what its predictions give (the report reads them)."""
    import json
    from pathlib import Path

    from peft_helpers.evaluation import rouge_summary

    root = Path(__file__).resolve().parents[1] / "results" / "smollm2-aclsum"
    checked = 0
    for metrics_file in sorted(root.glob("*/metrics.json")):
        rows = [json.loads(line) for line in (metrics_file.parent / "predictions.jsonl").read_text().splitlines()]
        seed = json.loads((metrics_file.parent / "config.json").read_text())["profile"]["seed"]
        got = rouge_summary([r["prediction"] for r in rows], [r["reference"] for r in rows], seed=seed)
        want = json.loads(metrics_file.read_text())["rouge"]
        for key in ("rouge1", "rouge2", "rougeL", "rougeLsum"):
            assert got[key] == pytest.approx(want[key], abs=1e-12), (metrics_file.parent.name, key)
        checked += 1
    assert checked == 5  # zero-shot and the four trained methods


def test_whether_lora_regularised_is_read_against_full_fine_tuning():
    """The theory answer's sentence on LoRA as a regulariser follows the numbers of the compared runs' histories: a
    smaller train/validation gap and a smaller rise after the best epoch than full fine-tuning's say it did, the
    reverse says it did not; without full fine-tuning it cannot say."""
    import pandas as pd

    from report.words import fit_sentence, regularisation_words

    def history(train, val):
        return pd.DataFrame({"epoch": range(len(val)), "train_loss": [float("nan"), *train], "eval_loss": val})

    lora = history([2.4, 2.2], [3.2, 2.70, 2.71])
    words = regularisation_words({"lora": lora, "full_ft": history([2.0, 1.4], [3.2, 2.67, 2.77])})
    assert words.startswith("Against full fine-tuning it did:") and "a gap of 0.50" in words and "a gap of 1.27" in words
    full_fits_less = history([2.6, 2.5], [3.2, 2.9, 2.8])
    assert regularisation_words({"lora": lora, "full_ft": full_fits_less}).startswith(
        "Against full fine-tuning it did not visibly do so")
    assert "cannot say" in regularisation_words({"lora": lora})
    # the fit sentence orders the gaps from the largest and names every rise after the best epoch
    fit = fit_sentence({"lora": lora, "full_ft": history([2.0, 1.4], [3.2, 2.67, 2.77])})
    assert fit.index("full fine-tuning 1.27") < fit.index("LoRA 0.50") and "full fine-tuning (+0.100 by epoch 2)" in fit


def test_the_noise_yardstick_counts_every_run_of_identical_settings():
    """Each method's yardstick covers its three seeds (full fine-tuning's by run name: it once ran as last_blocks) and
    its notebook run of the same settings (a setting added since, at its default, does not make them differ)."""
    import json
    from pathlib import Path

    from report.inputs import run_spread, sweep_rows

    from peft_helpers.config import without_added_later

    seeds = sweep_rows("smollm2-aclsum", "seeds")
    for method in ("prompt_tuning", "last_blocks", "lora", "full_ft"):
        own = [r["val_loss"] for r in seeds if r["run"] in (f"{method}-s0", f"{method}-s1", f"{method}-s2")]
        notebook = Path("results/smollm2-aclsum") / method
        same = method != "full_ft" and (without_added_later(json.loads((notebook / "config.json").read_text())[
            "method_settings"]) == without_added_later(json.loads((Path("results/smollm2-aclsum/sweeps/seeds") /
                                                                    f"{method}-s0" / "config.json").read_text())[
            "method_settings"]))  # the notebook's run counts only while it has the seeds' settings
        runs = own + ([json.loads((notebook / "metrics.json").read_text())["eval_loss"]] if same else [])
        assert len(own) == 3 and run_spread("smollm2-aclsum", seeds, method) >= max(runs) - min(runs) > 0
    assert run_spread("smollm2-aclsum", seeds, "last_blocks") < 0.01  # full fine-tuning's seeds are not its own


def test_times_and_peaks_come_from_one_kind_of_machine_and_the_others_are_marked():
    """A GPU's seconds beside a CPU's would order the methods by where they ran: each method's time and peak are the
    medians over its runs on the machine that made most runs; a method with none there keeps its own machine's,
    marked in the table (‡) and named in the sentence after the others."""
    from report.comparison import machine_label
    from report.tables import machines_note, main_table
    from report.words import cost_sentence

    cpu = machine_label({"processor": "AMD EPYC", "cpu_count": 2, "cpu_flags": {"avx2": True}})
    gpu = machine_label({"processor": "Intel", "cpu_count": 16, "cpu_flags": {}, "gpu": "NVIDIA H200"})

    def run(machine, seconds, peak):
        return {"machine": machine, "train_time_s": seconds, "peak_memory_mib": peak, "tokens_per_s": 100.0,
                "trainable_params": 10, "val_loss": 2.7, "test_loss": 2.6, "test_rouge1": 0.47, "test_rouge1_low": 0.45,
                "test_rouge1_high": 0.49, "test_rouge2": 0.18, "test_rouge2_low": 0.17, "test_rouge2_high": 0.19,
                "test_rougeL": 0.31, "test_rougeL_low": 0.30, "test_rougeL_high": 0.32}

    assert machines_note({"lora": [run(cpu, 900, 3900)], "prompt_tuning": [run(cpu, 1300, 2300)] * 2}) == ""
    groups = {"prompt_tuning": [run(cpu, 1300, 2300)] * 3, "last_layer": [run(cpu, 400, 2357)] * 3,
              "lora": [run(cpu, 967, 3901), run(gpu, 22, 5800), run(gpu, 23, 5900)],
              "full_ft": [run(gpu, 21, 6064)] * 3}
    note = machines_note(groups)
    assert "LoRA and full fine-tuning ran some or all of their seeds on NVIDIA H200" in note
    assert f"every other trained run on {cpu}" in note and "‡: full fine-tuning ran only on the former" in note
    table = main_table(groups, {m: True for m in groups})
    cells = {row[0]: dict(zip(table["header"], row)) for row in table["rows"]}
    assert cells["LoRA"]["train s"] == "967" and cells["LoRA"]["peak MiB"] == "3,901"  # the CPU run, not the GPU's
    assert cells["full fine-tuning"]["train s"] == "21 ‡" and cells["prompt tuning"]["train s"] == "1,300"
    text = cost_sentence(groups)
    assert text.index("LoRA 967 s") < text.index("prompt tuning 1,300 s") < text.index(
        "and on NVIDIA H200, the only machine it ran on, full fine-tuning 21 s")


def test_the_machine_note_names_only_methods_whose_seeds_span_machines():
    """"The spread across seeds also includes the machine" is true only of a method whose seeds ran on more than one
    kind of machine, not of one that ran every seed on a machine other than most runs'."""
    from report.words import devices_sentence

    def rows(method, *devices):
        return [{"run": f"{method}-s{i}", "device": d} for i, d in enumerate(devices)]

    cpu, gpu = "AMD EPYC", "NVIDIA H200"
    text = devices_sentence(rows("prompt_tuning", cpu, cpu, cpu) + rows("last_layer", cpu, cpu, cpu)
                            + rows("lora", cpu, gpu, gpu) + rows("full_ft", gpu, gpu, gpu))
    assert "AMD EPYC (7 runs) and NVIDIA H200 (5 runs)" in text
    assert text.endswith("so for LoRA the spread across seeds also includes the machine.")
    assert "full fine-tuning" not in text
    assert "spread" not in devices_sentence(rows("lora", gpu, gpu, gpu) + rows("prompt_tuning", cpu, cpu, cpu, cpu))
