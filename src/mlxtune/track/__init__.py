"""Experiment tracking: the recipe's `track:` trackers, fed by the training loop.

A `Tracking` fans each call out to the trackers and keeps a failing one from failing the run: a
tracker that cannot start (not installed, not logged in, server down) or fails later is one
warning, and the run goes on without it. The training loop finds the run's `Tracking` through a
context variable (`tracking_scope` / `current`), so every trainer that runs the shared loop (the
mlx trainer, the torch plugin, a third party's) is tracked without a new argument in the
`Trainer.train` contract.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..components import Tracker

_CURRENT: contextvars.ContextVar[Tracking | None] = contextvars.ContextVar(
    "mlxtune_tracking", default=None
)


class Tracking:
    """The run's trackers; every call is safe to make."""

    def __init__(self, trackers: list[Tracker], warn: Callable[[str], None]):
        self.trackers, self.warn = list(trackers), warn

    def _each(self, action: str, call: Callable[[Tracker], Any]) -> None:
        for tracker in list(self.trackers):
            try:
                call(tracker)
            except Exception as exc:  # a tracker never fails the run
                self.trackers.remove(tracker)
                detail = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
                self.warn(
                    f"tracker '{tracker.name}' failed to {action} ({type(exc).__name__}"
                    f"{': ' + detail if detail else ''}); the run goes on without it"
                )

    def start(self, run_dir: Path, name: str, config: dict[str, Any]) -> None:
        self._each("start", lambda t: t.start(run_dir, name, config))

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self._each("log metrics", lambda t: t.log_metrics(metrics, step))

    def log_text(self, key: str, text: str, step: int) -> None:
        self._each("log text", lambda t: t.log_text(key, text, step))

    def log_artifact(self, path: Path) -> None:
        self._each("keep a file", lambda t: t.log_artifact(path))

    def finish(self) -> None:
        self._each("finish", lambda t: t.finish())
        self.trackers = []


def track_record(record: dict[str, Any], step: int) -> None:
    """A training loop's metrics.jsonl record to the current run's trackers, if any: train/...
    for a report, eval/... for an evaluation, with its sample answer as text."""
    tracking = current()
    if tracking is None:
        return
    prefix = "eval" if "val_loss" in record else "train"
    names = {"val_loss": "loss", "train_loss": "loss"}
    metrics = {
        f"{prefix}/{names.get(key, key)}": value
        for key, value in record.items()
        if key not in ("step", "sample") and isinstance(value, (int, float))
    }
    tracking.log_metrics(metrics, step)
    if "sample" in record:
        tracking.log_text("eval/sample", record["sample"], step)


def build_tracking(specs: list[dict[str, Any]], registry: Any, warn: Callable[[str], None]):
    """The trackers of a recipe's `track:` list (validated with the recipe)."""
    return Tracking([registry.build("tracker", spec) for spec in specs], warn)


def current() -> Tracking | None:
    """The tracking of the run in progress (None: nothing tracked)."""
    return _CURRENT.get()


@contextmanager
def tracking_scope(tracking: Tracking | None) -> Iterator[Tracking | None]:
    """Make `tracking` the current one inside the block; finish it when the block ends."""
    token = _CURRENT.set(tracking)
    try:
        yield tracking
    finally:
        _CURRENT.reset(token)
        if tracking is not None:
            tracking.finish()


def track_files(
    specs: list[dict[str, Any]],
    registry: Any,
    run_dir: Path,
    name: str,
    config: dict[str, Any],
    files: list[Path],
    warn: Callable[[str], None],
) -> None:
    """One tracker run holding `files` (the compare report), for each tracker in `specs`."""
    trackers = []
    for spec in specs:
        try:
            trackers.append(registry.build("tracker", spec))
        except Exception as exc:  # e.g. a plugin's tracker not loaded here: one warning
            warn(f"tracker '{spec.get('use')}' not available ({exc}); the report is not sent")
    tracking = Tracking(trackers, warn)
    tracking.start(run_dir, name, config)
    for path in files:
        tracking.log_artifact(path)
    tracking.finish()
