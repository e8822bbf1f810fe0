from __future__ import annotations

import json

from mlxtune.records import Example, Pair, append_jsonl, atomic_write_text, read_jsonl


def test_torn_last_line_is_ignored_and_next_append_is_clean(tmp_path):
    path = tmp_path / "cache.jsonl"
    append_jsonl(path, {"a": 1})
    with open(path, "a") as fh:
        fh.write('{"a": 2, "b"')  # a crash mid-write
    assert list(read_jsonl(path)) == [{"a": 1}]
    append_jsonl(path, {"a": 3})
    assert list(read_jsonl(path)) == [{"a": 1}, {"a": 3}]


def test_atomic_write_leaves_no_temp_files(tmp_path):
    atomic_write_text(tmp_path / "x.json", json.dumps({"ok": True}))
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


def test_example_json_omits_unused_fields():
    assert Example(text="ab", prompt="a").to_json() == {"text": "ab", "prompt": "a"}
    pair = Pair(document_id="d", category="c", question="q", approach="a")
    assert pair.split == "train"
