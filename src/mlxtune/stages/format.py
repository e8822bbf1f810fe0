"""The format stage: the curated pairs into training examples with the recipe's formatter
(data/*.jsonl)."""

from __future__ import annotations

from typing import Any

from ..errors import StageError
from ..records import load_pairs, write_jsonl
from .base import Run, Stage, section_fingerprint


def stage_format(run: Run) -> str:
    formatter = run.registry.build("formatter", run.recipe.component("format"))
    pairs = load_pairs(run.file("curated.jsonl"))
    by_split: dict[str, list[dict[str, Any]]] = {"train": [], "valid": [], "test": []}
    for pair in pairs:
        by_split[pair.split].extend(e.to_json() for e in formatter.examples(pair))
    if not by_split["train"]:
        raise StageError("format", "no training examples (every pair is in valid/test?)")
    for split, rows in by_split.items():
        write_jsonl(run.file(f"data/{split}.jsonl"), rows)
    return ", ".join(f"{len(rows)} {split}" for split, rows in by_split.items()) + (
        f" examples ({formatter.name})"
    )


FINGERPRINT = section_fingerprint("format", "curated.jsonl")
NEEDS = ("curated.jsonl",)
WRITES = ("data/train.jsonl", "data/valid.jsonl", "data/test.jsonl")
STAGE = Stage("format", stage_format, FINGERPRINT, needs=NEEDS, writes=WRITES)
