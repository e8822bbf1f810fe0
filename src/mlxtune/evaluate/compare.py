"""`mlxtune compare`: the original experiment table as one command.

Every recipe (or run directory) is trained if it is not yet, then every model answers the same
questions with the same sampling; the report puts them side by side, the base model first.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from rich.console import Console

from ..asking import sampling_from
from ..errors import MlxtuneError
from ..pipeline import run_recipe
from ..plugins import Registry, get_registry
from ..recipe import Recipe, load_recipe
from ..records import load_pairs
from ..stages.base import output_console
from .card import write_model_card
from .questions import Question, build_questions, load_questions, merge
from .report import summary_row, write_report
from .runner import evaluate_recipe


def load_target(
    target: str, overrides: tuple[str, ...], plugins_dirs: tuple[str, ...]
) -> tuple[Recipe, Registry]:
    """A recipe file, or a run directory (its manifest holds the resolved recipe)."""
    path = Path(target)
    if path.is_dir():
        manifest = path / "manifest.json"
        if not manifest.is_file():
            raise MlxtuneError(f"{path} is a folder without manifest.json: not a run directory")
        recipe = Recipe.model_validate(json.loads(manifest.read_text())["recipe"])
        return recipe, get_registry([*plugins_dirs, *recipe.plugins_dir])
    return load_recipe(path, overrides, plugins_dirs)


def question_set(
    recipe: Recipe, registry: Registry, extra: str | None, console: Console
) -> list[Question]:
    run_recipe(recipe, registry, until="summarize", console=console)
    pairs = load_pairs(recipe.run_path / "pairs.jsonl")
    spec = recipe.evaluate
    built = build_questions(pairs, recall=spec.recall, heldout=spec.heldout, unseen=spec.unseen)
    files = [f for f in (spec.questions_file, extra) if f]
    questions = merge(built, *(load_questions(f) for f in files))
    if not questions:
        raise MlxtuneError("no questions to compare on: set evaluate.recall/heldout or --questions")
    return questions


def compare(
    targets: list[str],
    *,
    out: str | None = None,
    questions_file: str | None = None,
    overrides: tuple[str, ...] = (),
    plugins_dirs: tuple[str, ...] = (),
    max_tokens: int | None = None,
    console: Console | None = None,
) -> dict[str, Path]:
    console = console or output_console()
    if not targets:
        raise MlxtuneError("compare needs recipes or run directories")
    loaded = [load_target(t, overrides, plugins_dirs) for t in targets]
    names = [r.name for r, _ in loaded]
    if len(set(names)) != len(names):
        raise MlxtuneError(f"two recipes share a name (runs would collide): {names}")
    # the base model (no training) is the first row; otherwise the order given
    loaded.sort(key=lambda item: item[0].train.use != "none")
    first, first_registry = loaded[0]
    questions = question_set(first, first_registry, questions_file, console)
    evaluations = []
    for recipe, registry in loaded:
        console.print(f"[bold]{recipe.name}[/]")
        # each model answers with its own recipe's `ask:` settings (a variant's generation
        # settings are part of it); --max-tokens is the same for all
        sampling = sampling_from(recipe.ask, max_tokens=max_tokens)
        evaluations.append(evaluate_recipe(recipe, registry, questions, sampling, console=console))
    sampling = sampling_from(first.ask, max_tokens=max_tokens)
    target = Path(out) if out else first.run_path.parent / "compare"
    paths = write_report(target, evaluations, [q.to_json() for q in questions], asdict(sampling))
    for (recipe, _), evaluation in zip(loaded, evaluations, strict=True):
        card = write_model_card(recipe, summary_row(evaluation), evaluation)
        if card is not None:
            paths[f"card:{recipe.name}"] = card
    send_report(loaded, first_registry, target, paths, console)
    return paths


def send_report(
    loaded: list[tuple[Recipe, Registry]],
    registry: Registry,
    target: Path,
    paths: dict[str, Path],
    console: Console,
) -> None:
    """The report to every tracker the compared recipes name (once each), as artifacts."""
    from rich.markup import escape

    from ..track import track_files

    specs: dict[str, dict] = {}
    for recipe, _ in loaded:
        for spec in recipe.track:
            specs.setdefault(json.dumps(spec.model_dump(), sort_keys=True), spec.model_dump())
    if not specs:
        return
    names = [recipe.name for recipe, _ in loaded]
    files = [p for k, p in paths.items() if not k.startswith("card:") and p.is_file()]
    track_files(
        list(specs.values()),
        registry,
        target,
        "compare: " + " vs ".join(names),
        {"recipes": names},
        files,
        lambda m: console.print(f"[yellow]warning: {escape(m)}[/]"),
    )
