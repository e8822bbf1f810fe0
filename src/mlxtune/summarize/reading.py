"""What an LLM summarizer reads of a paper: its useful sections whole (cut into chunks for a
notes round when long), or one short excerpt: the abstract, the introduction's problem and
contribution sentences, and the opening of the method section.

Why the excerpt for a small local model: on a laptop CPU or a small GPU the prompt is the cost.
Two 6,000-character chunks and a notes round cost a 135M model minutes per paper (attention grows
with the square of the prompt, and a batch of prompts is padded to its longest); the question and
the approach are stated in these three places in nearly every paper, so a 2,400-character
excerpt gives the model what it needs at a fifth of the tokens.
"""

from __future__ import annotations

import re

from ..records import Document

# sentences that state a problem or gap, or the paper's own contribution
PROBLEM_CUES = re.compile(
    r"\b(?:however|but|problem|challeng|difficult|limitation|lack|remain|unclear|open question|"
    r"suffer|fail|cannot|costly|expensive|bottleneck|address|tackle)",
    re.I,
)
CONTRIBUTION_CUES = re.compile(
    r"\b(?:we (?:propose|present|introduce|describe|develop|show|design)|in this (?:paper|work)|"
    r"this paper|our (?:approach|method|model|contribution)|the key idea|the main idea)",
    re.I,
)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z(\[])")
SHARES = {"abstract": 0.45, "introduction": 0.35}  # the method gets what is left
SECTION_ORDER = ("abstract", "introduction", "method", "experiments", "conclusion")


def sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_END.split(re.sub(r"\s+", " ", text)) if s.strip()]


def clip(text: str, limit: int) -> str:
    """At most `limit` characters, cut at a sentence end where one is in the last third."""
    text = re.sub(r"\s+", " ", text).strip()
    if len(text) <= limit:
        return text
    cut = text[:limit]
    end = max(cut.rfind(". "), cut.rfind("? "), cut.rfind("! "))
    return cut[: end + 1] if end > limit * 2 // 3 else cut.rsplit(" ", 1)[0]


def introduction_cues(text: str, limit: int) -> str:
    """The introduction's problem and contribution sentences in reading order, within `limit`;
    its first sentences where none has a cue."""
    found = sentences(text)
    cued = [s for s in found if CONTRIBUTION_CUES.search(s) or PROBLEM_CUES.search(s)]
    picked, size = [], 0
    for sentence in cued or found:
        if size + len(sentence) + 1 > limit:
            if picked:
                continue
            sentence = clip(sentence, limit)
        picked.append(sentence)
        size += len(sentence) + 1
    return " ".join(picked)


def excerpt(doc: Document, limit: int) -> str:
    """The paper in at most about `limit` characters (see the module docstring); the start of
    the text when the extractor found no sections."""
    sections = {k: v for k, v in doc.sections.items() if v and v.strip()}
    if not any(k in sections for k in ("abstract", "introduction", "method")):
        return clip(doc.text, limit)
    parts: list[tuple[str, str]] = []
    left = limit
    if "abstract" in sections:
        text = clip(sections["abstract"], int(limit * SHARES["abstract"]))
        parts.append(("Abstract", text))
        left -= len(text)
    if "introduction" in sections:
        budget = int(limit * SHARES["introduction"]) if "method" in sections else left
        text = introduction_cues(sections["introduction"], min(budget, left))
        parts.append(("Introduction (problem and contribution)", text))
        left -= len(text)
    if "method" in sections and left > 200:
        parts.append(("Method (opening)", clip(sections["method"], left)))
    return "\n\n".join(f"{name}\n{text}" for name, text in parts if text)


def paper_text(doc: Document) -> str:
    """The paper's useful sections in reading order (front matter only if nothing else)."""
    parts = [
        f"{name.title()}\n{doc.sections[name]}" for name in SECTION_ORDER if doc.sections.get(name)
    ]
    return "\n\n".join(parts) if parts else doc.text


def chunk_text(text: str, size: int, limit: int) -> list[str]:
    """Cut at paragraph (then sentence, then hard) boundaries into pieces of at most `size`."""
    pieces: list[str] = []
    current = ""
    for paragraph in re.split(r"\n\s*\n", text):
        units = [paragraph] if len(paragraph) <= size else _hard_split(paragraph, size)
        for unit in units:
            if current and len(current) + len(unit) + 2 > size:
                pieces.append(current)
                current = ""
            current = f"{current}\n\n{unit}" if current else unit
    if current:
        pieces.append(current)
    return pieces[:limit]


def _hard_split(paragraph: str, size: int) -> list[str]:
    sentences = re.split(r"(?<=[.!?])\s+", paragraph)
    out, current = [], ""
    for sentence in sentences:
        while len(sentence) > size:
            out.append(sentence[:size])
            sentence = sentence[size:]
        if current and len(current) + len(sentence) + 1 > size:
            out.append(current)
            current = ""
        current = f"{current} {sentence}" if current else sentence
    return [*out, current] if current else out
