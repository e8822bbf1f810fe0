"""`mlxtune compare`: the original experiment table as one command.

Every recipe (or run directory) is trained if it is not yet, then every model answers the same
questions with the same sampling; the report puts them side by side, the base model first. Each
comparison has its own report folder (named from its recipes), never replaced without `force`.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from rich.console import Console
from rich.table import Table

from ..asking import sampling_from
from ..errors import MlxtuneError
from ..pipeline import run_recipe
from ..plugins import Registry, get_registry
from ..recipe import Recipe, load_recipe
from ..records import load_pairs, sha256_json
from ..stages.base import output_console
from .card import write_model_card
from .columns import MAIN, SHORT, fmt, shown
from .questions import Question, build_questions, heldout_split, load_questions, merge
from .report import summary_row, write_report
from .runner import evaluate_recipe

REPORT_FILES = ("report.json", "report.md", "report.html", "loss_curves.png")


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


def question_set(recipe: Recipe, extra: str | None) -> list[Question]:
    """The questions built from the (already run) first recipe's pairs, plus the files."""
    pairs = load_pairs(recipe.run_path / "pairs.jsonl")
    spec = recipe.evaluate
    built = build_questions(pairs, recall=spec.recall, heldout=spec.heldout, unseen=spec.unseen)
    files = [f for f in (spec.questions_file, extra) if f]
    questions = merge(built, *(load_questions(f) for f in files))
    if not questions:
        raise MlxtuneError("no questions to compare on: set evaluate.recall/heldout or --questions")
    return questions


def report_folder(names: list[str], first: Recipe, out: str | None) -> Path:
    """`out`, or `compare/<the recipes' names>` beside the first run (a hash past 100 chars)."""
    if out:
        return Path(out)
    name = "+".join(names)
    if len(name) > 100:
        name = f"{names[0]}+{len(names) - 1}-more-{sha256_json(names)[:8]}"
    return first.run_path.parent / "compare" / name


def check_folder(target: Path, force: bool) -> None:
    """Refuse to replace an earlier report (before any work is done)."""
    if target.exists() and not target.is_dir():
        raise MlxtuneError(f"report folder {target} is a file: choose another with -o DIR")
    existing = [f for f in REPORT_FILES if (target / f).exists()]
    if existing and not force:
        raise MlxtuneError(
            f"{target} already holds a report ({', '.join(existing)}): pass --force to replace "
            "it, or -o DIR for another folder"
        )


def compare(
    targets: list[str],
    *,
    out: str | None = None,
    questions_file: str | None = None,
    overrides: tuple[str, ...] = (),
    plugins_dirs: tuple[str, ...] = (),
    max_tokens: int | None = None,
    force: bool = False,
    console: Console | None = None,
) -> dict[str, Path]:
    console = console or output_console()
    if not targets:
        raise MlxtuneError("compare needs recipes or run directories")
    loaded = [load_target(t, overrides, plugins_dirs) for t in targets]
    names = [r.name for r, _ in loaded]
    if len(set(names)) != len(names):
        raise MlxtuneError(f"two recipes share a name (runs would collide): {names}")
    # the base models (no training) first, those without retrieval before those with it
    loaded.sort(key=lambda item: (item[0].train.use != "none", item[0].retrieve is not None))
    names = [r.name for r, _ in loaded]
    first, _ = loaded[0]
    target = report_folder(names, first, out)
    check_folder(target, force)
    questions: list[Question] = []
    evaluations = []
    for number, (recipe, registry) in enumerate(loaded, 1):
        console.rule(f"[bold]{number}/{len(loaded)} {recipe.name}[/]", align="left")
        run = run_recipe(recipe, registry, until="train", console=console)
        if not questions:
            questions = question_set(recipe, questions_file)
        # each model answers with its own recipe's `ask:` settings (a variant's generation
        # settings are part of it); --max-tokens is the same for all
        sampling = sampling_from(recipe.ask, max_tokens=max_tokens)
        evaluations.append(
            evaluate_recipe(recipe, registry, questions, sampling, console=console, run=run)
        )
    sampling = sampling_from(first.ask, max_tokens=max_tokens)
    split = heldout_split(load_pairs(first.run_path / "pairs.jsonl"))
    if not any(q.kind == "heldout" for q in questions):
        split = None
    paths = write_report(
        target, evaluations, [q.to_json() for q in questions], asdict(sampling), split
    )
    for (recipe, _), evaluation in zip(loaded, evaluations, strict=True):
        if recipe.retrieve is not None:  # its adapter's card is the variant without passages
            continue
        card = write_model_card(recipe, summary_row(evaluation), evaluation)
        if card is not None:
            paths[f"card:{recipe.name}"] = card
    send_report(loaded, loaded[0][1], target, paths, console)
    print_summary(evaluations, console)
    return paths


def print_summary(evaluations: list, console: Console) -> None:
    """The main table in the terminal, once everything is done."""
    rows = [summary_row(e) for e in evaluations]
    columns = shown(MAIN, rows)
    table = Table(
        title="mlxtune compare (↑/↓: higher/lower is better; held-out: ROUGE-L and loss)",
        title_justify="left",
    )
    table.add_column("model", no_wrap=True)
    table.add_column("variant", no_wrap=True)
    for column in columns:
        arrow = {"higher": " ↑", "lower": " ↓"}.get(column.better, "")
        title = SHORT.get(column.key, column.title) + arrow
        table.add_column(title, justify="right", no_wrap=True, min_width=5)
    for row in rows:
        values = [fmt(row.get(c.key), c.pattern) for c in columns]
        table.add_row(row["model"], row["variant"], *values)
    console.print(table)


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
