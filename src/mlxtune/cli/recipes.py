"""`mlxtune recipe run|validate|show|list`, `compare`, `push`, `plan` and `doctor`."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import click

from ..errors import MlxtuneError
from ..stages import STAGE_NAMES
from .root import cli, load_for_cli


def shell_quoted(text: str) -> str:
    """`text` as one shell word, in double quotes where that is safe (as the README shows)."""
    if any(c in text for c in '"$`\\!'):
        return shlex.quote(text)
    return f'"{text}"'


def trained_question(answers: Path) -> str | None:
    """A question the run's model trained on, from the ask stage's answers (its `recall` one)."""
    from ..records import read_jsonl

    if not answers.is_file():
        return None
    for answer in read_jsonl(answers, on_bad=lambda *_: None):
        if isinstance(answer, dict) and answer.get("kind") == "recall":
            return str(answer.get("question") or "") or None
    return None


# ---------------------------------------------------------------- recipe


@cli.group()
def recipe() -> None:
    """Run, validate, show or list recipes. Overrides: KEY.SUB=VALUE after the path."""


def recipe_path(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """The PATH argument: the file itself, else the shipped recipe it names."""
    from ..shipped import resolve_recipe

    ctx.meta["typed_recipe"] = value
    return resolve_recipe(value)


def path_argument(function):
    return click.argument("path", type=click.Path(dir_okay=False), callback=recipe_path)(function)


@recipe.command("list")
def recipe_list() -> None:
    """The recipes that ship with mlxtune: run any by name (`mlxtune recipe run quickstart`),
    or copy its file and edit it."""
    import yaml

    from ..shipped import shipped_recipes

    found = shipped_recipes()
    if not found:
        raise MlxtuneError("no shipped recipes found in this installation (reinstall mlxtune)")
    width = max(len(name) for name in found)
    for name, path in found.items():
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        text = data.get("description", "") if isinstance(data, dict) else ""
        click.echo(f"{name:<{width}}  {text}")
    click.echo(f"\n(files in {next(iter(found.values())).parent})")


@recipe.command("run")
@path_argument
@click.argument("overrides", nargs=-1)
@click.option("--only", type=click.Choice(STAGE_NAMES), help="Run just this stage.")
@click.option("--until", type=click.Choice(STAGE_NAMES), help="Stop after this stage.")
@click.option(
    "--force",
    multiple=True,
    type=click.Choice(STAGE_NAMES),
    help="Redo this stage even if up to date (repeatable).",
)
@click.pass_context
def recipe_run(ctx, path, overrides, only, until, force) -> None:
    """Run the recipe's stages, skipping those already up to date; the run goes to runs/NAME
    under the current folder (the recipe's `run_dir` otherwise).

    \b
    PATH is a recipe file or the name of a shipped recipe (`mlxtune recipe list`).
    OVERRIDES are KEY.SUB=VALUE, e.g. papers=~/papers train.iters=50."""
    from ..pipeline import launch_rank, run_recipe

    typed = shlex.quote(ctx.meta.get("typed_recipe", path))  # as typed: quickstart, a file
    loaded, registry = load_for_cli(ctx, path, overrides)
    run = run_recipe(loaded, registry, only=only, until=until, force=tuple(force))
    adapters = run.file("adapters")
    if adapters.is_dir() and launch_rank()[0] == 0:
        click.echo(f"\nadapter: {adapters}")
        click.echo(f'ask it:  mlxtune ask "YOUR QUESTION" --recipe {typed}')
        question = trained_question(run.file("answers.jsonl"))
        if question:
            click.echo("or with a question it trained on:")
            click.echo(f"         mlxtune ask {shell_quoted(question)} --recipe {typed}")


@recipe.command("validate")
@path_argument
@click.argument("overrides", nargs=-1)
@click.pass_context
def recipe_validate(ctx, path, overrides) -> None:
    """Check a recipe (every problem at once) without running anything.

    \b
    PATH is a recipe file or the name of a shipped recipe (`mlxtune recipe list`).
    OVERRIDES are KEY.SUB=VALUE, e.g. papers=~/papers train.iters=50."""
    loaded, _ = load_for_cli(ctx, path, overrides)
    click.echo(f"{path}: ok (run directory {loaded.run_path})")


@recipe.command("show")
@path_argument
@click.argument("overrides", nargs=-1)
@click.pass_context
def recipe_show(ctx, path, overrides) -> None:
    """Print the fully resolved recipe (after extends and overrides) as YAML.

    \b
    PATH is a recipe file or the name of a shipped recipe (`mlxtune recipe list`).
    OVERRIDES are KEY.SUB=VALUE, e.g. papers=~/papers train.iters=50."""
    import yaml

    loaded, _ = load_for_cli(ctx, path, overrides, check_paths=False)
    click.echo(yaml.safe_dump(loaded.model_dump(mode="json"), sort_keys=False), nl=False)


# ---------------------------------------------------------------- compare


@cli.command()
@click.argument("targets", nargs=-1, required=True)
@click.option(
    "--out",
    "-o",
    type=click.Path(file_okay=False),
    help="Report folder (default: compare/<the recipes' names> beside the first run).",
)
@click.option("--force", is_flag=True, help="Replace the report already in the folder.")
@click.option(
    "--questions",
    type=click.Path(dir_okay=False),
    help="Your own questions (YAML), merged with those built from the splits.",
)
@click.option("--max-tokens", type=click.IntRange(1), help="Override the answer length.")
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override applied to every recipe, e.g. --set train.iters=50.",
)
@click.pass_context
def compare(ctx, targets, out, questions, max_tokens, overrides, force) -> None:
    """Train (if needed) and evaluate several recipes or run directories on the same questions.

    \b
    TARGETS are recipe files, shipped recipes' names or run directories:
    mlxtune compare recipes/base.yaml recipes/approach.yaml recipes/qa.yaml
    Writes report.md, report.html, report.json and loss_curves.png into a folder of its own,
    and MODEL_CARD.md beside each adapter.
    """
    from ..evaluate.compare import compare as run_compare
    from ..shipped import resolve_recipe
    from ..stages.base import output_console

    paths = run_compare(
        [resolve_recipe(t) for t in targets],
        out=out,
        questions_file=questions,
        overrides=overrides,
        plugins_dirs=ctx.obj["plugins_dirs"],
        max_tokens=max_tokens,
        force=force,
        console=output_console(),
    )
    for kind, path in paths.items():
        click.echo(f"{kind:>16}: {path}")


# ---------------------------------------------------------------- push


@cli.command()
@click.option(
    "--recipe", "recipe_path", required=True, type=click.Path(dir_okay=False),
    help="The recipe whose trained adapter to share.",
)  # fmt: skip
@click.option("--repo", required=True, help="Hub repository, user/name (created if missing).")
@click.option("--private", is_flag=True, help="Create the repository private.")
@click.option("--dry-run", is_flag=True, help="Write the folder it would upload; upload nothing.")
@click.option(
    "--out", "-o", type=click.Path(file_okay=False), help="That folder (default: RUN_DIR/hub)."
)
@click.option("--base-model", help="The base model's hub id for the card (default: model.id).")
@click.option("--dataset", "datasets", multiple=True, help="A hub dataset id for the card.")
@click.option("--license", "license_", default="other", show_default=True, help="Card license.")
@click.option(
    "--report", type=click.Path(file_okay=False, exists=True),
    help="Comparison report folder to include (default: the newest that holds the recipe).",
)  # fmt: skip
@click.argument("overrides", nargs=-1)
@click.pass_context
def push(
    ctx, recipe_path, repo, private, dry_run, out, base_model, datasets, license_, report,
    overrides,
) -> None:  # fmt: skip
    """Upload a trained adapter (mlx-lm and PEFT), its model card and report to the Hub.

    \b
    mlxtune push --recipe recipes/real/approach.yaml --repo you/smollm2-approach --dry-run
    Needs `hf auth login` (or HF_TOKEN) unless --dry-run; HF_ENDPOINT picks another Hub.
    OVERRIDES are KEY.SUB=VALUE applied to the recipe, e.g. papers=~/papers.
    """
    import re
    from pathlib import Path

    from ..evaluate.push import build_folder, latest_report, upload

    if not re.fullmatch(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*", repo):
        raise MlxtuneError(f"--repo {repo!r}: expected user/name, e.g. you/smollm2-approach")
    loaded, _ = load_for_cli(ctx, recipe_path, overrides)
    chosen = Path(report) if report else latest_report(loaded)
    folder = build_folder(
        loaded, Path(out) if out else loaded.run_path / "hub", base_model=base_model,
        datasets=list(datasets), license=license_, report=chosen,
    )  # fmt: skip
    click.echo(f"folder: {folder}" + ("" if chosen else " (no comparison report found)"))
    if dry_run:
        click.echo(f"dry run: nothing uploaded; would upload to {repo}")
        return
    click.echo(f"pushed: {upload(folder, repo, private=private)}")


# ---------------------------------------------------------------- plan, doctor


@cli.command()
@path_argument
@click.argument("overrides", nargs=-1)
@click.option(
    "--memory",
    help="Memory to plan for, e.g. 16GB (a Mac's unified memory, a GPU's own memory); "
    "default: this machine's.",
)
@click.option(
    "--device",
    type=click.Choice(["metal", "cuda", "cpu"]),
    help="Plan for this kind of device (metal: a Mac) instead of this machine's MLX device; "
    "on Linux, --memory alone plans for the CPU.",
)
@click.option(
    "--processes",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Plan one machine of a data-parallel mlx.launch of this many processes.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the plan as one JSON object.")
@click.pass_context
def plan(ctx, path, overrides, memory, device, processes, as_json) -> None:
    """Estimate peak memory of training and generation for a recipe, and what fits.

    Reads only the model's config.json (from its folder or the hub, no weights). The first line
    names the device planned for. Exit code 1 when the run would not fit (with
    `train.auto_fit: true` it fits when auto_fit's choice does).

    \b
    PATH is a recipe file or the name of a shipped recipe (`mlxtune recipe list`).
    OVERRIDES are KEY.SUB=VALUE, e.g. model.id=mlx-community/Qwen2.5-7B-Instruct-4bit."""
    from ..plan import device_line, plan_recipe
    from ..train.planner import GB, human, parse_memory

    recipe, registry = load_for_cli(ctx, path, overrides, check_paths=False)
    try:
        budget = parse_memory(memory) if memory else None
    except ValueError:
        raise MlxtuneError(f"--memory {memory!r}: expected a size like 32GB") from None
    result = plan_recipe(recipe, registry, budget, device, processes)
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2))
        return
    s, shape, where = result.setting, result.shape, result.device
    quant = f"{s.bits}-bit" if s.bits else f"{8 * s.dtype_bytes}-bit floats"
    click.echo(device_line(where, device, memory))
    click.echo(
        f"model    {recipe.model_ref}: {shape.params / 1e9:.2f}B parameters, {shape.layers} "
        f"layers, hidden {shape.hidden}, vocab {shape.vocab}; weights {quant}"
    )
    click.echo(
        f"memory   {human(result.memory)} ({where.name}, {where.kind}), of which "
        f"{human(result.budget)} usable for training; computes in {where.compute_dtype}"
    )
    per_process = ""
    if s.processes > 1:
        per_process = f" ({s.rows_per_process} rows on each of {s.processes} processes)"
    if result.trains:
        click.echo(
            f"training batch {s.batch_size} x {s.seq_len} tokens{per_process}, {s.fine_tune_type} "
            f"rank {s.lora_rank} on {s.num_layers if s.num_layers >= 0 else 'all'} layers, "
            f"{s.optimizer}{', grad checkpointing' if s.grad_checkpoint else ''}: "
            f"{result.training.describe()}"
        )
    else:
        click.echo("training none (train.use: none, the base model as it is)")
    click.echo(f"generate {result.generation.describe()}")
    usable = result.budget / GB
    peak = result.training if result.trains else result.generation
    if result.fits:
        click.secho(f"fits: {peak.total / GB:.1f} of {usable:.1f} GB", fg="green")
        return
    suggestion = result.suggestion
    if result.auto_fit and suggestion is not None:
        click.echo(
            f"as written {result.training.total / GB:.1f} GB > {usable:.1f} GB usable; "
            f"train.auto_fit (on in this recipe) trains with {pasted(suggestion.overrides)} "
            f"({suggestion.note})"
        )
        click.secho(
            f"fits: {suggestion.estimate.total / GB:.1f} of {usable:.1f} GB after auto_fit",
            fg="green",
        )
        return
    click.secho(f"does not fit: {peak.total / GB:.1f} GB > {usable:.1f} GB usable", fg="red")
    if suggestion is None:
        click.echo("nothing in reach fits: choose a smaller model (model.id)")
        ctx.exit(1)
    click.echo(f"fits with ({suggestion.note}): {suggestion.estimate.describe()}")
    click.echo(
        f"  mlxtune recipe run {ctx.meta.get('typed_recipe', path)} {pasted(suggestion.overrides)}"
    )
    click.echo("  (or set train.auto_fit: true and let the run choose)")
    ctx.exit(1)


def pasted(overrides: dict) -> str:
    """Overrides as they are typed on the command line: train.grad_checkpoint=true."""
    return " ".join(
        f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in overrides.items()
    )


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the checks as a JSON list.")
def doctor(as_json) -> None:
    """Check this machine before a long run: MLX device, BLAS, memory, hub, plugins, disk."""
    from dataclasses import asdict

    from ..doctor import main_report, run_checks

    checks = run_checks()
    if as_json:
        click.echo(json.dumps([asdict(c) for c in checks], indent=2))
    else:
        click.echo(main_report(checks))
