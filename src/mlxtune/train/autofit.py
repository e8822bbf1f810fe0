"""Fitting a run to the machine's memory: the planner's settings before training (`auto_fit`),
and a smaller setting after an out-of-memory error.

Every default comes from the trainer's own options class (the planner reads the validated
options, `train.planner.setting_from_options`), so a new option default is never restated.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from ..errors import MlxtuneError
from .loop import OutOfMemory


def planner_inputs(model: str, options: Any) -> tuple[Any, Any]:
    from ..device import current_device
    from ..models.resolve import resolve_model
    from .launch import launch_rank
    from .planner import ModelShape, setting_from_options

    config = json.loads((resolve_model(model) / "config.json").read_text())
    device, processes = current_device(), launch_rank()[1]  # each process plans its own share
    return ModelShape.from_config(config), setting_from_options(options, config, device, processes)


def with_overrides(options: Any, overrides: dict[str, Any]) -> Any:
    """The options with the planner's `train.key` overrides applied."""
    return options.model_copy(update={k.split(".", 1)[1]: v for k, v in overrides.items()})


def changes(old: Any, new: Any) -> str:
    before, after = old.model_dump(), new.model_dump()
    return " ".join(f"train.{k}={after[k]}" for k in after if after[k] != before[k]) or "none"


def fitted_options(model: str, options: Any, log: Callable[[str], None]) -> Any:
    """`auto_fit`: the planner's least-lossy settings that fit this machine, if needed."""
    from ..device import current_device
    from .planner import GB, estimate_training, fit

    shape, setting = planner_inputs(model, options)
    device = current_device()
    budget, where = device.budget, f"{device.name} ({device.kind})"
    estimate = estimate_training(shape, setting)
    if estimate.total <= budget:
        log(
            f"  auto_fit: {estimate.total / GB:.1f} GB estimated, {budget / GB:.1f} GB usable on "
            f"{where}: settings kept"
        )
        return options
    suggestion = fit(shape, setting, budget)
    if suggestion is None:
        raise MlxtuneError(
            f"the model needs ~{estimate.total / GB:.1f} GB to train and nothing in reach fits "
            f"{budget / GB:.1f} GB: choose a smaller model"
        )
    fitted = with_overrides(options, suggestion.overrides)
    log(
        f"  auto_fit: {estimate.total / GB:.1f} GB would not fit the {budget / GB:.1f} GB usable "
        f"on {where}; using {changes(options, fitted)} ({suggestion.note}): "
        f"{suggestion.estimate.total / GB:.1f} GB"
    )
    return fitted


def smaller_options(model: str, options: Any) -> Any | None:
    """After an out-of-memory error: the next setting the planner expects to need at most
    three quarters of the current estimate (least quality lost first)."""
    from .planner import candidates, estimate_training

    shape, setting = planner_inputs(model, options)
    current = estimate_training(shape, setting).total
    for overrides, candidate, _ in candidates(setting):
        if estimate_training(shape, candidate).total <= 0.75 * current:
            return with_overrides(options, overrides)
    return None


def train_fitted(
    model: str,
    options: Any,
    attempt: Callable[[Any], Any],
    log: Callable[[str], None],
    clear: Callable[[], None] = lambda: None,
) -> Any:
    """Run `attempt(options)` (one training run); with `auto_fit`, first fit the options to the
    machine and retry smaller after running out of memory (`clear` gives the framework's cached
    memory back first). Without it, an out-of-memory error names the settings that would fit.
    A retry that keeps the run's arithmetic (checkpointing, the same effective batch) resumes
    from the checkpoint of the failed attempt."""
    auto_fit = getattr(options, "auto_fit", False)
    if auto_fit:
        options = fitted_options(model, options, log)
    while True:
        try:
            return attempt(options)
        except OutOfMemory as oom:
            smaller = smaller_options(model, options)
            change = changes(options, smaller) if smaller else "none in reach"
            if not auto_fit or smaller is None:
                raise MlxtuneError(
                    f"out of memory at step {oom.step} ({oom.detail}); the last checkpoint "
                    f"is kept. Settings the planner expects to fit: {change} (or set "
                    "train.auto_fit: true to retry with them automatically)"
                ) from None
            log(f"  out of memory at step {oom.step}: auto_fit retries with {change}")
            clear()
            options = smaller
