"""What every stage shares: the run directory with its manifest, and the `Stage` declaration.

A stage is declared once, in one `Stage` object (its name, the recipe section it reads, the files
it needs and writes, its fingerprint and its body); the CLI's stage choices, the recipe's stage
sections and the driver (pipeline.py) all read the one list in `mlxtune.stages`.
"""

from __future__ import annotations

import contextlib
import json
import platform
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from ..records import atomic_write_json, sha256_file
from ..version import __version__

if TYPE_CHECKING:
    from ..plugins import Registry
    from ..recipe import Recipe

VERSIONED_PACKAGES = ("mlx", "mlx-lm", "pypdf", "transformers", "huggingface_hub", "pydantic")

# a fixed tuple of run-relative paths, or one that depends on the recipe
Files = tuple[str, ...] | Callable[["Run"], tuple[str, ...]]


def output_console() -> Console:
    """The console stages print to: lines are not wrapped when the output is a file or a pipe
    (rich would cut them at 80 columns, splitting file names)."""
    console = Console()
    console.soft_wrap = not console.is_terminal
    return console


@dataclass(frozen=True)
class Stage:
    """One stage of a recipe run, declared in one place.

    `section` is the recipe key it reads (its name unless said; a test checks the schema has it);
    `needs` are files an earlier stage wrote; `writes` are the files whose hashes the manifest
    keeps (a stage is up to date when its fingerprint and those files are unchanged);
    `fingerprint` is every input that decides the output; `run` does the work and returns the
    one-line summary the CLI prints.
    """

    name: str
    run: Callable[[Run], str]
    fingerprint: Callable[[Run], dict[str, Any]]
    needs: Files = ()
    writes: Files = ()
    section: str = ""  # default: the stage's name
    # whether this recipe has the stage at all (an optional section); one that does not is
    # neither run nor recorded
    applies: Callable[[Run], bool] | None = None

    def __post_init__(self) -> None:
        if not self.section:
            object.__setattr__(self, "section", self.name)

    def used(self, run: Run) -> bool:
        return self.applies is None or self.applies(run)

    def needed(self, run: Run) -> tuple[str, ...]:
        return self.needs(run) if callable(self.needs) else self.needs

    def outputs(self, run: Run) -> tuple[str, ...]:
        return self.writes(run) if callable(self.writes) else self.writes


@dataclass
class Run:
    """A recipe's run directory: its files and manifest.json."""

    recipe: Recipe
    registry: Registry
    console: Console = field(default_factory=output_console)
    root: Path = field(init=False)
    manifest: dict[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        self.root = self.recipe.run_path
        path = self.root / "manifest.json"
        self.manifest = {"stages": {}}
        if path.is_file():
            try:
                self.manifest = json.loads(path.read_text())
            except ValueError:
                self.console.print(f"[yellow]ignoring unreadable {path}; every stage re-runs")
        self.manifest.setdefault("stages", {})

    def file(self, rel: str) -> Path:
        return self.root / rel

    @property
    def trains(self) -> bool:
        """False for `train: {use: none}`: the base model is used without an adapter."""
        return self.recipe.train.use != "none"

    @property
    def adapter(self) -> Path | None:
        return self.file("adapters") if self.trains else None

    def log(self, message: str) -> None:
        self.console.print(message, highlight=False)

    def save_manifest(self) -> None:
        self.manifest.update(
            mlxtune=__version__,
            recipe=self.recipe.model_dump(mode="json"),
            versions=package_versions(),
            updated=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        )
        atomic_write_json(self.root / "manifest.json", self.manifest)


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version(), "mlxtune": __version__}
    for name in VERSIONED_PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[name] = metadata.version(name)
    return versions


def hash_if_exists(path: Path) -> str | None:
    return sha256_file(path) if path.is_file() else None


def section_fingerprint(section: str, *inputs: str) -> Callable[[Run], dict[str, Any]]:
    """The fingerprint of a stage decided by its recipe section and the files it reads."""

    def fingerprint(run: Run) -> dict[str, Any]:
        value = getattr(run.recipe, section)
        spec = value.model_dump(mode="json") if hasattr(value, "model_dump") else value
        return {section: spec, "inputs": [hash_if_exists(run.file(i)) for i in inputs]}

    return fingerprint


def progress_bar(console: Console) -> Progress:
    return Progress(
        TextColumn("  {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    )
