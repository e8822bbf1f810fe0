"""`fallback: heuristic` of the LLM summarizers: a paper whose reply gives no pair, or a pair the
rules curator would reject (pair_shape.py: not one question ending in "?", a two-word approach,
...), gets the heuristic summarizer's pair instead, its `decoding` saying why. A small model
(SmolLM2-135M: 1 of 28 replies usable on ../shared/corpus) then still yields a pair per paper;
a capable one is left alone. Transient failures are not replaced: the next run asks again."""

from __future__ import annotations

from ..components import SummaryFailure
from ..pair_shape import shape_problem
from ..records import Document, Pair


def heuristic_pair(document: Document, why: str) -> Pair | None:
    """The heuristic summarizer's pair for `document`, its decoding saying `why`; None when
    the heuristic finds none either."""
    from .heuristic import HeuristicSummarizer

    try:
        pair = HeuristicSummarizer().summarize_one(document)
    except ValueError:
        return None
    pair.decoding = f"heuristic fallback: {why}"
    return pair


def replace_failure(failure: SummaryFailure, name: str) -> Pair | SummaryFailure:
    """A failed paper's heuristic pair (a transient failure stays: the next run retries)."""
    if failure.transient:
        return failure
    pair = heuristic_pair(failure.document, f"the {name} reply failed ({failure.reason})")
    return pair or failure


def replace_unusable(pair: Pair, document: Document, name: str) -> Pair:
    """The heuristic's pair where the model's cannot be trained on; else the model's own."""
    problem = shape_problem(pair.question, pair.approach)
    if problem is None:
        return pair
    return heuristic_pair(document, f"the {name} pair was not usable ({problem})") or pair
