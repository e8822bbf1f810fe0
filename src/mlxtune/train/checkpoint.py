"""The resumable training checkpoint: adapter, optimizer state, step and counters.

Written at every evaluation (and on Ctrl-C) into `<output>/checkpoint/`, files first and
`state.json` last, each atomically (the trainer's backend writes the files, in its
framework's safetensors writer): a checkpoint is complete exactly when its `state.json` names
it. `config` in the state is a hash of everything that decides the run (options, model, data); a
checkpoint from a different configuration is never resumed.

`state.json` records each file's sha256, and its own values are checked on load (types, a step
within the run, finite numbers): a checkpoint that fails (a truncated or altered file, a hand-
edited state) is damaged. It is never resumed, never deleted: it is moved aside to
`checkpoint.damaged-<time>` beside the output folder, and the run starts over.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..records import atomic_write_json, read_jsonl, sha256_file, write_jsonl

Action = Literal["report", "eval"]  # what is due after a step, in this order


class CheckpointDamaged(Exception):
    """A checkpoint that must not be resumed: `file` is the part found wrong."""

    def __init__(self, file: Path, reason: str):
        # a reason that names a file of its own (a framework's reader) is not prefixed twice
        super().__init__(reason if reason.startswith(str(file)) else f"{file}: {reason}")
        self.file, self.reason = file, reason


class _Saved(BaseModel):
    model_config = ConfigDict(strict=True, allow_inf_nan=False, extra="forbid")


class SavedBest(_Saved):
    loss: float | None
    step: int | None = Field(ge=0)
    evals_since: int = Field(ge=0)


class SavedWindow(_Saved):
    """The training-loss window since the last report (its steps may be another process's)."""

    loss: float
    tokens: int = Field(ge=0)
    steps: int = Field(ge=0)
    seconds: float = Field(ge=0)
    last_loss: float | None = None


class SavedState(_Saved):
    """What state.json must hold; a backend's own keys ride along (`extra="allow"`)."""

    model_config = ConfigDict(extra="allow")
    config: str
    step: int = Field(ge=0)
    planned_steps: int = Field(ge=1)
    best: SavedBest
    window: SavedWindow
    files: dict[str, str] | list[str]  # name -> sha256 (a list: written before hashes were)
    pending: list[Action] | None = None  # None: written before it was recorded

    @model_validator(mode="after")
    def _consistent(self) -> SavedState:
        if self.step > self.planned_steps:
            raise ValueError(f"step {self.step} is past the run's {self.planned_steps} steps")
        if self.best.step is not None and self.best.step > self.step:
            raise ValueError(f"best step {self.best.step} is after step {self.step}")
        for name in self.files:
            if not name or name.startswith(".") or "/" in name or "\\" in name:
                raise ValueError(f"file name {name!r} is not a plain file name")
        return self


class Checkpoint:
    def __init__(self, output_dir: Path):
        self.dir = output_dir / "checkpoint"
        self.state_path = self.dir / "state.json"

    def read(self, config: str) -> dict[str, Any] | None:
        """The saved state if it belongs to this configuration: None when there is none (or it
        is incomplete: state.json not yet written, or another configuration's); raises
        `CheckpointDamaged` when it cannot be trusted."""
        try:
            text = self.state_path.read_text()
        except OSError:
            return None
        try:
            raw = json.loads(text)
        except ValueError as exc:
            raise CheckpointDamaged(self.state_path, f"not JSON ({exc})") from None
        if not isinstance(raw, dict):
            raise CheckpointDamaged(self.state_path, f"holds {type(raw).__name__}, not an object")
        if isinstance(raw.get("config"), str) and raw["config"] != config:
            return None
        try:
            state = SavedState.model_validate(raw).model_dump()
        except ValidationError as exc:
            raise CheckpointDamaged(self.state_path, first_problem(exc)) from None
        self.check_files(state["files"])
        return state

    def check_files(self, files: dict[str, str] | list[str]) -> None:
        """Each file is there with the sha256 state.json recorded (a list: only there)."""
        for name in files:
            path = self.dir / name
            if not path.is_file():
                raise CheckpointDamaged(path, "missing")
            if isinstance(files, dict) and sha256_file(path) != files[name]:
                raise CheckpointDamaged(
                    path, f"its sha256 differs from state.json's ({path.stat().st_size} bytes)"
                )

    def begin(self) -> None:
        """Open the checkpoint for writing: incomplete until `commit` writes state.json."""
        self.dir.mkdir(parents=True, exist_ok=True)
        self.state_path.unlink(missing_ok=True)

    def commit(self, state: dict[str, Any], files: list[str]) -> None:
        """Record `state` and the (already written) `files`, with their sha256, last."""
        hashes = {name: sha256_file(self.dir / name) for name in sorted(files)}
        atomic_write_json(self.state_path, {**state, "files": hashes})

    def set_aside(self) -> Path:
        """Move a damaged checkpoint out of the run's way (beside the output folder, so a
        finished run does not carry it into its adapter folder); it is never deleted."""
        stamp = time.strftime("%Y%m%d-%H%M%S")
        target = self.dir.parent.parent / f"checkpoint.damaged-{stamp}"
        n = 1
        while target.exists():
            n += 1
            target = target.with_name(f"checkpoint.damaged-{stamp}-{n}")
        self.dir.rename(target)
        return target

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def first_problem(exc: ValidationError) -> str:
    """One line for a state.json that fails validation: the key and what is wrong with it."""
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"])
    shown = "" if isinstance(error.get("input"), dict) else f" (got {error.get('input')!r})"
    message = error["msg"].removeprefix("Value error, ")
    return f"{where}: {message}{shown}" if where else message


def truncate_metrics(path: Path, step: int, replay: tuple[str, ...] = ()) -> None:
    """Drop metrics recorded after `step` (the run resumes from there and records them again),
    and those of `step` itself whose action is replayed ("report": train loss, "eval")."""

    def kept(row: dict[str, Any]) -> bool:
        at = row.get("step", 0)
        action = "eval" if "val_loss" in row else "report"
        return at < step or (at == step and action not in replay)

    if path.is_file():
        write_jsonl(path, [row for row in read_jsonl(path) if kept(row)])
