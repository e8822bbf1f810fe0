"""What the templates show that takes more than a lookup: a pair beside the passage of its
paper with the evidence marked, and the training's loss curve as an inline SVG."""

from __future__ import annotations

from typing import Any

from markupsafe import Markup, escape

from ..reviews import Review

CONTEXT = 400  # characters of the paper shown around the evidence
MAX_PASSAGE = 4000  # characters shown at most


def passage(text: str, evidence: list[dict[str, Any]]) -> tuple[Markup, bool]:
    """The part of `text` that holds the evidence, each span marked (`<mark class=question>` /
    `approach`); (the opening of the text, False) when the pair records no usable evidence."""
    spans = []
    for ev in evidence or []:
        try:
            start, end = int(ev["start"]), int(ev["end"])
        except (KeyError, TypeError, ValueError):
            continue
        if 0 <= start < end <= len(text):
            field = "question" if ev.get("field") == "question" else "approach"
            spans.append((start, end, field))
    if not spans:
        return Markup(escape(text[:1500]) + ("…" if len(text) > 1500 else "")), False
    spans.sort()
    lo = max(0, spans[0][0] - CONTEXT)
    hi = min(len(text), max(end for _, end, _ in spans) + CONTEXT, lo + MAX_PASSAGE)
    out, at = [], lo
    for start, end, field in spans:
        start, end = max(start, at), min(end, hi)
        if start >= end:
            continue
        out.append(escape(text[at:start]))
        out.append(Markup(f"<mark class='{field}'>") + escape(text[start:end]) + Markup("</mark>"))
        at = end
    out.append(escape(text[at:hi]))
    head = "…" if lo > 0 else ""
    tail = "…" if hi < len(text) else ""
    return Markup(head + "".join(str(part) for part in out) + tail), True


def pair_view(
    pair: dict[str, Any],
    key: str,
    document: dict[str, Any] | None,
    rejection: dict[str, Any] | None,
    review: Review | None,
    curated: bool,
) -> dict[str, Any]:
    """Everything one pair's card shows."""
    text = (document or {}).get("text", "") or ""
    marked, found = passage(text, pair.get("evidence") or [])
    if not curated:
        curator = ("not curated yet", "")
    elif rejection is None:
        curator = ("kept", "")
    else:
        curator = ("rejected", rejection.get("reason", ""))
    edited = review is not None and review.verdict == "edit"
    return {
        "key": key,
        "pair": pair,
        "question": review.question if edited else pair.get("question", ""),
        "approach": review.approach if edited else pair.get("approach", ""),
        "original": pair if edited else None,
        "passage": marked,
        "evidence_found": found,
        "curator": curator[0],
        "curator_reason": curator[1],
        "review": review.verdict if review else "",
        "note": review.note if review else "",
        "document_title": (document or {}).get("title", pair.get("title", "")),
    }


def loss_svg(metrics: list[dict[str, Any]], width: int = 640, height: int = 220) -> Markup:
    """Training loss (and validation loss) against the step, as an inline SVG."""
    series = {
        name: [
            (float(r["step"]), float(r[name]))
            for r in metrics
            if isinstance(r.get(name), (int, float))
        ]
        for name in ("train_loss", "val_loss")
    }
    points = [p for values in series.values() for p in values]
    if not points:
        return Markup("<p class='muted'>no loss recorded yet</p>")
    x0, x1 = min(p[0] for p in points), max(p[0] for p in points)
    y0, y1 = min(p[1] for p in points), max(p[1] for p in points)
    x1, y1 = (x1 if x1 > x0 else x0 + 1), (y1 if y1 > y0 else y0 + 1)
    pad = 36

    def xy(step: float, loss: float) -> str:
        x = pad + (step - x0) / (x1 - x0) * (width - 2 * pad)
        y = height - pad - (loss - y0) / (y1 - y0) * (height - 2 * pad)
        return f"{x:.1f},{y:.1f}"

    parts = [
        f"<svg class='curve' viewBox='0 0 {width} {height}' role='img' "
        f"aria-label='loss curve' xmlns='http://www.w3.org/2000/svg'>",
        f"<line x1='{pad}' y1='{height - pad}' x2='{width - pad}' y2='{height - pad}' "
        "class='axis'/>",
        f"<line x1='{pad}' y1='{pad}' x2='{pad}' y2='{height - pad}' class='axis'/>",
        f"<text x='{pad}' y='{height - 10}'>{x0:g}</text>",
        f"<text x='{width - pad}' y='{height - 10}' text-anchor='end'>step {x1:g}</text>",
        f"<text x='4' y='{pad}'>{y1:.2f}</text>",
        f"<text x='4' y='{height - pad}'>{y0:.2f}</text>",
    ]
    for name, values in series.items():
        if values:
            line = " ".join(xy(*p) for p in values)
            parts.append(f"<polyline class='{name}' points='{line}' fill='none'/>")
    parts.append(
        f"<text x='{width - pad}' y='16' text-anchor='end'><tspan class='train_loss'>— train"
        "</tspan> <tspan class='val_loss'>— validation</tspan></text></svg>"
    )
    return Markup("".join(parts))
