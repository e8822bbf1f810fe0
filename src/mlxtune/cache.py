"""A durable key -> record store for work that is expensive to redo (extraction, summaries).

It is an append-only JSONL file: each finished record is one line, flushed and fsynced before the
next piece of work starts, so a crash or SIGKILL loses at most the record being written (its torn
line is ignored on read and cut before the next append). The last record for a key wins. Plain
JSONL rather than SQLite because a user can read, grep and copy it, and several runs (the variant
recipes of one study) can share it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .records import append_jsonl, read_jsonl, sha256_json


def cache_key(*parts: Any) -> str:
    """A stable key from JSON-serializable parts (document id, component fingerprint, ...)."""
    return sha256_json(list(parts))


class JsonlCache:
    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self._records: dict[str, dict[str, Any]] = {}
        if self.path.is_file():
            for row in read_jsonl(self.path):
                key = row.get("key")
                if isinstance(key, str):
                    self._records[key] = row

    def __len__(self) -> int:
        return len(self._records)

    def __contains__(self, key: str) -> bool:
        return key in self._records

    def get(self, key: str) -> dict[str, Any] | None:
        return self._records.get(key)

    def put(self, key: str, record: dict[str, Any]) -> None:
        row = {"key": key, **record}
        append_jsonl(self.path, row)
        self._records[key] = row
