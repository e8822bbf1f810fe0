"""`train: {use: none}`: no training. The base model as it is, the first row of a comparison."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from ..components import Trainer, TrainResult
from ..hookspecs import hookimpl


class NoTrainer(Trainer):
    name = "none"
    description = "no training: use the base model as it is (the baseline in a comparison)"

    def train(
        self,
        model: str,
        data_dir: Path,
        output_dir: Path,
        *,
        trust_remote_code: bool = False,
        log: Callable[[str], None] = print,
    ) -> TrainResult:
        shutil.rmtree(output_dir, ignore_errors=True)
        return TrainResult(adapter_path=output_dir, steps=0, extra={"no_adapter": True})


@hookimpl
def register_trainers(register):
    register(NoTrainer)
