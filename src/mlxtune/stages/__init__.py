"""The stages of a recipe run, in order: one module each, declared once in its `STAGE`.

Adding a stage is one module and one line here; the CLI's `--only/--until/--force` choices, the
recipe's stage sections (checked by a test) and the driver all read `STAGES`.
"""

from __future__ import annotations

from . import ask, curate, extract, format, model, repair, split, summarize, train
from .base import Run, Stage

STAGES: tuple[Stage, ...] = (
    extract.STAGE,
    split.STAGE,
    summarize.STAGE,
    curate.STAGE,
    format.STAGE,
    model.STAGE,
    repair.STAGE,
    train.STAGE,
    ask.STAGE,
)
STAGE_NAMES: tuple[str, ...] = tuple(stage.name for stage in STAGES)
BY_NAME: dict[str, Stage] = {stage.name: stage for stage in STAGES}

__all__ = ["BY_NAME", "STAGES", "STAGE_NAMES", "Run", "Stage"]
