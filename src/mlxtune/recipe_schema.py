"""The recipe's schema: one pydantic model per section (component sections are `use:` plus
the component's own options, validated against the component by `recipe.load_recipe`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

COMPONENT_SECTIONS = {
    "extract": "extractor",
    "summarize": "summarizer",
    "curate": "curator",
    "format": "formatter",
    "train": "trainer",
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


class TinyModel(Strict):
    """A random-weight Qwen2-shaped model built locally (offline quick-start and tests)."""

    hidden_size: int = Field(64, ge=8)
    num_layers: int = Field(2, ge=1)
    num_heads: int = Field(4, ge=1)
    num_kv_heads: int = Field(2, ge=1)
    intermediate_size: int = Field(128, ge=8)
    vocab_size: int = Field(1024, ge=300)
    seed: int = 0


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

    def chosen(self) -> list[str]:
        return [
            k
            for k in ("id", "path", "gguf", "ollama", "tiny")
            if getattr(self, k) not in (None, "")
        ]


class SplitCounts(Strict):
    """Per category: a count (int >= 1) or a share (float < 1) of its papers for each split."""

    train: float | Literal["rest"] = Field("rest", description="'rest': every paper left over")
    valid: float = Field(1, ge=0)
    test: float = Field(0, ge=0)

    @field_validator("train")
    @classmethod
    def _positive(cls, value: float | str) -> float | str:
        if not isinstance(value, str) and value <= 0:
            raise ValueError("must be > 0 or 'rest'")
        return value


class SplitSection(Strict):
    """Papers are split per category, deterministically by seed; no paper is in two splits.

    Papers beyond the requested counts are left unused (and never summarized), which is how the
    original study took one train and one test paper per category.
    """

    per_category: SplitCounts = SplitCounts()
    seed: int = 0


class AskSection(Strict):
    backend: str = "mlx"
    questions: list[str] = Field(default_factory=list)
    max_tokens: int = Field(200, ge=1)
    temperature: float = Field(0.0, ge=0)
    top_p: float = Field(1.0, gt=0, le=1)
    min_p: float = Field(0.0, ge=0, le=1)
    repetition_penalty: float | None = Field(None, gt=0)
    seed: int = 0
    frequency_penalty: float = Field(0.0, ge=0, description="minus this times the token's count")
    presence_penalty: float = Field(0.0, ge=0, description="minus this once a token was used")
    no_repeat_ngram: int = Field(0, ge=0, description="ban repeating an n-gram (0: off)")
    dry_multiplier: float = Field(0.0, ge=0, description="DRY penalty strength (0: off)")
    dry_base: float = Field(1.75, ge=1)
    dry_allowed_length: int = Field(2, ge=1, description="repeats this long go unpunished")
    stop_loops: int = Field(
        0, ge=0, description="end an answer whose last N tokens occurred twice before (0: off)"
    )


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


class Recipe(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    description: str = ""
    papers: str
    run_dir: str | None = None
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
    track: list[ComponentSpec] = Field(
        default_factory=list,
        description="experiment trackers for training, e.g. [{use: tensorboard}, {use: wandb}]",
    )

    @property
    def run_path(self) -> Path:
        return Path(self.run_dir) if self.run_dir else Path("runs") / self.name

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
            from .models.importing import ImportOptions, planned_dir

            options = ImportOptions(self.model.dequantize, self.model.quantize)
            return str(planned_dir(self.model.import_ref, options))
        return self.model.path or self.model.id or ""

    def component(self, section: str) -> dict[str, Any]:
        return getattr(self, section).model_dump()
