"""Byte-offset indexes of a run's JSONL files, so that a page reads only the lines it shows.

A run of 1,500 papers has a documents.jsonl of tens of megabytes (every paper's text). Each index
reads its file once, keeping per line its byte offset and a few small fields (a category, a
status, a pair key) for filters, and is rebuilt only when the file's size or mtime changes: a
request then seeks to the handful of lines on its page.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Summary = Callable[[dict[str, Any]], dict[str, Any]]


@dataclass
class Entry:
    """One line of the file: where it is and the small fields the summary kept."""

    offset: int
    length: int
    fields: dict[str, Any]


def stamp(path: Path) -> tuple[int, int] | None:
    """(size, mtime in ns): what says the file changed; None for a missing file."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


class JsonlIndex:
    """The lines of one JSONL file, summarized; `rows(...)` reads chosen lines back whole.

    A torn or damaged line is left out (as records.read_jsonl skips it)."""

    def __init__(self, path: Path, summary: Summary):
        self.path, self.summary = path, summary
        self._stamp: tuple[int, int] | None = None
        self._entries: list[Entry] = []
        self._lock = threading.Lock()
        self.builds = 0  # how many times the file was read whole (the tests count them)

    def entries(self) -> list[Entry]:
        """The current index; the file is read again only if it changed."""
        with self._lock:
            now = stamp(self.path)
            if now != self._stamp:
                self._entries = self._build() if now is not None else []
                self._stamp = now
            return self._entries

    def _build(self) -> list[Entry]:
        self.builds += 1
        entries: list[Entry] = []
        offset = 0
        with open(self.path, "rb") as fh:
            for line in fh:
                length = len(line)
                if line.endswith(b"\n") and line.strip():
                    try:
                        row = json.loads(line)
                    except ValueError:
                        row = None
                    if isinstance(row, dict):
                        entries.append(Entry(offset, length, self.summary(row)))
                offset += length
        return entries

    def read(self, entry: Entry) -> dict[str, Any]:
        """The whole row of one indexed line (one seek, one read)."""
        with open(self.path, "rb") as fh:
            fh.seek(entry.offset)
            return json.loads(fh.read(entry.length))

    def rows(self, entries: list[Entry]) -> list[dict[str, Any]]:
        with open(self.path, "rb") as fh:
            out = []
            for entry in entries:
                fh.seek(entry.offset)
                out.append(json.loads(fh.read(entry.length)))
            return out


class Cached:
    """A value computed from a file, recomputed only when the file's size or mtime changes."""

    def __init__(self, path: Path, compute: Callable[[Path], Any], missing: Any = None):
        self.path, self.compute, self.missing = path, compute, missing
        self._stamp: tuple[int, int] | None = None
        self._value: Any = missing
        self._lock = threading.Lock()

    def get(self) -> Any:
        with self._lock:
            now = stamp(self.path)
            if now != self._stamp:
                self._value = self.compute(self.path) if now is not None else self.missing
                self._stamp = now
            return self._value
