"""What the report reads: every method's results, the sweeps' summaries, per-document scores of the seeds runs.

Every path is under ``root`` (``results/`` unless a test or a tool says otherwise).
"""

from __future__ import annotations

import math


from peft_helpers.config import Profile, without_added_later
from peft_helpers.data import source_rows
from peft_helpers.evaluation import paired_seed_bootstrap, rouge_per_example, rouge_summary
from peft_helpers.results import (
    ResultsError, load_results, profile_dir, read_json, read_jsonl, results_dir, sweep_dir, verified_rows,
)

SEED_ORDER = ("zero_shot", "zero_shot_chat", "prompt_tuning", "last_layer", "last_blocks", "lora", "full_ft")


def collect(profile_name: str, methods, root="results", strict: bool = False) -> dict[str, dict]:
    """Results of every method that has them; a clear message for each one that does not.

    With ``strict``, one missing or unreadable method raises ``ResultsError``
    naming every such method, its file and the notebook to run.
    """
    found, missing = {}, []
    for method in methods:
        try:
            found[method] = load_results(profile_name, method, root)
        except ResultsError as err:
            missing.append(str(err))
            continue
        folder = results_dir(profile_name, method, root)
        try:
            check_consistent(folder, found[method])
        except (TypeError, ValueError, KeyError, AttributeError) as err:  # a number that is not one, a missing field
            raise ResultsError(f"the results files in {folder} are malformed ({type(err).__name__}: {err}); restore "
                               f"them (git checkout) or run the notebook again.") from err
    if strict and missing:
        raise ResultsError("the report needs every method's results; nothing was written. " + " ".join(missing))
    for message in missing:
        print("missing:", message)
    if not found:
        raise ResultsError(f"no results at all for profile {profile_name!r}; run notebooks 01-03 first.")
    return found


def _numbers(value, where: str = ""):
    """Every number in a nested dict/list, with where it sits (``rouge.rouge1.mean``)."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _numbers(item, f"{where}.{key}" if where else str(key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _numbers(item, f"{where}[{i}]")
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        yield where, value


def check_consistent(folder, result: dict) -> None:
    """A method's files agree with each other, or ``ResultsError`` names the file that does not: every number in
    metrics.json finite, its ROUGE (means and intervals) what predictions.jsonl gives, its validation loss the best of
    history.csv (to 1e-5: training keeps a new best only when it improves by more than 1e-6). Committed results carry
    no completion record, so this is what catches a hand edit, a file copied from another method, or a history cut
    short."""
    metrics = result["metrics"]
    for where, value in _numbers(metrics):
        if not math.isfinite(value):
            raise ResultsError(f"{folder / 'metrics.json'}: {where} is {value}; a finished result has finite numbers. "
                               f"Restore the file (git checkout) or run its notebook again.")
    rows = result["predictions"]
    seed = result["config"].get("profile", {}).get("seed", 0) if isinstance(result["config"], dict) else 0
    got = rouge_summary([r["prediction"] for r in rows], [r["reference"] for r in rows], seed=seed)
    for key, want in metrics["rouge"].items():
        have = got.get(key, {})
        if not isinstance(want, dict) or any(abs(have.get(f, math.inf) - want.get(f, math.inf)) > 1e-9
                                             for f in ("mean", "low", "high")):
            raise ResultsError(f"{folder / 'metrics.json'}: {key} is not what {folder / 'predictions.jsonl'} gives "
                               f"(mean {have.get('mean', math.nan):.4f} from the predictions); one of the two was "
                               f"changed or copied from another result. Restore them (git checkout) or run the "
                               f"notebook again.")
    history = result["history"]
    if history is not None and len(history) and abs(float(history["eval_loss"].min()) - metrics["eval_loss"]) > 1e-5:
        raise ResultsError(f"{folder / 'metrics.json'}: eval_loss {metrics['eval_loss']:.4f} is not the best "
                           f"validation loss of {folder / 'history.csv'} ({float(history['eval_loss'].min()):.4f}); "
                           f"one of the two was changed or cut short. Restore them (git checkout) or run the notebook "
                           f"again.")


def sweep_rows(profile_name: str, sweep: str, root="results") -> list[dict]:
    """The finished runs of a sweep (``tools.sweep``), each checked against its run's files, or [] when it has not
    run."""
    return verified_rows(profile_name, sweep, root)


def planned_runs(profile_name: str, sweep: str, root="results") -> int | None:
    """How many runs the sweep plans (its summary records it), or None when it has not run."""
    path = sweep_dir(profile_name, sweep, root) / "summary.json"
    return read_json(path).get("n_runs") if path.exists() else None


def seed_groups(rows: list[dict]) -> dict[str, list[dict]]:
    """The seeds sweep's rows by method (``full_ft`` apart from last_blocks), in SEED_ORDER, each sorted by seed."""
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(r["run"].split("-s")[0], []).append(r)
    return {k: sorted(groups[k], key=lambda r: r["seed"]) for k in SEED_ORDER if k in groups}


def prompt_length_pair(profile_name: str, prompt: list[dict], root="results") -> dict | None:
    """Validation ROUGE-1 of the longest prompt minus 20 tokens', per document, paired (one seed each)."""
    runs = {int(r["run"][1:]) for r in prompt}
    if 20 not in runs or max(runs) <= 20:
        return None
    scores = {}
    for n in (20, max(runs)):
        rows = read_jsonl(sweep_dir(profile_name, "prompt_length", root) / f"n{n}" / "predictions.jsonl", "prompt_tuning")
        scores[n] = (rouge_per_example([r["prediction"] for r in rows], [r["reference"] for r in rows])["rouge1"],
                     [r["id"] for r in rows])
    if scores[20][1] != scores[max(runs)][1]:
        return None
    return paired_seed_bootstrap(scores[max(runs)][0], scores[20][0])


def run_spread(profile_name: str, seeds: list[dict], method: str, root="results") -> float | None:
    """The noise yardstick of ``method``: how far runs of identical settings land apart in validation loss (largest
    minus smallest). The runs: its seeds (the notebooks' settings with seeds 0, 1, 2), its notebook run when that has
    the seeds' settings, and for prompt tuning the search's run of the same settings. They differ in seed, or only in
    the order of floating-point sums (another machine, another batch split). None with fewer than two runs."""
    rows = [r for r in seeds if r["run"].rsplit("-s", 1)[0] == method]  # by run name: full_ft-s* once ran as last_blocks
    values = [r["val_loss"] for r in rows]
    try:
        folder = profile_dir(profile_name, root) / method
        notebook = read_json(folder / "config.json")
        seed_run = sweep_dir(profile_name, "seeds", root) / f"{method}-s0" / "config.json"
        if rows and seed_run.exists() and (without_added_later(read_json(seed_run)["method_settings"])
                                           == without_added_later(notebook["method_settings"])):
            values.append(read_json(folder / "metrics.json")["eval_loss"])
        if method == "prompt_tuning":
            pt = Profile(**notebook["profile"]).prompt_tuning
            same = f"n_tokens={pt.n_tokens}, lr={pt.lr:g}" + (f", epochs={pt.epochs}" if pt.epochs else "")
            search = profile_dir(profile_name, root) / "search.json"  # the search's run of the same settings
            if search.exists():
                values += [r["best val loss"] for r in read_json(search)["rows"]
                           if r["method"] == "prompt_tuning" and r["settings"] == same]
    except (ResultsError, KeyError, TypeError, ValueError):
        pass
    return max(values) - min(values) if len(values) > 1 else None


def source_documents(results: dict[str, dict]) -> dict:
    """Test document id -> the document's text, from the data the run read (empty where it cannot be read here)."""

    try:
        profile = Profile(**next(iter(results.values()))["config"]["profile"])
        rows, _ = source_rows(profile)
        return {r["id"]: r["document"] for r in rows.get("test", [])}
    except Exception:  # the hub or a local copy missing here: the examples show no document, nothing else changes
        return {}
