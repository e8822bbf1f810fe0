"""The data stage at scale: extraction workers and time limits, caches, per-category splits,
summarizing through a real loopback server, and resuming after SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import write_recipe
from llm_server import FakeLLMServer
from odd_extractors import OddExtractor
from pdfgen import paper_text, write_encrypted, write_image_only, write_paper, write_truncated

from mlxtune.cli import cli
from mlxtune.extract.pool import ExtractionPool, Job
from mlxtune.records import read_jsonl


def run(*args):
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, " ".join(result.output.split())


# ---------------------------------------------------------------- extraction pool


def test_pool_survives_hanging_dying_and_raising_extractors(tmp_path):
    actions = ["hang", "ok one", "die", "raise", "ok two", "ok three"]
    jobs = []
    for index, action in enumerate(actions):
        path = tmp_path / f"{index}.odd"
        path.write_text(action)
        jobs.append(Job(index, OddExtractor(), path, "c"))
    results = {}
    started = time.monotonic()
    ExtractionPool(workers=2, timeout=2).run(
        jobs, lambda job, doc: results.setdefault(job.index, doc)
    )
    assert time.monotonic() - started < 30  # the hanging one was abandoned, not waited for
    assert results[0].problem == "timeout" and "timed out after 2s" in results[0].reason
    assert results[2].problem == "crashed" and "process died" in results[2].reason
    assert results[3].problem == "crashed" and "RuntimeError: parser bug" in results[3].reason
    assert [results[i].text for i in (1, 4, 5)] == ["ok one", "ok two", "ok three"]
    assert all(results[i].id for i in range(6))
    assert results[1].title != f"pid {os.getpid()}"  # ran in a worker process


# ---------------------------------------------------------------- recipes


def make_corpus(root: Path, categories: int, per_category: int) -> int:
    count = 0
    for c in range(categories):
        for n in range(per_category):
            topic = f"topic {c} {n}"
            write_paper(
                root / f"cat{c:02d}" / f"p{n}.pdf",
                f"Learning {topic.title()}",
                paper_text(topic, n),
            )
            count += 1
    return count


RECIPE = """\
name: data
papers: papers
run_dir: run
model: {{tiny: {{}}}}
extract: {{use: pypdf, workers: 2}}
split: {{per_category: {split}}}
summarize: {summarize}
"""


def test_hundred_papers_in_eleven_categories_with_bad_files(tmp_path):
    papers = tmp_path / "papers"
    good = make_corpus(papers, categories=11, per_category=10)
    sample = papers / "cat00" / "p0.pdf"
    write_encrypted(papers / "cat01" / "locked.pdf", sample, user_password="pw")
    write_image_only(papers / "cat02" / "scan.pdf")
    write_truncated(papers / "cat03" / "cut.pdf", sample)
    (papers / "cat04" / "zero.pdf").write_bytes(b"")
    (papers / "cat05" / "copy.pdf").write_bytes(sample.read_bytes())
    (papers / "README.md").write_text("# My papers\nCollected for the study.\n")  # not a paper
    recipe = write_recipe(
        tmp_path / "r.yaml",
        RECIPE.format(split="{train: rest, valid: 1, test: 1}", summarize="{use: heuristic}"),
    )
    code, out = run("recipe", "run", str(recipe), "--until", "summarize")
    assert code == 0, out
    assert good == 110
    assert (
        "115 files: 110 extracted in 11 categories; 4 skipped (1 duplicate, 1 empty, "
        "1 encrypted, 1 image-only); 1 failed (1 truncated)" in out
    ), out
    assert "88 train, 11 valid, 11 test papers in 11 categories" in out
    assert "110 pairs from 110 papers (heuristic); 0 failed" in out
    assert "skipped cat04/zero.pdf: empty file (0 bytes)" in out
    docs = list(read_jsonl(tmp_path / "run" / "documents.jsonl"))
    zero = next(d for d in docs if d["path"].endswith("zero.pdf"))
    assert zero["status"] == "skipped" and zero["problem"] == "empty"

    code, out = run("recipe", "run", str(recipe), "--until", "extract", "--force", "extract")
    assert code == 0 and "115 from cache" in out, out


def test_per_category_counts_leave_the_rest_unused_and_small_categories_reported(tmp_path):
    papers = tmp_path / "papers"
    make_corpus(papers, categories=3, per_category=4)
    write_paper(papers / "tiny" / "only.pdf", "The Only Paper Here", paper_text("lonely"))
    recipe = write_recipe(
        tmp_path / "r.yaml",
        RECIPE.format(split="{train: 1, valid: 0, test: 1}", summarize="{use: heuristic}"),
    )
    code, out = run("recipe", "run", str(recipe), "--until", "summarize")
    assert code == 0, out
    assert "4 train, 0 valid, 3 test papers in 4 categories; 6 unused" in out
    assert "all-train (too small to split): tiny (1)" in out
    splits = json.loads((tmp_path / "run" / "splits.json").read_text())["splits"]
    pairs = list(read_jsonl(tmp_path / "run" / "pairs.jsonl"))
    assert len(pairs) == 7 and all(splits[p["document_id"]] == p["split"] for p in pairs)
    first = dict(splits)
    code, _ = run("recipe", "run", str(recipe), "--only", "split", "--force", "split")
    assert json.loads((tmp_path / "run" / "splits.json").read_text())["splits"] == first
    code, _ = run(
        "recipe", "run", str(recipe), "--only", "split", "--force", "split", "split.seed=7"
    )
    assert json.loads((tmp_path / "run" / "splits.json").read_text())["splits"] != first


def test_ratios_split_each_category(tmp_path):
    papers = tmp_path / "papers"
    make_corpus(papers, categories=2, per_category=10)
    recipe = write_recipe(
        tmp_path / "r.yaml",
        RECIPE.format(split="{valid: 0.2, test: 0.1}", summarize="{use: heuristic}"),
    )
    code, out = run("recipe", "run", str(recipe), "--until", "split")
    assert code == 0 and "14 train, 4 valid, 2 test papers in 2 categories" in out, out


# ---------------------------------------------------------------- summaries through a server


def openai_recipe(tmp_path: Path, server: FakeLLMServer, name: str = "data") -> Path:
    summarize = (
        f"{{use: openai, model: qwen-test, base_url: '{server.base_url}', "
        "concurrency: 2, backoff: 0.01, max_retries: 1}"
    )
    text = RECIPE.format(split="{valid: 1, test: 0}", summarize=summarize)
    text = text.replace("name: data", f"name: {name}").replace("run_dir: run", f"run_dir: {name}")
    return write_recipe(tmp_path / f"{name}.yaml", text + "cache_dir: cache\n")


def test_summaries_are_cached_across_runs_and_recipes(tmp_path):
    make_corpus(tmp_path / "papers", categories=2, per_category=3)
    with FakeLLMServer() as server:
        code, out = run("recipe", "run", str(openai_recipe(tmp_path, server)), "--until", "format")
        assert code == 0 and "6 pairs from 6 papers (openai, qwen-test); 0 failed" in out, out
        assert len(server.requests) == 6
        # another recipe (say, another formatter variant) sharing the cache asks nothing again
        code, out = run(
            "recipe", "run", str(openai_recipe(tmp_path, server, "variant")), "--until", "summarize"
        )
        assert code == 0 and "6 from cache" in out, out
        assert len(server.requests) == 6
    pairs_a = list(read_jsonl(tmp_path / "data" / "pairs.jsonl"))
    pairs_b = list(read_jsonl(tmp_path / "variant" / "pairs.jsonl"))
    assert pairs_a == pairs_b and pairs_a[0]["question"].startswith("How can we improve Learning")


def test_server_outage_fails_the_stage_and_the_rerun_does_only_the_rest(tmp_path):
    make_corpus(tmp_path / "papers", categories=2, per_category=3)
    with FakeLLMServer() as server:
        recipe = openai_recipe(tmp_path, server)
        server.always["Topic 1 2"] = "500"
        code, out = run("recipe", "run", str(recipe), "--until", "summarize")
        assert code != 0 and "1 of 6 papers could not be summarized" in out, out
        assert "run again" in out and not (tmp_path / "data" / "pairs.jsonl").exists()
        server.always.clear()
        server.requests.clear()
        code, out = run("recipe", "run", str(recipe), "--until", "summarize")
        assert code == 0 and "5 from cache" in out, out
        assert len(server.requests) == 1 and "Topic 1 2" in server.requests[0]["prompt"]


@pytest.mark.slow
def test_sigkill_mid_summarize_then_resume_loses_and_duplicates_nothing(tmp_path):
    total = make_corpus(tmp_path / "papers", categories=4, per_category=6)
    with FakeLLMServer(delay=0.15) as server:
        recipe = openai_recipe(tmp_path, server)
        recipe.write_text(recipe.read_text().replace("concurrency: 2", "concurrency: 1"))
        cache = tmp_path / "cache" / "summaries.jsonl"
        env = {**os.environ, "MLXTUNE_DISABLE_PLUGIN_AUTOLOAD": "1"}
        command = [
            sys.executable,
            "-m",
            "mlxtune",
            "recipe",
            "run",
            str(recipe),
            "--until",
            "summarize",
        ]
        process = subprocess.Popen(
            command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if cache.exists() and cache.read_bytes().count(b"\n") >= 5:
                break
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        process.wait()
        done_before = len(list(read_jsonl(cache)))
        assert 5 <= done_before < total
        asked_before = len(server.requests)
        code, out = run("recipe", "run", str(recipe), "--until", "summarize")
        assert code == 0 and f"{total} pairs from {total} papers" in out, out
        assert f"{done_before} from cache" in out
        # exactly the papers without a cached summary were asked again
        assert len(server.requests) - asked_before == total - done_before
    rows = [json.loads(line) for line in cache.read_text().splitlines()]
    keys = [row["key"] for row in rows]
    assert len(keys) == len(set(keys)) == total
    pairs = list(read_jsonl(tmp_path / "data" / "pairs.jsonl"))
    assert len({p["document_id"] for p in pairs}) == len(pairs) == total


@pytest.mark.slow
def test_mlx_summarizer_through_a_recipe_records_unparseable_replies(tmp_path, tiny_model):
    make_corpus(tmp_path / "papers", categories=2, per_category=2)
    summarize = f"{{use: mlx, model: '{tiny_model}', batch_size: 4, max_tokens: 8}}"
    recipe = write_recipe(
        tmp_path / "r.yaml", RECIPE.format(split="{valid: 1}", summarize=summarize)
    )
    code, out = run("recipe", "run", str(recipe), "--until", "summarize")
    assert code != 0 and "no document gave a question/approach pair" in out, out
    failures = list(read_jsonl(tmp_path / "run" / "summary_failures.jsonl"))
    assert len(failures) == 4 and all("unparseable" in f["reason"] and f["raw"] for f in failures)
    cached = list(read_jsonl(tmp_path / "cache" / "summaries.jsonl"))
    assert len(cached) == 4 and {c["status"] for c in cached} == {"failed"}
