"""Repairs for what PDF text extraction gets wrong below the line level: glyphs that arrive as
control characters, accents split from their letters, words split by kerning or hyphenation,
and stamps inserted into the text.

Several repairs need to know which words the paper really uses: `Vocabulary` counts the words of
the whole document, and a repair is taken only when its result is a word the paper writes
elsewhere (so "imp ortance" becomes "importance" in a paper that says "importance" again, and
"in to" stays two words). A word hyphenated at a line break is joined when the paper or English
(the `wordfreq` list) knows the joined word, so older papers that never write it whole elsewhere
are repaired too.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections import Counter

from .quality import COMMON_WORDS
from .spacing import join_kerned, join_letter_spaced

# old TeX fonts (OT1 encoding) without a character map: pypdf passes their codes through
OT1 = {
    "\x0b": "ff",
    "\x0c": "fi",
    "\r": "fl",
    "\x0e": "ffi",
    "\x0f": "ffl",
    "\x10": "i",
    "\x11": "j",
    "\x12": "\u0300",  # accents, set before their letter
    "\x13": "\u0301",
    "\x14": "\u030c",
    "\x15": "\u0306",
    "\x16": "\u0304",
    "\x17": "\u030a",
    "\x18": "\u0327",
    "\x19": "ß",
    "\x1a": "æ",
    "\x1b": "œ",
    "\x1c": "ø",
    "\x1d": "Æ",
    "\x1e": "Œ",
    "\x1f": "Ø",
    "\x7f": "\u0308",
}
_OT1_LIGATURES = re.compile(r"[\x0b\x0c\x0e\x0f]")
LIGATURES = ("ffi", "ffl", "ff", "fi", "fl")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_PRIVATE_USE = re.compile(r"[\ue000-\uf8ff]")
# a combining mark that precedes its letter (NFKC turns a spacing "¨" into " \u0308")
_LOOSE_MARK = re.compile(r"[ \t]?([\u0300-\u036f]+)[ \t]?([^\W\d_])")
_ANY_MARK = re.compile(r"[\u0300-\u036f]")
_ARXIV_STAMP = re.compile(
    r"([^\W\d_]?)(\s*)arXiv:\d{4}\.\d{4,5}(?:v\d+)?\s*\[[\w.\-]+\]\s*\d{1,2}\s+[A-Z][a-z]{2}\s+"
    r"\d{4}\s*(\n?)(?=([a-z]?))"
)
_WORD = re.compile(r"[^\W\d_]+")
_NUL_IN_WORD = re.compile(r"([^\W\d_]*)\x00([^\W\d_]*)")
# "word- word" on one line, or "word-" at a line's end (trailing spaces allowed) and "word" on
# the next: a word broken by hyphenation, or a compound whose hyphen fell at the line end
_SPLIT_HYPHEN = re.compile(r"\b([^\W\d_]{2,})[-\u00ad\u2010](?: +|[ \t]*\n\s*)([a-z]+)\b")
_COMPOUND = re.compile(r"\b([^\W\d_]+)-([^\W\d_]+)\b")
KNOWN_ZIPF = 1.5  # wordfreq's Zipf frequency from which a joined word counts as English
PART_ZIPF = 2.5  # ... and from which each half of a compound counts as a word of its own
# prefixes that technical English writes closed ("hyperparameter", "subword", "underfitting"):
# a word broken after one is joined even when the word list does not know the whole. (Not
# "self", "semi", "multi", "pseudo", "meta", "inter": "semi-supervised" keeps its hyphen.)
CLOSED_PREFIXES = frozenset(
    [
        "hyper",
        "sub",
        "super",
        "over",
        "under",
        "auto",
        "eigen",
        "back",
        "micro",
        "macro",
        "counter",
        "trans",
        "poly",
        "mono",
        "uni",
        "bi",
        "tri",
        "re",
        "un",
    ]
)
KEEP_AFTER_HYPHEN = frozenset({"and", "or", "to", "in", "of", "nor", "vs", "versus"})


class Vocabulary:
    """How often each word (lowercase) occurs in a document."""

    def __init__(self, text: str):
        self.counts = Counter(w.lower() for w in _WORD.findall(text))

    def count(self, word: str) -> int:
        return self.counts.get(word.lower(), 0)

    def prefixes(self) -> set[str]:
        """Every beginning of every word (for extending a split word only while it can end
        as one)."""
        return {word[:n] for word in self.counts for n in range(2, len(word) + 1)}


def is_ot1(text: str) -> bool:
    """A document set in an old TeX font without a character map (ligatures as 0x0B-0x0F)."""
    return len(_OT1_LIGATURES.findall(text)) >= 3


def repair_glyphs(text: str, ot1: bool = False) -> str:
    """OT1 codes to letters (for a document `is_ot1` found), accents onto their letters,
    private-use glyphs (symbol-font pieces, icons) dropped. Runs on each page after NFKC."""
    if ot1:
        text = text.translate(str.maketrans(OT1))
    if _ANY_MARK.search(text):
        text = _LOOSE_MARK.sub(lambda m: m.group(2) + m.group(1), text)
    text = unicodedata.normalize("NFC", text)
    text = _PRIVATE_USE.sub("", text)
    return text.replace("\u00ad\n", "").replace("\u00ad", "")


def repair_words(text: str) -> str:
    """The repairs that need the whole document's vocabulary, then no control character left:
    NUL ligatures, hyphens left by line breaks, words split by letter spacing or kerning."""
    text = join_letter_spaced(text, zipf)
    vocab = Vocabulary(_SPLIT_HYPHEN.sub(" ", text.replace("\x00", " ")))  # broken words apart
    compounds = Counter(f"{a}-{b}".lower() for a, b in _COMPOUND.findall(text))
    if "\x00" in text:  # (the pattern is slow to scan a text without one)
        text = _NUL_IN_WORD.sub(lambda m: _ligature(m.group(1), m.group(2), vocab), text)
    text = _SPLIT_HYPHEN.sub(
        lambda m: _hyphen(m.group(1), m.group(2), vocab, compounds, _chained(m)), text
    )
    text = join_split_words(text, vocab)
    text = join_kerned(text, vocab.counts, zipf)
    return _CONTROL.sub(" ", text)


def _ligature(left: str, right: str, vocab: Vocabulary) -> str:
    """`di\\x00cult`: the ligature that makes a word the paper uses (else the commonest fit)."""
    if not left and not right:
        return " "  # a symbol-font glyph (a minus sign) rather than a ligature
    scored = [(vocab.count(left + lig + right), -i, lig) for i, lig in enumerate(LIGATURES)]
    best = max(scored)
    if best[0] == 0:
        lig = "ffi" if right.startswith("c") else "ff" if right[:1] in ("e", "") else "fi"
        return left + lig + right
    return left + best[2] + right


def _chained(match: re.Match) -> bool:
    """The broken word is the last link of a hyphenated chain ("end-to-\nend")."""
    return match.start() > 0 and match.string[match.start() - 1] == "-"


def _hyphen(
    left: str,
    right: str,
    vocab: Vocabulary,
    compounds: Counter | None = None,
    chained: bool = False,
) -> str:
    """A hyphen before a space or a line break: `signifi- cantly` -> `significantly`,
    `construc-\\ntion` -> `construction` (the paper writes the word whole, or English does:
    wordfreq), `self-\\nnormalizing` -> `self-normalizing` (the paper writes it so, or both
    halves are words and the whole is not); `in- and output` keeps its hyphen and space."""
    if right in KEEP_AFTER_HYPHEN:
        return f"{left}- {right}"
    joined = left + right
    hyphenated = f"{left}-{right}"
    if chained or (compounds and compounds.get(hyphenated.lower()) and not vocab.count(joined)):
        return hyphenated  # "end-to-\nend", or the paper writes the compound so
    if vocab.count(joined) or len(right) <= 2 or zipf(joined) >= KNOWN_ZIPF:
        return joined  # "cluster- ing", "poly- nomial": the paper or English knows the word
    if left.lower() in CLOSED_PREFIXES:
        return joined  # "hyper-\nparameters", "over-\nparameterized": written closed
    if _a_word(left, vocab) and _a_word(right, vocab):
        return hyphenated  # "self-\nnormalizing", "log- probabilities": a compound
    return joined  # "unpool- ing": a fragment


def _a_word(part: str, vocab: Vocabulary) -> bool:
    return len(part) >= 3 and (vocab.count(part) > 0 or zipf(part) >= PART_ZIPF)


@functools.lru_cache(maxsize=65536)
def zipf(word: str) -> float:
    """How common `word` is in English (wordfreq's Zipf scale: 0 unknown, 3 once per million
    words, 7 "the"); 0 when wordfreq is not installed, so only the paper's own words count."""
    try:
        from wordfreq import zipf_frequency
    except ImportError:  # pragma: no cover - a dependency; a broken install still extracts
        return 0.0
    return zipf_frequency(word.lower(), "en")


def join_split_words(text: str, vocab: Vocabulary, longest: int = 4) -> str:
    """`The P ageRank`, `imp ortance`: a run of 2-`longest` letter fragments on one line joins
    when the joined word occurs unsplit elsewhere in the paper and one fragment is not a word the
    paper writes on its own. (A run is only extended while it is the start of some word of the
    paper, so a page costs one set lookup per word.)"""
    prefixes = vocab.prefixes()
    out = []
    for line in text.split("\n"):
        tokens = line.split(" ")
        merged: list[str] = []
        i = 0
        while i < len(tokens):
            end = _split_word_end(tokens, i, longest, vocab, prefixes)
            if end:
                last = tokens[end - 1]
                core = last.rstrip(_TRAILING)
                merged.append("".join(tokens[i : end - 1]) + core + last[len(core) :])
                i = end
            else:
                merged.append(tokens[i])
                i += 1
        out.append(" ".join(merged))
    return "\n".join(out)


_TRAILING = ".,;:!?)'\""


def _split_word_end(
    tokens: list[str], start: int, longest: int, vocab: Vocabulary, prefixes: set[str]
) -> int:
    """The end of the longest run from `start` that joins into a word (0: none)."""
    if not tokens[start].isalpha():
        return 0
    joined, parts, best = tokens[start].lower(), [tokens[start]], 0
    for end in range(start + 1, min(start + longest, len(tokens))):
        core = tokens[end].rstrip(_TRAILING)
        if not core.isalpha():
            break
        joined += core.lower()
        parts.append(core)
        if joined not in prefixes:
            break
        if _joins(parts, vocab):
            best = end + 1
        if core != tokens[end]:  # punctuation ends the run
            break
    return best


def _joins(parts: list[str], vocab: Vocabulary) -> bool:
    joined = "".join(parts)
    if len(joined) < 3 or vocab.count(joined) < 1:  # the paper writes it unsplit somewhere
        return False
    if any(p[:1].isupper() for p in parts[1:]):  # "P ageRank" yes, "New York" no
        return False
    limit = max(2, vocab.count(joined))  # a fragment is rarer than the word it belongs to
    return any(p.lower() not in COMMON_WORDS and vocab.count(p) <= limit for p in parts)


def drop_arxiv_stamps(text: str) -> str:
    """arXiv's side stamp ("arXiv:1409.1556v6 [cs.CV] 10 Apr 2015"), wherever the extraction
    put it, even inside a word ("chal<stamp>lenge"). A stamp on a line of its own (a page's last
    line) is a line break: the words around it are the end of one page and the start of the
    next, and joining them made "pixelcopy" of U-Net's "pixel" and its figure's "copy"."""

    def replace(match: re.Match) -> str:
        before, gap, newline, nextchar = match.groups()
        if before and nextchar and "\n" not in gap:  # the stamp split a word on its line
            return before
        return before + ("\n" if newline or "\n" in gap else " ")

    return _ARXIV_STAMP.sub(replace, text) if "arXiv:" in text else text
