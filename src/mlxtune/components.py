"""The plugin contract: one small abstract base class per pipeline stage.

A component is a class with a registered `name` and a nested pydantic `Options` model
(`extra="forbid"`, so a typo in a recipe names the key). Recipes pick components by name; the
registry validates the recipe's options against `Options` and builds the component with them.
Heavy imports (mlx, mlx_lm, torch) belong inside methods so that the CLI starts instantly.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from .records import Document, Example, Pair


class ComponentOptions(BaseModel):
    """Base for every component's options: unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid")


class Component(ABC):
    name: ClassVar[str]
    kind: ClassVar[str]
    description: ClassVar[str] = ""

    class Options(ComponentOptions):
        pass

    def __init__(self, options: ComponentOptions | None = None):
        self.options = options if options is not None else self.Options()


class Extractor(Component):
    """Turns one input file into a `Document` (status "failed" with a reason when it cannot)."""

    kind = "extractor"
    suffixes: ClassVar[tuple[str, ...]] = ()
    # part of the extraction cache key: bump it when the same file would now give other text
    version: ClassVar[str] = "1"

    class Options(ComponentOptions):
        """Options every extractor has; the pipeline reads them from the recipe's extractor."""

        workers: int = Field(
            0, ge=0, description="processes extracting in parallel (0: one per CPU core)"
        )
        timeout: float = Field(
            120, ge=0, description="seconds per document before it is abandoned (0: no limit)"
        )
        follow_outside: bool = Field(
            False, description="read links to files and folders outside the papers folder"
        )

    @abstractmethod
    def extract(self, path: Path, category: str) -> Document: ...


@dataclass
class SummaryFailure:
    """A document that gave no pair. `raw` keeps the model's reply for inspection; a `transient`
    failure (server unreachable, timed out) is not cached, so the next run tries again."""

    document: Document
    reason: str
    raw: str = ""
    transient: bool = False


class Summarizer(Component):
    """Turns documents into [research question, approach] pairs."""

    kind = "summarizer"

    def fingerprint(self) -> dict[str, Any]:
        """Everything besides the document that decides the output (model, prompt, options).

        It is part of each summary's cache key: change it and summaries are redone; leave out
        what cannot change the output (concurrency, timeouts) so that tuning those keeps the cache.
        """
        return {"name": self.name, "options": self.options.model_dump(mode="json")}

    def summarize(self, documents: Sequence[Document]) -> Iterator[Pair | SummaryFailure]:
        """Yield a `Pair` or a `SummaryFailure` per document, in any order, as each finishes.

        The default summarizes one document at a time; LLM summarizers override this to batch.
        """
        for document in documents:
            try:
                yield self.summarize_one(document)
            except ValueError as exc:
                yield SummaryFailure(document, str(exc))

    @abstractmethod
    def summarize_one(self, document: Document) -> Pair: ...


@dataclass
class Verdict:
    """A curator's decision on one pair: kept, or rejected with the reason."""

    keep: bool
    reason: str = ""
    score: float | None = None


class Curator(Component):
    """Decides which pairs are good enough to train on, before formatting.

    `curate` sees every pair of the corpus at once (so it can remove duplicates across papers)
    with its document, and returns one `Verdict` per pair, in order.
    """

    kind = "curator"

    def fingerprint(self) -> dict[str, Any]:
        """What decides the verdicts (part of the stage's fingerprint and any cache key)."""
        return {"name": self.name, "options": self.options.model_dump(mode="json")}

    def setup(self, *, cache_dir: Path, registry: Any) -> None:
        """Called by the curate stage before anything else: the recipe's cache folder (for a
        curator that caches its verdicts) and its registry (for one that builds components,
        with the recipe's plugin folders). The default needs neither."""

    @abstractmethod
    def curate(self, pairs: Sequence[Pair], documents: dict[str, Document]) -> list[Verdict]: ...


@runtime_checkable
class Completer(Protocol):
    """A summarizer that also completes free prompts (the `mlx` and `openai` ones): what the
    llm judge needs of the summarizer it is given."""

    def complete(self, conversations: Sequence[Any]) -> list[Any]: ...

    def fingerprint(self) -> dict[str, Any]: ...


class Formatter(Component):
    """Builds training examples from a pair, and the prompt for a new question.

    Both come from one class so that training and `ask` use the very same prompt.
    """

    kind = "formatter"

    @abstractmethod
    def examples(self, pair: Pair) -> list[Example]: ...

    @abstractmethod
    def prompt(self, question: str) -> Example:
        """The generation prompt: `Example(prompt=...)` or `Example(messages=[...])`."""


@dataclass
class TrainResult:
    adapter_path: Path
    steps: int
    best_step: int | None = None
    best_val_loss: float | None = None
    final_train_loss: float | None = None
    peak_memory_gb: float | None = None
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


class Trainer(Component):
    """Trains an adapter on `data_dir/{train,valid}.jsonl` into `output_dir`.

    A trainer with `distributed = True` can be one of several processes of a multi-process
    launch (`accelerate launch`, `torchrun`), one with `mlx_distributed = True` of an
    `mlx.launch`: every process calls `train`, and only the process of rank 0 writes files.
    """

    kind = "trainer"
    distributed: ClassVar[bool] = False
    mlx_distributed: ClassVar[bool] = False

    @abstractmethod
    def train(
        self,
        model: str,
        data_dir: Path,
        output_dir: Path,
        *,
        trust_remote_code: bool = False,
        log: Callable[[str], None] = print,
    ) -> TrainResult: ...


def _option(low: float, high: float, text: str, *, above: bool = False) -> Any:
    """A sampling option's bounds and help (finite, so NaN and infinity are refused)."""
    lower = {"gt": low} if above else {"ge": low}
    return Field(le=high, allow_inf_nan=False, description=text, **lower)


@dataclass
class Sampling:
    """Sampling settings shared by every backend: the one definition from which the recipe's
    `ask:` keys, the `ask`/`chat` flags and `serve`'s request fields are derived, with their
    defaults and bounds (mlxtune.sampling)."""

    max_tokens: Annotated[int, _option(1, 1_000_000, "longest answer, in tokens")] = 256
    temperature: Annotated[float, _option(0, 100, "0: greedy")] = 0.0
    top_p: Annotated[float, _option(0, 1, "nucleus sampling (1: off)", above=True)] = 1.0
    min_p: Annotated[float, _option(0, 1, "min-p sampling (0: off)")] = 0.0
    repetition_penalty: Annotated[
        float | None, _option(0, 100, "mlx-lm's penalty on the context's tokens", above=True)
    ] = None
    seed: Annotated[int, _option(0, 2**63 - 1, "sampling seed")] = 0
    # against loops (mlxtune.repetition): penalties over the answer's own tokens, a ban on
    # repeated n-grams, DRY, and ending an answer whose last `stop_loops` tokens repeat
    frequency_penalty: Annotated[
        float, _option(0, 100, "minus this times the token's count so far")
    ] = 0.0
    presence_penalty: Annotated[float, _option(0, 100, "minus this once a token was used")] = 0.0
    no_repeat_ngram: Annotated[int, _option(0, 64, "never repeat an n-gram this long (0: off)")] = 0
    dry_multiplier: Annotated[float, _option(0, 100, "DRY penalty strength (0: off)")] = 0.0
    dry_base: Annotated[float, _option(1, 10, "DRY's growth per repeated token")] = 1.75
    dry_allowed_length: Annotated[int, _option(1, 1000, "repeats this long go unpunished")] = 2
    stop_loops: Annotated[
        int, _option(0, 10_000, "end an answer whose last N tokens occurred twice before (0: off)")
    ] = 0


@dataclass
class Answer:
    """One generated answer: its text, why it ended and the backend's numbers for it."""

    text: str
    # "stop" (end-of-sequence), "length" (max_tokens) or "loop" (the loop detector)
    finish_reason: str | None = None
    # e.g. prompt_tokens, generation_tokens, prompt_tps, generation_tps, peak_memory_gb
    stats: dict[str, float] = field(default_factory=dict)


class Backend(Component):
    """Loads a model (and adapter) once, then streams text for prompts.

    `generate` sets `finish_reason` and (optionally) `stats` when its stream ends; `answer`
    returns both with the text, and is what mlxtune's callers use.
    """

    kind = "backend"
    finish_reason: str | None = None
    stats: dict[str, float]

    def __init__(self, options: ComponentOptions | None = None):
        super().__init__(options)
        self.finish_reason, self.stats = None, {}

    def answer(
        self, prompt: Example, sampling: Sampling, on_text: Callable[[str], None] | None = None
    ) -> Answer:
        """The whole answer to `prompt` (each piece also handed to `on_text` as it comes)."""
        pieces = []
        for piece in self.generate(prompt, sampling):
            pieces.append(piece)
            if on_text is not None:
                on_text(piece)
        return Answer("".join(pieces), self.finish_reason, dict(getattr(self, "stats", {})))

    @abstractmethod
    def load(self, model: str, adapter: Path | None = None, *, trust_remote_code: bool = False):
        """Load weights; called once before `generate`."""

    @abstractmethod
    def generate(self, prompt: Example, sampling: Sampling) -> Iterator[str]:
        """Stream the answer's text pieces; stops at the tokenizer's end-of-sequence.

        Afterwards `finish_reason` says why it ended: "stop" (end-of-sequence), "length"
        (`max_tokens`) or "loop" (the loop detector, `sampling.stop_loops`), and `stats` holds
        the token counts and speeds where the backend measures them."""

    # backends that can keep an answer to a JSON schema set this and take `generate(prompt,
    # sampling, json_schema=...)` (serve's `response_format`)
    supports_json_schema: ClassVar[bool] = False

    def context_length(self) -> int | None:
        """The loaded model's context in tokens, where the backend knows it (None: unknown)."""
        return None

    def count_tokens(self, prompt: Example) -> int | None:
        """The prompt's length in tokens, where the backend can tell (None: unknown)."""
        return None

    def score(self, prompt: Example, completion: str) -> tuple[float, int]:
        """(summed negative log-likelihood, token count) of `completion` + EOS after `prompt`.

        Optional: `compare` reports held-out loss and perplexity for backends that have it.
        """
        raise NotImplementedError


@dataclass
class AnswerContext:
    """One generated answer, what a metric scores."""

    question: str
    answer: str
    reference: str | None = None  # the paper's approach, for recall/held-out questions
    finish_reason: str | None = None  # "stop" (end-of-sequence) or "length" (max_tokens)


class Metric(Component):
    """Scores one answer: named numbers, None where the metric does not apply."""

    kind = "metric"

    @abstractmethod
    def score(self, ctx: AnswerContext) -> dict[str, float | None]: ...


class Tracker(Component):
    """Sends a training run to an experiment tracker (TensorBoard, MLflow, W&B, your own).

    Every method may raise: the run goes on without the tracker after one warning
    (`mlxtune.track.Tracking`). Only the writing process of a launch (rank 0) tracks.
    """

    kind = "tracker"

    @abstractmethod
    def start(self, run_dir: Path, name: str, config: dict[str, Any]) -> None:
        """Open the run `name` (files under `run_dir` for file-based trackers) with the
        resolved recipe as its configuration."""

    @abstractmethod
    def log_metrics(self, metrics: dict[str, float], step: int) -> None: ...

    @abstractmethod
    def log_text(self, key: str, text: str, step: int) -> None: ...

    @abstractmethod
    def log_artifact(self, path: Path) -> None:
        """Keep a file with the run (the compare report)."""

    def finish(self) -> None:
        return None


@dataclass
class Passage:
    """A piece of one paper's text that a retriever can put into a prompt."""

    document_id: str
    title: str
    category: str
    text: str
    start: int = 0  # offset of the first word in the paper's words
    score: float = 0.0


class Retriever(Component):
    """Finds the passages of the run's papers that best match a question (`retrieve:`).

    `index` is called once with every passage; `search` returns at most `k` passages, best
    first, never one of a document in `exclude` (a held-out question's own paper)."""

    kind = "retriever"

    class Options(ComponentOptions):
        """Options every retriever has; `compare` reads them from the recipe's `retrieve:`."""

        top_k: int = Field(3, ge=1, le=50, description="passages put into each prompt")
        chunk_words: int = Field(120, ge=10, le=5000, description="words in one passage")

    @abstractmethod
    def index(self, passages: Sequence[Passage]) -> None: ...

    @abstractmethod
    def search(
        self, query: str, k: int, exclude: frozenset[str] = frozenset()
    ) -> list[Passage]: ...


KINDS: dict[str, type[Component]] = {
    "extractor": Extractor,
    "summarizer": Summarizer,
    "curator": Curator,
    "formatter": Formatter,
    "trainer": Trainer,
    "backend": Backend,
    "metric": Metric,
    "tracker": Tracker,
    "retriever": Retriever,
}
