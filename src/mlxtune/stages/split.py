"""The split stage: papers dealt per category into train / valid / test (splits.json)."""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from typing import Any

from ..records import Document, atomic_write_json, load_documents
from .base import Run, Stage, section_fingerprint

# `test: auto` reserves a test paper only where this many train papers remain beside it
AUTO_TEST_MIN_TRAIN = 2


def n_test_for(spec: float | str, n: int, n_valid: int) -> int:
    """`auto`: one test paper where the category keeps valid papers and two train papers
    besides (a held-out set that chose nothing: validation picks the kept adapter)."""
    if spec == "auto":
        return 1 if n - n_valid - 1 >= AUTO_TEST_MIN_TRAIN else 0
    return count_for(float(spec), n)


def count_for(spec: float, n: int) -> int:
    """An int >= 1 is a count; a float < 1 a share of the category (rounded, at least 1)."""
    if spec >= 1:
        return int(spec)
    return max(1, round(spec * n)) if spec > 0 else 0


def assign_category(
    members: list[Document], counts: Any, seed: int, category: str
) -> tuple[dict[str, str], bool]:
    """Shuffle one category by seed and deal papers to valid, test, then train; the rest unused.

    A category too small for its valid + test papers and one train paper goes to train whole
    (training data matters most) and is reported.
    """
    members = sorted(members, key=lambda d: d.id)
    random.Random(f"{seed}:{category}").shuffle(members)
    n = len(members)
    n_valid = count_for(counts.valid, n)
    n_test = n_test_for(counts.test, n, n_valid)
    n_train = n - n_valid - n_test if counts.train == "rest" else count_for(counts.train, n)
    if n_valid + n_test + 1 > n:
        return {d.id: "train" for d in members}, True
    n_train = max(1, min(n_train, n - n_valid - n_test))
    labels = ["valid"] * n_valid + ["test"] * n_test + ["train"] * n_train
    labels += ["unused"] * (n - len(labels))
    return {d.id: label for d, label in zip(members, labels, strict=True)}, False


def stage_split(run: Run) -> str:
    spec = run.recipe.split
    docs = [d for d in load_documents(run.file("documents.jsonl")) if d.ok]
    by_category: dict[str, dict[str, Document]] = defaultdict(dict)
    for doc in docs:
        by_category[doc.category].setdefault(doc.id, doc)
    assignment: dict[str, str] = {}
    too_small, no_test = [], []
    for category in sorted(by_category):
        members = list(by_category[category].values())
        labels, small = assign_category(members, spec.per_category, spec.seed, category)
        assignment.update(labels)
        if small:
            too_small.append(f"{category} ({len(members)})")
        elif "test" not in labels.values():
            no_test.append(category)
    atomic_write_json(
        run.file("splits.json"), {"splits": assignment, "too_small": too_small, "no_test": no_test}
    )
    counts = Counter(assignment.values())
    line = ", ".join(f"{counts.get(s, 0)} {s}" for s in ("train", "valid", "test"))
    line += f" papers in {len(by_category)} categories"
    if counts.get("unused"):
        line += f"; {counts['unused']} unused (beyond split.per_category)"
    if too_small:
        line += f"; all-train (too small to split): {', '.join(too_small)}"
    if no_test and not counts.get("test"):
        line += "; no test papers: held-out questions come from the validation papers"
    elif no_test:
        line += f"; no test paper in {', '.join(no_test)}"
    return line


FINGERPRINT = section_fingerprint("split", "documents.jsonl")
NEEDS = ("documents.jsonl",)
WRITES = ("splits.json",)
STAGE = Stage("split", stage_split, FINGERPRINT, needs=NEEDS, writes=WRITES)
