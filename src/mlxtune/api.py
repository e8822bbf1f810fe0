"""The one module a plugin imports: mlxtune's declared surface for third parties.

Everything a component, a trainer or a backend plugin needs is here by name; what is not here is
internal and may change in any release. `API_VERSION` changes only when a name here is removed or
changes meaning; a plugin that sets `MLXTUNE_API = N` in its registered module is refused at
load, with one clear message, by an mlxtune whose `API_VERSION` differs. The bundled plugins
import nothing else of mlxtune (tests/test_plugin_api.py enforces it).

Names resolve lazily (PEP 562), so importing this module imports neither MLX nor torch.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from .hookspecs import API_VERSION

_NAMES: dict[str, str] = {
    # hooks
    "hookimpl": "mlxtune.hookspecs",
    # component bases and their option models
    "Component": "mlxtune.components",
    "ComponentOptions": "mlxtune.components",
    "Extractor": "mlxtune.components",
    "Summarizer": "mlxtune.components",
    "SummaryFailure": "mlxtune.components",
    "Curator": "mlxtune.components",
    "Verdict": "mlxtune.components",
    "Formatter": "mlxtune.components",
    "Trainer": "mlxtune.components",
    "TrainResult": "mlxtune.components",
    "Backend": "mlxtune.components",
    "Sampling": "mlxtune.components",
    "Answer": "mlxtune.components",
    "AnswerContext": "mlxtune.components",
    "Metric": "mlxtune.components",
    "Tracker": "mlxtune.components",
    "Completer": "mlxtune.components",
    # records and their files
    "Document": "mlxtune.records",
    "Pair": "mlxtune.records",
    "Example": "mlxtune.records",
    "atomic_write_json": "mlxtune.records",
    "sha256_file": "mlxtune.records",
    "sha256_json": "mlxtune.records",
    # errors
    "MlxtuneError": "mlxtune.errors",
    # tokens: the prompt and example encodings every trainer and backend share
    "encode_prompt": "mlxtune.tokens",
    "encode_example": "mlxtune.tokens",
    # anti-repetition rules over token ids (backends apply them to their own logits)
    "LoopDetector": "mlxtune.repetition",
    "RepetitionControl": "mlxtune.repetition",
    "breaker_ids": "mlxtune.repetition",
    # the training-loop contract (docs/plugins.md, "Writing a trainer")
    "TrainingLoop": "mlxtune.train.loop",
    "TrainingBackend": "mlxtune.train.backend",
    "SharedTrainOptions": "mlxtune.train.options",
    "load_training_data": "mlxtune.train.data",
    "training_rows": "mlxtune.train.data",
    "Row": "mlxtune.train.batching",
    "batch_arrays": "mlxtune.train.batching",
    # adapter formats and model resolution
    "mlx_to_peft": "mlxtune.adapters.convert",
    "peft_to_mlx": "mlxtune.adapters.convert",
    "resolve_model": "mlxtune.models.resolve",
    # text cleaning for extractors
    "clean_pages": "mlxtune.extract.clean",
    "split_sections": "mlxtune.extract.clean",
    "strip_references": "mlxtune.extract.clean",
    "readability": "mlxtune.extract.quality",
    "PypdfExtractor": "mlxtune.extract.pypdf_extractor",
}

__all__ = ["API_VERSION", *_NAMES]


def __getattr__(name: str) -> Any:
    module = _NAMES.get(name)
    if module is None:
        raise AttributeError(f"mlxtune.api has no '{name}' (not part of the plugin API)")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:  # for type checkers and editors: the same names, imported eagerly
    pass
