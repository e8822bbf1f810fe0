"""A run directory written as the stages write theirs (documents, pairs with evidence offsets,
the curate stage's kept and rejected pairs, a manifest, a training's metrics), of any size:
`mlxtune ui`'s tests and bench/ui_pages.py read it without running a model."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

CATEGORIES = ("vision", "language", "speech")
FILLER = (
    "Prior work trains each model separately and reports the error on held-out data. "
    "We follow the usual protocol and keep the settings of the baselines unchanged. "
)


def paper_text(n: int, chars: int) -> tuple[str, str, str]:
    """A paper's text with its question and approach sentences inside; (text, q, a)."""
    question = f"How can model {n} be trained with fewer labelled examples?"
    approach = f"We pretrain model {n} on unlabelled data and fine-tune it on the labelled set."
    body = (FILLER * (chars // len(FILLER) + 1))[:chars]
    half = len(body) // 2
    text = f"Paper {n}\nIntroduction\n{body[:half]} {question} {body[half:]}\nMethod\n{approach}\n"
    return text, question, approach


def make_run(root: Path, papers: int, chars: int = 2000, skipped_every: int = 10) -> Path:
    """A run of `papers` papers (every `skipped_every`th skipped) with one pair per paper;
    the curator rejected every fifth pair."""
    root.mkdir(parents=True, exist_ok=True)
    docs, pairs, kept, rejected = [], [], [], []
    for n in range(papers):
        text, question, approach = paper_text(n, chars)
        doc_id = hashlib.sha256(f"paper {n}".encode()).hexdigest()
        category = CATEGORIES[n % len(CATEGORIES)]
        skipped = skipped_every and n % skipped_every == skipped_every - 1
        docs.append(
            {
                "id": doc_id,
                "path": str(root / "papers" / category / f"paper-{n}.pdf"),
                "category": category,
                "status": "skipped" if skipped else "ok",
                "reason": "image-only: no text layer (run OCR)" if skipped else "",
                "problem": "",
                "title": f"Paper {n}",
                "text": "" if skipped else text,
                "sections": {},
                "pages": 8,
                "readability": 0.4 if skipped else 0.97,
            }
        )
        if skipped:
            continue
        q_at, a_at = text.index(question), text.index(approach)
        pair = {
            "document_id": doc_id,
            "category": category,
            "question": question,
            "approach": approach,
            "title": f"Paper {n}",
            "split": "train",
            "summarizer": "heuristic",
            "evidence": [
                {
                    "field": "question",
                    "section": "introduction",
                    "start": q_at,
                    "end": q_at + len(question),
                    "text": question,
                },
                {
                    "field": "approach",
                    "section": "method",
                    "start": a_at,
                    "end": a_at + len(approach),
                    "text": approach,
                },
            ],
        }
        pairs.append(pair)
        if n % 5 == 0:
            rejected.append(
                {**pair, "reason": "too short (approach under 20 words)", "score": None}
            )
        else:
            kept.append(pair)
    for name, rows in (
        ("documents.jsonl", docs),
        ("pairs.jsonl", pairs),
        ("curated.jsonl", kept),
        ("curation_rejects.jsonl", rejected),
    ):
        with open(root / name, "w") as fh:
            fh.writelines(json.dumps(row) + "\n" for row in rows)
    stages = {
        "extract": {
            "summary": f"{papers} files",
            "seconds": 12.5,
            "finished": "2026-01-01T10:00:00+00:00",
        },
        "summarize": {
            "summary": f"{len(pairs)} pairs",
            "seconds": 3.0,
            "finished": "2026-01-01T10:01:00+00:00",
        },
        "curate": {
            "summary": f"{len(kept)} of {len(pairs)} pairs kept",
            "seconds": 0.2,
            "finished": "2026-01-01T10:01:01+00:00",
        },
    }
    manifest = {"stages": stages, "recipe": {"name": root.name, "train": {"iters": 100}}}
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def training_metrics(folder: Path, steps: int) -> Path:
    """metrics.jsonl as the training loop appends it, up to `steps`."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "metrics.jsonl"
    with open(path, "w") as fh:
        for step in range(0, steps + 1, 10):
            if step:
                fh.write(json.dumps({"step": step, "train_loss": 5.0 - step / 50}) + "\n")
            if step % 20 == 0:
                fh.write(json.dumps({"step": step, "val_loss": 5.5 - step / 60}) + "\n")
    return path
