"""The per-framework part of a training run (`TrainingBackend`), which the shared loop (loop.py)
drives. Kept apart from the loop so each reads on its own; `mlxtune.train.loop` re-exports it."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

from .batching import Row


class TrainingBackend(ABC):
    """One framework's part of a training run: its model, optimizer and files.

    The loop calls `start_step` once per optimizer update, then `micro_batch` once per gradient
    accumulation step (`last=True` on the one that applies the update). Only the writing process
    (`main`, rank 0 of a multi-process launch) is asked to save anything.
    """

    main: bool = True

    @abstractmethod
    def start_step(self, step: int, learning_rate: float) -> None:
        """Prepare update `step` (1-based): its randomness, its rate, cleared gradients."""

    @abstractmethod
    def micro_batch(self, rows: list[Row], last: bool) -> float:
        """Forward and backward on `rows`; apply the update when `last`. Returns the rows' mean
        loss per learned token (averaged over the processes of a launch). May raise
        `failures.NonFinite` (e.g. for gradients); a non-finite loss the loop sees itself."""

    @abstractmethod
    def evaluate(self) -> float:
        """The validation loss per learned token (the whole launch's number on every process)."""

    @abstractmethod
    def save_adapter(self) -> None:
        """Write the current adapter as the kept one (into the output directory)."""

    @abstractmethod
    def save_checkpoint(self, directory: Path) -> tuple[list[str], dict[str, Any]]:
        """Write weights and optimizer state into `directory`; return the file names written
        and any JSON-able state the framework needs back (it is stored in state.json)."""

    @abstractmethod
    def load_checkpoint(self, directory: Path, state: dict[str, Any]) -> None:
        """Restore what `save_checkpoint` wrote (`state` is the whole saved state). Check what
        was read before changing anything, and raise if it does not fit: the loop then sets
        the checkpoint aside rather than train on from a half-restored model."""

    def verify_checkpoint(self, directory: Path, state: dict[str, Any]) -> None:
        """On the main process, before the launch decides to resume: raise (ValueError, naming
        the file) when the files cannot be restored: names, shapes, non-finite values. The loop
        has already checked every file's sha256 against state.json. Default: nothing more."""
        return None

    def sample(self) -> str | None:
        """A short answer to a fixed prompt, logged at each evaluation (None: no samples)."""
        return None

    def peak_memory_gb(self) -> float | None:
        return None

    def barrier(self) -> None:
        """Wait for every process of a launch (one process: nothing to wait for)."""
        return None

    def share_state(self, state: dict[str, Any] | None) -> dict[str, Any] | None:
        """The main process's checkpoint state, on every process of a launch (so the others
        need no copy of the checkpoint: another machine's disk). One process: `state`."""
        return state

    def finish(self, checkpoint_dir: Path) -> None:
        """After the last step, on the main process, before the checkpoint is removed."""
        return None

    def summary(self) -> dict[str, Any]:
        """Extra entries for train_summary.json and TrainResult.extra."""
        return {}

    def describe(self) -> str:
        """Words for the log's first line, e.g. ' on cuda (bfloat16)'."""
        return ""
