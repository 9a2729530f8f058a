"""Parameter-efficient fine-tuning of a causal LM for summarization, three ways.

- Prompt tuning: learned soft-prompt vectors, model frozen (Lester et al. 2021).
- Last-layer fine-tuning: only the LM head (or the last k blocks) trains.
- LoRA: low-rank updates beside frozen weight matrices (Hu et al. 2021).

Modules, in reading order: ``config`` (profiles, the method and model
tables), ``progress`` (bars), ``models`` (models and tokenizers), ``methods``
(the three methods), ``data`` (data, tokenization), ``training`` (one loop for
all), ``evaluation`` (generation, ROUGE), ``results`` (files),
``experiment`` (one call per notebook step), ``plots`` (the notebooks' tables
and figures). The report builder lives in ``report/`` beside its Typst
template, the command-line tools that no notebook imports in ``tools/``.
"""

from .config import (
    METHODS, PROFILES, ConfigError, FullFTConfig, GenerationConfig, LastLayerConfig, LoRAConfig, Profile,
    PromptTuningConfig, TrainConfig, get_profile, hub_reachable,
)
from .data import DataError, TrainCollator, clean_rows, clean_text, encode_example, load_splits
from .evaluation import generate_summaries, merged, rouge_per_example, rouge_summary
from .experiment import (
    Setup, build_model, describe, effective_settings, experiment_name, prepare, run_method, sample_summaries,
    start_notebook,
)
from .models import HubUnavailableError, load_model, load_tokenizer
from .methods import (
    AdapterError, LoRALayer, SoftPromptModel, add_lora, add_soft_prompt, fingerprint,
    load_lora_adapter, merge_lora, parameter_report, prepare_last_layer, save_lora_adapter, unmerge_lora,
)
from .results import ResultsError, load_results
from .training import Recipe, evaluate_loss, model_logits, summary_loss, train
