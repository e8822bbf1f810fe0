"""Is extracted text readable? A score per document, so font-encoding garbage never becomes
training data.

A PDF whose fonts lack a usable character map extracts as shifted or substituted letters
("Wkh vwxg|", "Σhere is a growing amount of audio data available on the =nternet"): pypdf gives
text, only not the paper's. Two measures, both cheap and language-light:

- `common`: the share of words that are among English's most frequent function words. Running
  prose has 35-50% of them (measured on the sample papers and ../shared/corpus: 0.33-0.47); a
  shifted or substituted alphabet has almost none, however word-like it looks.
- `well_formed`: the share of letter-bearing tokens that look like words (letters, optionally one
  capital first, hyphens, trailing punctuation) rather than letters mixed with symbols or capitals
  inside ("=nternet", "todayV", "a}e").

`score = min(1, common / 0.3, well_formed / 0.9)`: either measure failing fails the text. The 29
readable papers of ../shared/corpus score 0.76-1.0 (two old TeX papers whose words are split by
letter spacing are the lowest); a shifted alphabet scores about 0.0, a substituted one under 0.5
(tests/test_data_quality.py builds both). Documents under
`extract.min_readability` (default 0.5) are skipped with problem `unreadable-text` and the score
in the reason; the OCR extractor (mlxtune-ocr) reads such a paper from its page images instead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

COMMON_WORDS = frozenset(
    [
        "a",
        "about",
        "above",
        "after",
        "all",
        "also",
        "an",
        "and",
        "any",
        "are",
        "as",
        "at",
        "be",
        "because",
        "been",
        "before",
        "being",
        "between",
        "both",
        "but",
        "by",
        "can",
        "could",
        "did",
        "do",
        "does",
        "each",
        "for",
        "from",
        "had",
        "has",
        "have",
        "he",
        "her",
        "here",
        "his",
        "how",
        "however",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "itself",
        "may",
        "more",
        "most",
        "much",
        "must",
        "no",
        "not",
        "of",
        "on",
        "one",
        "only",
        "or",
        "other",
        "our",
        "out",
        "over",
        "same",
        "should",
        "show",
        "shown",
        "since",
        "so",
        "some",
        "such",
        "than",
        "that",
        "the",
        "their",
        "them",
        "then",
        "there",
        "these",
        "they",
        "this",
        "those",
        "through",
        "thus",
        "to",
        "two",
        "under",
        "up",
        "upon",
        "use",
        "used",
        "using",
        "was",
        "we",
        "were",
        "what",
        "when",
        "where",
        "whether",
        "which",
        "while",
        "who",
        "why",
        "will",
        "with",
        "within",
        "without",
        "would",
    ]
)
_TOKEN = re.compile(r"\S+")
_WORD = re.compile(
    r"^[\"'(\[]*(?:[A-Za-z][a-z]*|[A-Z]{2,}s?)(?:[-'][A-Za-z][a-z]*)*[\"')\].,;:!?%]*$"
)
_NUMBERISH = re.compile(r"^[\"'(\[]*[\d.,%+\-−×=<>/:;()\[\]]+[\"')\].,;:]*$")
_BARE = re.compile(r"[^a-z]")


@dataclass(frozen=True)
class Readability:
    score: float
    common: float
    well_formed: float
    words: int

    def describe(self) -> str:
        return (
            f"readability {self.score:.2f} ({self.common:.0%} common words, "
            f"{self.well_formed:.0%} well-formed, {self.words} words)"
        )


def readability(text: str, sample_words: int = 8000) -> Readability:
    """The readability of `text` (its first `sample_words` tokens are enough)."""
    tokens = _TOKEN.findall(text)[:sample_words]
    lettered = [t for t in tokens if any(c.isalpha() for c in t)]
    if not lettered:
        return Readability(0.0, 0.0, 0.0, 0)
    common = sum(_BARE.sub("", t.lower()) in COMMON_WORDS for t in lettered) / len(lettered)
    formed = sum(bool(_WORD.match(t) or _NUMBERISH.match(t)) for t in lettered) / len(lettered)
    score = min(1.0, common / 0.3, formed / 0.9)
    return Readability(round(score, 3), round(common, 3), round(formed, 3), len(lettered))
