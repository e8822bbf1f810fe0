"""Metrics on crafted answers: each failure the original study saw scores high on its metric, and
a clean answer scores low on all of them."""

from __future__ import annotations

import pytest

from mlxtune.components import AnswerContext
from mlxtune.evaluate.metrics import (
    decoration_share,
    distinct_n,
    echo,
    longest_repeated_span,
    repeated_ngram_share,
    rouge_l,
    words,
)
from mlxtune.plugins import get_registry

QUESTION = "How can recurrent networks keep information over long time spans?"
CLEAN = (
    "Add a memory cell whose content is carried forward unchanged unless learned input, output "
    "and forget gates open, so gradients flow across hundreds of steps; train with truncated "
    "backpropagation and compare against plain recurrent networks on long-lag tasks."
)
LOOP = "We use a memory cell with gates. " * 12
ECHO = "How can recurrent networks keep information over long time spans? " * 2
STARS = "**Approach**\n\n********************\n* * * * * * * *\n### Method ###\n" + "*" * 40


def scores(answer: str, finish: str = "stop", reference: str | None = CLEAN) -> dict:
    ctx = AnswerContext(QUESTION, answer, reference, finish)
    registry = get_registry()
    merged: dict = {}
    for name in registry.names("metric"):
        merged.update(registry.build("metric", {"use": name}).score(ctx))
    return merged


def test_clean_answer_is_low_on_every_failure_metric():
    s = scores(CLEAN)
    assert s["stopped"] == 1.0
    assert s["repeat_4gram"] == 0.0 and s["longest_repeat"] <= 1 and s["distinct_2"] == 1.0
    assert s["echo"] < 0.1 and s["decoration"] == 0.0
    assert s["rouge_l"] == pytest.approx(1.0) and s["words"] == len(words(CLEAN))


def test_looping_answer_scores_high_repetition():
    s = scores(LOOP, finish="length")
    assert s["repeat_4gram"] > 0.8 and s["longest_repeat"] >= 30 and s["distinct_2"] < 0.2
    assert s["stopped"] == 0.0
    # a loop inside one hyphenated "word" (a real SmolLM2 answer) is a loop too
    chained = 'We introduce a network called a "' + "-".join(["LSTM"] * 60)
    s = scores(chained, finish="length")
    assert s["longest_repeat"] >= 25 and s["repeat_4gram"] > 0.5 and s["words"] == 7
    assert scores("An end-to-end model, trained end-to-end.")["longest_repeat"] == 3


def test_echo_scores_high_echo():
    assert scores(ECHO)["echo"] == 1.0
    assert (
        echo("Recurrent networks keep information over long time spans by gating.", QUESTION) > 0.5
    )


def test_rows_of_stars_score_high_decoration():
    assert scores(STARS)["decoration"] > 0.7
    assert decoration_share("Well-known results (e.g., 5-10%) - fine.") == 0.0


def test_text_functions_on_small_cases():
    assert repeated_ngram_share(["a", "b", "c", "d", "a", "b", "c", "d"], 4) == pytest.approx(1 / 5)
    assert longest_repeated_span(["x", "a", "b", "c", "y", "a", "b", "c"]) == 3
    assert longest_repeated_span(["a", "a", "a", "a"]) == 2  # occurrences may not overlap
    assert distinct_n(["a", "b", "a", "b"], 2) == pytest.approx(2 / 3)
    assert rouge_l("the cat sat", "the cat sat on the mat") == pytest.approx(2 * 1 * 0.5 / 1.5)
    assert rouge_l("", "x") == 0.0
    assert scores(CLEAN, reference=None)["rouge_l"] is None
