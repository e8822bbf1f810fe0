"""An offline, instant, deterministic summarizer: no LLM, just the paper's own sentences.

The question comes from the abstract/introduction sentence that states the problem, turned into
one question ("... is how to X" -> "How can we X?"; a question the paper asks is taken as it is);
the approach from the method section (or, failing that, the "we propose" sentences of the
abstract, the introduction or the first pages), leaving out headings, figure and table captions,
code and lines of numbers. A canned "How can we advance <title>?" only for a paper with no text
to take a question from. It is a real baseline and the quick-start's summarizer; LLM summarizers
do better.
"""

from __future__ import annotations

import re

from pydantic import Field

from ..components import ComponentOptions, Summarizer
from ..hookspecs import hookimpl
from ..records import Document, Pair

_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z(\"'])")
_PROBLEM = re.compile(
    r"\b(problem|challenge|question|difficult|hard|limitation|degrades?|fails?|expensive|remains?"
    r"|unclear|whether|how (?:to|can|do)"
    r"|we (?:address|study|investigate|ask|consider|tackle)|suffer|lack)\b",
    re.I,
)
_CONTRIBUTION = re.compile(
    r"\b(we (?:propose|present|introduce|describe|develop|use|train|build|design|show)"
    r"|our (?:method|approach|model|architecture)|is trained|consists of)\b",
    re.I,
)


_HOW_TO = re.compile(r"\bhow to (?P<rest>.+)", re.I)
_ASKED = re.compile(r"(?:question|ask)[^:?]{0,40}:\s*(?P<q>[^?]{10,}\?)", re.I)
_STUDY = re.compile(
    r"\bwe (?:address|study|investigate|consider|tackle|examine|explore) (?P<rest>.+)", re.I
)
_NUMBERED_HEADING = re.compile(r"^\d+(?:\.\d+)*\.?\s+")
# "Pure Inception blocks Our older models ...": a heading run into the first sentence
_GLUED_HEADING = re.compile(
    r"^(?:[A-Z][\w-]*(?:\s+[\w-]+){0,5}?)\s+(?=(?:The|We|Our|In|This|These|Here|Let|Given|A|An)\s)"
)
_CAPTION = re.compile(r"\b(?:Fig(?:ure)?|Table|Algorithm)\.?\s*\d", re.I)
_CODE_OR_URL = re.compile(r"https?://|www\.|[{}]|==|\+=|\bdef\s+\w+\(|\w\[\w+\]\s*=")


def sentences(text: str) -> list[str]:
    flat = re.sub(r"\s+", " ", text).strip()
    return [s.strip() for s in _SENTENCE.split(flat) if len(s.strip()) > 20]


def prose(sentence: str) -> str:
    """The sentence without a heading run into it, or "" when it is not prose (a caption,
    code, a URL, a line of numbers)."""
    sentence = _NUMBERED_HEADING.sub("", sentence)
    glued = _GLUED_HEADING.match(sentence)
    if glued and len(glued.group(0).split()) <= 6:
        sentence = sentence[glued.end() :]
    if _CAPTION.search(sentence) or _CODE_OR_URL.search(sentence):
        return ""
    letters = sum(c.isalpha() for c in sentence)
    return sentence if letters >= 0.6 * len(sentence) and len(sentence.split()) >= 5 else ""


_EMBEDDED = re.compile(
    r"\b(?:question|questions|asks?|address|addresses|study|studies|investigate|investigates"
    r"|understand|unclear|know|determine|examine|explore|is|remains)\s+(?:of\s+)?"
    r"(?P<wh>whether|how far|how much|how many|how well|how|what|which|why|when)\s+"
    r"(?P<subj>(?:\S+\s+){0,12}?)(?P<aux>can|could|does|do|is|are|will|would|should|has|have)"
    r"\s+(?P<pred>.+)$",
    re.I,
)


def _inverted(body: str) -> str:
    """ "... is whether context can be enlarged" -> "Can context be enlarged?"; "how far a network
    can be shrunk" -> "How far can a network be shrunk?"."""
    found = _EMBEDDED.search(body)
    if not found or not found.group("subj").strip():
        return ""
    wh, aux = found.group("wh").lower(), found.group("aux").lower()
    subject, rest = found.group("subj").strip(), found.group("pred").strip()
    head = aux.capitalize() if wh == "whether" else f"{wh.capitalize()} {aux}"
    return f"{head} {subject} {rest}?"


def as_question(sentence: str) -> str:
    """One question from the sentence that states the problem."""
    asked = _ASKED.search(sentence)
    if asked:
        question = asked.group("q").strip()
        return question[0].upper() + question[1:]
    if sentence.endswith("?"):
        return sentence.split("?")[0].strip() + "?"
    body = sentence.rstrip(" .!;:")
    how = _HOW_TO.search(body)
    if how:
        return f"How can we {how.group('rest').strip()}?"
    inverted = _inverted(body)
    if inverted:
        return inverted
    study = _STUDY.search(body)
    if study:
        return f"How can we address {study.group('rest').strip()}?"
    return f"How can we address this problem: {body[0].lower() + body[1:]}?"


class HeuristicSummarizer(Summarizer):
    name = "heuristic"
    description = "offline: problem sentence -> question, method section -> approach"

    class Options(ComponentOptions):
        max_approach_words: int = Field(120, ge=10)
        max_question_words: int = Field(60, ge=5)

    # 2: questions as questions, approaches without headings, captions or code (the cache key
    # changes, so cached pairs of the first version are made again: they cost nothing)
    version = 2

    def fingerprint(self) -> dict:
        return {**super().fingerprint(), "version": self.version}

    def summarize_one(self, document: Document) -> Pair:
        question = self._question(document)
        approach = self._approach(document)
        if not question or not approach:
            raise ValueError("no abstract, introduction or method text to summarize")
        return Pair(
            document_id=document.id,
            category=document.category,
            title=document.title,
            question=question,
            approach=approach,
            summarizer=self.name,
        )

    def _question(self, doc: Document) -> str:
        candidates = sentences(doc.sections.get("abstract", "")) + sentences(
            doc.sections.get("introduction", "")
        )
        if not candidates:
            candidates = sentences(doc.text[:3000])
        candidates = [p for p in map(prose, candidates) if p]
        chosen = next((s for s in candidates if s.endswith("?") or _ASKED.search(s)), None)
        chosen = chosen or next((s for s in candidates if _PROBLEM.search(s)), None)
        chosen = chosen or (candidates[0] if candidates else None)
        if chosen is None:  # no text to take a question from: the title is all there is
            return f"How can we advance {doc.title.rstrip('.').lower()}?" if doc.title else ""
        question = as_question(chosen)
        words = question.split()
        if len(words) > self.options.max_question_words:
            question = " ".join(words[: self.options.max_question_words]).rstrip(",;:") + "?"
        return question

    def _approach(self, doc: Document) -> str:
        method = [p for p in map(prose, sentences(doc.sections.get("method", ""))) if p]
        if not method:
            pool = sentences(doc.sections.get("abstract", "")) + sentences(
                doc.sections.get("introduction", "")
            )
            if not pool:  # an old paper without headings: its first pages
                pool = sentences(doc.text[:8000])
            method = [p for p in map(prose, pool) if p and _CONTRIBUTION.search(p)]
        picked, words = [], 0
        for sentence in method:
            n = len(sentence.split())
            if picked and words + n > self.options.max_approach_words:
                break
            picked.append(sentence)
            words += n
        return _truncate_words(" ".join(picked), self.options.max_approach_words)


def _truncate_words(text: str, limit: int) -> str:
    words = text.split()
    return text if len(words) <= limit else " ".join(words[:limit]).rstrip(",;:") + "..."


@hookimpl
def register_summarizers(register):
    register(HeuristicSummarizer)
