"""Sentences decided from the numbers: every ordering, tie and comparison the report states, and the number
formats it states them in."""

from __future__ import annotations

from peft_helpers.evaluation import verdict
from peft_helpers.plots import LABELS

from .stats import common_machine, cost_runs, mean_sd, smallest_within, timed_elsewhere

FULL_FT_LABEL = "full fine-tuning"


CHAT_LABEL = "zero-shot, chat template"


TUNE_LABELS = {"last_layer": "last layer (LM head)", "last_blocks": "last blocks + norm", "prompt_tuning":
               "prompt tuning (20 tokens)", "prompt_tuning_n100": "prompt tuning, 100 tokens", "lora":
               "LoRA (all seven projections)", "lora_qv": "LoRA on q, v", "full_ft": "full fine-tuning"}


def capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def article(number) -> str:
    """"a" or "an" before a number read aloud: an 8, an 11, an 18, an 80; a 4."""
    text = str(number)
    return "an" if text.startswith("8") or text in ("11", "18") else "a"


def and_list(items: list[str]) -> str:
    """"a", "a and b", "a, b and c"."""
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1] if items else ""


def method_label(key: str) -> str:
    return {"full_ft": FULL_FT_LABEL, "zero_shot_chat": CHAT_LABEL}.get(key) or LABELS[key]


def number(value: float, digits: int = 3) -> str:
    return f"{value:.{digits}f}"


def plus_minus(values: list[float], digits: int = 3) -> str:
    mean, sd = mean_sd(values)
    return f"{mean:.{digits}f}" + (f" ± {sd:.{digits}f}" if sd is not None else "")


def p_value(value: float) -> str:
    return "< 0.001" if value < 0.001 else f"{value:.3f}"


def percent_of_weights(fraction: float) -> str:
    """A share of the model's weights in percent, two significant figures."""
    return f"{float(f'{fraction * 100:.2g}'):g}%"


def percent(share: float | None) -> str:
    return "n/a" if share is None else f"{share:.0%}"


def times(share: float | None, fraction: float) -> str:
    """A ratio to two significant figures: 8,005 -> 8,000×, 95.3 -> 95×, 5.27 -> 5.3×."""
    if share is None:
        return "n/a"
    ratio = float(f"{share / fraction:.2g}")
    return f"{ratio:,.0f}×" if ratio >= 10 else f"{ratio:#.2g}×"


def trim(text: str, words: int = 60) -> str:
    """At most ``words`` words, cut at the end of a sentence when one is near, marked when cut."""
    parts = text.split()
    if len(parts) <= words:
        return " ".join(parts) or "(empty)"
    cut = " ".join(parts[:words])
    end = max(cut.rfind(". "), cut.rfind("! "), cut.rfind("? "))
    return (cut[: end + 1] if end > len(cut) // 2 else cut) + " [...]"


def device_name(row: dict) -> str:
    return row.get("device", "an unrecorded machine")


def _fit(h) -> dict:
    """Seed 0's fit: the last training loss, the best validation loss, the gap between them, and how far validation
    loss rose after its best epoch."""
    last_train = float(h.train_loss.dropna().iloc[-1])
    best = float(h.eval_loss.min())
    return {"train": last_train, "best": best, "gap": best - last_train, "rise": float(h.eval_loss.iloc[-1]) - best,
            "epochs": int(h.epoch.max())}


def fit_sentence(histories: dict) -> str:
    """How far each method fits its training documents beyond what carries over to validation (seed 0's history):
    the gap between its last training loss and its best validation loss, and any rise of validation loss after its
    best epoch, decided from the numbers."""
    if not histories:
        return ""
    fits = {m: _fit(h) for m, h in histories.items()}
    order = sorted(fits, key=lambda m: -fits[m]["gap"])
    text = ("Every method ends with a lower loss on its 100 training documents than on the validation ones. The gap "
            "between the last training loss (the mean over the last epoch's updates) and the best validation loss, "
            "seed 0: " + ", ".join(f"{method_label(m)} {fits[m]['gap']:.2f} ({fits[m]['train']:.2f} against "
                                   f"{fits[m]['best']:.3f})" for m in order) + ".")
    rose = [m for m in order if fits[m]["rise"] > 0.005]
    if rose:
        text += (" Validation loss rose after its best epoch for " + ", ".join(
            f"{method_label(m)} (+{fits[m]['rise']:.3f} by epoch {fits[m]['epochs']})" for m in rose)
                 + "; early stopping keeps the best epoch's weights, so the scores are from before the rise.")
    return text


def regularisation_words(histories: dict) -> str:
    """Whether LoRA's low-rank constraint acted as a regulariser, read against full fine-tuning's run of the same
    comparison (seed 0 of each): the train/validation gap and the rise after the best epoch. One sentence."""
    if "lora" not in histories:
        return ""
    lora = _fit(histories["lora"])
    lora_words = (f"LoRA ended with a training loss of {lora['train']:.3f} against a best validation loss of "
                  f"{lora['best']:.3f}")
    if "full_ft" not in histories:
        return f"{lora_words}; without a full fine-tuning run to compare, this cannot say whether it regularised."
    full = _fit(histories["full_ft"])
    full_words = (f"full fine-tuning ({full['epochs']} epochs against LoRA's {lora['epochs']}) ended at "
                  f"{full['train']:.3f} against {full['best']:.3f}, a gap of {full['gap']:.2f}, and its validation loss "
                  f"then rose by {full['rise']:.3f} (LoRA's by {lora['rise']:.3f})")
    if lora["gap"] < full["gap"] and lora["rise"] <= full["rise"]:
        return (f"Against full fine-tuning it did: {lora_words}, a gap of {lora['gap']:.2f}; {full_words}. On a hundred "
                "training documents the full-rank update fits far more of the training set, in ways that do not carry "
                "over to validation (seed 0 of each, so a sign rather than a measurement).")
    return f"Against full fine-tuning it did not visibly do so: {lora_words}, a gap of {lora['gap']:.2f}; {full_words}."


# where each trained method changes the model's computation
EVERY_BLOCK = ("prompt_tuning", "lora", "full_ft")  # the prompt reaches every block through attention
TOP_ONLY = ("last_layer", "last_blocks")


def placement_sentence(groups: dict[str, list[dict]]) -> str:
    """Whether where a method acts orders the methods better than how many parameters it trains: stated only when
    every method that changes every block's computation is ahead of every method confined to the top, by mean test
    ROUGE-1; marked as a hypothesis."""
    r1 = {m: sum(r["test_rouge1"] for r in g) / len(g) for m, g in groups.items()}
    every = [m for m in EVERY_BLOCK if m in groups]
    top = [m for m in TOP_ONLY if m in groups]
    if not every or not top or min(r1[m] for m in every) <= max(r1[m] for m in top):
        return ""
    params = {m: groups[m][0]["trainable_params"] for m in every + top}
    bigger_top = [m for m in top if any(params[m] > params[e] for e in every)]
    text = ("Where a method acts orders the methods better than how much it trains. The methods that change the "
            "computation of every block (" + and_list(f"{method_label(m)} {r1[m]:.3f}" for m in every)
            + ", mean test ROUGE-1; a soft prompt reaches every block through attention) are all ahead of those "
              "confined to the top of the model (" + and_list(f"{method_label(m)} {r1[m]:.3f}" for m in top) + ")")
    if bigger_top:
        smaller = [e for e in every if all(params[e] < params[m] for m in bigger_top)]
        best = max(smaller, key=r1.get)
        text += (", although " + and_list(f"{method_label(m)} trains {params[m]:,} parameters" for m in bigger_top)
                 + f", more than {method_label(best)}'s {params[best]:,}")
    return text + (". A hypothesis these runs agree with, not a test of it: frozen lower blocks compute the features "
                   "of the pretrained task, and a change at the top can only re-read them.")


def discussion(stats: dict[str, dict], histories: dict, groups: dict[str, list[dict]],
               noise: dict[str, float | None]) -> list[str]:
    """Paragraphs that explain the comparison from its runs (seed 0's summaries and history of each method): what
    the summaries look like against the references, what the methods took up, how far each fits its training set,
    and what the cost comes from."""
    trained = [m for m in stats if m not in ("zero_shot", "zero_shot_chat")]
    if not trained:
        return [{"title": "", "text": "No trained method has results yet."}]
    out = []
    why = placement_sentence(groups)
    if why:
        out.append({"title": "Why they rank as they do.", "text": why})
    ref = next(iter(stats.values()))
    parts = [f"{method_label(m)} {st['precision']:.2f} / {st['recall']:.2f} / {st['words']:.0f}"
             for m, st in stats.items()]
    text = (f"ROUGE-1 F1 is the harmonic mean of precision (the share of a summary's "
            f"words found in the reference) and recall (the share of the reference's words found in the summary). "
            f"Precision / recall / mean length in words of seed 0's test summaries, against references of "
            f"{ref['ref_words']:.0f} words: " + "; ".join(parts) + ". ")
    terse = [m for m in trained if stats[m]["precision"] - stats[m]["recall"] > 0.1]
    if terse:
        text += ("Short summaries lose on recall: " + " and ".join(
            f"{method_label(m)} writes {stats[m]['words']:.0f} words and recalls {stats[m]['recall']:.2f} of the "
            f"reference at a precision of {stats[m]['precision']:.2f}" for m in terse) + ". ")
    long = [m for m in trained if stats[m]["hit_cap"] >= stats[m]["n"] // 4 and stats[m]["capped_r1"] is not None
            and stats[m]["ended_r1"] is not None]
    if long:
        text += ("Blocking repeated trigrams stops verbatim loops, not loops in other words: a summary that runs to "
                 "the token cap tends to restate its first sentences (as in the example below). " + capital("; ".join(
                     f"{method_label(m)} runs to the cap {stats[m]['hit_cap']}/{stats[m]['n']} times, and its capped "
                     f"summaries score {stats[m]['capped_r1']:.3f} ROUGE-1 against {stats[m]['ended_r1']:.3f} for the "
                     "rest" for m in long)) + ".")
    out.append({"title": "What the scores are made of.", "text": text})
    learned = [m for m in trained if stats[m]["they"] >= stats[m]["n"] // 2]
    missed = [m for m in trained if m not in learned]
    text = (f"The references follow a template: {ref['ref_they']} of {ref['n']} state the "
            f"approach in a sentence that starts \"They ...\" and {ref['ref_existing']} open with \"Existing ...\". ")
    if learned:
        text += (capital(", ".join(method_label(m) for m in learned)) + " took it up (\"They\" in " + ", ".join(
            f"{stats[m]['they']}" for m in learned) + f" of {ref['n']} summaries; \"Existing\" as the first word in "
            + ", ".join(f"{stats[m]['existing']}" for m in learned) + "). ")
    if missed:
        text += (capital(" and ".join(method_label(m) for m in missed)) + " did not (\"They\" in " + ", ".join(
            f"{stats[m]['they']}" for m in missed) + f"; the untrained model: {stats.get('zero_shot', ref)['they']}): "
            "training moved their loss but not the register of their text, which stays the model's own.")
    out.append({"title": "What the methods took up.", "text": text})
    fit = fit_sentence(histories)
    if fit:
        out.append({"title": "How far each method fits.", "text": fit + " The curves are drawn below; theory "
                    "answer 4 reads it against LoRA's low-rank constraint."})
    cost = cost_sentence(groups)
    if cost:
        out.append({"title": "What the cost comes from.", "text": cost})
    return out


def rank_sentence(rank: list[dict], seed_sd: float | None, alpha: float) -> tuple[str, str]:
    """What the rank sweep shows, against LoRA's noise yardstick (``seed_sd``: ``inputs.run_spread``); and the smallest
    rank inside it."""
    by_r = sorted(rank, key=lambda r: int(r["run"][1:]))
    best = min(r["val_loss"] for r in by_r)
    noise = seed_sd if seed_sd else NO_YARDSTICK
    enough = next(r for r in by_r if r["val_loss"] - best <= noise)
    worse = [r for r in by_r if r["val_loss"] - best > noise]
    within = [r["run"][1:] for r in by_r if r["val_loss"] - best <= noise]
    text = ("Validation loss by rank: " + ", ".join(f"r = {r['run'][1:]} {number(r['val_loss'])}" for r in by_r) + ". ")
    basis = (f"LoRA's noise yardstick ({noise:.4f}, section 4)" if seed_sd else
             f"{NO_YARDSTICK} (no seeds sweep to measure the noise)")
    if worse:
        text += ("Against " + basis + ", " + ", ".join(
            f"r = {r['run'][1:]} is {r['val_loss'] - best:.3f} worse than the best ({(r['val_loss'] - best) / noise:.1f}×)"
            for r in worse) + f"; r = {', '.join(within)} lie within it. ")
    else:
        text += f"Every rank lies within {basis} of the best. "
    first, last = int(by_r[0]["run"][1:]), int(by_r[-1]["run"][1:])
    text += (f"The scale α/r falls {last // first}-fold from r = {first} to r = {last} (α stays {alpha:g}): "
             "this sweep changes the rank and the update's scale together (one seed each).")
    return text, enough["run"][1:]


def geometry_sentences(geometry: dict) -> list[str]:
    """What the subspace similarity and amplification figures say, decided from the numbers (report and answer 4)."""
    small, large = geometry["small"][1:], geometry["large"][1:]
    entries = sorted(geometry["matrices"].items())
    k = int(small)

    def each(value, digits=2):
        return " and ".join(f"{value(e):.{digits}f}" for _, e in entries)

    kinds = " and ".join(kind for kind, _ in entries)
    d_in = entries[0][1]["d_in"]
    top = min(e["phi_1_1"] * e["d_in"] for _, e in entries)  # φ(1, 1) in units of chance
    spread = max(e["phi_8_64"] / e["phi_8_64_random"] for _, e in entries)  # φ(k, large) in units of chance
    agree = "far above chance" if top >= 10 else "above chance" if top >= 2 else "no better than chance"
    first = (f"The r = {small} and r = {large} adapters were trained separately, each from its own random A. For "
             f"{kinds}, their top input directions agree {agree}: φ(1, 1) = {each(lambda e: e['phi_1_1'])} (two "
             f"random directions: {1 / d_in:.4f}). With more directions the agreement falls: φ({k}, {k}) = "
             f"{each(lambda e: e['phi_mean'][k - 1][k - 1])} (random: {k / d_in:.3f}), and the whole r = {small} "
             f"update lies in the r = {large} span only to φ({small}, {large}) = {each(lambda e: e['phi_8_64'])}, "
             f"against {entries[0][1]['phi_8_64_random']:.2f} for a random {small}-dimensional subspace.")
    if top >= 10 and spread < 3:
        first += (" The two ranks share much of their top direction, while the rest of each update has far less in common "
                  "with the other, as Hu et al. found on GPT-3 (sec. 7.2).")
    amp = [e[f"amplification_{geometry['small']}"] for _, e in entries]
    ratio = [a["along_delta"] / a["along_random"] for a in amp]
    versus = ("well above" if min(ratio) >= 2 else "about what" if max(ratio) < 2 and min(ratio) > 0.5 else "mixed against")
    def both(key, digits=2):
        return " and ".join(f"{a[key]:.{digits}f}" for a in amp)

    below = "far below" if all(a["along_delta"] < 0.25 * a["along_weight"] for a in amp) else "below"
    share = max(a["delta_norm"] / a["weight_norm"] for a in amp)
    second = (f"Along the top-{small} directions of ΔW, W's component (‖UᵀWV‖ {both('along_delta')} for {kinds}) is "
              f"{versus} random directions give ({both('along_random')}), {below} W's own top {small} directions "
              f"({both('along_weight', 1)}), and ΔW is at most {share:.1%} of ‖W‖ in norm.")
    if min(ratio) >= 2:
        second += (" As in Hu et al.'s GPT-3, ΔW's directions carry more of W than random directions do (their "
                   "amplification factor ‖ΔW‖ / ‖UᵀWV‖ was about 21.5 for r = 4; ours is "
                   f"{both('factor')}).")
    else:
        second += (" Unlike Hu et al.'s GPT-3, this update did not single out directions W already holds (one seed, "
                   "52 updates, a base quantised to 4 bits, and no comparison with the adapter at its initialisation, "
                   "so it says nothing of what the update adds instead).")
    return [first, second]


def ranking_sentence(groups: dict[str, list[dict]], pairs: list[dict]) -> str:
    """The methods' order by mean test ROUGE-1, and which neighbours the paired seed-aware intervals separate."""
    seeds = sorted({r["seed"] for m, rows in groups.items() if m != "zero_shot" for r in rows})
    means = {m: sum(r["test_rouge1"] for r in rows) / len(rows) for m, rows in groups.items()}
    order = sorted(means, key=means.get, reverse=True)
    text = (f"By mean test ROUGE-1 over training seeds {', '.join(map(str, seeds))}: "
            + ", ".join(f"{method_label(m)} {means[m]:.3f}" for m in order) + ". ")
    by_pair = {(r["a"], r["b"]): r for r in pairs}
    steps = [by_pair[(a, b)] for a, b in zip(order, order[1:]) if (a, b) in by_pair]
    text += ("Each method against the next one down, paired over the same test documents with training seeds "
             "resampled too (95% interval of the ROUGE-1 gap): " + "; ".join(
                 f"{method_label(r['a'])} {'ahead of' if r['verdict'] == 'ahead' else 'tied with'} {method_label(r['b'])} "
                 f"({r['mean']:+.3f} [{r['low']:+.3f}, {r['high']:+.3f}])" for r in steps) + ". ")
    far_ties = [r for r in pairs if r["verdict"] == "tied" and r not in steps]
    if far_ties:
        text += "Also tied: " + "; ".join(f"{method_label(r['a'])} and {method_label(r['b'])}" for r in far_ties) + ". "
    lost = [r for r in pairs if r["verdict"] == "ahead" and r["holm_verdict"] == "tied"]
    text += (f"Every pair is in the pairwise table; after Holm's correction for its {len(pairs)} comparisons "
             + ("every lead stands." if not lost else
                "these leads become ties: " + "; ".join(f"{method_label(r['a'])} vs {method_label(r['b'])}" for r in lost) + "."))
    return text


LOSS_VS_ROUGE = ("A hypothesis, not tested here: the validation loss scores the reference's own tokens under teacher "
                 "forcing, ROUGE scores what greedy decoding writes, so a prompt or a method can make the reference's "
                 "wording less likely token by token while steering what is generated toward its content. Every "
                 "choice in this report is made on validation loss; where the two disagree, ROUGE is the task's "
                 "measure and the loss only the selection rule.")


def loss_rouge_sentence(groups: dict[str, list[dict]], pairs: list[dict], noise: dict[str, float | None]) -> str:
    """Where validation loss and test ROUGE-1 order two methods the other way round, each gap beyond its noise: the
    ROUGE-1 lead surviving Holm, the loss gap beyond the larger of the two methods' yardsticks (zero-shot's loss,
    from no training, has none)."""
    loss = {m: sum(r["val_loss"] for r in rows) / len(rows) for m, rows in groups.items()}
    found = []
    for r in pairs:  # r["a"] has the higher mean ROUGE-1
        a, b = r["a"], r["b"]
        tolerance = max(noise.get(a) or 0.0, noise.get(b) or 0.0)
        if r["holm_verdict"] != "tied" and loss[a] - loss[b] > tolerance:
            found.append(f"{method_label(a)} has the higher validation loss ({loss[a]:.3f} against {loss[b]:.3f} for "
                         f"{method_label(b)}) and yet the higher test ROUGE-1 ({r['mean']:+.3f} [{r['low']:+.3f}, "
                         f"{r['high']:+.3f}])")
    if not found:
        return ("Validation loss and test ROUGE-1 order every pair of methods the same way wherever both gaps exceed "
                "their noise.")
    return (f"Loss and ROUGE disagree on {len(found)} pair{'s' * (len(found) != 1)}: " + "; ".join(found) + ". "
            + LOSS_VS_ROUGE)


def seed_level_sentence(pairs: list[dict], n_seeds: int) -> str:
    """What ``n_seeds`` seeds a method can and cannot resolve: the seed-level permutation test beside the paired
    bootstrap (``evaluation.seed_permutation_p``)."""
    tested = [r for r in pairs if r.get("seed_p") is not None]
    if not tested:
        return ""
    floor = min(r["seed_p"] for r in tested)
    at_floor = sum(r["seed_p"] <= floor + 1e-12 for r in tested)
    ahead = sum(r["holm_verdict"] != "tied" for r in tested)
    return (f"Taken alone, {n_seeds} seeds a side cannot settle a gap: a test whose units are the seeds (every way to "
            f"split the pooled per-seed means) gives at best p = {floor:.2f}, reached by {at_floor} of the "
            f"{len(tested)} pairs of trained methods (every seed of one above every seed of the other). So the "
            f'{ahead} verdicts of "ahead" among those pairs rest on pairing the same test documents, with the seeds '
            f"resampled as a second source of noise: they hold for these documents and these seeds, and a new draw of "
            f"either could move them.")


def chat_sentence(plain: dict, chat: list[dict] | None, pairs: list[dict]) -> str | None:
    """The untrained model with its chat template against the plain prompt every method shares."""
    if not chat:
        return None
    c = chat[0]
    pair = next((r for r in pairs if {r["a"], r["b"]} == {"zero_shot", "zero_shot_chat"}), None)
    text = (f"Prompted through its chat template (an instruction, \"Summarize the following text:\", then the document, "
            f"as the user's turn), the untrained model scores test ROUGE-1 {c['test_rouge1']:.3f} and validation loss "
            f"{c['val_loss']:.3f}, against {plain['test_rouge1']:.3f} and {plain['val_loss']:.3f} with the plain "
            "prompt")
    if pair is not None:
        sign = 1 if pair["a"] == "zero_shot_chat" else -1
        low, high = sorted((sign * pair["low"], sign * pair["high"]))
        word = verdict(low, high)
        text += (f" (chat - plain {sign * pair['mean']:+.3f} [{low:+.3f}, {high:+.3f}]: "
                 + {"ahead": "the chat template is ahead", "behind": "the plain prompt is ahead",
                    "tied": "tied"}[word] + ")")
    stronger = max(c["test_rouge1"], plain["test_rouge1"])
    text += (f". Gains over zero-shot elsewhere in this report are over the plain prompt; over the stronger of the two "
             f"baselines (ROUGE-1 {stronger:.3f}) they are {'smaller' if stronger > plain['test_rouge1'] else 'the same'}.")
    below = [r["b"] for r in pairs if r["a"] == "zero_shot_chat" and r["b"] != "zero_shot" and r["verdict"] == "ahead"]
    if below:
        text += (" " + capital(" and ".join(method_label(m) for m in below)) + (" score" if len(below) > 1 else " scores")
                 + " below the untrained model prompted through its chat template (paired, seeds resampled).")
    return text


def lora_vs_full(loss_share: float, r1_share: float, lora: list[dict], full: list[dict], pair: dict | None) -> dict:
    """What theory answer 4 says of LoRA against full fine-tuning: ROUGE-1 by the paired seed-aware interval, the
    loss by whether it is lower in every seed."""
    params, total = lora[0]["trainable_params"], full[0]["trainable_params"]
    full_by_seed = {r["seed"]: r["test_loss"] for r in full}
    shared = [r for r in lora if r["seed"] in full_by_seed]
    if shared and all(full_by_seed[r["seed"]] < r["test_loss"] for r in shared):
        loss = "full fine-tuning reaches the lower test loss in every seed"
    elif shared and all(full_by_seed[r["seed"]] > r["test_loss"] for r in shared):
        loss = "LoRA reaches the lower test loss in every seed"
    else:
        loss = "neither reaches the lower test loss in every seed"
    if pair is None:
        rouge = "ROUGE-1 was not compared"
    else:
        lora_minus_ft = pair["mean"] if pair["a"] == "lora" else -pair["mean"]
        low, high = (pair["low"], pair["high"]) if pair["a"] == "lora" else (-pair["high"], -pair["low"])
        word = {"ahead": "LoRA is ahead on ROUGE-1", "behind": "full fine-tuning is ahead on ROUGE-1",
                "tied": "the two are tied on ROUGE-1"}[verdict(low, high)]
        rouge = f"{word} (LoRA - full fine-tuning {lora_minus_ft:+.3f} [{low:+.3f}, {high:+.3f}])"
    seeds = str(len(lora)) if len(lora) == len(full) else f"{len(lora)} and {len(full)}"
    return {"loss": percent(loss_share), "rouge1": percent(r1_share), "params": f"{params:,}",
            "percent": percent_of_weights(params / total).rstrip("%"), "ft_params": f"{total:,}", "seeds": seeds,
            "verdict": f"{rouge}, and {loss}"}


def spread_sentence(groups: dict[str, list[dict]]) -> str:
    """Training-seed spread against the test set's own sampling error, per method (both as standard deviations)."""
    larger, smaller = [], []
    for m, g in groups.items():
        if len(g) < 2:
            continue
        sd = mean_sd([r["test_rouge1"] for r in g])[1]
        error = sum((r["test_rouge1_high"] - r["test_rouge1_low"]) / 2 / 1.96 for r in g) / len(g)
        (larger if sd > error else smaller).append(f"{method_label(m)} ({sd:.3f} vs {error:.3f})")
    text = ("Against the standard error of test ROUGE-1 over the 100 test documents (the bootstrap half-width / 1.96), "
            "the standard deviation across seeds is ")
    parts = []
    if smaller:
        parts.append("smaller for " + ", ".join(smaller))
    if larger:
        parts.append("larger for " + ", ".join(larger))
    text += " and ".join(parts) + " (sd across seeds vs standard error; three seeds give a rough sd)."
    if larger:
        text += (" Where the seed spread is the larger, one training run cannot rank methods whose means differ by "
                 "about that much.")
    return text


def devices_sentence(all_rows: list[dict]) -> str:
    """Which machines ran the sweeps' runs, with counts."""
    counts: dict[str, list[str]] = {}
    for r in all_rows:
        counts.setdefault(device_name(r), []).append(r["run"])
    parts = sorted(counts.items(), key=lambda item: -len(item[1]))
    text = " and ".join(f"{d} ({len(runs)} run{'s' * (len(runs) != 1)}"
                        + (f": {', '.join(runs)}" if len(runs) <= 3 else "") + ")" for d, runs in parts)
    machines: dict[str, set[str]] = {}  # per method, the machines its seeds ran on
    for r in all_rows:
        if "-s" in r["run"]:
            machines.setdefault(r["run"].split("-s")[0], set()).add(device_name(r))
    mixed = sorted(m for m, where in machines.items() if len(where) > 1)
    tail = (f" A sweep continues on whichever machine runs it next, so for {and_list(method_label(m) for m in mixed)} the "
            f"spread across seeds also includes the machine." if mixed else "")
    return f"The sweeps' runs (these grids, the seeds and the size sweeps of section 6) ran on {text}.{tail}"


NO_YARDSTICK = 0.02  # where no seeds measured a method's noise: the tolerance the earlier sweeps used


def yardstick_sentence(noise: dict[str, float | None]) -> str:
    """The one noise yardstick, stated once: per method, how far runs of identical settings land apart."""
    known = {m: v for m, v in noise.items() if v is not None}
    if not known:
        return ""
    return ("One noise yardstick serves every \"within noise\" in this report: for each method, the largest gap in "
            "validation loss between two of its runs with identical settings (other training seeds, or only another "
            "order of floating-point sums): " + ", ".join(f"{method_label(m)} {v:.4f}" for m, v in known.items())
            + ". A difference inside its method's yardstick is not read as a difference.")


def prompt_sentences(prompt: list[dict], init: list[dict], paired: dict | None = None,
                     drift: float | None = None) -> list[str]:
    """What the prompt-length and initialisation runs say next to Lester et al. (2021), decided from the numbers.

    ``paired``: the longest prompt's validation ROUGE-1 minus 20 tokens', paired over documents
    (``paired_seed_bootstrap``); ``drift``: prompt tuning's noise yardstick (``inputs.run_spread``), the spread of
    validation loss between its runs of identical settings.
    """
    out, tolerance = [], drift or NO_YARDSTICK
    if prompt:
        by_n = {int(r["run"][1:]): r for r in prompt}
        best = min(by_n.values(), key=lambda r: r["val_loss"])
        enough = smallest_within(prompt, tolerance)
        first = min(by_n)
        text = (f"Validation loss falls from {number(by_n[first]['val_loss'])} with {first} soft "
                f"token{'s' * (first != 1)} to {number(best['val_loss'])} at n = {best['run'][1:]}; the shortest prompt "
                f"within {tolerance:.3f} of the lowest{' (the yardstick)' if drift else ''} is n = {enough['run'][1:]}.")
        if 20 in by_n and max(by_n) > 20:
            longest = max(by_n)
            gain = by_n[20]["val_loss"] - min(r["val_loss"] for n, r in by_n.items() if n > 20)
            text += f" Beyond 20 tokens the loss still drops by {gain:.3f}"
            if len([n for n in by_n if n > 20]) > 1:
                before = max(n for n in by_n if n < longest)
                step = by_n[before]["val_loss"] - by_n[longest]["val_loss"]
                text += (f" ({step:.3f} of it from n = {before} to {longest}"
                         + (f", inside the yardstick ({drift:.3f})" if drift and abs(step) < drift else "") + ")")
            text += "."
            if paired is not None:
                word = verdict(paired["low"], paired["high"])
                text += (f" Validation ROUGE-1 at n = {longest} minus n = 20, paired over the same validation documents: "
                         f"{paired['mean']:+.3f} [{paired['low']:+.3f}, {paired['high']:+.3f}], "
                         + ("a tie: on 50 documents ROUGE does not resolve the longer prompt's gain in loss, in line "
                            "with the marginal gains Lester et al. found past about 20 tokens (one seed each)."
                            if word == "tied" else
                            f"the longer prompt {'ahead' if word == 'ahead' else 'behind'} (one seed each)."))
        out.append(text)
    if init:
        ordered = sorted(init, key=lambda r: r["val_loss"])
        spread = round(ordered[-1]["val_loss"], 3) - round(ordered[0]["val_loss"], 3)
        text = ("With 20 tokens, the initialisations give validation losses " + ", ".join(
            f"{r['init']} {number(r['val_loss'])}" for r in ordered) + f" (a spread of {spread:.3f}; validation ROUGE-1 "
            + ", ".join(f"{number(r['val_rouge1'])}" for r in ordered) + ").")
        text += (" In validation loss the initialisation still matters at 135M parameters, as Lester et al. found for "
                 "their smaller models: the starts from real embeddings end ahead of random noise (one seed each; "
                 "ROUGE-1 does not separate them)."
                 if spread > tolerance and ordered[-1]["init"] == "uniform" else
                 " At this size the initialisation changes little, which Lester et al. saw only for large models."
                 if spread <= tolerance else "")
        out.append(text)
    return out


def conclusion(comp: dict) -> str:
    """The ranking in one line (methods whose neighbour step is tied share a place), read from the paired, seed-aware
    verdicts after Holm's correction, and which rows are not tuned yet."""
    pairs = comp.get("pairs") or []
    if not pairs:
        return "With one method, there is no comparison to conclude."
    groups = comp["groups"]
    means = {m: sum(r["test_rouge1"] for r in g) / len(g) for m, g in groups.items()}
    order = sorted(means, key=means.get, reverse=True)
    verdict_of = {frozenset((r["a"], r["b"])): r["holm_verdict"] for r in pairs}
    places = [[order[0]]]
    for b in order[1:]:  # a place holds methods tied with every other method in it
        if all(verdict_of.get(frozenset((a, b))) == "tied" for a in places[-1]):
            places[-1].append(b)
        else:
            places.append([b])
    words = [and_list(method_label(m) for m in place) + (" (tied)" if len(place) > 1 else "") for place in places]
    text = ("In test ROUGE-1, after Holm's correction and with training seeds resampled, the methods come in this "
            "order: " + "; then ".join(words) + ". A method in one place can still tie with one in the next: every "
            "pair is in the pairwise figure.")
    if comp.get("untuned"):
        text += (" " + capital(and_list(comp["untuned"])) + " († in the results table) ran at hand-set rates: "
                 "their learning-rate grids had not finished when this report was made.")
    if comp["source"] == "notebooks":
        text += (" Each method ran once with one training seed: the intervals describe the spread over test "
                 "documents, not over training runs.")
    return text


def verdicts(comp: dict) -> dict[str, str]:
    """The clauses of the theory answers that depend on which number is larger, decided from the comparison's runs
    (the seed-aware paired interval where two methods are ordered)."""
    from .comparison import history

    groups, pairs, out = comp["groups"], comp.get("pairs") or [], {}
    if "zero_shot" in groups and "prompt_tuning" in groups:
        h = history(groups["prompt_tuning"][0])
        if h is not None and len(h):
            change = float(h.eval_loss.iloc[0]) - groups["zero_shot"][0]["val_loss"]
            out["discrete_prompt"] = (
                f"the instruction as a discrete prompt changes it by {change:+.3f} nats, too little to call a help or "
                "a harm from one run" if abs(change) < 0.02 else
                f"the instruction as a discrete prompt lowers it by {-change:.3f} nats" if change < 0 else
                f"the instruction as a discrete prompt raises it by {change:.3f} nats")

    def between(a, b):
        pair = next((r for r in pairs if {r["a"], r["b"]} == {a, b}), None)
        if pair is None:
            return None
        sign = 1 if pair["a"] == a else -1
        low, high = sorted((sign * pair["low"], sign * pair["high"]))
        return sign * pair["mean"], low, high, verdict(low, high)

    found = between("lora", "prompt_tuning")
    if found:
        gap, low, high, word = found
        out["prompt_vs_lora"] = ({"ahead": "it does", "behind": "it does not: prompt tuning is ahead",
                                  "tied": "the two are tied"}[word]
                                 + f" (LoRA - prompt tuning = {gap:+.3f} [{low:+.3f}, {high:+.3f}] test ROUGE-1, "
                                   "paired over documents with training seeds resampled)")
    found = between("prompt_tuning", "zero_shot_chat")
    if found:
        gap, low, high, word = found
        out["soft_vs_chat"] = ({"ahead": "the trained soft prompt is ahead", "behind": "the trained soft prompt is "
                                "behind", "tied": "the trained soft prompt ties"}[word]
                               + f" (soft - chat {gap:+.3f} [{low:+.3f}, {high:+.3f}])")
    found = between("zero_shot_chat", "zero_shot")
    if found:
        gap, low, high, word = found
        out["chat_vs_plain"] = f"{gap:+.3f} [{low:+.3f}, {high:+.3f}]"
    if "prompt_tuning" in groups and "lora" in groups and groups["lora"][0].get("lr"):
        pt, lora = groups["prompt_tuning"][0]["lr"], groups["lora"][0]["lr"]
        tuned = comp.get("tuned") or {}
        out["rates"] = (f"prompt tuning's {'chosen' if tuned.get('prompt_tuning') else 'hand-set'} learning rate, "
                        f"{pt:g}, is {pt / lora:,.0f} times LoRA's {'chosen' if tuned.get('lora') else 'hand-set'} "
                        f"{lora:g}")
    spreads = {m: mean_sd([r["test_rouge1"] for r in g])[1] for m, g in groups.items() if len(g) > 1}
    if spreads.get("prompt_tuning") is not None and len(spreads) > 1:
        others = max(v for m, v in spreads.items() if m != "prompt_tuning")
        out["pt_spread"] = (f"its test ROUGE-1 varies across training seeds by a standard deviation of "
                            f"{spreads['prompt_tuning']:.3f}, against at most {others:.3f} for the other methods"
                            if spreads["prompt_tuning"] > others else
                            f"its test ROUGE-1 varies across training seeds by a standard deviation of "
                            f"{spreads['prompt_tuning']:.3f}, within the other methods' range (up to {others:.3f})")
    if "lora" in groups and "last_blocks" in groups:
        loss = {m: sum(r["val_loss"] for r in groups[m]) / len(groups[m]) for m in ("lora", "last_blocks")}
        out["placement"] = ("the low-rank update spread over every block reached the lower validation loss"
                            if loss["lora"] < loss["last_blocks"] else
                            "the full-rank update of the last blocks reached the lower validation loss")
    return out


def cost_sentence(groups: dict[str, list[dict]]) -> str:
    """What training cost each method (medians over its seeds), and what the cost comes from, with the figures that
    show it; comparisons only between runs on one kind of machine."""

    def med(rows, key):
        values = sorted(r[key] for r in rows if r.get(key))
        return values[len(values) // 2] if values else None

    trained = {m: g for m, g in groups.items() if m not in ("zero_shot", "zero_shot_chat")}
    if not trained:
        return ""
    common = common_machine(groups)
    measured = {m: cost_runs(g, common) for m, g in trained.items()}

    def figures(m, g):
        time, speed, peak = med(g, "train_time_s"), med(g, "tokens_per_s"), med(g, "peak_memory_mib")
        return (f"{method_label(m)} {time or 0:,.0f} s" + (f" at {speed:,.0f} tokens/s" if speed else "")
                + (f", {peak:,.0f} MiB" if peak else ""))

    order = sorted(measured.items(), key=lambda item: med(item[1], "train_time_s") or 0)
    here = [figures(m, g) for m, g in order if not timed_elsewhere(g, common)]
    away = [(m, g) for m, g in order if timed_elsewhere(g, common)]
    several = len({r.get("machine") for g in groups.values() for r in g}) > 1
    text = ("Training time and peak memory, medians over seeds" + (f" on one machine, {common}: " if several else ": ")
            + "; ".join(here)
            + "".join(f"; and on {g[0].get('machine')}, the only machine it ran on, {figures(m, g)}" for m, g in away)
            + ". Trained parameters do not predict either. The last-layer variants run the frozen part of the model "
              "once and train on its cached output; every other method runs the whole model forward and backward at "
              "every update.")

    def same_machine(a, b, key):
        for ra in trained.get(a, []):
            for rb in trained.get(b, []):
                if ra.get("machine") == rb.get("machine") and ra.get(key) and rb.get(key):
                    return ra, rb
        return None

    speed = same_machine("prompt_tuning", "lora", "tokens_per_s")
    if speed:
        pt, lora = speed
        text += (f" Prompt tuning still saves arithmetic: with every weight frozen, the backward pass skips the "
                 "weight-gradient products, about a third of a training step's multiplications (the backward pass "
                 "costs about twice the forward, half of it for weight gradients); on one machine "
                 f"({pt['machine']}) it processed {pt['tokens_per_s']:,.0f} tokens/s against LoRA's "
                 f"{lora['tokens_per_s']:,.0f} ({pt['tokens_per_s'] / lora['tokens_per_s']:.2f}×).")
    memory = same_machine("lora", "full_ft", "peak_memory_mib")
    if memory:
        lora, full = memory
        params = trained["full_ft"][0]["trainable_params"]
        state = params * 12 / 2**20  # fp32 gradient and Adam's two moments per trained weight
        text += (f" Memory: full fine-tuning keeps a gradient and two Adam moments for all {params:,} weights "
                 f"({state:,.0f} MiB in fp32), LoRA for {lora['trainable_params']:,}; yet their peaks on one machine "
                 f"({full['machine']}) are {full['peak_memory_mib']:,.0f} and {lora['peak_memory_mib']:,.0f} MiB, so "
                 "most of either peak is what both hold: the model's weights and the activations kept for the "
                 "backward pass. LoRA's memory saving on GPT-3 175B (theory answer 3) comes from that optimiser "
                 "state, which is large only for a large model.")
    return text


def abstract(comp: dict, n_test: int) -> str:
    """Three sentences: what was compared, how, and what came out on top (by the paired, seed-aware verdicts)."""
    groups, pairs = comp["groups"], comp.get("pairs") or []
    trained = [m for m in groups if m not in ("zero_shot", "zero_shot_chat")]
    if not trained or not pairs:
        return ""
    means = {m: sum(r["test_rouge1"] for r in g) / len(g) for m, g in groups.items()}
    order = sorted(trained, key=means.get, reverse=True)
    top = order[0]
    tied = [r["b"] if r["a"] == top else r["a"] for r in pairs if top in (r["a"], r["b"]) and r["holm_verdict"] == "tied"
            and (r["b"] if r["a"] == top else r["a"]) in trained]
    seeds = max(len(groups[m]) for m in trained)
    how = (f"each with {seeds} training seeds" if seeds > 1 else "one training run each")
    text = (f"We adapt SmolLM2-135M to summarise ACL abstracts ({n_test} test documents) by prompt tuning, last-layer "
            f"fine-tuning and LoRA, with full fine-tuning as a reference, {how}"
            + (", each learning rate chosen by the same search on validation loss" if any(comp["tuned"].values())
               and not comp.get("untuned") else ", learning rates chosen by the same search on validation loss except "
               "for " + and_list(comp.get("untuned") or []) if any(comp["tuned"].values()) else "") + ". ")
    sd = mean_sd([r["test_rouge1"] for r in groups[top]])[1]
    text += (f"{capital(method_label(top))} reaches the highest mean test ROUGE-1, {means[top]:.3f}"
             + (f" ± {sd:.3f}" if sd is not None else "")
             + (f", tied with {' and '.join(method_label(m) for m in tied)} after Holm's correction" if tied else
                ", ahead of every other method after Holm's correction")
             + f"; the untrained model scores {means['zero_shot']:.3f}. ")
    text += ("Trained parameters predict neither quality nor cost: "
             + ", ".join(f"{method_label(m)} trains {groups[m][0]['trainable_params']:,}" for m in order) + ".")
    return text


def prompt_tokens_words(tokens: dict, losses: dict[float, float], chosen: float | None) -> dict | None:
    """What the learned soft prompts are near in the vocabulary (``tools.sweep.prompt_tokens``), rate by rate of the
    tuning grid: how many of the 20 vectors are still nearest to the token they started from, against the validation
    loss at that rate; and what the chosen rate's vectors are near."""
    grid = {}
    for run, rows in tokens.get("runs", {}).items():
        if run.startswith("tune/prompt_tuning-lr"):
            grid[float(run.rsplit("-lr", 1)[1])] = rows
    if not grid:
        return None
    parts = []
    for lr in sorted(grid):
        rows = grid[lr]
        kept = sum(r["kept"] for r in rows)
        parts.append(f"lr {lr:g}: {kept}/{len(rows)}" + (f" (validation loss {losses[lr]:.3f})" if lr in losses else ""))
    text = ("How many of the learned vectors still have the token they started from as their nearest vocabulary "
            "token (cosine similarity), by learning rate: " + "; ".join(parts) + ".")
    if chosen is not None and chosen in grid:
        rows = grid[chosen]
        cos = sorted(r["cosine"] for r in rows)
        moved = sorted(r["moved"] for r in rows)
        examples = ", ".join(f"\"{r['init'].strip()}\" → \"{r['nearest'].strip()}\"" for r in rows[:6]
                             if r["init"] and r["nearest"].strip())
        text += (f" At the chosen rate ({chosen:g}) the vectors have a cosine of only {cos[0]:.2f} to {cos[-1]:.2f} "
                 f"with their nearest token, and a median cosine of {moved[len(moved) // 2]:.2f} with their starting "
                 f"vectors; the "
                 f"first positions read {examples}. The prompt that predicts best is the one that has left the "
                 "vocabulary furthest.")
    return {"text": text}


def change_sentence(before: dict[str, list[dict]], groups: dict[str, list[dict]], tuned: dict[str, bool]) -> str:
    """What tuning did to each tuned method's validation loss and test ROUGE-1 (means over seeds), and where the two
    moved apart: the search decides on loss alone."""
    moves = []
    for m, g in groups.items():
        if not tuned.get(m) or not before.get(m):
            continue
        mean = {k: (sum(r[k] for r in before[m]) / len(before[m]), sum(r[k] for r in g) / len(g))
                for k in ("val_loss", "test_rouge1")}
        moves.append((m, mean["val_loss"][1] - mean["val_loss"][0], mean["test_rouge1"][1] - mean["test_rouge1"][0]))
    if not moves:
        return ""
    text = ("Tuning changed validation loss and test ROUGE-1 (means over seeds) by " + "; ".join(
        f"{method_label(m)} {dl:+.3f} and {dr:+.3f}" for m, dl, dr in moves) + ".")
    above = [m for m, dl, dr in moves if dl > 0]
    if above:
        budgets = {m: (before[m][0].get("epochs_budget"), groups[m][0].get("epochs_budget")) for m in above}
        text += (" For " + and_list(method_label(m) for m in above) + " the tuned loss ends above the hand-set run's: "
                 + "; ".join(f"{method_label(m)} trained under {article(new)} {new}-epoch schedule against {old}"
                             for m, (old, new) in budgets.items() if old and new and old != new)
                 + " (the learning rate decays linearly to zero at the epoch cap, so the cap shapes the whole "
                   "schedule; the tuning protocol uses one cap for every method)." if any(
                     o and n and o != n for o, n in budgets.values()) else " For " + and_list(
                     method_label(m) for m in above) + " the tuned loss ends above the hand-set run's at the same "
                   "epoch cap; read the difference against its noise yardstick (section 4).")
    apart = [m for m, dl, dr in moves if dl < 0 and dr < 0]
    if apart:
        text += (" For " + and_list(method_label(m) for m in apart) + " the lower loss came with a lower ROUGE-1: the "
                 "search decides on loss alone, and the two measures part here as they do between methods (section "
                 "4).")
    return text


VARIANTS = {"prompt_tuning_n100": ("prompt_tuning", "the 100-token prompt", "for the 20-token prompt"),
            "lora_qv": ("lora", "LoRA on the query and value projections only", "for all seven projections")}


def variants_sentence(rows: list[dict], chosen: dict, noise: dict[str, float | None]) -> str:
    """What each variant tried at its method's chosen rate reached, against the method's own run at that rate, read
    against the method's noise yardstick."""
    parts = []
    for group, (method, name, base_name) in VARIANTS.items():
        run = next((r for r in rows if r["group"] == group), None)
        pick = chosen.get(method)
        if run is None or not pick:
            continue
        gap = run["val_loss"] - pick["val_loss"]
        yardstick = noise.get(method)
        read = ("" if yardstick is None else
                f", {'inside' if abs(gap) <= yardstick else 'beyond'} the method's noise yardstick ({yardstick:.4f})")
        parts.append(f"{name} reached a validation loss of {run['val_loss']:.4f} against {pick['val_loss']:.4f} "
                     f"{base_name} ({gap:+.4f}{read})")
    return ("At each method's chosen rate, " + "; ".join(parts) + "." if parts else "")
