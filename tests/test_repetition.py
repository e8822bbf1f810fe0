"""Generation that does not loop: the rules on crafted token lists, then the mlx backend and the
`ask` command applying them (and the recipe's `ask:` section) with a real tiny model."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from conftest import write_recipe

from mlxtune.cli import cli
from mlxtune.components import Sampling
from mlxtune.evaluate.metrics import ngrams
from mlxtune.records import Example
from mlxtune.repetition import (
    LoopDetector,
    RepetitionControl,
    banned_by_ngrams,
    dry_penalties,
)


def test_no_repeat_ngram_bans_the_token_that_would_complete_a_seen_ngram():
    assert banned_by_ngrams([1, 2, 3, 1, 2], 3) == {3}
    assert banned_by_ngrams([1, 2, 3, 1, 2, 4, 1, 2], 3) == {3, 4}
    assert banned_by_ngrams([1, 2, 3], 3) == set()
    assert banned_by_ngrams([7, 8], 1) == {7, 8}


def test_dry_penalizes_extending_a_repeat_by_its_length():
    # tail "5 6 7" occurred before, followed by 8: a repeat of 3 tokens, allowed 2
    assert dry_penalties([5, 6, 7, 8, 5, 6, 7], 0.8, 1.75, 2) == {8: pytest.approx(0.8 * 1.75)}
    # a longer repeat costs more
    longer = dry_penalties([4, 5, 6, 7, 8, 4, 5, 6, 7], 0.8, 1.75, 2)
    assert longer == {8: pytest.approx(0.8 * 1.75**2)}
    # under the allowed length: free
    assert dry_penalties([5, 6, 9, 5], 0.8, 1.75, 2) == {}
    # a sequence breaker (9) ends the repeat: only "7" matches before it
    assert dry_penalties([5, 9, 7, 8, 5, 9, 7], 0.8, 1.75, 2, frozenset({9})) == {}


def test_penalties_never_touch_end_of_sequence_tokens():
    control = RepetitionControl(
        frequency_penalty=0.5,
        presence_penalty=0.25,
        no_repeat_ngram=2,
        dry_multiplier=1.0,
        protected=frozenset({2}),
    )
    penalties, banned = control.adjustments([7, 2, 7, 2, 7])
    assert 2 not in penalties and 2 not in banned
    assert penalties[7] == pytest.approx(0.5 * 3 + 0.25)
    assert RepetitionControl().adjustments([1, 1, 1]) == ({}, set())
    assert not RepetitionControl().active


def test_loop_detector_fires_on_the_third_occurrence_of_the_tail():
    detector = LoopDetector(window=4)
    period = [10, 11, 12, 13]
    fired = [detector.add(t) for t in period * 3]
    assert fired.index(True) == 11 and detector.looped  # the tail's third occurrence
    quiet = LoopDetector(window=4)
    assert not any(quiet.add(t) for t in range(40))
    off = LoopDetector(window=0)
    assert not any(off.add(t) for t in period * 5)


@pytest.fixture(scope="module")
def backend(tiny_model):
    from mlxtune.backends.mlx_backend import MlxBackend

    loaded = MlxBackend()
    loaded.load(str(tiny_model))
    return loaded


PROMPT = Example(prompt="Research question: how can we segment cells?\nApproach:")


def test_random_model_loops_and_the_detector_ends_it(backend):
    """Greedy decoding of a random-weight model falls into a loop: the detector ends it early
    with finish reason "loop" instead of running to max_tokens."""
    "".join(backend.generate(PROMPT, Sampling(max_tokens=120)))
    free = list(backend.answer_tokens)
    assert backend.finish_reason == "length"
    assert max(ngrams(free, 8).count(g) for g in ngrams(free, 8)) >= 3  # it loops
    "".join(backend.generate(PROMPT, Sampling(max_tokens=120, stop_loops=8)))
    assert backend.finish_reason == "loop"
    assert len(backend.answer_tokens) < 120
    assert backend.answer_tokens == free[: len(backend.answer_tokens)]  # same text until then


def test_no_repeat_ngram_and_dry_change_what_the_backend_generates(backend):
    "".join(backend.generate(PROMPT, Sampling(max_tokens=80, no_repeat_ngram=3)))
    tokens = backend.answer_tokens
    grams = ngrams(tokens, 3)
    assert len(set(grams)) == len(grams)  # no 3-gram twice
    "".join(backend.generate(PROMPT, Sampling(max_tokens=80)))
    plain = list(backend.answer_tokens)
    "".join(backend.generate(PROMPT, Sampling(max_tokens=80, dry_multiplier=5.0)))
    dry = list(backend.answer_tokens)

    def longest_repeat(seq):
        return max(
            (n for n in range(1, 40) if len(set(ngrams(seq, n))) < len(ngrams(seq, n))), default=0
        )

    assert longest_repeat(dry) < longest_repeat(plain)


def test_ask_takes_the_recipe_ask_section_and_flags_override(tmp_path, tiny_model, papers_dir):
    """`mlxtune ask --recipe R` used its own defaults (256 tokens, no penalty) instead of the
    recipe's `ask:` section."""
    recipe = write_recipe(
        tmp_path / "r.yaml",
        f"name: a\npapers: {papers_dir}\nrun_dir: {tmp_path / 'run'}\n"
        f"model: {{path: {tiny_model}}}\ntrain: {{use: none}}\n"
        "ask: {max_tokens: 7, repetition_penalty: 1.3, stop_loops: 5}\n",
    )
    runner = CliRunner()

    def ask(*flags):
        result = runner.invoke(
            cli, ["ask", "How?", "--recipe", str(recipe), "--json", "--stats", *flags]
        )
        assert result.exit_code == 0, result.output
        return json.loads(result.output)

    from_recipe = ask()
    assert from_recipe["stats"]["generation_tokens"] == 7
    assert ask("--max-tokens", "3")["stats"]["generation_tokens"] == 3
    from mlxtune.asking import open_session

    session = open_session(recipe=str(recipe))
    assert session.sampling.repetition_penalty == 1.3 and session.sampling.stop_loops == 5


def reference_unlikelihood(logits, tokens, mask, alpha):
    """Welleck et al.'s token-level unlikelihood, written as loops over numpy arrays."""
    import numpy as np

    targets = tokens[:, 1:]
    total, count = 0.0, 0
    for b in range(targets.shape[0]):
        for t in range(targets.shape[1]):
            if not mask[b, t]:
                continue
            row = logits[b, t] - logits[b, t].max()
            logp = row - np.log(np.exp(row).sum())
            total -= logp[targets[b, t]]
            count += 1
            previous = {int(targets[b, s]) for s in range(t) if mask[b, s]}
            for c in previous - {int(targets[b, t])}:
                total -= alpha * np.log(max(1 - np.exp(logp[c]), 1e-5))
    return total / count, count


def test_unlikelihood_loss_matches_its_definition_and_is_cross_entropy_at_zero():
    import mlx.core as mx
    import numpy as np

    from mlxtune.train.batching import mask_spans
    from mlxtune.train.losses import masked_loss, unlikelihood_loss

    rng = np.random.default_rng(0)
    tokens = np.array([[1, 4, 5, 4, 5, 4, 6, 2], [3, 3, 7, 7, 1, 7, 2, 0]])
    mask = np.zeros((2, 7), dtype=bool)
    mask[0, 2:] = True  # the first two targets are the prompt
    mask[1, 1:6] = True  # the last is padding
    logits = rng.normal(size=(2, 7, 9)).astype(np.float32) * 2

    def model(x):  # a fixed "model": the loss is a function of its logits
        return mx.array(logits[:, : x.shape[1]])

    spans = mx.array(mask_spans(mask))
    want, n = reference_unlikelihood(logits, tokens, mask, alpha=0.5)
    got, got_n = unlikelihood_loss(0.5)(model, mx.array(tokens), spans)
    assert got_n.item() == n and got.item() == pytest.approx(want, rel=1e-5)
    plain, _ = masked_loss(model, mx.array(tokens), spans)
    zero, _ = unlikelihood_loss(0.0)(model, mx.array(tokens), spans)
    assert zero.item() == pytest.approx(plain.item(), rel=1e-6)
    assert got.item() > plain.item()  # the candidates add to the loss
