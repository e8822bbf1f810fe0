"""`mlxtune compare` end to end on a tiny model, `chat`'s memory, question files, the judge."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess

import pytest
from click.testing import CliRunner
from conftest import write_recipe

from mlxtune.cli import cli
from mlxtune.errors import MlxtuneError
from mlxtune.evaluate.judge import parse_score
from mlxtune.evaluate.questions import Question, load_questions, merge
from mlxtune.records import read_jsonl

BASE = """\
name: {name}
papers: papers
run_dir: runs/{name}
model: {{tiny: {{hidden_size: 64, num_layers: 2, vocab_size: 600}}}}
split: {{per_category: {{valid: 1, test: 0}}}}
format: {{use: {format}}}
train: {train}
ask: {{max_tokens: 24}}
evaluate: {{recall: 2, heldout: 2, unseen: true}}
track: [tensorboard]
"""
TRAIN = (
    "{use: mlx, iters: 20, batch_size: 2, learning_rate: 3.0e-3, lora_rank: 8, "
    "lora_scale: 2.0, num_layers: -1, eval_every: 0.5, sample_max_tokens: 0}"
)


def browser() -> str | None:
    return shutil.which("chromium-headless-shell") or shutil.which("chromium")


@pytest.mark.slow
def test_compare_base_and_two_variants(tmp_path, papers_dir):
    recipes = [
        write_recipe(
            tmp_path / "approach.yaml", BASE.format(name="approach", format="approach", train=TRAIN)
        ),
        write_recipe(
            tmp_path / "base.yaml", BASE.format(name="base", format="approach", train="{use: none}")
        ),
        write_recipe(tmp_path / "qa.yaml", BASE.format(name="qa", format="qa", train=TRAIN)),
    ]
    out = tmp_path / "report"
    result = CliRunner().invoke(cli, ["compare", *map(str, recipes), "--out", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    names = [m["name"] for m in report["models"]]
    assert names == ["base", "approach", "qa"]  # the base model is the first row
    questions = report["questions"]
    kinds = [q["kind"] for q in questions]
    assert kinds.count("recall") == 2 and kinds.count("heldout") == 2 and "unseen" in kinds
    for model in report["models"]:
        assert [a["question"] for a in model["answers"]] == [q["question"] for q in questions]
        assert model["heldout"]["loss"] > 0 and model["heldout"]["papers"] == 2
        assert all(
            "repeat_4gram" in a["metrics"] and "stopped" in a["metrics"] for a in model["answers"]
        )
    assert set(report["per_category"]) == {"vision", "language"}
    assert report["models"][0]["training"] == {} and report["models"][1]["training"]["curves"]

    md = (out / "report.md").read_text()
    for name in names:
        assert f"| {name} |" in md
    for q in questions:
        assert f"### {q['question']}" in md
    assert (out / "loss_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = (out / "report.html").read_text()
    # the main table, all metrics (behind a toggle) and one table per category
    assert html.count("<tr class='model'>") == 3 * (2 + len(report["per_category"]))

    tensorboard = importlib.util.find_spec("tensorboard") is not None
    if not tensorboard and os.environ.get("MLXTUNE_REQUIRE_TRACKERS"):  # set by .ci/run
        pytest.fail("MLXTUNE_REQUIRE_TRACKERS is set but tensorboard is not installed")
    if tensorboard:  # the report went to the tracker
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
        from tensorboard.util import tensor_util

        events = EventAccumulator(str(out / "tensorboard"))
        events.Reload()
        sent = events.Tensors("artifact/report.md")[0].tensor_proto
        assert tensor_util.make_ndarray(sent).item().decode() == md
        trained = EventAccumulator(str(tmp_path / "runs" / "qa" / "tensorboard"))
        trained.Reload()
        assert len(trained.Scalars("eval/loss")) == 3  # steps 0, 10 and 20

    card = (tmp_path / "runs" / "approach" / "adapters" / "MODEL_CARD.md").read_text()
    pairs = list(read_jsonl(tmp_path / "runs" / "approach" / "curated.jsonl"))
    provenance = card.split("## Data provenance")[1].split("## Recipe")[0]
    docs = {d["id"]: d for d in read_jsonl(tmp_path / "runs" / "approach" / "documents.jsonl")}
    for pair in pairs:  # down to each paper: its split, title and file
        file = docs[pair["document_id"]]["path"].rsplit("/", 1)[-1]
        row = f"| {pair['split']} | {pair['category']} | {pair['title']} | `{file}` |"
        assert row in provenance, row
    assert f"{len(pairs)} [research question, approach] pairs (as curated)" in provenance
    assert report["models"][1]["curation"]["kept"] == len(pairs)
    assert "| pairs kept | pairs rejected |" in md
    assert "best validation loss" in card
    assert not (tmp_path / "runs" / "base" / "adapters").exists()

    again = CliRunner().invoke(cli, ["compare", *map(str, recipes), "--out", str(out), "--force"])
    assert again.exit_code == 0 and again.output.count("up to date, reused") == 3, again.output

    chrome = browser()
    if chrome is None:
        if os.environ.get("MLXTUNE_REQUIRE_BROWSER"):  # set by .ci/run once it installed one
            pytest.fail("MLXTUNE_REQUIRE_BROWSER is set but no headless Chromium is on PATH")
        pytest.skip("no headless Chromium (apt-get install chromium-headless-shell)")
    dom = subprocess.run(
        [
            chrome,
            "--no-sandbox",
            "--disable-gpu",
            "--virtual-time-budget=5000",
            "--dump-dom",
            (out / "report.html").as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        # Chromium's zygote dies under the OpenBLAS LD_PRELOAD that the tests may run with
        env={k: v for k, v in os.environ.items() if k != "LD_PRELOAD"},
    ).stdout
    assert 'data-metric-rows="3"' in dom  # the metrics table rendered, one row per model
    # the table's text as the browser laid it out: every model, and a metric value from the
    # report's own numbers
    import html as html_lib

    rendered = html_lib.unescape(dom.split('data-metrics-text="')[1].split('"')[0])
    summary = json.loads((out / "report.json").read_text())["summary"]
    for row in summary:
        assert row["model"] in rendered
    assert f"{summary[-1]['heldout_loss']:.3f}" in rendered  # a main-table column
    # the embedded plot: the PNG decodes whole (a truncated one does not), and the browser
    # shows it at its real width
    import base64
    import io

    from PIL import Image

    html_text = (out / "report.html").read_text()
    data = base64.b64decode(html_text.split("data:image/png;base64,")[1].split("'")[0])
    image = Image.open(io.BytesIO(data))
    image.load()
    width = int(dom.split('data-plot-width="')[1].split('"')[0])
    assert width == image.size[0] > 100


def test_conversation_prompt_keeps_earlier_turns():
    from mlxtune.asking import conversation_prompt
    from mlxtune.formatters.builtin import ApproachFormatter, ChatFormatter

    history = [("Q one?", "A one.")]
    text = conversation_prompt(ApproachFormatter(), history, "Q two?").prompt
    assert (
        text
        == "Research question: Q one?\nApproach: A one.\n\nResearch question: Q two?\nApproach:"
    )
    messages = conversation_prompt(ChatFormatter(), history, "Q two?").messages
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert messages[-1]["content"] == "Q two?" and messages[2]["content"] == "A one."


@pytest.mark.slow
def test_chat_command_remembers_and_resets(tiny_model, monkeypatch):
    """What the model is shown: the second prompt holds the first turn (question and the
    answer it got); after /reset the third holds neither."""
    from mlxtune.backends.mlx_backend import MlxBackend

    prompts, answers = [], []
    real_generate = MlxBackend.generate

    def recording(self, prompt, sampling):
        prompts.append(prompt.prompt)
        pieces = list(real_generate(self, prompt, sampling))
        answers.append("".join(pieces))
        yield from pieces

    monkeypatch.setattr(MlxBackend, "generate", recording)
    result = CliRunner().invoke(
        cli,
        ["chat", "--model", str(tiny_model), "--max-tokens", "4"],
        input="first question\nsecond question\n/reset\nthird\n/quit\n",
    )
    assert result.exit_code == 0, result.output
    assert result.output.count("model> ") == 3 and "(conversation cleared)" in result.output
    assert len(prompts) == 3
    assert "first question" in prompts[0] and "second question" not in prompts[0]
    first_turn = prompts[1].index("first question")
    assert first_turn < prompts[1].index(answers[0].strip()) < prompts[1].index("second question")
    assert "first question" not in prompts[2] and "second question" not in prompts[2]
    assert "third" in prompts[2]


def test_question_files(tmp_path):
    good = tmp_path / "q.yaml"
    good.write_text(
        "questions:\n  - Why?\n  - {question: 'How?', kind: unseen}\n"
        "  - {question: 'What?', reference: That., category: c}\n"
    )
    questions = load_questions(good)
    assert [q.kind for q in questions] == ["custom", "unseen", "custom"]
    assert questions[2].reference == "That."
    merged = merge([Question("why?", "recall")], questions)
    assert [q.question for q in merged] == ["why?", "How?", "What?"]
    for text, message in [
        ("questions:\n  - {question: x, kind: weird}\n", "kind 'weird'"),
        ("questions:\n  - {question: x, answer: y}\n", "unknown keys"),
        ("questions: 3\n", "expected a list"),
        ("questions: [\n", "invalid YAML at line"),
    ]:
        good.write_text(text)
        with pytest.raises(MlxtuneError, match=message):
            load_questions(good)


def test_judge_score_parsing():
    assert parse_score("Score: 4 - a concrete plan") == 4
    assert parse_score("**Score:** 5") == 5
    assert parse_score("I would give it a seven") is None


@pytest.mark.slow
def test_judge_grades_with_a_real_backend_and_never_guesses(tiny_model):
    from mlxtune.evaluate.judge import Judge
    from mlxtune.plugins import get_registry
    from mlxtune.recipe import JudgeSection

    answers = [{"question": "Why?", "reference": "Because.", "answer": "It is so.", "metrics": {}}]
    Judge(JudgeSection(model=str(tiny_model), max_tokens=8), get_registry()).grade(answers)
    # a random-weight judge writes no "Score: N": the score stays empty, the reply is kept
    assert answers[0]["metrics"]["judge_score"] is None
    assert isinstance(answers[0]["judge_reply"], str)
