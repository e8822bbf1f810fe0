"""Words that a PDF's spacing broke apart, put back together with a word list.

Two kinds of old PDF break words with spaces:

- kerned fonts without word boundaries (1990s TeX with Type 3 fonts): a word arrives in pieces
  wherever the font kerns, "Con v olutional Net w orks for Images, Sp eec h", on nearly every
  line. `join_kerned` joins a run of pieces when the joined word is English (wordfreq) or a word
  the paper writes whole, and at least one piece is not a word of its own; it runs only on a
  document where such runs are common, so "f or g" in a normal paper's formula stays as it is.
- letter-spaced headings and titles, "A B S T R A C T", "w o r d s": runs of single letters
  become the word they spell (or the words, split where English says, "i n t r o d u c t i o n"
  -> "introduction").

A ligature drawn from a symbol font can arrive as "/fi" ("de/ficiency"): `drop_ligature_slashes`
removes the slash in a document full of them.
"""

from __future__ import annotations

import re
from collections.abc import Callable

KNOWN_ZIPF = 2.0  # a joined word at least this common in English counts as a word
PIECE_ZIPF = 3.0  # a piece of three letters or more rarer than this is a fragment
# two-letter pieces are words only if they are these ("en", "er", "ts", "ok" are fragments)
TWO_LETTER_WORDS = frozenset(
    [
        "of",
        "to",
        "in",
        "is",
        "on",
        "we",
        "an",
        "be",
        "by",
        "as",
        "at",
        "it",
        "or",
        "if",
        "no",
        "so",
        "do",
        "up",
        "us",
        "he",
        "me",
        "my",
        "go",
        "am",
    ]
)
KERNED_SHARE = 0.05  # joinable runs per word from which a document counts as kerned
# (measured: 15-23% in two 1990s TeX papers, at most 1.3% in 27 others)
LONGEST = 4  # pieces in one run
_SINGLE_WORDS = frozenset({"a", "i", "A", "I"})
_LEAD = "([\"'“‘"
_TRAIL = ".,;:!?)'\"”’"
_LIGATURE_SLASH = re.compile(r"(?<=[^\W\d_])/(?=f[fil])|(?<![\w/])/(?=f[fil][a-z])")


def drop_ligature_slashes(text: str) -> str:
    """ "de/ficiency", "/first", "di/fferent": a symbol-font ligature after a slash (only in a
    document with at least five, so that "and/for" stays)."""
    if len(_LIGATURE_SLASH.findall(text)) < 5:
        return text
    return _LIGATURE_SLASH.sub("", text)


def _split(token: str) -> tuple[str, str, str]:
    """(leading punctuation, letters, trailing punctuation) of a token."""
    core = token.lstrip(_LEAD)
    lead = token[: len(token) - len(core)]
    letters = core.rstrip(_TRAIL)
    if letters[-2:] in ("'s", "’s"):  # "net w ork's"
        letters = letters[:-2]
    return lead, letters, core[len(letters) :]


class _Words:
    """Which strings are words: English (wordfreq) or what the paper writes whole."""

    def __init__(self, counts: dict[str, int], zipf: Callable[[str], float]):
        self.counts, self.zipf = counts, zipf

    def known(self, word: str) -> bool:
        lower = word.lower()
        return self.zipf(lower) >= KNOWN_ZIPF or self.counts.get(lower, 0) >= 3

    def fragment(self, piece: str) -> bool:
        if len(piece) == 1:
            return piece not in _SINGLE_WORDS
        if len(piece) == 2:
            return piece.lower() not in TWO_LETTER_WORDS
        return self.zipf(piece.lower()) < PIECE_ZIPF  # (the paper's own counts hold fragments)


def _run_end(tokens: list[str], start: int, words: _Words) -> int:
    """The end of the longest run from `start` that joins into a word (0: none)."""
    lead, first, trail = _split(tokens[start])
    if not first.isalpha() or trail:
        return 0
    best = 0
    parts = [first]
    for end in range(start + 1, min(start + LONGEST, len(tokens))):
        lead_next, core, trail = _split(tokens[end])
        if lead_next or not core.isalpha() or not core[:1].islower():
            break
        parts.append(core)
        joined = "".join(parts)
        if words.known(joined) and any(words.fragment(p) for p in parts):
            best = end + 1
        if trail:
            break
    return best


def join_kerned(text: str, counts: dict[str, int], zipf: Callable[[str], float]) -> str:
    """Join the pieces of kerned words in a document where they are common (see the module)."""
    words = _Words(counts, zipf)
    lines = [line.split(" ") for line in text.split("\n")]
    total = sum(len(tokens) for tokens in lines)
    runs = sum(1 for tokens in lines for i in range(len(tokens)) if _run_end(tokens, i, words))
    if total == 0 or runs < KERNED_SHARE * total:
        return text
    return "\n".join(" ".join(_rejoin(tokens, words)) for tokens in lines)


FRAGMENT_COST = -15.0  # a piece left on its own that is no word ("ev", "tually")


def _rejoin(tokens: list[str], words: _Words) -> list[str]:
    """The likeliest words for one line's tokens, each token kept or joined with the ones after
    it (English word probabilities; a fragment left alone costs much), so that "the w ord" is
    "the word", not "thew ord"."""
    n = len(tokens)
    best: list[tuple[float, int]] = [(0.0, 0)] + [(float("-inf"), 0)] * n
    for end in range(1, n + 1):
        for start in range(max(0, end - LONGEST), end):
            score = _cost(tokens[start:end], words)
            if score is not None and best[start][0] + score > best[end][0]:
                best[end] = (best[start][0] + score, start)
    out, end = [], n
    while end > 0:
        start = best[end][1]
        out.append("".join(tokens[start:end]))
        end = start
    return out[::-1]


def _cost(pieces: list[str], words: _Words) -> float | None:
    """log10 probability of `pieces` as one word (None: they cannot be one)."""
    if len(pieces) == 1:
        _, core, _ = _split(pieces[0])
        if not core.isalpha():
            return 0.0
        return FRAGMENT_COST if words.fragment(core) else words.zipf(core.lower()) - 9.0
    parts = [_split(p) for p in pieces]
    if any(lead for lead, _, _ in parts[1:]) or any(trail for _, _, trail in parts[:-1]):
        return None
    cores = [core for _, core, _ in parts]
    if not all(c.isalpha() for c in cores) or any(not c[:1].islower() for c in cores[1:]):
        return None
    joined = "".join(cores)
    if not words.known(joined) or not any(words.fragment(c) for c in cores):
        return None
    # "o v er all" is "over all": a common word is not swallowed by a word complete before it
    before = "".join(cores[:-1])
    if not words.fragment(cores[-1]) and not words.fragment(before) and words.known(before):
        return None
    return max(words.zipf(joined.lower()), KNOWN_ZIPF) - 9.0


# three or more single letters, each followed by one space (two or more spaces, or a line end,
# separate words)
_SPACED = re.compile(r"(?<![^\W\d_])(?:[^\W\d_] ){2,}[^\W\d_](?![^\W\d_])")


def join_letter_spaced(text: str, zipf: Callable[[str], float]) -> str:
    """ "A B S T R A C T" -> "ABSTRACT", "w o r d s  s p l i t" -> "words split"; a run that
    spells no word (a list of symbols, "x y z") stays."""

    def replace(match: re.Match) -> str:
        letters = match.group(0).replace(" ", "")
        if len(letters) < 4 and not (letters[0].isupper() and letters[1:].islower()):
            return match.group(0)  # "x y z": symbols
        words = segment(letters, zipf)
        if letters.isupper() and (len(words) != 1 or zipf(letters.lower()) < 3.5):
            # "A B C D": symbols, unless one common word ("ABSTRACT", "INTRODUCTION")
            return match.group(0)
        return " ".join(words) if words else match.group(0)

    return _SPACED.sub(replace, text)


def segment(letters: str, zipf: Callable[[str], float], longest: int = 24) -> list[str]:
    """`letters` as the likeliest run of English words (three letters or more and at least
    KNOWN_ZIPF common, "a", or a two-letter word as common as "of"), or [] when there is none."""
    lower = letters.lower()
    best: list[tuple[float, int] | None] = [None] * (len(lower) + 1)
    best[0] = (0.0, 0)
    for end in range(1, len(lower) + 1):
        for start in range(max(0, end - longest), end):
            if best[start] is None:
                continue
            word = lower[start:end]
            z = zipf(word)
            if not (
                (len(word) >= 3 and z >= KNOWN_ZIPF) or word == "a" or (len(word) == 2 and z >= 5.5)
            ):
                continue
            score = best[start][0] + z - 9.0  # log10 of the word's probability
            if best[end] is None or score > best[end][0]:
                best[end] = (score, start)
    if best[-1] is None:
        return []
    cuts, end = [], len(lower)
    while end > 0:
        start = best[end][1]
        cuts.append(letters[start:end])
        end = start
    return cuts[::-1]
