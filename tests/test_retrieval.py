"""Retrieval as a variant (issue 28): BM25 over the run's paper passages, the passages in the
prompt, a held-out question's own paper never quoted; test papers held out by default; the
four variants side by side in one report folder that is never silently replaced."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from click.testing import CliRunner
from conftest import write_recipe
from pdfgen import paper_text, write_paper

from mlxtune.components import Passage
from mlxtune.records import Document, Example
from mlxtune.retrieve import chunk_documents, with_passages
from mlxtune.retrieve.bm25 import BM25Retriever


def doc(id_: str, text: str, category: str = "c", title: str = "") -> Document:
    return Document(id=id_, path=f"{id_}.pdf", category=category, title=title or id_, text=text)


def test_chunks_are_whole_words_and_a_short_tail_joins_the_last():
    text = " ".join(f"w{i}" for i in range(250))
    passages = chunk_documents([doc("a", text), doc("a", text), doc("b", "")], 100)
    # 250 words: 100, then 150 (the 50-word tail is a passage of its own: >= 100 // 4)
    assert [p.start for p in passages] == [0, 100, 200]
    short_tail = chunk_documents([doc("a", " ".join(f"w{i}" for i in range(210)))], 100)
    assert [len(p.text.split()) for p in short_tail] == [100, 110]  # the 10-word tail joined
    failed = Document(id="f", path="f.pdf", category="c", status="failed", text="x " * 50)
    assert chunk_documents([failed], 10) == []


def test_bm25_ranks_by_shared_terms_and_never_returns_an_excluded_paper():
    passages = chunk_documents(
        [
            doc("seg", "cell segmentation boundary loss for touching nuclei in microscopy"),
            doc("norm", "group normalization statistics independent of the batch size"),
            doc("norm2", "layer normalization across features for small batches"),
            doc("rnn", "gated recurrent memory for handwriting recognition"),
        ],
        50,
    )
    retriever = BM25Retriever(BM25Retriever.Options(top_k=2))
    retriever.index(passages)
    found = retriever.search("normalization independent of batch size", 2)
    assert [p.document_id for p in found] == ["norm", "norm2"]
    assert found[0].score > found[1].score > 0
    # the held-out question's own paper is excluded: the next best takes its place
    found = retriever.search("normalization independent of batch size", 2, frozenset(["norm"]))
    assert [p.document_id for p in found] == ["norm2"]  # rnn and seg share no word: left out
    assert retriever.search("quantum chromodynamics", 3) == []
    assert retriever.search("the of and", 3) == []  # stop words only


def test_passages_go_before_the_question_in_chat_and_completion_prompts():
    passages = [Passage("d", "Group Norm", "norm", "statistics per group", 0, 2.0)]
    chat = Example(messages=[{"role": "system", "content": "S"}, {"role": "user", "content": "Q?"}])
    out = with_passages(chat, passages).messages
    assert out[0] == {"role": "system", "content": "S"}
    assert out[1]["content"].startswith("Passages from the papers:\n[1] Group Norm: statistics")
    assert out[1]["content"].endswith("\nQ?")
    assert chat.messages[1]["content"] == "Q?"  # the formatter's prompt is not changed
    text = with_passages(Example(prompt="Research question: Q?\nApproach:"), passages).prompt
    assert text.index("statistics per group") < text.index("Research question: Q?")
    assert text.endswith("Approach:")
    assert with_passages(chat, []) is chat


def test_default_split_holds_out_a_test_paper_where_a_category_has_enough():
    from mlxtune.recipe_schema import SplitCounts
    from mlxtune.stages.split import assign_category

    counts = SplitCounts()  # valid 1, test auto, train rest
    for n, expect_test in [(3, 0), (4, 1), (9, 1)]:
        members = [doc(f"{n}-{i}", "x") for i in range(n)]
        labels, small = assign_category(members, counts, 0, "c")
        values = list(labels.values())
        assert not small and values.count("test") == expect_test, (n, values)
        assert values.count("valid") == 1 and values.count("train") == n - 1 - expect_test
    explicit = SplitCounts(test=0)
    labels, _ = assign_category([doc(f"e{i}", "x") for i in range(6)], explicit, 0, "c")
    assert "test" not in labels.values()


def _papers(root, per_category: int):
    topics = {
        "vision": ["image segmentation", "object detection", "depth estimation", "optical flow"],
        "language": ["machine translation", "speech recognition", "summarization", "parsing"],
    }
    for category, names in topics.items():
        for n, topic in enumerate(names[:per_category]):
            title = f"A Contrastive Approach to {topic.title()}"
            write_paper(root / category / f"paper{n}.pdf", title, paper_text(topic, n))
    return root


RECIPE = """\
name: {name}
papers: papers
run_dir: runs/{run}
model: {{tiny: {{hidden_size: 64, num_layers: 2, vocab_size: 600}}}}
format: {{use: approach}}
train: {train}
ask: {{max_tokens: 12}}
evaluate: {{recall: 2, heldout: 2, unseen: false}}
{extra}"""
TRAIN = (
    "{use: mlx, iters: 8, batch_size: 2, learning_rate: 3.0e-3, lora_rank: 4, "
    "num_layers: -1, eval_every: 0.5, sample_max_tokens: 0}"
)
RAG = "retrieve: {use: bm25, top_k: 2, chunk_words: 40}\n"


@pytest.mark.slow
def test_four_variants_side_by_side_on_test_papers(tmp_path):
    from mlxtune.cli import cli

    _papers(tmp_path / "papers", 4)
    specs = {  # (run dir, train, retrieval): the rag variants share their model's run
        "tuned-rag": ("tuned", TRAIN, RAG),
        "base": ("base", "{use: none}", ""),
        "tuned": ("tuned", TRAIN, ""),
        "base-rag": ("base", "{use: none}", RAG),
    }
    recipes = [
        write_recipe(tmp_path / f"{n}.yaml", RECIPE.format(name=n, run=r, train=t, extra=x))
        for n, (r, t, x) in specs.items()
    ]
    result = CliRunner().invoke(cli, ["compare", *map(str, recipes)])
    assert result.exit_code == 0, result.output
    out = tmp_path / "runs" / "compare" / "base+base-rag+tuned+tuned-rag"
    report = json.loads((out / "report.json").read_text())
    models = {m["name"]: m for m in report["models"]}
    assert [r["variant"] for r in report["summary"]] == [
        "base", "base + retrieval", "tuned", "tuned + retrieval"
    ]  # fmt: skip
    assert result.output.count("train     up to date, skipped") >= 1  # tuned once, shared
    # held-out questions are the test papers' (4 papers a category: one test paper each)
    splits = json.loads((tmp_path / "runs" / "tuned" / "splits.json").read_text())["splits"]
    held = [q for q in report["questions"] if q["kind"] == "heldout"]
    assert held and all(splits[q["document_id"]] == "test" for q in held)
    assert report["heldout_split"] == "test" and "test papers" in report["heldout_note"]
    assert models["tuned"]["heldout"]["split"] == "test"
    for name in ("base-rag", "tuned-rag"):
        assert models[name]["retrieval"]["use"] == "bm25"
        answers = models[name]["answers"]
        assert all(len(a["passages"]) <= 2 for a in answers)
        assert sum(len(a["passages"]) for a in answers) > 0
        for a in answers:  # never the held-out question's own paper
            if a["kind"] == "heldout":
                assert a["document_id"] not in {p["document_id"] for p in a["passages"]}
    assert all("passages" not in a for a in models["base"]["answers"])
    # answering with passages is another prompt: the answers or the loss differ
    assert models["base-rag"]["heldout"]["loss"] != models["base"]["heldout"]["loss"]
    # the terminal ends with the summary table, each model a row
    tail = result.output[result.output.index("mlxtune compare (") :]
    assert all(name in tail for name in specs)
    md = (out / "report.md").read_text()
    assert "judge" not in md.split("<details>")[0]  # an always-empty column is hidden
    assert "stop rate ↑" in md and "held-out loss ↓" in md and "(lower is better)" in md

    # a second comparison does not replace the report without --force
    before = (out / "report.json").read_bytes()
    again = CliRunner().invoke(cli, ["compare", *map(str, recipes)])
    assert again.exit_code != 0 and "--force" in again.output
    assert (out / "report.json").read_bytes() == before
    forced = CliRunner().invoke(cli, ["compare", *map(str, recipes), "--force"])
    assert forced.exit_code == 0 and forced.output.count("up to date, reused") == 4

    from test_compare import browser

    chrome = browser()
    if chrome is None:
        if os.environ.get("MLXTUNE_REQUIRE_BROWSER"):
            pytest.fail("MLXTUNE_REQUIRE_BROWSER is set but no headless Chromium is on PATH")
        pytest.skip("no headless Chromium (apt-get install chromium-headless-shell)")
    dom = subprocess.run(
        [chrome, "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000", "--dump-dom",
         (out / "report.html").as_uri()],
        capture_output=True, text=True, timeout=120,
        env={k: v for k, v in os.environ.items() if k != "LD_PRELOAD"},
    ).stdout  # fmt: skip
    assert 'data-answer-columns="4"' in dom and 'data-metric-rows="4"' in dom
    shown = sum(len(a["passages"]) for n in ("base-rag", "tuned-rag") for a in models[n]["answers"])
    assert f'data-passages="{shown}"' in dom
    assert int(dom.split('data-plot-width="')[1].split('"')[0]) > 100


def test_kept_step_is_the_best_or_the_last():
    from mlxtune.evaluate.report import kept_step

    assert kept_step({"summary": {"kept": "best", "best_step": 4, "steps": 8}}) == 4
    assert kept_step({"summary": {"kept": "last", "best_step": 4, "steps": 8}}) == 8
    assert kept_step({}) is None


@pytest.mark.slow
def test_ask_and_the_ask_stage_answer_with_the_recipes_passages(tmp_path, monkeypatch):
    """`retrieve:` is part of the answering session: `mlxtune ask` and the ask stage quote the
    run's papers as `compare` does; the stage's held-out question is a test paper's, and its
    own paper is never quoted."""
    from mlxtune.cli import cli

    _papers(tmp_path / "papers", 4)
    recipe = write_recipe(
        tmp_path / "r.yaml",
        RECIPE.format(name="base-rag", run="base", train="{use: none}", extra=RAG),
    )
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["recipe", "run", str(recipe)])
    assert result.exit_code == 0, result.output
    root = tmp_path / "runs" / "base"
    splits = json.loads((root / "splits.json").read_text())["splits"]
    answers = list(map(json.loads, (root / "answers.jsonl").read_text().splitlines()))
    held = next(a for a in answers if a["kind"] == "heldout")
    pairs = [json.loads(line) for line in (root / "pairs.jsonl").read_text().splitlines()]
    own = next(p["document_id"] for p in pairs if p["question"] == held["question"])
    assert splits[own] == "test"
    assert held["passages"] and own not in {p["document_id"] for p in held["passages"]}

    asked = CliRunner().invoke(
        cli, ["ask", "--recipe", str(recipe), "--json", "How can image segmentation improve?"]
    )
    assert asked.exit_code == 0, asked.output
    record = json.loads(asked.output.strip().splitlines()[-1])
    assert len(record["passages"]) == 2
    assert any("Segmentation" in p["title"] for p in record["passages"])

    (root / "documents.jsonl").rename(root / "kept.jsonl")
    early = CliRunner().invoke(cli, ["ask", "--recipe", str(recipe), "How?"])
    assert early.exit_code != 0 and "run `mlxtune recipe run`" in early.output
