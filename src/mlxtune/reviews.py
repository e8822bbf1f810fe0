"""A human's verdicts on pairs: an append-only `reviews.jsonl` in the run directory.

Each line is one decision (accept, reject, edit, or clear an earlier one) on one pair, named by
`pair_key`: a digest of the pair's paper, question and approach as the summarizer wrote them.
Keying on the content rather than a row number is what lets a decision survive re-runs (the same
pair comes back, the same key) and a changed summarizer (a pair that no longer exists is simply
not matched). The last decision on a key wins; the file is never rewritten, so nothing a reviewer
did is lost, and it is part of the curate stage's fingerprint, so a new decision re-curates,
re-formats and re-trains as any other change would.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .components import Verdict
from .records import Pair, append_jsonl, from_row, read_jsonl

REVIEWS_FILE = "reviews.jsonl"
VERDICTS = ("accept", "reject", "edit", "clear")
MAX_TEXT = 4000  # characters in an edited question or approach


class ReviewError(ValueError):
    """A decision that cannot be recorded (unknown verdict, empty edit, ...)."""


@dataclass
class Review:
    """One decision on one pair. `question`/`approach` are the edited texts (verdict "edit")."""

    pair: str
    verdict: str
    question: str = ""
    approach: str = ""
    note: str = ""
    document_id: str = ""
    at: str = ""


def pair_key(pair: Pair | dict[str, Any]) -> str:
    """The pair's identity: its paper and its text as the summarizer wrote them."""
    get = pair.get if isinstance(pair, dict) else lambda name: getattr(pair, name)
    text = "\x1f".join(str(get(name)) for name in ("document_id", "question", "approach"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def check_review(review: Review) -> Review:
    """The decision, cleaned, or a ReviewError saying what is wrong with it."""
    if review.verdict not in VERDICTS:
        raise ReviewError(f"verdict must be one of {', '.join(VERDICTS)}, not {review.verdict!r}")
    if not review.pair or len(review.pair) != 16 or not _is_hex(review.pair):
        raise ReviewError(f"pair must be a 16-character pair key, not {review.pair!r}")
    question, approach = review.question.strip(), review.approach.strip()
    if review.verdict == "edit":
        if not question or not approach:
            raise ReviewError("an edit needs both a question and an approach")
        if len(question) > MAX_TEXT or len(approach) > MAX_TEXT:
            raise ReviewError(f"an edited question or approach is at most {MAX_TEXT} characters")
    elif question or approach:
        raise ReviewError(f"a {review.verdict!r} decision carries no question or approach")
    return replace(review, question=question, approach=approach, note=review.note.strip()[:500])


def append_review(run_dir: str | Path, review: Review) -> Review:
    """Record one decision durably (one fsynced line) and return it as written."""
    review = check_review(review)
    if not review.at:
        review = replace(review, at=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    append_jsonl(Path(run_dir) / REVIEWS_FILE, review)
    return review


def load_reviews(run_dir: str | Path, warn: Any = None) -> dict[str, Review]:
    """The standing decision per pair key (the last one; "clear" removes it).

    A damaged line is skipped (reported through `warn(message)` when given): one bad line must not
    cost a reviewer the rest of an evening's decisions."""
    path = Path(run_dir) / REVIEWS_FILE
    if not path.exists():
        return {}

    def on_bad(number: int, problem: str) -> None:
        if warn:
            warn(f"{path} line {number}: {problem}; skipped")

    standing: dict[str, Review] = {}
    for row in read_jsonl(path, on_bad=on_bad):
        try:
            review = check_review(from_row(Review, row))
        except ValueError as exc:
            if warn:
                warn(f"{path}: a decision skipped ({exc})")
            continue
        if review.verdict == "clear":
            standing.pop(review.pair, None)
        else:
            standing[review.pair] = review
    return standing


def apply_reviews(
    pairs: list[Pair], verdicts: list[Verdict], reviews: dict[str, Review]
) -> tuple[list[Pair], list[Verdict], int]:
    """The curator's verdicts with every human decision put over them, and how many applied.

    Accept keeps a pair the curator rejected; reject drops one it kept; edit keeps the pair with
    the reviewer's text. The pair's `review` field says which, for the files that follow."""
    out_pairs: list[Pair] = []
    out_verdicts: list[Verdict] = []
    applied = 0
    for pair, verdict in zip(pairs, verdicts, strict=True):
        review = reviews.get(pair_key(pair))
        if review is None:
            out_pairs.append(pair)
            out_verdicts.append(verdict)
            continue
        applied += 1
        if review.verdict == "reject":
            reason = "rejected in review" + (f": {review.note}" if review.note else "")
            out_pairs.append(replace(pair, review="rejected"))
            out_verdicts.append(Verdict(keep=False, reason=reason))
        elif review.verdict == "edit":
            edited = replace(pair, question=review.question, approach=review.approach)
            out_pairs.append(replace(edited, review="edited"))
            out_verdicts.append(Verdict(keep=True, reason="edited in review"))
        else:
            out_pairs.append(replace(pair, review="accepted"))
            out_verdicts.append(Verdict(keep=True, reason="accepted in review"))
    return out_pairs, out_verdicts, applied


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdef" for c in text)
