"""`summarize: {use: auto}`: the `mlx` summarizer where it can run, the heuristic elsewhere.

It can run when its model (by default the recipe's own) is already on this machine (a folder, a
GGUF file or Ollama model to import, or the Hugging Face cache: nothing is downloaded for it) and
the memory planner's estimate of generating with it (weights, the batch's KV cache, logits) fits
the device's budget on its own: nothing else runs while papers are summarized. Otherwise the
heuristic summarizer does the work and the stage prints one line saying why. A paper whose reply
cannot be read as a pair falls back to the heuristic summarizer on its own (`fallback`), its
pair's `decoding` saying so.

This module decides from values the stage resolves (the model reference, whether it is local,
its config, the device); it reads no recipe.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field

from ..components import Summarizer
from ..hookspecs import hookimpl
from .heuristic import HeuristicSummarizer
from .mlx_summarizer import MlxSummarizer

# the prompt around the paper's text (system message, instructions, chat template), in tokens
PROMPT_OVERHEAD_TOKENS = 400
CHARS_PER_TOKEN = 3  # English prose in the Qwen, Llama and SmolLM vocabularies: 3.5-4.5


class AutoOptions(MlxSummarizer.Options):
    model: str | None = Field(  # type: ignore[assignment]
        None, description="the model to summarize with; default: the recipe's own model"
    )
    fallback: Literal["none", "heuristic"] = Field(
        "heuristic", description="a paper whose reply cannot be read: the heuristic's pair"
    )


class AutoSummarizer(Summarizer):
    """Stands for the summarizer `choose` picks; the summarize stage resolves it."""

    name = "auto"
    description = "mlx with the recipe's model where it is local and fits, else heuristic"
    Options = AutoOptions

    def summarize_one(self, document: Any) -> Any:
        from ..errors import MlxtuneError

        raise MlxtuneError(
            "summarize: auto needs a recipe to choose from: run it through the summarize stage, "
            "or build the summarizer with mlxtune.summarize.auto.choose"
        )


@dataclass(frozen=True)
class Choice:
    summarizer: Summarizer
    reason: str  # one line: what was chosen and why

    @property
    def fell_back(self) -> bool:
        return self.summarizer.name == "heuristic"


def context_tokens(options: AutoOptions) -> int:
    """The longest sequence one reply holds: its prompt and its reply."""
    chars = options.excerpt_chars if options.read == "excerpt" else options.chunk_chars
    return chars // CHARS_PER_TOKEN + PROMPT_OVERHEAD_TOKENS + options.max_tokens


def generation_bytes(
    config: dict[str, Any], options: AutoOptions, dtype_bytes: int, batch: int | None = None
) -> float:
    """The planner's estimate of generating a batch of replies with the model of `config`."""
    from ..train.planner import ModelShape, Setting, estimate_generation, quantization_bits

    shape = ModelShape.from_config(config, str(options.model))
    setting = Setting(bits=quantization_bits(config), dtype_bytes=dtype_bytes)
    estimate = estimate_generation(
        shape, setting, context=context_tokens(options), batch=batch or options.batch_size
    )
    return estimate.total


def choose(
    options: AutoOptions,
    model: str | None,
    missing: str | None,
    config: dict[str, Any] | None,
    device: Any,
) -> Choice:
    """`mlx` with `model` if it is local (`missing` is None: else why not) and its estimate fits
    `device.budget`; else the heuristic, with the reason."""
    from ..train.planner import human

    heuristic = HeuristicSummarizer()
    if not model or missing or config is None:
        why = missing or "no model to summarize with"
        return Choice(heuristic, f"summarize: auto chose the heuristic summarizer: {why}")
    batch = options.batch_size  # halved until the batch's KV cache fits, if the model does
    needs = generation_bytes(config, options, device.dtype_bytes, batch)
    while needs > device.budget and batch > 1:
        batch //= 2
        needs = generation_bytes(config, options, device.dtype_bytes, batch)
    if needs > device.budget:
        return Choice(
            heuristic,
            f"summarize: auto chose the heuristic summarizer: {model} needs about {human(needs)} "
            f"to summarize, more than the {human(device.budget)} {device.name} has for it",
        )
    values = {**options.model_dump(), "model": model, "batch_size": batch}
    summarizer = MlxSummarizer(MlxSummarizer.Options(**values))
    smaller = (
        f", batch {batch} instead of {options.batch_size}" if batch < options.batch_size else ""
    )
    return Choice(
        summarizer,
        f"summarize: auto chose the mlx summarizer with {model} "
        f"(about {human(needs)} of {human(device.budget)}{smaller})",
    )


@hookimpl
def register_summarizers(register):
    register(AutoSummarizer)
