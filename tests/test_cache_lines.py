"""Damaged cache lines (garbled bytes, not JSON, not an object, missing fields) are skipped with a
warning naming the file and line, and their entries are computed again; a torn last line (a crash
mid-append) stays silent. Stage outputs, which nothing appends to, still refuse a damaged line."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from conftest import write_recipe

from mlxtune.cache import JsonlCache
from mlxtune.cli import cli
from mlxtune.errors import MlxtuneError
from mlxtune.records import Document, Pair, append_jsonl, read_jsonl

GOOD_PAIR = {"document_id": "d", "category": "c", "question": "How?", "approach": "Thus."}


def lines(*rows: bytes) -> bytes:
    return b"".join(rows)


def test_damaged_lines_are_skipped_with_one_warning_each_and_appends_stay_clean(tmp_path):
    path = tmp_path / "cache.jsonl"
    path.write_bytes(
        lines(
            b'{"key": "a", "v": 1}\n',
            b'{"key": "b", "v": "\xff\xfe garbled"}\n',  # line 2: not UTF-8
            b'["key", "c"]\n',  # line 3: JSON, but a list
            b"key: d\n",  # line 4: not JSON
            b'{"v": 5}\n',  # line 5: no key
            b"\n",
            b'{"key": "e", "v": 7}\n',
            b'{"key": "f", "v"',  # torn last line: a crash mid-append, not a warning
        )
    )
    warnings: list[str] = []
    cache = JsonlCache(path, warn=warnings.append)
    assert len(cache) == 2 and cache.get("a")["v"] == 1 and cache.get("e")["v"] == 7
    assert [w.split(":")[0] for w in warnings[:3]] == [f"{path} line {n}" for n in (2, 3, 4)]
    assert "not UTF-8 (byte 0xff)" in warnings[0] and "a JSON list" in warnings[1]
    assert "not valid JSON" in warnings[2] and all("computed again" in w for w in warnings[:3])
    assert warnings[3] == f"{path}: 1 more damaged lines skipped"  # no flood of warnings
    assert cache.damaged[3] == (5, "no 'key'")

    cache.put("b", {"v": 2})  # the entry is computed again and appended whole
    assert path.read_bytes().endswith(b'{"key": "e", "v": 7}\n{"key": "b", "v": 2}\n')
    again: list[str] = []
    reread = JsonlCache(path, warn=again.append)
    assert {k: reread.get(k)["v"] for k in "abe"} == {"a": 1, "b": 2, "e": 7}
    assert again == warnings  # the damaged lines stay (rewriting a shared file is not safe)


def test_every_damaged_line_is_reported_on_stderr_by_default(tmp_path, capsys):
    path = tmp_path / "cache.jsonl"
    path.write_bytes(b'{"key": "a"}\n\x00\x01\x02\n{"key": "b"}\n')
    cache = JsonlCache(path)
    assert "a" in cache and "b" in cache
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"warning: {path} line 2: not valid JSON")


def test_a_record_its_stage_cannot_use_is_skipped(tmp_path):
    from mlxtune.stages.summarize import check_summary_record

    path = tmp_path / "summaries.jsonl"
    rows = [
        {"key": "ok", "document_id": "d", "status": "ok", "pair": GOOD_PAIR},
        {"key": "no-question", "status": "ok", "pair": {**GOOD_PAIR, "question": None}},
        {"key": "missing", "status": "ok", "pair": {"document_id": "d"}},
        {"key": "no-reason", "status": "failed"},
        {"key": "failed", "status": "failed", "reason": "no method section", "raw": ""},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    warnings: list[str] = []
    cache = JsonlCache(path, check=check_summary_record, warn=warnings.append)
    assert sorted(cache._records) == ["failed", "ok"]
    assert [w.split(":")[0] for w in warnings] == [f"{path} line {n}" for n in (2, 3, 4)]
    assert "Pair field 'question' is a NoneType" in warnings[0]
    assert "Pair field 'category' is missing" in warnings[1]


def test_from_row_names_the_field_that_is_wrong():
    from mlxtune.records import from_row

    assert from_row(Pair, GOOD_PAIR) == Pair(**GOOD_PAIR)
    doc = {"id": "x", "path": "p", "category": "c", "sections": {"a": "b"}, "readability": 1}
    assert from_row(Document, doc).readability == 1
    for cls, row, message in [
        (Pair, [1, 2], "expected an object for Pair, got list"),
        (Pair, {**GOOD_PAIR, "colour": "red"}, "Pair has no field 'colour'"),
        (Document, {**doc, "sections": {"a": 3}}, "Document field 'sections' is a dict"),
        (Document, {**doc, "pages": True}, "Document field 'pages' is a bool"),
        (Document, {**doc, "readability": "high"}, "Document field 'readability' is a str"),
    ]:
        with pytest.raises(ValueError, match=message):
            from_row(cls, row)


def test_a_damaged_stage_output_is_one_error_naming_file_and_line(tmp_path):
    path = tmp_path / "pairs.jsonl"
    for bad, why in [(b"\xc3\x28\n", "not UTF-8"), (b"[1]\n", "a JSON list, not an object")]:
        path.write_bytes(b'{"a": 1}\n' + bad + b'{"a": 2}\n')
        with pytest.raises(MlxtuneError, match=f"{path} line 2: {why}"):
            list(read_jsonl(path))
    append_jsonl(path, {"a": 3})  # still appends after a complete last line
    skipped: list[tuple[int, str]] = []
    assert list(read_jsonl(path, lambda n, why: skipped.append((n, why)))) == [
        {"a": 1},
        {"a": 2},
        {"a": 3},
    ]
    assert skipped == [(2, "a JSON list, not an object")]


RECIPE = """\
name: c
papers: papers
run_dir: run
cache_dir: cache
model: {tiny: {hidden_size: 64, num_layers: 2, vocab_size: 600}}
split: {per_category: {valid: 1, test: 0}}
"""


def test_extract_and_summarize_redo_only_the_papers_whose_cache_lines_are_damaged(
    tmp_path, papers_dir
):
    recipe = write_recipe(tmp_path / "r.yaml", RECIPE)
    result = CliRunner().invoke(cli, ["recipe", "run", str(recipe), "--until", "summarize"])
    assert result.exit_code == 0, result.output
    pairs = (tmp_path / "run" / "pairs.jsonl").read_text()
    documents = [json.loads(x) for x in (tmp_path / "run" / "documents.jsonl").open()]

    extract, summaries = (
        tmp_path / "cache" / "extract.jsonl",
        tmp_path / "cache" / "summaries.jsonl",
    )
    cached = summaries.read_bytes().splitlines(keepends=True)
    records = [json.loads(x) for x in cached]
    del records[2]["pair"]["question"]
    damaged = [b"\xff" + cached[0], b"[" + cached[1].rstrip() + b"]\n", json.dumps(records[2])]
    summaries.write_bytes(
        b"".join(damaged[:2]) + damaged[2].encode() + b"\n" + b"".join(cached[3:])
    )
    lines = extract.read_bytes().splitlines(keepends=True)
    extract.write_bytes(b"\x80garbled\n" + b"".join(lines[1:]))

    result = CliRunner().invoke(
        cli,
        ["recipe", "run", str(recipe), "--until", "summarize"]
        + ["--force", "extract", "--force", "summarize"],
    )
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())  # rich may wrap long lines
    assert f"warning: {extract} line 1: not UTF-8 (byte 0x80)" in out
    assert f"{len(documents) - 1} from cache" in out  # the damaged paper was extracted again
    for number, why in [(1, "not UTF-8"), (2, "a JSON list"), (3, "'question' is missing")]:
        assert f"warning: {summaries} line {number}: " in out and why in out
    assert f"; {len(cached) - 3} from cache" in out  # three papers summarized again
    assert (tmp_path / "run" / "pairs.jsonl").read_text() == pairs
    assert len(summaries.read_bytes().splitlines()) == len(cached) + 3
    assert "Traceback" not in out


def test_the_llm_judge_scores_again_only_the_damaged_lines(tmp_path):
    from llm_server import FakeLLMServer

    from mlxtune.curate.judge import LLMJudgeCurator

    approach = "We normalize each layer's inputs over groups of channels and train end to end."
    pairs = [
        Pair(document_id=x, category="c", title=f"Paper {x}", question=f"How can {x} work?",
             approach=approach, summarizer="test")
        for x in "abc"
    ]  # fmt: skip
    documents = {
        x: Document(id=x, path="p.pdf", category="c", sections={"abstract": f"Paper {x}."})
        for x in "abc"
    }
    with FakeLLMServer() as server:
        server.judge_scores.update({"Paper a": 5, "Paper b": 4, "Paper c": 5})
        options = {"use": "openai", "base_url": server.base_url, "model": "m", "max_retries": 0}
        judge = LLMJudgeCurator(LLMJudgeCurator.Options(summarizer=options, threshold=3))
        judge.cache_path = tmp_path / "curation.jsonl"
        first = judge.curate(pairs, documents)
        asked = len(server.requests)
        rows = judge.cache_path.read_text().splitlines(keepends=True)
        judge.cache_path.write_text(
            '{"key": '
            + rows[0].split(",")[0].split(":")[1]
            + ', "answer": "5"}\n'  # no reply
            + rows[1].replace('"', "'")  # not JSON
            + rows[2]
        )
        again = judge.curate(pairs, documents)
        assert len(server.requests) == asked + 2  # only the two damaged verdicts asked again
        assert [v.score for v in again] == [v.score for v in first] == [5, 4, 5]
