"""An offline, instant, deterministic summarizer: no LLM, the paper's own structure.

The abstract's and introduction's sentences get rhetorical roles from cue phrases and position
(roles.py): background, problem or gap, contribution, result. The question is made from the
strongest problem sentence (in the abstract before the introduction), in the form its structure
suggests (questions.py); the approach from the contribution sentences plus the method section's
first sentences that state the idea (not notation, not "In this section ..."). Affiliations,
addresses, e-mails, headings, captions and code are never used. Every pair records the sentences
it was drawn from (`Pair.evidence`: section and character offsets into the document's text),
which the rules curator checks. A canned "How can we advance <title>?" only for a paper with no
text to take a question from. It is a real baseline and the quick start's summarizer.
"""

from __future__ import annotations

import re

from pydantic import Field

from ..components import ComponentOptions, Summarizer
from ..hookspecs import hookimpl
from ..records import Document, Pair
from . import roles
from .questions import as_question, study_question
from .sentences import Sentence, paper_sentences

__all__ = ["HeuristicSummarizer", "as_question"]
OPENING = ("abstract", "introduction", "text", "front")
_PROPOSES = re.compile(r"\b(?:propos\w*|introduc\w*|present\w*|novel)\b", re.I)
_ASKS = re.compile(r"[^\W\d_][\"'”’)]?\?$")


class HeuristicSummarizer(Summarizer):
    name = "heuristic"
    description = "offline: rhetorical roles of the abstract -> question, contributions -> approach"

    class Options(ComponentOptions):
        max_approach_words: int = Field(120, ge=10)
        max_question_words: int = Field(60, ge=5)

    # 3: roles from cue phrases, questions in several forms, contributions + method summary,
    # evidence with offsets (the cache key changes, so cached pairs are made again: they cost
    # nothing)
    # 4: the abstract's own problem first (purpose, aim, finding, pointed-back forms), solutions,
    # competitions and task-sense "problems" are not gaps, study questions, method proposals
    # 5: a limitation whose cause the sentence gives is not asked "why" back
    version = 5

    def fingerprint(self) -> dict:
        return {**super().fingerprint(), "version": self.version}

    def summarize_one(self, document: Document) -> Pair:
        found = [s for s in paper_sentences(document) if s.start >= 0]
        opening = [s for s in found if s.section in OPENING[:3] and roles.readable(s.text)]
        if not opening:  # no abstract or introduction found: what comes before the first heading
            opening = [s for s in found if s.section == "front" and roles.readable(s.text)]
        if not opening:  # words split by a broken extraction: prose that is not front matter
            opening = [s for s in found if s.section in OPENING and roles.loosely_readable(s.text)]
        question, asked_from = self._question(document, opening)
        approach, drawn_from = self._approach(found, opening)
        if not question or not approach:
            raise ValueError("no abstract, introduction or method text to summarize")
        evidence = [s.evidence("question") for s in asked_from]
        evidence += [s.evidence("approach") for s in drawn_from]
        return Pair(
            document_id=document.id,
            category=document.category,
            title=document.title,
            question=question,
            approach=approach,
            summarizer=self.name,
            evidence=evidence,
        )

    def _question(self, doc: Document, opening: list[Sentence]) -> tuple[str, list[Sentence]]:
        chosen = problem_sentence(opening, doc.title)
        if chosen is None:
            if not opening:  # no text to take a question from: the title is all there is
                title = doc.title.rstrip(".").lower()
                return (f"How can we advance {title}?" if title else ""), []
            chosen = opening[0]
        question = as_question(chosen.text)
        words = question.split()
        if len(words) > self.options.max_question_words:
            question = " ".join(words[: self.options.max_question_words]).rstrip(",;:") + "?"
        return question, [chosen]

    def _approach(
        self, found: list[Sentence], opening: list[Sentence]
    ) -> tuple[str, list[Sentence]]:
        contributions = [
            s
            for s in opening
            if roles.role(s.text, s.position) == roles.CONTRIBUTION
            and not roles.notation(s.text)
            and not roles.section_talk(s.text)
        ]
        # the abstract's contributions first; the introduction's only if the abstract has none
        first = [s for s in contributions if s.section in ("abstract", "text")]
        picked = (first or contributions)[:3]
        method = _method_summary(found)
        if not picked and not method:  # words split by extraction, or no cue: looser prose
            loose = [s for s in found if s.section in OPENING and roles.loosely_readable(s.text)]
            picked = [s for s in loose if roles.role(s.text, s.position) == roles.CONTRIBUTION]
            picked = picked[:3] or _after_problem(opening or loose)
        picked = picked + _following(picked, opening, picked + method)
        chosen: list[Sentence] = []
        words = 0
        for sentence in sorted(set(picked), key=picked.index) + method:
            n = len(sentence.text.split())
            if chosen and words + n > self.options.max_approach_words:
                break
            chosen.append(sentence)
            words += n
        text = " ".join(s.text for s in chosen)
        return _truncate_words(text, self.options.max_approach_words), chosen


def _method_summary(found: list[Sentence]) -> list[Sentence]:
    """The method section's sentences that state the idea: the ones that say what the paper
    proposes ("We also propose ...", wherever they are in the section), then its first ones."""
    prose = [
        s
        for s in found
        if s.section == "method"
        and roles.readable(s.text)
        and not roles.notation(s.text)
        and not roles.section_talk(s.text)
    ]
    stated = [s for s in prose if roles.role(s.text, s.position) == roles.CONTRIBUTION]
    # "We also propose ..." before "We use SGD ..."
    proposed = sorted(stated, key=lambda s: not _PROPOSES.search(s.text))[:2]
    return proposed + [s for s in prose if s not in proposed][: 4 - len(proposed)]


def _following(picked: list[Sentence], opening: list[Sentence], have: list[Sentence]) -> list:
    """A short approach (one contribution sentence) goes on with the sentences after it that say
    more about the idea (not results, notation or problems)."""
    if not picked or sum(len(s.text.split()) for s in have) >= 30:
        return []
    last = picked[-1]
    after = [
        s
        for s in opening
        if s.section == last.section
        and s.position > last.position
        and roles.role(s.text, s.position) in (roles.BACKGROUND, roles.CONTRIBUTION)
        and not roles.notation(s.text)
    ]
    return after[:2]


def _after_problem(opening: list[Sentence]) -> list[Sentence]:
    """No contribution cue anywhere: the sentences after the problem statement, which usually
    say what the paper does about it."""
    problem = problem_sentence(opening)
    start = opening.index(problem) + 1 if problem in opening else 0
    return [s for s in opening[start:] if roles.role(s.text, s.position) != roles.PROBLEM][:3]


def _title_words(title: str) -> set[str]:
    return {w[:5] for w in re.findall(r"[a-z]{4,}", title.lower())}


# how far into a section the opening reaches: an "abstract" that runs on for pages (its headings
# were lost) is not all abstract
OPENING_SENTENCES = {"abstract": 25, "text": 40, "front": 40, "introduction": 60}


def problem_sentence(opening: list[Sentence], title: str = "") -> Sentence | None:
    """The sentence that states the problem: a question the paper asks, else the abstract's gap
    sentence (or the one a "to solve this problem" sentence points back to, or a purpose clause
    "To handle X, we ..."), else the abstract's statement of what it studies, else the
    introduction's gap sentence with the most cues (earlier wins a tie; a sentence pointing back
    to the one before, "This is a severe limitation ...", loses to one that stands alone)."""
    opening = [s for s in opening if s.position < OPENING_SENTENCES.get(s.section, 40)]
    asked = [
        s
        for s in opening
        if (_ASKS.search(s.text) or (s.section == "abstract" and roles.raises_question(s.text)))
        and len(s.text.split()) >= 5
    ]
    if asked:
        return asked[0]
    strong = set(_pointed_to(opening)) | {s for s in opening if roles.PURPOSE.match(s.text)}
    problems = [
        s
        for s in opening
        if s in strong or (roles.role(s.text, s.position) == roles.PROBLEM and "?" not in s.text)
    ]
    topic = _title_words(title)

    def rank(s: Sentence) -> tuple:
        return (
            not roles.anaphoric(s.text),
            s in strong or roles.gap_strength(s.text) >= 2,
            # a problem the title names is the paper's own, not a side remark
            min(len(topic & _title_words(s.text)), 2),
            s.section in ("abstract", "text"),
            len(s.text.split()) <= 45,
            min(roles.gap_strength(s.text), 4),
            -s.position,
        )

    own = [
        s
        for s in problems
        if s.section == "abstract"
        and not roles.anaphoric(s.text)
        and (rank(s)[1] or roles.DEPENDS.search(s.text))
    ]
    if own:
        return max(own, key=rank)
    studied = [s for s in opening if s.section == "abstract" and study_question(s.text)]
    if studied:
        return studied[0]
    return max(problems, key=rank) if problems else None


def _pointed_to(opening: list[Sentence]) -> list[Sentence]:
    """Sentences that a following "... for solving this problem" refers to."""
    out = []
    for before, after in zip(opening, opening[1:], strict=False):
        if (
            before.section == after.section
            and after.position == before.position + 1
            and roles.POINTS_BACK.search(after.text)
            and not roles.anaphoric(before.text)
        ):
            out.append(before)
    return out


def _truncate_words(text: str, limit: int) -> str:
    words = text.split()
    return text if len(words) <= limit else " ".join(words[:limit]).rstrip(",;:") + "..."


@hookimpl
def register_summarizers(register):
    register(HeuristicSummarizer)
