"""Sentences of a paper with where they are: character offsets into the Document's text and
the section they belong to, so that a pair can cite the sentences it was drawn from.

A regular-expression splitter with the abbreviations of scientific prose ("et al.", "Fig.",
"e.g.", "Eq.") rather than a library: pysbd or NLTK's punkt would add a dependency (punkt also
needs its model data) for a gain the role cues below do not need, and neither maps sentences of
a re-flowed section back into the original text, which the evidence needs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..records import Document

ABBREVIATIONS = (
    "al",
    "e.g",
    "i.e",
    "cf",
    "etc",
    "vs",
    "fig",
    "figs",
    "eq",
    "eqs",
    "sec",
    "ref",
    "no",
    "resp",
    "approx",
    "dr",
    "prof",
    "st",
)
_BOUNDARY = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9])")
_LAST_WORD = re.compile(r"(\S+)[.!?]$")
SECTIONS = ("front", "abstract", "introduction", "method", "conclusion")


@dataclass(frozen=True)
class Sentence:
    text: str
    section: str
    position: int  # index within its section (0: the section's first sentence)
    start: int  # offsets into Document.text; -1 when the sentence could not be located
    end: int

    def evidence(self, field: str) -> dict:
        return {
            "field": field,
            "section": self.section,
            "start": self.start,
            "end": self.end,
            "text": self.text,
        }


def split(text: str) -> list[str]:
    """Sentences of one flat paragraph; a period after an abbreviation or an initial does not
    end a sentence."""
    flat = re.sub(r"\s+", " ", text).strip()
    pieces, start = [], 0
    for match in _BOUNDARY.finditer(flat):
        candidate = flat[start : match.start()].rstrip()
        last = _LAST_WORD.search(candidate)
        word = last.group(1).lower().rstrip(".") if last else ""
        if word in ABBREVIATIONS or (len(word) == 1 and word.isalpha()):
            continue
        pieces.append(candidate)
        start = match.end()
    pieces.append(flat[start:].strip())
    return [p for p in pieces if p]


_NUMBERED_HEADING = re.compile(r"^(?:\d+(?:\.\d+)*\.?|[IVX]+\.)\s+(?=[A-Z])")
# "3.1 Formulation We compute ...": a heading run into the sentence after it
_GLUED_HEADING = re.compile(
    r"^(?:[A-Z][\w-]*(?:\s+[\w-]+){0,5}?)\s+(?=(?:The|We|Our|In|This|These|Here|Let|Given|A|An)\s)"
)


def strip_heading(sentence: str) -> str:
    """The sentence without a numbered heading run into its start."""
    numbered = _NUMBERED_HEADING.match(sentence)
    if not numbered:
        return sentence
    rest = sentence[numbered.end() :]
    glued = _GLUED_HEADING.match(rest)
    return rest[glued.end() :] if glued else rest


def locate(text: str, sentence: str, cursor: int) -> tuple[int, int]:
    """The span of `sentence` in `text` at or after `cursor`, whitespace differences allowed
    (sections are re-flowed, the text keeps its line breaks); (-1, -1) when absent."""
    tokens = sentence.split()
    if not tokens:
        return -1, -1
    pattern = re.compile(r"\s+".join(map(re.escape, tokens)))
    found = pattern.search(text, cursor) or pattern.search(text)
    return (found.start(), found.end()) if found else (-1, -1)


def paper_sentences(doc: Document, sections: tuple[str, ...] = SECTIONS) -> list[Sentence]:
    """The sentences of the named sections, each located in the document's text."""
    out: list[Sentence] = []
    for name in sections:
        body = doc.sections.get(name, "")
        cursor = 0
        for position, piece in enumerate(map(strip_heading, split(body))):
            start, end = locate(doc.text, piece, cursor)
            if start >= 0:
                cursor = end
            out.append(Sentence(piece, name, position, start, end))
    if not any(doc.sections.get(name) for name in ("abstract", "introduction")):
        # an old paper without headings: its first pages stand in for abstract and introduction
        cursor = 0
        for position, piece in enumerate(map(strip_heading, split(doc.text[:8000]))):
            start, end = locate(doc.text, piece, cursor)
            if start >= 0:
                cursor = end
            out.append(Sentence(piece, "text", position, start, end))
    return out
