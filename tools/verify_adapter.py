"""Check that a saved LoRA adapter is a real ``peft`` adapter: load it with ``peft`` and regenerate.

    python -m tools.verify_adapter --profile smollm2-aclsum

Loads the profile's base model, wraps it with
``peft.PeftModel.from_pretrained(base, results/<profile>/lora/adapter)``,
merges it (as our generation does), regenerates the test summaries with the
settings recorded in ``results/<profile>/lora/config.json``, and counts how
many equal the committed ``predictions.jsonl`` exactly. ``peft`` is a test
dependency (requirements-dev.txt), not a runtime one.
"""

from __future__ import annotations

import argparse

from peft_helpers.config import GenerationConfig, get_profile
from peft_helpers.models import load_model
from peft_helpers.evaluation import generate_summaries
from peft_helpers.experiment import prepare
from peft_helpers.results import load_results, results_dir


def main(argv=None) -> int:
    from peft import PeftModel

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="smollm2-aclsum")
    args = parser.parse_args(argv)
    profile = get_profile(args.profile)
    saved = load_results(profile.name, "lora")
    generation = GenerationConfig(**saved["config"]["profile"]["generation"])
    setup = prepare(profile)
    model = PeftModel.from_pretrained(load_model(profile), results_dir(profile.name, "lora") / "adapter")
    model = model.merge_and_unload().eval()
    predictions = generate_summaries(model, setup.tokenizer, setup.splits["test"], generation, desc="peft + adapter")
    same = sum(p["prediction"] == q["prediction"] for p, q in zip(predictions, saved["predictions"]))
    print(f"{same}/{len(predictions)} summaries generated through peft equal the committed predictions")
    return 0 if same == len(predictions) else 1


if __name__ == "__main__":
    raise SystemExit(main())
