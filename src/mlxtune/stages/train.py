"""The train stage: the recipe's trainer writes the adapter into adapters/ (via adapters.partial,
so an interrupted run leaves the last finished adapter in place and resumes from its checkpoint)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from ..errors import MlxtuneError, StageError
from ..records import replace_dir
from ..track import Tracking, build_tracking, tracking_scope
from ..train.launch import launch_rank
from .base import Run, Stage, hash_if_exists


def fingerprint_train(run: Run) -> dict[str, Any]:
    train = run.recipe.component("train")
    found = {
        "train": train,
        "data": [hash_if_exists(run.file(f"data/{s}.jsonl")) for s in ("train", "valid")],
        "model": run.manifest["stages"].get("model", {}).get("outputs") or run.recipe.model_ref,
        "revision": run.recipe.model.revision,
    }
    if train.get("objective", "sft") != "sft":  # dpo, orpo: the preference pairs decide it too
        files = (f"data/preference_{s}.jsonl" for s in ("train", "valid"))
        found["preference"] = [hash_if_exists(run.file(f)) for f in files]
        # and the adapter it starts from (another run's, retrained since: train again)
        start = start_adapter_file(run)
        found["start_adapter"] = start and [
            hash_if_exists(start),
            hash_if_exists(start.parent / "adapter_config.json"),
        ]
    return found


def start_adapter_file(run: Run) -> Path | None:
    """The weights file `train.start_adapter` names (a folder or the file; relative: to the run
    folder, as the trainer reads it), whether or not it exists yet; None when not set."""
    name = run.recipe.component("train").get("start_adapter")
    if not name:
        return None
    path = Path(str(name)).expanduser()
    path = path if path.is_absolute() else run.root / path
    return path if path.suffix == ".safetensors" else path / "adapters.safetensors"


def stage_train(run: Run) -> str:
    trainer = run.registry.build("trainer", run.recipe.component("train"))
    staging = run.file("adapters.partial")
    main_process = launch_rank()[0] == 0  # in a multi-process launch only rank 0 writes
    if main_process and not (staging / "checkpoint" / "state.json").is_file():
        shutil.rmtree(staging, ignore_errors=True)  # else: an interrupted run the trainer resumes
    try:
        with tracking_scope(open_tracking(run) if main_process else None):
            result = trainer.train(
                run.recipe.model_ref,
                run.file("data"),
                staging,
                trust_remote_code=run.recipe.model.trust_remote_code,
                log=run.log,
            )
    except MlxtuneError as exc:
        raise StageError("train", str(exc)) from None
    if not run.trains:
        shutil.rmtree(run.file("adapters"), ignore_errors=True)
        return "no training (train.use: none): the base model is used as it is"
    if main_process:
        replace_dir(staging, run.file("adapters"))
    best = f"{result.best_val_loss:.4f}" if result.best_val_loss is not None else "n/a"
    peak = f", peak memory {result.peak_memory_gb:.2f} GB" if result.peak_memory_gb else ""
    kept = "kept the last adapter; " if result.extra.get("kept") == "last" else ""
    early = " (early stop)" if result.extra.get("stopped_early") else ""
    # this process's steps and time; a resumed run says where it took over
    resumed = int(result.extra.get("resumed_at") or 0)
    steps = f"{result.steps - resumed} steps" + (
        f" (resumed at step {resumed}; {result.steps} in all)" if resumed else ""
    )
    return (
        f"{steps}{early} in {result.seconds:.1f}s; {kept}best val loss {best} at "
        f"step {result.best_step}{peak}; adapter: {run.file('adapters')}"
    )


def open_tracking(run: Run) -> Tracking | None:
    """The recipe's experiment trackers, started with the resolved recipe as the run's config
    (None when it names none)."""
    from rich.markup import escape

    if not run.recipe.track:
        return None
    specs = [spec.model_dump() for spec in run.recipe.track]

    def warn(message: str) -> None:
        run.log(f"[yellow]warning: {escape(message)}[/]")

    tracking = build_tracking(specs, run.registry, warn)
    tracking.start(run.root, run.recipe.name, run.recipe.model_dump(mode="json"))
    return tracking


def adapter_files(run: Run) -> tuple[str, ...]:
    return ("adapters/adapters.safetensors", "adapters/adapter_config.json") if run.trains else ()


NEEDS = ("data/train.jsonl", "data/valid.jsonl")
STAGE = Stage("train", stage_train, fingerprint_train, needs=NEEDS, writes=adapter_files)
