"""The report's columns: what each means and which direction is better, defined once for the
report's main table, its details, the legend, the terminal summary and the model card; and the
lines that the Markdown and the HTML report both print about the models compared."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .runner import ModelEvaluation


@dataclass(frozen=True)
class Column:
    title: str
    key: str
    pattern: str
    better: str  # "higher", "lower" or "" (neither: a description)
    meaning: str


MAIN = [
    Column("stop rate", "stopped", "{:.2f}", "higher",
           "share of answers that ended at end-of-sequence, not at the token limit"),
    Column("loop rate", "looped", "{:.2f}", "lower",
           "share of answers the loop detector ended (only with ask.stop_loops)"),
    Column("longest repeat (words)", "longest_repeat", "{:.1f}", "lower",
           "longest word sequence an answer says twice"),
    Column("ROUGE-L held-out", "rouge_l_heldout", "{:.3f}", "higher",
           "word overlap (F1) with the held-out paper's own approach"),
    Column("held-out loss", "heldout_loss", "{:.3f}", "lower",
           "mean negative log-likelihood of the held-out papers' approaches after the prompt"),
    Column("judge (1-5)", "judge_score", "{:.2f}", "higher",
           "the judge model's grade against the reference (evaluate.judge)"),
]  # fmt: skip
DETAILS = [
    Column("repeated 4-grams", "repeat_4gram", "{:.3f}", "lower",
           "share of an answer's word 4-grams that already occurred in it"),
    Column("distinct-2", "distinct_2", "{:.3f}", "higher", "unique word pairs / all word pairs"),
    Column("echo", "echo", "{:.3f}", "lower", "share of the answer's word pairs from the question"),
    Column("decoration", "decoration", "{:.3f}", "lower", "share of characters in ** ### ---"),
    Column("words", "words", "{:.0f}", "", "answer length in words"),
    Column("ROUGE-L recall", "rouge_l_recall", "{:.3f}", "higher",
           "word overlap with a training paper's approach (memorized?)"),
    Column("held-out ppl", "heldout_ppl", "{:.1f}", "lower", "exp(held-out loss)"),
    Column("best val loss", "best_val_loss", "{:.3f}", "",
           "the trainer's best validation loss (comparable within one prompt format only)"),
    Column("pairs kept", "pairs_kept", "{:.0f}", "", "training pairs the curate stage kept"),
    Column("pairs rejected", "pairs_rejected", "{:.0f}", "", "pairs the curate stage rejected"),
]  # fmt: skip
ALL = MAIN + DETAILS
# narrower headings for the terminal's summary table
SHORT = {
    "stopped": "stop",
    "looped": "loop",
    "longest_repeat": "repeat",
    "rouge_l_heldout": "ROUGE-L",
    "heldout_loss": "loss",
    "judge_score": "judge",
}
ARROW = {"higher": "↑", "lower": "↓", "": ""}


def fmt(value: Any, pattern: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return pattern.format(value)


def shown(columns: list[Column], rows: list[dict]) -> list[Column]:
    """The columns with a value in at least one row (a column always empty says nothing)."""
    return [c for c in columns if any(r.get(c.key) is not None for r in rows)]


def heading(column: Column) -> str:
    arrow = ARROW[column.better]
    return f"{column.title} {arrow}" if arrow else column.title


def legend(columns: list[Column]) -> list[tuple[str, str]]:
    """(heading, meaning and direction) for each column."""
    out = []
    for c in columns:
        better = f" ({c.better} is better)" if c.better else ""
        out.append((heading(c), c.meaning + better))
    return out


def variant(model: ModelEvaluation) -> str:
    """What the row is: the base or a tuned model, with or without retrieved passages."""
    kind = "tuned" if model.trained else "base"
    return f"{kind} + retrieval" if model.retrieval else kind


def answers_by_question(models: list[ModelEvaluation]) -> list[tuple[dict, list[dict]]]:
    first = models[0].answers
    return [(q, [m.answers[i] for m in models]) for i, q in enumerate(first)]


def sampling_line(models: list[ModelEvaluation], sampling: dict) -> str:
    """The sampling every model used, and what a model's own recipe changed (a variant's
    generation settings, e.g. DRY or the loop detector, are part of it)."""
    line = "sampling: " + ", ".join(f"{k}={v}" for k, v in sampling.items())
    for model in models:
        own = {k: v for k, v in (model.sampling or sampling).items() if sampling.get(k) != v}
        if own:
            line += f"; {model.name}: " + ", ".join(f"{k}={v}" for k, v in own.items())
    return line


def retrieval_line(models: list[ModelEvaluation]) -> str | None:
    used = [m for m in models if m.retrieval]
    if not used:
        return None
    r = used[0].retrieval
    return (
        f"Retrieval ({', '.join(m.name for m in used)}): `{r.get('use')}` over "
        f"{r.get('passages_indexed')} passages of the run's papers, the top "
        f"{r.get('top_k', '?')} in each prompt; a held-out question's own paper is never quoted."
    )
