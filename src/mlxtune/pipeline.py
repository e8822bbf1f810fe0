"""Runs the stages of a recipe, each writing plain files into the run directory.

papers -> documents.jsonl -> splits.json -> pairs.jsonl -> data/*.jsonl -> model/ -> (repair:
data/preference_*.jsonl) -> adapters/ -> answers.jsonl. Every stage records a fingerprint of its
inputs (recipe section + the hashes of the files it reads) and the hashes of what it wrote in
manifest.json; a stage whose fingerprint and outputs are unchanged is skipped, so a re-run only
does what changed. The stages themselves
are the modules of `mlxtune.stages`; this module only selects, checks, runs and records them.
"""

from __future__ import annotations

import os
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rich.console import Console

from .device import clear_cache
from .errors import MlxtuneError, StageError
from .plugins import Registry
from .recipe import Recipe
from .records import sha256_json
from .stages import BY_NAME, STAGE_NAMES, Run, Stage
from .stages.base import hash_if_exists, output_console
from .train.launch import launch_kind, launch_rank
from .version import __version__

__all__ = ["Run", "launch_rank", "run_recipe", "select_stages"]


def select_stages(only: str | None = None, until: str | None = None) -> list[str]:
    for value in (only, until):
        if value is not None and value not in STAGE_NAMES:
            raise MlxtuneError(f"unknown stage '{value}'; stages: {', '.join(STAGE_NAMES)}")
    if only:
        return [only]
    if until:
        return list(STAGE_NAMES[: STAGE_NAMES.index(until) + 1])
    return list(STAGE_NAMES)


def run_recipe(
    recipe: Recipe,
    registry: Registry,
    *,
    only: str | None = None,
    until: str | None = None,
    force: tuple[str, ...] = (),
    console: Console | None = None,
) -> Run:
    """Run (or skip, when up to date) the selected stages in order.

    In a multi-process launch (several GPUs) every process runs this, and only the train stage
    runs: the stages before it must be up to date (they are one process's work, and summarizing
    can take days), those after it are left for a one-process run. Only rank 0 writes.
    """
    for name in force:
        select_stages(only=name)
    rank, world = launch_rank()
    if rank > 0:
        console = Console(quiet=True)
    run = Run(recipe, registry, console or output_console())
    created = not run.root.exists()
    make_run_dir(run.root)
    try:
        selected = select_stages(only, until)
        if recipe.model.tiny is None and {"train", "ask"} & set(selected):
            _preflight_model(recipe, imported_here="model" in selected)
        for name in selected:
            if world > 1 and STAGE_NAMES.index(name) > STAGE_NAMES.index("train"):
                run.log(f"[dim]- {name:<9} not run in a launch of {world} processes[/]")
                continue
            _run_stage(run, BY_NAME[name], forced=name in force, rank=rank, world=world)
    except BaseException:
        if created and not any(run.root.iterdir()):  # a run that failed before writing a file
            run.root.rmdir()
        raise
    return run


def make_run_dir(root: Path) -> None:
    """Create the run directory and check it takes files, or say in one line why not (a
    read-only place, /proc, a file of that name) before any stage runs."""
    fix = "set run_dir to a folder you can write to (e.g. run_dir=runs/NAME)"
    if root.exists() and not root.is_dir():
        raise MlxtuneError(f"run_dir: {root} is a file, not a folder: {fix}")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MlxtuneError(
            f"run_dir: cannot create {root} ({exc.strerror or exc}): {fix}"
        ) from None
    probe = root / f".write-test-{os.getpid()}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise MlxtuneError(
            f"run_dir: cannot write in {root} ({exc.strerror or exc}): {fix}"
        ) from None


def _run_stage(run: Run, stage: Stage, *, forced: bool, rank: int, world: int) -> None:
    """Run one stage unless it is up to date, and record it in the manifest (rank 0 only)."""
    name = stage.name
    if not stage.used(run):  # an optional stage this recipe has no section for
        return
    missing = [rel for rel in stage.needed(run) if not run.file(rel).is_file()]
    if missing:
        raise StageError(
            name,
            f"missing {', '.join(missing)} in {run.root}: run the earlier stages first "
            "(drop --only)",
        )
    inputs = stage.fingerprint(run)
    fingerprint = sha256_json({"version": __version__, "inputs": inputs})
    record = run.manifest["stages"].get(name, {})
    if not forced and _up_to_date(run, stage, record, fingerprint):
        run.log(f"[dim]- {name:<9} up to date, skipped ({record.get('summary', '')})[/]")
        return
    if world > 1:
        _check_launch(run, name, world)
    started = time.perf_counter()
    summary = stage.run(run)
    seconds = time.perf_counter() - started
    clear_cache()  # a summarizer's 7B model must not stay held while training starts
    if rank > 0:
        return
    run.manifest["stages"][name] = {
        "fingerprint": fingerprint,
        "inputs": inputs,
        "outputs": {rel: hash_if_exists(run.file(rel)) for rel in stage.outputs(run)},
        "summary": summary,
        "seconds": round(seconds, 3),
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    run.save_manifest()
    run.log(f"[green]✓[/] {name:<9} {summary} [dim]({seconds:.1f}s)[/]")


def _check_launch(run: Run, name: str, world: int) -> None:
    """In a launch of `world` processes a stage that is due runs only if it is train, with a
    trainer that can run as several processes (what comes after train is skipped earlier)."""
    if name == "train":
        trainer = run.registry.get("trainer", run.recipe.train.use)
        if launch_kind() == "mlx" and not trainer.mlx_distributed:
            raise StageError(
                "train",
                f"the '{trainer.name}' trainer cannot be one of the {world} processes of an "
                "mlx.launch: use train.use=mlx, or its own launcher",
            )
        if launch_kind() == "torch" and not trainer.distributed:
            raise StageError(
                "train",
                f"the '{trainer.name}' trainer cannot be one of the {world} processes of an "
                "accelerate/torchrun launch: run it without one (train.use=mlx trains across "
                "processes under mlx.launch), or use train.use=torch, from mlxtune-torch",
            )
        return
    raise StageError(
        name,
        f"not up to date, and a launch of {world} processes only trains: prepare the data in "
        "one process first (mlxtune recipe run RECIPE --until model, with the same overrides), "
        "then launch the training again",
    )


def _preflight_model(recipe: Recipe, imported_here: bool) -> None:
    """Fail before hours of extraction and summarizing if the model cannot be had. A GGUF or
    Ollama model was found when the recipe loaded; the model stage imports it."""
    from .models.resolve import resolve_model

    if recipe.model.import_ref:
        if not imported_here and not (Path(recipe.model_ref) / "config.json").is_file():
            raise StageError(
                "model",
                f"{recipe.model.import_ref} is not imported yet: run the model stage first "
                "(drop --only, or mlxtune recipe run RECIPE --only model)",
            )
        return
    try:
        resolve_model(recipe.model_ref, recipe.model.revision)
    except MlxtuneError as exc:
        raise StageError("model", str(exc)) from None


def _up_to_date(run: Run, stage: Stage, record: dict[str, Any], fingerprint: str) -> bool:
    if record.get("fingerprint") != fingerprint:
        return False
    recorded = record.get("outputs", {})
    return all(
        recorded.get(rel) is not None and hash_if_exists(run.file(rel)) == recorded.get(rel)
        for rel in stage.outputs(run)
    )
