"""Question sets: the fixed questions every compared model answers.

Kinds: `recall` (a training paper's question, with its approach as reference: did it learn?),
`heldout` (a test paper's, with reference: does it generalize?), `unseen` (no paper behind it, no
reference: what does it do out of distribution?) and `custom` (the user's own). A YAML file:

    questions:
      - question: How can segmentation work with few labelled images?
        kind: custom            # recall, heldout, unseen or custom (the default)
        reference: ...          # optional
        category: segmentation  # optional
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..errors import MlxtuneError
from ..records import Pair
from ..safe_yaml import YamlProblem, load_yaml_file

KINDS = ("recall", "heldout", "unseen", "custom")
BUILTIN_UNSEEN = Path(__file__).parent / "unseen.yaml"


@dataclass
class Question:
    question: str
    kind: str = "custom"
    reference: str | None = None
    category: str | None = None
    document_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def load_questions(path: str | Path) -> list[Question]:
    path = Path(path)
    try:
        data = load_yaml_file(path)
    except OSError as exc:
        raise MlxtuneError(f"questions file {path}: {exc.strerror or exc}") from None
    except YamlProblem as exc:  # alias bombs, deep nesting, duplicate keys, binary: one line
        where = f" at line {exc.line}" if exc.line else ""
        raise MlxtuneError(f"questions file {path}: invalid YAML{where}: {exc.problem}") from None
    items = data.get("questions") if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise MlxtuneError(f"questions file {path}: expected a list under 'questions:'")
    questions = []
    for number, item in enumerate(items, 1):
        if isinstance(item, str):
            item = {"question": item}
        if not isinstance(item, dict) or not isinstance(item.get("question"), str):
            raise MlxtuneError(f"questions file {path}: item {number} needs a 'question' string")
        unknown = set(item) - {"question", "kind", "reference", "category", "document_id"}
        if unknown:
            raise MlxtuneError(
                f"questions file {path}: item {number} has unknown keys {sorted(unknown)}"
            )
        kind = item.get("kind", "custom")
        if kind not in KINDS:
            raise MlxtuneError(
                f"questions file {path}: item {number} kind '{kind}' is not one of {KINDS}"
            )
        questions.append(Question(**item))
    return questions


def build_questions(
    pairs: list[Pair], *, recall: int, heldout: int, unseen: bool
) -> list[Question]:
    """Recall questions from the train split and held-out ones from the test split (valid when
    there is no test split), spread over categories; plus the built-in unseen questions."""
    questions = _spread([p for p in pairs if p.split == "train"], recall, "recall")
    split = heldout_split(pairs)
    questions += _spread([p for p in pairs if p.split == split], heldout, "heldout")
    if unseen:
        questions += load_questions(BUILTIN_UNSEEN)
    return questions


def heldout_split(pairs: list[Pair]) -> str | None:
    """Where held-out questions come from: "test" papers, else "valid" ones (which also chose
    the kept adapter, so the report says so), else None."""
    for split in ("test", "valid"):
        if any(p.split == split for p in pairs):
            return split
    return None


def _spread(pairs: list[Pair], limit: int, kind: str) -> list[Question]:
    """Up to `limit` pairs, taking one per category in turn so every category is represented."""
    by_category: dict[str, list[Pair]] = {}
    for pair in sorted(pairs, key=lambda p: (p.category, p.document_id)):
        by_category.setdefault(pair.category, []).append(pair)
    chosen: list[Pair] = []
    while len(chosen) < limit and any(by_category.values()):
        for category in sorted(by_category):
            if by_category[category] and len(chosen) < limit:
                chosen.append(by_category[category].pop(0))
    return [Question(p.question, kind, p.approach, p.category, p.document_id) for p in chosen]


def merge(*sets: list[Question]) -> list[Question]:
    """Concatenate, dropping repeated question texts (the first one wins)."""
    seen: set[str] = set()
    merged = []
    for questions in sets:
        for q in questions:
            key = " ".join(q.question.lower().split())
            if key not in seen:
                seen.add(key)
                merged.append(q)
    return merged
