"""Per-answer metrics that catch the failures the original study saw by eye: answers that never
stop, loops of repeated text, answers that repeat the question, rows of `*`.

Each metric is a plugin (`register_metrics`); `score` gets one answer with its question, its
reference (when the question has one) and why generation stopped, and returns named numbers
(None when not applicable). The text functions are plain and small, so they are easy to test on
crafted answers.
"""

from __future__ import annotations

import re

from ..components import AnswerContext, Metric
from ..hookspecs import hookimpl

_WORD = re.compile(r"[A-Za-z0-9]+(?:['’-][A-Za-z0-9]+)*")


def words(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text)]


def repetition_words(text: str) -> list[str]:
    """Words with hyphenated chains split into their parts: a loop inside one "word"
    ("LSTM-LSTM-LSTM-...", 160 tokens) is a repeat, not one long word."""
    return [part for word in words(text) for part in word.split("-") if part]


def ngrams(tokens: list[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


def repeated_ngram_share(tokens: list[str], n: int = 4) -> float:
    """Share of n-grams that already occurred earlier in the answer (0: none, ~1: a loop)."""
    grams = ngrams(tokens, n)
    if not grams:
        return 0.0
    seen: set[tuple[str, ...]] = set()
    repeats = 0
    for gram in grams:
        repeats += gram in seen
        seen.add(gram)
    return repeats / len(grams)


def longest_repeated_span(tokens: list[str]) -> int:
    """Length in words of the longest stretch that occurs twice (suffix-array free O(n^2) DP,
    fine for answers of a few hundred words)."""
    n = len(tokens)
    best = 0
    previous = [0] * (n + 1)
    for i in range(1, n + 1):
        current = [0] * (n + 1)
        for j in range(i + 1, n + 1):
            if tokens[i - 1] == tokens[j - 1]:
                current[j] = previous[j - 1] + 1
                # the two occurrences must not overlap
                best = max(best, min(current[j], j - i))
        previous = current
    return best


def distinct_n(tokens: list[str], n: int = 2) -> float:
    """Unique n-grams over all n-grams (1: no repetition)."""
    grams = ngrams(tokens, n)
    return len(set(grams)) / len(grams) if grams else 1.0


def echo(answer: str, question: str) -> float:
    """How much of the answer merely repeats the question: the share of the answer's word
    bigrams that are bigrams of the question (plus a full copy counts as 1)."""
    a, q = words(answer), words(question)
    if not a or not q:
        return 0.0
    if " ".join(q) in " ".join(a) and len(a) <= 2 * len(q):
        return 1.0
    qgrams = set(ngrams(q, 2))
    agrams = ngrams(a, 2)
    if not agrams:
        return float(a[0] in q)
    return sum(g in qgrams for g in agrams) / len(agrams)


def decoration_share(text: str) -> float:
    """Share of non-space characters that are decoration (*, #, _, =, ~, |, -, >, `),
    counting only runs of two or more and line-leading markers: ordinary punctuation is not."""
    visible = re.sub(r"\s", "", text)
    if not visible:
        return 0.0
    runs = re.findall(r"(?m)[*#_=~|`>\-]{2,}|^[ \t]*[*#>|\-]", text)
    return sum(len(r.strip()) for r in runs) / len(visible)


def rouge_l(candidate: str, reference: str) -> float:
    """ROUGE-L F1 on lower-cased words (longest common subsequence)."""
    c, r = words(candidate), words(reference)
    if not c or not r:
        return 0.0
    previous = [0] * (len(r) + 1)
    for token in c:
        current = [0]
        for j, ref_token in enumerate(r, 1):
            current.append(
                previous[j - 1] + 1 if token == ref_token else max(previous[j], current[-1])
            )
        previous = current
    lcs = previous[-1]
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(c), lcs / len(r)
    return 2 * precision * recall / (precision + recall)


class StopMetric(Metric):
    name = "stop"
    description = (
        "stopped: 1 when generation ended at end-of-sequence; looped: 1 when the loop detector "
        "ended it (ask.stop_loops)"
    )

    def score(self, ctx: AnswerContext) -> dict[str, float | None]:
        if ctx.finish_reason is None:
            return {"stopped": None, "looped": None}
        return {
            "stopped": float(ctx.finish_reason == "stop"),
            "looped": float(ctx.finish_reason == "loop"),
        }


class RepetitionMetric(Metric):
    name = "repetition"
    description = "repeated 4-gram share, longest repeated span (words), distinct-2"

    def score(self, ctx: AnswerContext) -> dict[str, float | None]:
        tokens = repetition_words(ctx.answer)
        return {
            "repeat_4gram": repeated_ngram_share(tokens, 4),
            "longest_repeat": float(longest_repeated_span(tokens)),
            "distinct_2": distinct_n(tokens, 2),
        }


class EchoMetric(Metric):
    name = "echo"
    description = "share of the answer that repeats the question"

    def score(self, ctx: AnswerContext) -> dict[str, float | None]:
        return {"echo": echo(ctx.answer, ctx.question)}


class DecorationMetric(Metric):
    name = "decoration"
    description = "share of characters in decorative runs (*** ### --- ___)"

    def score(self, ctx: AnswerContext) -> dict[str, float | None]:
        return {"decoration": decoration_share(ctx.answer)}


class LengthMetric(Metric):
    name = "length"
    description = "answer length in words"

    def score(self, ctx: AnswerContext) -> dict[str, float | None]:
        return {"words": float(len(words(ctx.answer)))}


class RougeMetric(Metric):
    name = "rouge"
    description = "ROUGE-L F1 against the reference approach (questions that have one)"

    def score(self, ctx: AnswerContext) -> dict[str, float | None]:
        if not ctx.reference:
            return {"rouge_l": None}
        return {"rouge_l": rouge_l(ctx.answer, ctx.reference)}


BUILTIN_METRICS = (
    StopMetric,
    RepetitionMetric,
    EchoMetric,
    DecorationMetric,
    LengthMetric,
    RougeMetric,
)


@hookimpl
def register_metrics(register):
    for metric in BUILTIN_METRICS:
        register(metric)
