"""An offline, instant, deterministic summarizer: no LLM, just the paper's own sentences.

The question comes from the abstract/introduction sentence that states the problem; the approach
from the method section (or, failing that, the abstract's "we propose" sentences). It is a real
baseline and the quick-start's summarizer; LLM summarizers do better.
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


def sentences(text: str) -> list[str]:
    flat = re.sub(r"\s+", " ", text).strip()
    return [s.strip() for s in _SENTENCE.split(flat) if len(s.strip()) > 20]


class HeuristicSummarizer(Summarizer):
    name = "heuristic"
    description = "offline: problem sentence -> question, method section -> approach"

    class Options(ComponentOptions):
        max_approach_words: int = Field(120, ge=10)
        max_question_words: int = Field(60, ge=5)

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
        chosen = next((s for s in candidates if s.endswith("?")), None)
        chosen = chosen or next((s for s in candidates if _PROBLEM.search(s)), None)
        if chosen is None:
            if not doc.title:
                return candidates[0] if candidates else ""
            return f"How can we advance {doc.title.rstrip('.').lower()}?"
        return _truncate_words(chosen, self.options.max_question_words)

    def _approach(self, doc: Document) -> str:
        method = sentences(doc.sections.get("method", ""))
        if not method:
            pool = sentences(doc.sections.get("abstract", "")) + sentences(
                doc.sections.get("introduction", "")
            )
            method = [s for s in pool if _CONTRIBUTION.search(s)]
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
