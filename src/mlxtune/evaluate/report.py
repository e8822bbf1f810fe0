"""The comparison report: report.json (everything), report.md and report.html (a metrics table
with the base model first, every question's answers side by side, loss curves, per-category
metrics) and loss_curves.png."""

from __future__ import annotations

import base64
import html
import math
from pathlib import Path
from typing import Any

from ..records import atomic_write_bytes, atomic_write_json, atomic_write_text
from .runner import ModelEvaluation

# (column title, key in a summary row, format); lower is better unless noted in docs
COLUMNS = [
    ("stop rate", "stopped", "{:.2f}"),
    ("loop rate", "looped", "{:.2f}"),
    ("repeated 4-grams", "repeat_4gram", "{:.3f}"),
    ("longest repeat (words)", "longest_repeat", "{:.1f}"),
    ("distinct-2", "distinct_2", "{:.3f}"),
    ("echo", "echo", "{:.3f}"),
    ("decoration", "decoration", "{:.3f}"),
    ("words", "words", "{:.0f}"),
    ("ROUGE-L recall", "rouge_l_recall", "{:.3f}"),
    ("ROUGE-L held-out", "rouge_l_heldout", "{:.3f}"),
    ("held-out loss", "heldout_loss", "{:.3f}"),
    ("held-out ppl", "heldout_ppl", "{:.1f}"),
    ("best val loss", "best_val_loss", "{:.3f}"),
    ("judge (1-5)", "judge_score", "{:.2f}"),
    ("pairs kept", "pairs_kept", "{:.0f}"),
    ("pairs rejected", "pairs_rejected", "{:.0f}"),
]


def mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None and not math.isnan(v)]
    return sum(present) / len(present) if present else None


def summary_row(model: ModelEvaluation, category: str | None = None) -> dict:
    """Means over the model's answers (of one category, when given)."""
    answers = [a for a in model.answers if category is None or a.get("category") == category]
    keys = {k for a in answers for k in a["metrics"]}
    row: dict[str, Any] = {
        "model": model.name,
        "formatter": model.formatter,
        "trained": model.trained,
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
    table = {}
    for category in categories:
        table[category] = [summary_row(m, category) for m in models]
    return table


def fmt(value: Any, pattern: str) -> str:
    return "–" if value is None else pattern.format(value)


def write_report(
    out: Path, models: list[ModelEvaluation], questions: list[dict], sampling: dict
) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    rows = [summary_row(m) for m in models]
    categories = per_category(models)
    plot = loss_plot(models, out / "loss_curves.png")
    report = {
        "models": [m.to_json() for m in models],
        "summary": rows,
        "per_category": categories,
        "questions": questions,
        "sampling": sampling,
    }
    atomic_write_json(out / "report.json", report)
    atomic_write_text(out / "report.md", markdown(models, rows, categories, sampling, plot))
    atomic_write_text(out / "report.html", to_html(models, rows, categories, sampling, plot))
    paths = {"json": out / "report.json", "md": out / "report.md", "html": out / "report.html"}
    if plot:
        paths["png"] = plot
    return paths


def loss_plot(models: list[ModelEvaluation], path: Path) -> Path | None:
    """Training and validation loss against step, one colour per trained model."""
    curves = [(m.name, m.training.get("curves") or []) for m in models if m.training]
    if not any(curves for _, curves in curves):
        return None
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(8, 4.5), dpi=100)
    for index, (name, rows) in enumerate(curves):
        color = f"C{index}"
        train = [(r["step"], r["train_loss"]) for r in rows if "train_loss" in r]
        valid = [(r["step"], r["val_loss"]) for r in rows if "val_loss" in r]
        if train:
            axis.plot(*zip(*train, strict=True), color=color, label=f"{name} train")
        if valid:
            axis.plot(
                *zip(*valid, strict=True),
                color=color,
                linestyle="--",
                marker="o",
                markersize=3,
                label=f"{name} val",
            )
    axis.set_xlabel("step")
    axis.set_ylabel("loss")
    axis.set_title("Training (solid) and validation (dashed) loss")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def _answers_by_question(models: list[ModelEvaluation]) -> list[tuple[dict, list[dict]]]:
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


def markdown(models, rows, categories, sampling, plot) -> str:
    lines = ["# mlxtune comparison", ""]
    lines.append(
        f"{len(models)} models, {len(models[0].answers)} questions, "
        + sampling_line(models, sampling)
        + ". Metrics are means over the questions (see docs/evaluate.md)."
    )
    lines += ["", "## Metrics", ""]
    lines += _md_table(rows)
    if plot:
        lines += ["", "## Loss curves", "", f"![loss curves]({plot.name})"]
    lines += ["", "## Per category", ""]
    for category, crow in categories.items():
        lines += [f"### {category}", ""] + _md_table(crow) + [""]
    lines += ["## Answers", ""]
    for question, answers in _answers_by_question(models):
        cat = f", {question['category']}" if question.get("category") else ""
        lines += [f"### {question['question']}", "", f"*{question['kind']}{cat}*", ""]
        if question.get("reference"):
            lines += [f"> reference: {question['reference']}", ""]
        for model, answer in zip(models, answers, strict=True):
            flag = "" if answer["finish_reason"] == "stop" else " (did not stop)"
            text = " ".join(answer["answer"].split()) or "(empty)"
            lines += [f"- **{model.name}**{flag}: {text}"]
        lines.append("")
    return "\n".join(lines) + "\n"


def _md_table(rows: list[dict]) -> list[str]:
    head = "| model | " + " | ".join(title for title, _, _ in COLUMNS) + " |"
    sep = "|---|" + "---|" * len(COLUMNS)
    body = [
        f"| {r['model']} | " + " | ".join(fmt(r.get(k), p) for _, k, p in COLUMNS) + " |"
        for r in rows
    ]
    return [head, sep, *body]


CSS = """
body{font:14px/1.45 -apple-system,system-ui,sans-serif;margin:2em auto;max-width:1200px;
color:#222}table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;
padding:4px 8px;vertical-align:top}th{background:#f3f3f3}td.num{text-align:right}
.answers{table-layout:fixed;width:100%}
.answers td{white-space:pre-wrap;overflow-wrap:anywhere}.nostop{background:#fff3f0}
.ref{color:#555}
"""


def to_html(models, rows, categories, sampling, plot) -> str:
    e = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>mlxtune comparison</title>",
        f"<style>{CSS}</style></head><body><h1>mlxtune comparison</h1>",
        f"<p>{len(models)} models, {len(models[0].answers)} questions, "
        + e(sampling_line(models, sampling))
        + "</p>",
        "<h2>Metrics</h2>",
        _html_table(rows, "metrics"),
    ]
    if plot:
        data = base64.b64encode(plot.read_bytes()).decode()
        parts += [
            "<h2>Loss curves</h2>",
            f"<img class='plot' alt='loss curves' src='data:image/png;base64,{data}'>",
        ]
    parts.append("<h2>Per category</h2>")
    for category, crow in categories.items():
        parts += [f"<h3>{e(category)}</h3>", _html_table(crow, "category")]
    parts.append("<h2>Answers</h2><table class='answers'><tr><th>question</th>")
    parts += [f"<th>{e(m.name)}</th>" for m in models]
    parts.append("</tr>")
    for question, answers in _answers_by_question(models):
        ref = (
            f"<div class='ref'>reference: {e(question['reference'])}</div>"
            if question.get("reference")
            else ""
        )
        parts.append(
            f"<tr><td><b>{e(question['question'])}</b><br><i>{e(question['kind'])}</i>{ref}</td>"
        )
        for answer in answers:
            cls = "" if answer["finish_reason"] == "stop" else " class='nostop'"
            parts.append(f"<td{cls}>{e(answer['answer'])}</td>")
        parts.append("</tr>")
    parts.append("</table>")
    # lets a headless browser check report that the plot really decoded
    parts.append(
        "<script>window.addEventListener('load',function(){var i=document.querySelector"
        "('img.plot');document.body.setAttribute('data-plot-width',i?i.naturalWidth:0);"
        "document.body.setAttribute('data-metric-rows',document.querySelectorAll"
        "('table.metrics tr.model').length);var t=document.querySelector('table.metrics');"
        "document.body.setAttribute('data-metrics-text',t?t.innerText:'');});</script>"
    )
    parts.append("</body></html>")
    return "\n".join(parts)


def _html_table(rows: list[dict], cls: str) -> str:
    e = html.escape
    head = "<tr><th>model</th>" + "".join(f"<th>{e(t)}</th>" for t, _, _ in COLUMNS) + "</tr>"
    body = "".join(
        f"<tr class='model'><td>{e(r['model'])}</td>"
        + "".join(f"<td class='num'>{fmt(r.get(k), p)}</td>" for _, k, p in COLUMNS)
        + "</tr>"
        for r in rows
    )
    return f"<table class='{cls}'>{head}{body}</table>"
