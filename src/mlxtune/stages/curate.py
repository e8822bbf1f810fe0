"""The curate stage: the recipe's curator keeps or rejects each pair (curated.jsonl), and every
rejected pair is written with its reason (curation_rejects.jsonl)."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict
from typing import Any

from ..errors import MlxtuneError, StageError
from ..records import load_documents, load_pairs, sha256_json, write_jsonl
from ..reviews import REVIEWS_FILE, apply_reviews, load_reviews
from .base import Run, Stage, hash_if_exists


def build_curator(run: Run) -> Any:
    curator = run.registry.build("curator", run.recipe.component("curate"))
    curator.setup(cache_dir=run.recipe.cache_path, registry=run.registry)
    return curator


def fingerprint_curate(run: Run) -> dict[str, Any]:
    return {
        "curator": build_curator(run).fingerprint(),
        "pairs": hash_if_exists(run.file("pairs.jsonl")),
        "documents": hash_if_exists(run.file("documents.jsonl")),
        "reviews": _standing_reviews(run),
    }


def _standing_reviews(run: Run) -> str | None:
    """The decisions in force (not the file's bytes): re-saying a decision changes nothing."""
    reviews = load_reviews(run.root)
    if not reviews:
        return None
    return sha256_json(
        sorted((key, r.verdict, r.question, r.approach, r.note) for key, r in reviews.items())
    )


def stage_curate(run: Run) -> str:
    curator = build_curator(run)
    pairs = load_pairs(run.file("pairs.jsonl"))
    documents = {d.id: d for d in load_documents(run.file("documents.jsonl"))}
    try:
        verdicts = curator.curate(pairs, documents)
    except MlxtuneError as exc:
        raise StageError("curate", str(exc)) from None
    reviews = load_reviews(run.root, warn=lambda msg: run.log(f"  [yellow]warning[/] {msg}"))
    pairs, verdicts, reviewed = apply_reviews(pairs, verdicts, reviews)
    kept = [pair for pair, verdict in zip(pairs, verdicts, strict=True) if verdict.keep]
    rejected = [
        {**asdict(pair), "reason": verdict.reason, "score": verdict.score}
        for pair, verdict in zip(pairs, verdicts, strict=True)
        if not verdict.keep
    ]
    write_jsonl(run.file("curation_rejects.jsonl"), rejected)
    write_jsonl(run.file("curated.jsonl"), kept)
    for row in rejected:
        run.log(f"  [yellow]rejected[/] {row['title'] or row['document_id'][:12]}: {row['reason']}")
    if not kept:
        raise StageError(
            "curate",
            f"{curator.name} rejected all {len(pairs)} pairs (reasons in curation_rejects.jsonl): "
            "fix the summaries, loosen curate's options, or set curate.use: none",
        )
    kinds = Counter(row["reason"].split(" (")[0].split(":")[0] for row in rejected)
    detail = ", ".join(f"{n} {kind}" for kind, n in kinds.most_common())
    line = f"{len(kept)} of {len(pairs)} pairs kept ({curator.name})"
    line += f"; {len(rejected)} rejected: {detail}" if rejected else ""
    return line + (f"; {reviewed} decided in review ({REVIEWS_FILE})" if reviewed else "")


NEEDS = ("pairs.jsonl", "documents.jsonl")
WRITES = ("curated.jsonl", "curation_rejects.jsonl")
STAGE = Stage("curate", stage_curate, fingerprint_curate, needs=NEEDS, writes=WRITES)
