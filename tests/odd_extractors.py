"""Extractors that misbehave on purpose, importable by name in the extraction worker processes."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from mlxtune.components import Extractor
from mlxtune.records import Document, sha256_bytes


class OddExtractor(Extractor):
    """The file's content says what to do: hang, die, raise, or give text."""

    name = "odd"
    suffixes = (".odd",)

    def extract(self, path: Path, category: str) -> Document:
        data = path.read_bytes()
        action = data.decode().strip()
        if action == "hang":
            time.sleep(600)
        if action == "die":
            os.kill(os.getpid(), signal.SIGKILL)
        if action == "raise":
            raise RuntimeError("parser bug")
        return Document(
            id=sha256_bytes(data),
            path=str(path),
            category=category,
            text=action,
            title=f"pid {os.getpid()}",
        )
