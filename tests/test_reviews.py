"""A reviewer's decisions (reviews.jsonl) win over the curator and survive re-runs."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from conftest import write_recipe

from mlxtune.cli import cli
from mlxtune.records import Pair, read_jsonl
from mlxtune.reviews import (
    REVIEWS_FILE,
    Review,
    ReviewError,
    append_review,
    load_reviews,
    pair_key,
)

RECIPE = """\
name: reviewed
papers: papers
run_dir: run
model:
  tiny: {hidden_size: 32, num_layers: 1, vocab_size: 400}
split: {per_category: {valid: 1, test: 0}}
train: {use: mlx, iters: 4, batch_size: 2, lora_rank: 4, num_layers: -1, eval_every: 0.5}
"""


def run(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def make_pair(question: str = "How can X do Y?", approach: str = "We do Z.") -> Pair:
    return Pair(document_id="d" * 64, category="c", question=question, approach=approach)


def test_pair_key_follows_the_text_not_the_row():
    a, b = make_pair(), make_pair()
    b.split, b.evidence = "valid", [{"field": "question", "start": 0, "end": 3, "text": "abc"}]
    assert pair_key(a) == pair_key(b) == pair_key(json.loads(json.dumps(a.__dict__)))
    assert pair_key(make_pair(question="How can X do W?")) != pair_key(a)
    assert len(pair_key(a)) == 16


@pytest.mark.parametrize(
    "review, message",
    [
        (Review(pair="0" * 16, verdict="maybe"), "verdict must be one of"),
        (Review(pair="../../etc", verdict="reject"), "16-character pair key"),
        (Review(pair="0" * 16, verdict="edit", question="Q?"), "both a question and an approach"),
        (Review(pair="0" * 16, verdict="reject", question="Q?"), "carries no question"),
        (Review(pair="0" * 16, verdict="edit", question="Q" * 5000, approach="A"), "at most"),
    ],
)
def test_bad_decisions_are_refused_and_not_written(tmp_path, review, message):
    with pytest.raises(ReviewError, match=message):
        append_review(tmp_path, review)
    assert not (tmp_path / REVIEWS_FILE).exists()


def test_the_last_decision_stands_and_clear_removes_it(tmp_path):
    key, other = "a" * 16, "b" * 16
    append_review(tmp_path, Review(pair=key, verdict="reject"))
    append_review(tmp_path, Review(pair=key, verdict="edit", question=" Q? ", approach="A."))
    append_review(tmp_path, Review(pair=other, verdict="accept"))
    append_review(tmp_path, Review(pair=other, verdict="clear"))
    standing = load_reviews(tmp_path)
    assert list(standing) == [key]
    assert (standing[key].verdict, standing[key].question) == ("edit", "Q?")
    assert standing[key].at  # every decision is timed


def test_a_damaged_line_costs_only_itself(tmp_path):
    append_review(tmp_path, Review(pair="a" * 16, verdict="reject"))
    with open(tmp_path / REVIEWS_FILE, "ab") as fh:
        fh.write(b'{"pair": "zz", "verdict": "reject"}\nnot json\n')
    append_review(tmp_path, Review(pair="b" * 16, verdict="accept"))
    warnings: list[str] = []
    assert set(load_reviews(tmp_path, warn=warnings.append)) == {"a" * 16, "b" * 16}
    assert len(warnings) == 2 and "line 3" in warnings[1]


@pytest.mark.slow
def test_decisions_win_over_the_curator_and_retrain(tmp_path, papers_dir):
    recipe = write_recipe(tmp_path / "r.yaml", RECIPE)
    run("recipe", "run", str(recipe))
    root = tmp_path / "run"
    pairs = list(read_jsonl(root / "pairs.jsonl"))
    curated = list(read_jsonl(root / "curated.jsonl"))
    assert len(pairs) >= 3 and len(curated) >= 3
    trained = (root / "adapters" / "adapters.safetensors").read_bytes()
    dropped, edited = curated[0], curated[1]
    append_review(root, Review(pair=pair_key(dropped), verdict="reject", note="off topic"))
    append_review(
        root,
        Review(pair=pair_key(edited), verdict="edit", question="Why X?", approach="Do Y."),
    )

    out = run("recipe", "run", str(recipe))
    assert "2 decided in review" in out
    again = list(read_jsonl(root / "curated.jsonl"))
    assert dropped["document_id"] not in {p["document_id"] for p in again}
    mine = next(p for p in again if p["document_id"] == edited["document_id"])
    assert (mine["question"], mine["approach"], mine["review"]) == ("Why X?", "Do Y.", "edited")
    reject = next(
        r
        for r in read_jsonl(root / "curation_rejects.jsonl")
        if r["document_id"] == dropped["document_id"]
    )
    assert reject["reason"] == "rejected in review: off topic"
    assert any("Why X?" in p.read_text() for p in (root / "data").glob("*.jsonl"))
    assert (root / "adapters" / "adapters.safetensors").read_bytes() != trained

    # the same decisions again change nothing: every stage is up to date
    append_review(root, Review(pair=pair_key(dropped), verdict="reject", note="off topic"))
    out = run("recipe", "run", str(recipe))
    assert "curate    up to date" in out and "train     up to date" in out
