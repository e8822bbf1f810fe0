"""What a pair must look like to be trained on: one question ending in "?", an approach in
prose (no section headings, figure or table captions, code, URLs or control characters), both
within word bounds. The rules curator rejects a pair that fails these checks; an LLM
summarizer with `fallback: heuristic` replaces such a pair by the heuristic's, so a small
model's unusable reply does not cost the paper its pair. One definition for both."""

from __future__ import annotations

import re
from dataclasses import dataclass

CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ue000-\uf8ff]")
HEADING = re.compile(
    r"(?:^|[.:]\s+)\d+(?:\.\d+)+\.?\s+[A-Z][a-z]+"  # "3.1 Recurrent Convolution Layer"
    r"|(?:^|\s)(?:\d+\.?\s+)?(?:Introduction|Related Work|Conclusions?|References|"
    r"Acknowledge?ments)(?:\s+[A-Z]|\s*$)"
)
CAPTION = re.compile(r"\b(?:Fig(?:ure)?|Table|Algorithm)\.?\s*\d+\s*[:.]", re.I)
CODE = re.compile(r"[{}]|==|\+=|;\s*\w+\s*\+\+|\bdef\s+\w+\(|\bfor\s*\(|\w+\[\w+\]\s*=")
URL = re.compile(r"https?://|www\.\w")


@dataclass(frozen=True)
class Bounds:
    """Word counts a question and an approach must fall within (the rules curator's options)."""

    min_question_words: int = 4
    max_question_words: int = 80
    min_approach_words: int = 12
    max_approach_words: int = 400


def shape_problem(question: str, approach: str, bounds: Bounds = Bounds()) -> str | None:
    """Why the pair cannot be trained on as it is (one short phrase), or None."""
    b, question, approach = bounds, question.strip(), approach.strip()
    q_words, a_words = len(question.split()), len(approach.split())
    if CONTROL.search(question + approach):
        return "control or private-use characters"
    if not question.endswith("?") or question.count("?") != 1:
        return "the question is not one question ending in '?'"
    if not b.min_question_words <= q_words <= b.max_question_words:
        return f"question of {q_words} words (bounds {b.min_question_words}-{b.max_question_words})"
    if not b.min_approach_words <= a_words <= b.max_approach_words:
        return f"approach of {a_words} words (bounds {b.min_approach_words}-{b.max_approach_words})"
    for pattern, what in (
        (HEADING, "a section heading"),
        (CAPTION, "a figure or table caption"),
        (CODE, "code"),
        (URL, "a URL"),
    ):
        found = pattern.search(approach)
        if found:
            return f"the approach contains {what} ({found.group(0).strip()!r})"
    return None
