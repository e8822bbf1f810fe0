"""The resumable training checkpoint: adapter, optimizer state, step and counters.

Written at every evaluation (and on Ctrl-C) into `<output>/checkpoint/`, files first and
`state.json` last, each atomically (the trainer's backend writes the files, in its
framework's safetensors writer): a checkpoint is complete exactly when its `state.json` names
it. `config` in the state is a hash of everything that decides the run (options, model, data); a
checkpoint from a different configuration is never resumed.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from ..records import atomic_write_json, read_jsonl, write_jsonl


class Checkpoint:
    def __init__(self, output_dir: Path):
        self.dir = output_dir / "checkpoint"
        self.state_path = self.dir / "state.json"

    def load_state(self, config: str) -> dict[str, Any] | None:
        """The saved state if it belongs to this configuration and is complete."""
        try:
            state = json.loads(self.state_path.read_text())
        except (OSError, ValueError):
            return None
        if state.get("config") != config:
            return None
        if not all((self.dir / name).is_file() for name in state.get("files", [])):
            return None
        return state

    def begin(self) -> None:
        """Open the checkpoint for writing: incomplete until `commit` writes state.json."""
        self.dir.mkdir(parents=True, exist_ok=True)
        self.state_path.unlink(missing_ok=True)

    def commit(self, state: dict[str, Any], files: list[str]) -> None:
        """Record `state` and the (already written) `files` that make up the checkpoint."""
        atomic_write_json(self.state_path, {**state, "files": sorted(files)})

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def truncate_metrics(path: Path, step: int) -> None:
    """Drop metrics recorded after `step` (the run resumes from there and records them again)."""
    if path.is_file():
        write_jsonl(path, [row for row in read_jsonl(path) if row.get("step", 0) <= step])
