"""A durable key -> record store for work that is expensive to redo (extraction, summaries).

It is an append-only JSONL file: each finished record is one line, flushed and fsynced before the
next piece of work starts, so a crash or SIGKILL loses at most the record being written (its torn
line is ignored on read and cut before the next append). The last record for a key wins. Plain
JSONL rather than SQLite because a user can read, grep and copy it, and several runs (the variant
recipes of one study) can share it.

Because a user can also edit it (or a disk can garble it), a line that cannot be used (bad
UTF-8, not JSON, not an object, no key, or failing the owner's `check`) is skipped with a warning
naming the file and line: its entry is simply missing, so the stage computes it again.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .records import append_jsonl, numbered_jsonl, sha256_json

MAX_WARNINGS = 3  # damaged lines named one by one; the rest are counted


def cache_key(*parts: Any) -> str:
    """A stable key from JSON-serializable parts (document id, component fingerprint, ...)."""
    return sha256_json(list(parts))


def warn_stderr(message: str) -> None:
    sys.stderr.write(f"warning: {message}\n")


class JsonlCache:
    """`check(record)` raises ValueError, TypeError or KeyError for a record its stage cannot
    use (a missing field); `warn` receives one line per damaged line (stderr by default)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        check: Callable[[dict[str, Any]], object] | None = None,
        warn: Callable[[str], None] = warn_stderr,
    ):
        self.path = Path(path)
        self._records: dict[str, dict[str, Any]] = {}
        self.damaged: list[tuple[int, str]] = []  # (line number, why), skipped
        if self.path.is_file():
            self._load(check)
        for number, problem in self.damaged[:MAX_WARNINGS]:
            warn(f"{self.path} line {number}: {problem}; skipped (its entry is computed again)")
        if len(self.damaged) > MAX_WARNINGS:
            warn(f"{self.path}: {len(self.damaged) - MAX_WARNINGS} more damaged lines skipped")

    def _load(self, check: Callable[[dict[str, Any]], object] | None) -> None:
        def bad(number: int, problem: str) -> None:
            self.damaged.append((number, problem))

        for number, row in numbered_jsonl(self.path, bad):
            key = row.get("key")
            if not isinstance(key, str):
                bad(number, "no 'key'")
                continue
            try:
                if check is not None:
                    check(row)
            except (ValueError, TypeError, KeyError, AttributeError) as exc:
                reason = str(exc) if not isinstance(exc, KeyError) else f"no {exc}"
                bad(number, f"unusable record ({' '.join(reason.split())[:120]})")
                continue
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
