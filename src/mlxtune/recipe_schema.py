"""The recipe's schema: one pydantic model per section (component sections are `use:` plus
the component's own options, validated against the component by `recipe.load_recipe`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from .sampling import SamplingOptions

COMPONENT_SECTIONS = {
    "extract": "extractor",
    "summarize": "summarizer",
    "curate": "curator",
    "format": "formatter",
    "train": "trainer",
    "retrieve": "retriever",  # optional: no default component
}
DEFAULT_COMPONENTS = {
    "extract": "pypdf",
    "summarize": "heuristic",
    "curate": "rules",
    "format": "approach",
    "train": "mlx",
}
# keys whose values are file-system paths, resolved relative to the recipe file that sets them
PATH_KEYS = (
    "papers",
    "run_dir",
    "cache_dir",
    "plugins_dir",
    "model.path",
    "model.gguf",
    "evaluate.questions_file",
    "evaluate.judge.prompt_file",
)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ComponentSpec(BaseModel):
    """`{use: name, ...options}`; the options are checked against the named component."""

    model_config = ConfigDict(extra="allow")
    use: str


# what the tiny model may weigh: its float32 weights are built in memory (4 bytes a parameter
# plus about 0.3 GB: 205M parameters peaked at 1.1 GB) and written to disk, so 1e9 parameters
# (4 GB) is built well within a 24 GB machine
TINY_MAX_PARAMETERS = 1_000_000_000


def _problem(message: str) -> PydanticCustomError:
    """A validation error whose message is shown as written (no "Value error, " before it)."""
    return PydanticCustomError("invalid", message)


class TinyModel(Strict):
    """A random-weight Qwen2-shaped model built locally (offline quick-start and tests)."""

    hidden_size: int = Field(64, ge=8, le=8192)
    num_layers: int = Field(2, ge=1, le=128)
    num_heads: int = Field(4, ge=1, le=128)
    num_kv_heads: int = Field(2, ge=1, le=128)
    intermediate_size: int = Field(128, ge=8, le=32768)
    vocab_size: int = Field(1024, ge=300, le=262144)
    seed: int = 0

    @model_validator(mode="after")
    def _buildable(self) -> TinyModel:
        """Shapes MLX's attention accepts, and weights that fit in memory (a 1e9 hidden size
        crashed the process instead of failing)."""
        if self.hidden_size % self.num_heads or (self.hidden_size // self.num_heads) % 2:
            raise _problem(
                f"hidden_size ({self.hidden_size}) must be num_heads ({self.num_heads}) times an "
                "even head size (rotary embeddings), e.g. hidden_size: 64, num_heads: 4"
            )
        if self.num_heads % self.num_kv_heads:
            raise _problem(
                f"num_kv_heads ({self.num_kv_heads}) must divide num_heads ({self.num_heads})"
            )
        if self.parameter_count() > TINY_MAX_PARAMETERS:
            raise _problem(
                f"{self.parameter_count() / 1e9:.1f} billion parameters, "
                f"{self.parameter_count() * 4 / 1e9:.0f} gigabytes of float32 weights; the tiny "
                f"model takes at most {TINY_MAX_PARAMETERS / 1e9:g} billion: lower hidden_size, "
                "num_layers, intermediate_size or vocab_size"
            )
        return self

    def parameter_count(self) -> int:
        """An upper bound (the tokenizer may learn fewer tokens than vocab_size)."""
        head = self.hidden_size // self.num_heads
        attention = 2 * self.hidden_size**2 + 2 * self.hidden_size * self.num_kv_heads * head
        layer = attention + 3 * self.hidden_size * self.intermediate_size
        return self.vocab_size * self.hidden_size + self.num_layers * layer


class ModelSection(Strict):
    """Exactly one of id, path, gguf, ollama or tiny names the base model."""

    id: str | None = Field(None, description="Hugging Face hub id, e.g. mlx-community/...")
    path: str | None = Field(None, description="local model directory (instead of id)")
    gguf: str | None = Field(
        None, description="a .gguf file (or package:DIST/FILE), imported by the model stage"
    )
    ollama: str | None = Field(
        None, description="a model in the local Ollama store, e.g. qwen2.5:0.5b (imported)"
    )
    dequantize: bool | None = Field(
        None, description="gguf/ollama: full-precision weights (default: on MLX's CPU backend)"
    )
    quantize: Literal[4, 8] | None = Field(None, description="gguf/ollama: re-quantize to bits")
    revision: str | None = None
    trust_remote_code: bool = False
    tiny: TinyModel | None = None

    @property
    def import_ref(self) -> str | None:
        """The reference the model stage imports (a GGUF file or `ollama:NAME`), if any."""
        if self.gguf:
            return self.gguf
        return f"ollama:{self.ollama}" if self.ollama else None


class SplitCounts(Strict):
    """Per category: a count (int >= 1) or a share (float < 1) of its papers for each split."""

    train: float | Literal["rest"] = Field("rest", description="'rest': every paper left over")
    valid: float = Field(1, ge=0)
    test: float | Literal["auto"] = Field(
        "auto", description="'auto': one test paper where a category keeps two train papers"
    )

    @field_validator("train")
    @classmethod
    def _positive(cls, value: float | str) -> float | str:
        if not isinstance(value, str) and value <= 0:
            raise ValueError("must be > 0 or 'rest'")
        return value

    @field_validator("test")
    @classmethod
    def _not_negative(cls, value: float | str) -> float | str:
        if not isinstance(value, str) and value < 0:
            raise ValueError("must be >= 0 or 'auto'")
        return value


class SplitSection(Strict):
    """Papers are split per category, deterministically by seed; no paper is in two splits.

    Papers beyond the requested counts are left unused (and never summarized), which is how the
    original study took one train and one test paper per category.
    """

    per_category: SplitCounts = SplitCounts()
    seed: int = 0


class AskSection(SamplingOptions):  # type: ignore[misc,valid-type]
    """How `ask`, `chat`, `serve`, the ask stage and `compare` generate: the sampling options
    (mlxtune.sampling, one definition with the flags and request fields) and the questions."""

    backend: str = "mlx"
    questions: list[str] = Field(default_factory=list)


class JudgeSection(Strict):
    """An LLM that grades each answer 1-5 against the reference (off unless set)."""

    backend: str = "mlx"
    model: str = Field(description="hub id or folder of the judging model")
    prompt_file: str | None = Field(None, description="template: {question} {reference} {answer}")
    max_tokens: int = Field(64, ge=1)


class EvaluateSection(Strict):
    """The questions `mlxtune compare` asks every model, and how answers are scored."""

    questions_file: str | None = Field(None, description="your own questions (YAML), merged in")
    recall: int = Field(4, ge=0, description="questions from training papers (with reference)")
    heldout: int = Field(4, ge=0, description="questions from test papers (with reference)")
    unseen: bool = Field(True, description="add the built-in questions no paper answers")
    metrics: list[str] | None = Field(None, description="metric names; default: all installed")
    judge: JudgeSection | None = None


class RepairSection(Strict):
    """Self-repair data (docs/preference.md): the SFT adapter (`train.start_adapter`) answers
    its training and validation questions greedily with no guard against repetition; each
    answer the compare report would flag becomes the rejected side of a preference pair whose
    chosen side is the paper's approach (data/preference_*.jsonl, for train.objective dpo/orpo)."""

    max_tokens: int = Field(160, ge=1, le=100_000, description="an answer this long is flagged")
    max_repeat: int = Field(6, ge=0, description="flag a repeated stretch longer than this (words)")
    max_echo: float = Field(0.5, ge=0, le=1, description="flag more of the question copied")
    max_decoration: float = Field(0.1, ge=0, le=1, description="flag more decoration (*** ###)")
    min_rouge: float = Field(
        0.0, ge=0, le=1, description="flag a ROUGE-L to the paper's approach below this"
    )
    samples: int = Field(0, ge=0, le=64, description="sampled answers per question, besides greedy")
    temperature: float = Field(0.8, gt=0, le=5, description="the sampled answers' temperature")
    seed: int = Field(0, ge=0, description="sampled answer n uses seed + n")


class Recipe(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    description: str = ""
    papers: str
    run_dir: str | None = None
    run_of: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
        description="share the run of the recipe with this name (runs/NAME in the current folder):"
        " a variant that only answers differently reuses its data and adapter",
    )
    cache_dir: str | None = Field(
        None, description="extraction and summary caches; default: 'cache' beside the run dir"
    )
    plugins_dir: list[str] = Field(default_factory=list)
    model: ModelSection
    extract: ComponentSpec = ComponentSpec(use="pypdf")
    split: SplitSection = SplitSection()
    summarize: ComponentSpec = ComponentSpec(use="heuristic")
    curate: ComponentSpec = ComponentSpec(use="rules")
    format: ComponentSpec = ComponentSpec(use="approach")
    train: ComponentSpec = ComponentSpec(use="mlx")
    ask: AskSection = AskSection()
    evaluate: EvaluateSection = EvaluateSection()
    retrieve: ComponentSpec | None = Field(
        None, description="retrieval: the top passages of the run's papers in every prompt"
    )
    repair: RepairSection | None = Field(
        None, description="self-repair data: the SFT model's flagged answers as preference pairs"
    )
    track: list[ComponentSpec] = Field(
        default_factory=list,
        description="experiment trackers for training, e.g. [{use: tensorboard}, {use: wandb}]",
    )

    @field_validator("papers")
    @classmethod
    def _names_a_folder(cls, value: str) -> str:
        if not value.strip():  # "" would be the current folder: every stray .txt a paper
            raise PydanticCustomError(
                "papers_empty", "must name a folder (e.g. papers: ~/papers), not be empty"
            )
        return value

    @model_validator(mode="after")
    def _one_run_folder(self) -> Recipe:
        if self.run_dir and self.run_of:
            raise PydanticCustomError(
                "run_dir_and_run_of", "set run_dir or run_of, not both (run_of: NAME is runs/NAME)"
            )
        return self

    @property
    def run_path(self) -> Path:
        if self.run_dir:
            return Path(self.run_dir)
        return Path("runs") / (self.run_of or self.name)

    @property
    def cache_path(self) -> Path:
        """Shared by every recipe whose runs sit side by side, so variants reuse summaries."""
        return Path(self.cache_dir) if self.cache_dir else self.run_path.parent / "cache"

    @property
    def model_ref(self) -> str:
        """What to hand mlx-lm: a local path or a hub id (the tiny model lives in the run dir)."""
        if self.model.tiny is not None:
            return str(self.run_path / "model")
        if self.model.import_ref:
            from .gguf.importing import ImportOptions, planned_dir

            options = ImportOptions(self.model.dequantize, self.model.quantize)
            return str(planned_dir(self.model.import_ref, options))
        return self.model.path or self.model.id or ""

    def component(self, section: str) -> dict[str, Any]:
        return getattr(self, section).model_dump()
