"""The comparison report: report.json (everything), report.md and report.html (a short main
table with a legend, the other columns and the per-category tables behind a details toggle,
every question's answers side by side with the passages each was given, the loss curves with
the kept step marked) and loss_curves.png."""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

from ..records import atomic_write_bytes, atomic_write_json, atomic_write_text
from .columns import (
    ALL,
    DETAILS,
    MAIN,
    answers_by_question,
    fmt,
    heading,
    legend,
    retrieval_line,
    sampling_line,
    shown,
    variant,
)
from .runner import ModelEvaluation

# kept for the model card and older callers: (title, key, pattern)
COLUMNS = [(c.title, c.key, c.pattern) for c in ALL]

__all__ = ["COLUMNS", "fmt", "heldout_note", "summary_row", "variant", "write_report"]


def mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None and not math.isnan(v)]
    return sum(present) / len(present) if present else None


def summary_row(model: ModelEvaluation, category: str | None = None) -> dict:
    """Means over the model's answers (of one category, when given)."""
    answers = [a for a in model.answers if category is None or a.get("category") == category]
    keys = {k for a in answers for k in a["metrics"]}
    row: dict[str, Any] = {
        "model": model.name,
        "variant": variant(model),
        "formatter": model.formatter,
        "trained": model.trained,
        "retrieval": bool(model.retrieval),
        "answers": len(answers),
    }
    for key in keys:
        row[key] = mean([a["metrics"].get(key) for a in answers])
    for kind in ("recall", "heldout"):
        row[f"rouge_l_{kind}"] = mean(
            [a["metrics"].get("rouge_l") for a in answers if a["kind"] == kind]
        )
    if category is None:
        row["heldout_loss"] = model.heldout.get("loss")
        row["best_val_loss"] = model.training.get("summary", {}).get("best_val_loss")
        row["pairs_kept"] = model.curation.get("kept")
        row["pairs_rejected"] = model.curation.get("rejected")
    else:  # the held-out loss of this category's papers; training is not per category
        row["heldout_loss"] = (model.heldout.get("by_category") or {}).get(category)
    loss = row["heldout_loss"]
    row["heldout_ppl"] = math.exp(min(loss, 50)) if loss is not None else None
    return row


def per_category(models: list[ModelEvaluation]) -> dict[str, list[dict[str, Any]]]:
    categories = sorted({a["category"] for m in models for a in m.answers if a.get("category")})
    return {category: [summary_row(m, category) for m in models] for category in categories}


def heldout_note(split: str | None) -> str:
    """Where the held-out questions and loss come from, said plainly."""
    if split == "test":
        return (
            "Held-out questions and loss come from the test papers: no model trained on them "
            "and they chose nothing (the validation papers chose the kept adapter)."
        )
    if split == "valid":
        return (
            "Held-out = validation: there are no test papers (split.per_category.test), so the "
            "held-out questions and loss come from the validation papers, which also chose the "
            "kept adapter; read them as optimistic for the tuned models."
        )
    return "No held-out papers: only recall and unseen questions."


def write_report(
    out: Path,
    models: list[ModelEvaluation],
    questions: list[dict],
    sampling: dict,
    heldout_split: str | None = None,
) -> dict[str, Path]:
    from .report_html import to_html

    out.mkdir(parents=True, exist_ok=True)
    rows = [summary_row(m) for m in models]
    categories = per_category(models)
    plot = loss_plot(models, out / "loss_curves.png")
    note = heldout_note(heldout_split)
    report = {
        "models": [m.to_json() for m in models],
        "summary": rows,
        "per_category": categories,
        "questions": questions,
        "sampling": sampling,
        "heldout_split": heldout_split,
        "heldout_note": note,
    }
    atomic_write_json(out / "report.json", report)
    atomic_write_text(out / "report.md", markdown(models, rows, categories, sampling, plot, note))
    atomic_write_text(out / "report.html", to_html(models, rows, categories, sampling, plot, note))
    paths = {"json": out / "report.json", "md": out / "report.md", "html": out / "report.html"}
    if plot:
        paths["png"] = plot
    return paths


def kept_step(training: dict[str, Any]) -> int | None:
    """The step whose adapter was kept: the best validation step, or the last one."""
    summary = training.get("summary") or {}
    if summary.get("kept", "best") == "last":
        return summary.get("steps")
    return summary.get("best_step")


def loss_plot(models: list[ModelEvaluation], path: Path) -> Path | None:
    """Training and validation loss against step, one colour per trained model, the kept
    adapter's step marked with a star."""
    seen: set[str | None] = set()
    curves = []
    for m in models:  # a retrieval variant shares its model's adapter: one curve for both
        if m.training.get("curves") and (m.adapter is None or m.adapter not in seen):
            seen.add(m.adapter)
            curves.append((m.name, m.training["curves"], kept_step(m.training)))
    if not curves:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(8, 4.5), dpi=100)
    for index, (name, rows, kept) in enumerate(curves):
        color = f"C{index}"
        train = [(r["step"], r["train_loss"]) for r in rows if "train_loss" in r]
        valid = [(r["step"], r["val_loss"]) for r in rows if "val_loss" in r]
        if train:
            axis.plot(*zip(*train, strict=True), color=color, label=f"{name} train")
        if valid:
            axis.plot(*zip(*valid, strict=True), color=color, linestyle="--", marker="o",
                      markersize=3, label=f"{name} val")  # fmt: skip
        at = [loss for step, loss in valid if step == kept]
        if kept is not None and at:
            axis.plot([kept], at, marker="*", markersize=16, color=color, linestyle="none",
                      markeredgecolor="black", label=f"{name} kept (step {kept})")  # fmt: skip
        elif kept is not None:
            axis.axvline(kept, color=color, linestyle=":", label=f"{name} kept (step {kept})")
    axis.set_xlabel("step")
    axis.set_ylabel("loss")
    axis.set_title("Training (solid) and validation (dashed) loss; ★ the kept adapter")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def markdown(models, rows, categories, sampling, plot, note) -> str:
    lines = ["# mlxtune comparison", ""]
    lines.append(
        f"{len(models)} models, {len(models[0].answers)} questions, "
        + sampling_line(models, sampling)
        + ". Metrics are means over the questions (see docs/evaluate.md)."
    )
    lines += ["", note]
    if retrieval_line(models):
        lines += ["", str(retrieval_line(models))]
    main = shown(MAIN, rows)
    lines += ["", "## Metrics", "", *_md_table(rows, main), ""]
    lines += [f"- **{h}**: {m}" for h, m in legend(main)]
    if plot:
        lines += ["", "## Loss curves", "", f"![loss curves]({plot.name})"]
    details = shown(DETAILS, rows)
    lines += ["", "<details><summary>All metrics and per category</summary>", ""]
    lines += _md_table(rows, shown(ALL, rows)) + [""]
    lines += [f"- **{h}**: {m}" for h, m in legend(details)]
    for category, crow in categories.items():
        lines += ["", f"### {category}", "", *_md_table(crow, shown(ALL, crow))]
    lines += ["", "</details>", "", "## Answers", ""]
    lines.append("(did not stop): the answer ran to the token limit.")
    lines.append("")
    for question, answers in answers_by_question(models):
        cat = f", {question['category']}" if question.get("category") else ""
        lines += [f"### {question['question']}", "", f"*{question['kind']}{cat}*", ""]
        if question.get("reference"):
            lines += [f"> reference: {question['reference']}", ""]
        for model, answer in zip(models, answers, strict=True):
            flag = "" if answer["finish_reason"] == "stop" else " (did not stop)"
            text = " ".join(answer["answer"].split()) or "(empty)"
            lines += [f"- **{model.name}**{flag}: {text}"]
            for n, p in enumerate(answer.get("passages") or [], 1):
                lines.append(f"  - passage {n} ({p['title'] or 'untitled'}, {p['score']:.2f})")
        lines.append("")
    return "\n".join(lines) + "\n"


def _md_table(rows: list[dict], columns) -> list[str]:
    head = "| model | variant | " + " | ".join(heading(c) for c in columns) + " |"
    sep = "|---|---|" + "---|" * len(columns)
    body = [
        f"| {r['model']} | {r['variant']} | "
        + " | ".join(fmt(r.get(c.key), c.pattern) for c in columns)
        + " |"
        for r in rows
    ]
    return [head, sep, *body]
