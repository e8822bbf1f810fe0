"""The `rules` curator (the default) and `none`: what a pair must be to be trained on.

A question is one question, ending in "?"; an approach has no section headings, figure or table
captions, code, URLs or control characters; both have lengths within bounds; a pair repeating
another (exactly, or nearly: word 3-gram overlap at or above `near_duplicate`) is removed, the
first by document id kept. Cheap and deterministic: every rejected pair is written with its
reason (curation_rejects.jsonl), so a rule that is wrong for a corpus shows at once.
A pair that carries evidence (the heuristic summarizer's do) must be supported by it: the cited
spans are in the document's text, and the question's and approach's own words are in them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from pydantic import Field

from ..components import ComponentOptions, Curator, Verdict
from ..evaluate.metrics import ngrams, words
from ..hookspecs import hookimpl
from ..pair_shape import Bounds, shape_problem
from ..records import Document, Pair


class RulesCurator(Curator):
    name = "rules"
    description = "keep pairs with one question, prose approaches, sane lengths; drop duplicates"

    class Options(ComponentOptions):
        min_question_words: int = Field(4, ge=1)
        max_question_words: int = Field(80, ge=1)
        min_approach_words: int = Field(12, ge=1)
        max_approach_words: int = Field(400, ge=1)
        near_duplicate: float = Field(
            0.8, gt=0, le=1, description="word 3-gram overlap (Jaccard) that counts as a duplicate"
        )
        require_evidence: bool = Field(
            False,
            description="reject pairs that carry no evidence (LLM summarizers record none yet); "
            "a pair that carries evidence is always checked against it",
        )

    def curate(self, pairs: Sequence[Pair], documents: dict[str, Document]) -> list[Verdict]:
        verdicts = [self.check(pair) for pair in pairs]
        for index, pair in enumerate(pairs):
            if verdicts[index].keep and (pair.evidence or self.options.require_evidence):
                problem = evidence_problem(pair, documents.get(pair.document_id))
                if problem:
                    verdicts[index] = Verdict(False, f"not supported by its evidence: {problem}")
        self.mark_duplicates(pairs, verdicts)
        return verdicts

    def check(self, pair: Pair) -> Verdict:
        o = self.options
        bounds = Bounds(
            o.min_question_words, o.max_question_words, o.min_approach_words, o.max_approach_words
        )
        problem = shape_problem(pair.question, pair.approach, bounds)
        return Verdict(False, problem) if problem else Verdict(True)

    def mark_duplicates(self, pairs: Sequence[Pair], verdicts: list[Verdict]) -> None:
        """Later copies (by document id) of a kept pair are rejected, naming the kept one."""
        kept: list[tuple[Pair, set[tuple[str, ...]]]] = []
        order = sorted(range(len(pairs)), key=lambda i: pairs[i].document_id)
        for index in order:
            if not verdicts[index].keep:
                continue
            pair = pairs[index]
            shingles = set(ngrams(words(f"{pair.question} {pair.approach}"), 3))
            for other, theirs in kept:
                overlap = len(shingles & theirs) / max(1, len(shingles | theirs))
                if overlap >= self.options.near_duplicate:
                    what = "the same pair" if overlap == 1 else f"{overlap:.0%} the same"
                    title = other.title or other.document_id[:12]
                    verdicts[index] = Verdict(False, f"duplicate: {what} as '{title}'", overlap)
                    break
            else:
                kept.append((pair, shingles))


_CONTENT = re.compile(r"[a-z][a-z0-9]+")
# the words a question form adds around the paper's own (summarize/questions.py)
SCAFFOLD = frozenset(
    [
        "how",
        "can",
        "could",
        "should",
        "would",
        "what",
        "which",
        "why",
        "when",
        "whether",
        "does",
        "do",
        "did",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "we",
        "one",
        "it",
        "this",
        "that",
        "these",
        "the",
        "a",
        "an",
        "of",
        "to",
        "in",
        "on",
        "for",
        "and",
        "or",
        "but",
        "about",
        "it",
        "take",
        "fact",
        "problem",
        "address",
        "given",
        "work",
        "better",
        "done",
        "differently",
        "change",
        "changed",
        "overcome",
        "made",
        "avoid",
        "without",
        "gain",
        "approach",
        "way",
        "there",
        "can",
    ]
)
SUPPORTED = 0.7  # the least share of a field's own words that its evidence must hold


def _stems(text: str) -> set[str]:
    return {w[:6] for w in _CONTENT.findall(text.lower()) if w not in SCAFFOLD and len(w) > 2}


def evidence_problem(pair: Pair, document: Document | None) -> str:
    """Why `pair` is not supported by its evidence ("" when it is): no evidence for the question
    or the approach, a cited span that is not in the document's text, or a field whose own
    words (beyond a question form's) are mostly not in the sentences it cites."""
    if document is None:
        return "its document is not in documents.jsonl"
    for name in ("question", "approach"):
        cited = [e for e in pair.evidence if e.get("field") == name]
        if not cited:
            return f"no evidence for the {name}"
        for item in cited:
            start, end = item.get("start", -1), item.get("end", -1)
            span = document.text[start:end] if 0 <= start < end <= len(document.text) else ""
            if " ".join(span.split()) != " ".join(str(item.get("text", "")).split()):
                return f"the {name}'s evidence at {start}-{end} is not in the document's text"
        own = _stems(getattr(pair, name))
        held = _stems(" ".join(str(item["text"]) for item in cited))
        if own and len(own & held) / len(own) < SUPPORTED:
            share = len(own & held) / len(own)
            return f"{share:.0%} of the {name}'s words are in its evidence"
    return ""


class NoCurator(Curator):
    name = "none"
    description = "keep every pair"

    def curate(self, pairs: Sequence[Pair], documents: dict[str, Document]) -> list[Verdict]:
        return [Verdict(True) for _ in pairs]


@hookimpl
def register_curators(register):
    register(RulesCurator)
    register(NoCurator)
