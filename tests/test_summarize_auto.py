"""Issue 26's LLM path: `summarize: {use: auto}` (its choice and its fallbacks, per recipe and per
paper), the excerpt the `mlx` summarizer reads, and progress lines when the output is not a
terminal. Real recipes through the CLI, the tiny model of conftest.py; seconds, not minutes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import write_recipe

from mlxtune.cli import cli
from mlxtune.device import named_profile
from mlxtune.recipe import load_recipe
from mlxtune.records import Document, load_pairs

RECIPE = """\
name: t
papers: {papers}
run_dir: {root}/run
cache_dir: {root}/cache
model: {model}
split: {{per_category: {{valid: 1}}}}
summarize: {summarize}
"""


def recipe_file(tmp_path: Path, papers: Path, model: str, summarize: str) -> Path:
    text = RECIPE.format(papers=papers, root=tmp_path, model=model, summarize=summarize)
    return write_recipe(tmp_path / "r.yaml", text)


def resolved(path: Path, device=None):
    from mlxtune.stages.summarize_auto import resolve_auto

    recipe, registry = load_recipe(path)
    auto = registry.build("summarizer", recipe.component("summarize"))
    return resolve_auto(recipe, auto.options, device)


def test_auto_chooses_mlx_with_the_recipes_local_model(tmp_path, papers_dir, tiny_model):
    path = recipe_file(tmp_path, papers_dir, f"{{path: {tiny_model}}}", "{use: auto}")
    choice = resolved(path, named_profile("metal", 16e9))
    assert choice.summarizer.name == "mlx" and not choice.fell_back
    assert choice.summarizer.options.model == str(tiny_model)
    assert choice.summarizer.options.fallback == "heuristic"  # per paper
    assert "auto chose the mlx summarizer" in choice.reason


def test_auto_falls_back_when_the_model_would_not_fit(tmp_path, papers_dir, tiny_model):
    path = recipe_file(tmp_path, papers_dir, f"{{path: {tiny_model}}}", "{use: auto}")
    choice = resolved(path, named_profile("metal", 1e5))  # a 100 kB "Mac"
    assert choice.fell_back and "more than the" in choice.reason
    # room for a batch of two but not of eight: the batch is halved, not the summarizer lost
    from mlxtune.summarize.auto import AutoOptions, generation_bytes

    config = json.loads((tiny_model / "config.json").read_text())
    two = generation_bytes(config, AutoOptions(), 2, batch=2)
    assert two < generation_bytes(config, AutoOptions(), 2, batch=4)
    choice = resolved(path, named_profile("metal", two * 1.01 * 3 / 2))
    assert choice.summarizer.name == "mlx" and choice.summarizer.options.batch_size == 2
    assert "batch 2 instead of 8" in choice.reason


def test_auto_never_downloads(tmp_path, papers_dir, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    path = recipe_file(
        tmp_path, papers_dir, "{id: mlx-community/Qwen2.5-0.5B-Instruct-4bit}", "{use: auto}"
    )
    choice = resolved(path, named_profile("metal", 64e9))
    assert choice.fell_back and "is not downloaded" in choice.reason
    tiny = recipe_file(tmp_path, papers_dir, "{tiny: {}}", "{use: auto}")
    assert "tiny random-weight model" in resolved(tiny).reason


def test_auto_on_a_recipe_warns_and_keeps_the_heuristics_cache(tmp_path, papers_dir):
    path = recipe_file(tmp_path, papers_dir, "{tiny: {}}", "{use: auto}")
    result = CliRunner().invoke(cli, ["recipe", "run", str(path), "--until", "summarize"])
    assert result.exit_code == 0, result.output
    assert "warning: summarize: auto chose the heuristic summarizer" in result.output
    assert {p.summarizer for p in load_pairs(tmp_path / "run" / "pairs.jsonl")} == {"heuristic"}
    heuristic = recipe_file(tmp_path, papers_dir, "{tiny: {}}", "{use: heuristic}")
    again = CliRunner().invoke(cli, ["recipe", "run", str(heuristic), "--until", "summarize"])
    assert "summarize up to date" in again.output or "6 from cache" in again.output, again.output


@pytest.mark.slow
def test_a_paper_whose_reply_fails_falls_back_per_paper_with_progress_lines(
    tmp_path, papers_dir, tiny_model, monkeypatch
):
    from mlxtune.stages import summarize as stage

    monkeypatch.setattr(stage, "PROGRESS_QUIET_S", 0.0, raising=False)  # lines from the start
    # unconstrained, eight tokens: the random model's replies are never a pair
    summarize = "{use: auto, structured: none, max_tokens: 8, batch_size: 4}"
    path = recipe_file(tmp_path, papers_dir, f"{{path: {tiny_model}}}", summarize)
    result = CliRunner().invoke(cli, ["recipe", "run", str(path), "--until", "summarize"])
    assert result.exit_code == 0, result.output
    assert "auto chose the mlx summarizer" in result.output
    pairs = load_pairs(tmp_path / "run" / "pairs.jsonl")
    assert len(pairs) == 6 and {p.summarizer for p in pairs} == {"heuristic"}
    assert all(p.decoding.startswith("heuristic fallback: the mlx reply failed") for p in pairs)
    assert "unparseable reply after one repair" in pairs[0].decoding
    # output is not a terminal here: plain progress lines instead of the bar
    assert "summarized 6/6 papers (" in result.output
    assert "summarized 1/6 papers (" in result.output and "eta" in result.output


def test_progress_lines_when_the_output_is_not_a_terminal(tmp_path, papers_dir, monkeypatch):
    from mlxtune.stages import summarize as stage

    path = recipe_file(tmp_path, papers_dir, "{tiny: {}}", "{use: heuristic}")
    quiet = CliRunner().invoke(cli, ["recipe", "run", str(path), "--until", "summarize"])
    assert quiet.exit_code == 0 and "summarized" not in quiet.output  # instant: no lines
    monkeypatch.setattr(stage, "PROGRESS_QUIET_S", 0.0, raising=False)  # as if it were slow
    (tmp_path / "cache" / "summaries.jsonl").unlink()  # summarize them again
    result = CliRunner().invoke(
        cli, ["recipe", "run", str(path), "--until", "summarize", "--force", "summarize"]
    )
    assert result.exit_code == 0, result.output
    lines = [line.strip() for line in result.output.splitlines() if "summarized" in line]
    assert lines[0].startswith("summarized 1/6 papers (") and "/min, eta " in lines[0]
    assert lines[-1].startswith("summarized 6/6 papers (") and "eta" not in lines[-1]


def test_progress_lines_also_while_no_paper_finishes(monkeypatch):
    import time

    from mlxtune.stages import summarize as stage

    monkeypatch.setattr(stage, "PROGRESS_EVERY_S", 0.5, raising=False)
    out: list[str] = []
    with stage.ProgressLines(out.append, 10) as lines:
        time.sleep(2.2)  # a batch's first replies are slow to come
        lines.update(10, 0)
    assert len(out) >= 2 and out[0].strip().startswith("summarizing 10 papers: none finished")
    assert out[-1].strip().startswith("summarized 10/10 papers (")


def doc(**sections: str) -> Document:
    return Document(id="d", path="d.pdf", category="c", title="T", text="", sections=sections)


def test_excerpt_holds_the_abstract_the_problem_the_contribution_and_the_methods_opening():
    from mlxtune.summarize.reading import excerpt

    filler = "Prior systems were evaluated on several benchmarks in earlier years. " * 30
    intro = (
        f"{filler}However, training deep networks remains difficult because gradients vanish. "
        f"{filler}In this paper, we propose residual connections that add the input to the "
        f"output of each block. {filler}"
    )
    d = doc(
        abstract="We study depth. " * 100,
        introduction=intro,
        method="Each block computes y = F(x) + x, where F is two convolutions. " * 40,
        experiments="Results. " * 500,
    )
    text = excerpt(d, 2400)
    assert len(text) <= 2400 + 120  # the section labels
    assert "However, training deep networks remains difficult" in text
    assert "In this paper, we propose residual connections" in text
    assert "Prior systems were evaluated" not in text
    assert "Method (opening)\nEach block computes y = F(x) + x" in text
    assert "Results." not in text
    plain = Document(id="p", path="p.pdf", category="c", title="T", text="word " * 2000)
    assert 2300 < len(excerpt(plain, 2400)) <= 2400


def test_read_excerpt_is_one_prompt_per_paper_with_no_chunk_round():
    from llm_server import FakeLLMServer

    from mlxtune.summarize.openai_summarizer import OpenAISummarizer

    long = doc(abstract="An abstract.", method="We train a network with a loss. " * 400)
    with FakeLLMServer() as server:
        s = OpenAISummarizer(
            OpenAISummarizer.Options(
                model="m", base_url=server.base_url, read="excerpt", chunk_chars=2000
            )
        )
        list(s.summarize([long]))
    assert server.count("T", "chunk") == 0 and server.count("T", "pair") == 1
    prompt = server.requests[0]["prompt"]
    assert "Method (opening)" in prompt and len(prompt) < 2400 + 1500


def test_fallback_heuristic_replaces_a_pair_the_rules_would_reject():
    """A small model's pair that parses but cannot be trained on ("The purpose of this paper",
    a two-word approach) is the heuristic's with fallback: heuristic, the model's own without."""
    from llm_server import FakeLLMServer
    from pdfgen import paper_text

    from mlxtune.curate.rules import RulesCurator
    from mlxtune.summarize.openai_summarizer import OpenAISummarizer

    def paper(title: str, topic: str) -> Document:
        sections = {k.split(" ", 1)[-1].lower(): v for k, v in paper_text(topic).items()}
        text = "\n\n".join(sections.values())
        return Document(
            id=title, path=f"{title}.pdf", category="c", title=title, text=text, sections=sections
        )

    vague, fine = paper("Vague Paper", "segmentation"), paper("Fine Paper On Depth", "depth")
    for fallback in ("heuristic", "none"):
        with FakeLLMServer() as server:
            server.always["Vague Paper"] = "vague"
            options = OpenAISummarizer.Options(
                model="m", base_url=server.base_url, fallback=fallback
            )
            pairs = {p.document_id: p for p in OpenAISummarizer(options).summarize([vague, fine])}
        assert pairs[fine.id].summarizer == "openai"  # a usable pair is the model's own
        replaced = pairs[vague.id]
        if fallback == "none":
            assert (
                replaced.summarizer == "openai" and replaced.question == "The purpose of this paper"
            )
            continue
        assert replaced.summarizer == "heuristic" and replaced.question.endswith("?")
        assert replaced.decoding == (
            "heuristic fallback: the openai pair was not usable (the question is not one "
            "question ending in '?')"
        )
        verdicts = RulesCurator().curate(list(pairs.values()), {d.id: d for d in (vague, fine)})
        assert all(v.keep for v in verdicts), verdicts
