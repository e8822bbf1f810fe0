"""`mlxtune recipe run|validate|show`, `compare` and `plan`: commands that read recipes."""

from __future__ import annotations

import json

import click

from ..errors import MlxtuneError
from ..stages import STAGE_NAMES
from .root import cli, load_for_cli

# ---------------------------------------------------------------- recipe


@cli.group()
def recipe() -> None:
    """Run, validate or show a YAML recipe. Overrides: KEY.SUB=VALUE after the path."""


@recipe.command("run")
@click.argument("path", type=click.Path(dir_okay=False))
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
    """Run the recipe's stages, skipping those already up to date."""
    from ..pipeline import launch_rank, run_recipe

    loaded, registry = load_for_cli(ctx, path, overrides)
    run = run_recipe(loaded, registry, only=only, until=until, force=tuple(force))
    adapters = run.file("adapters")
    if adapters.is_dir() and launch_rank()[0] == 0:
        click.echo(f"\nadapter: {adapters}")
        click.echo(f'ask it:  mlxtune ask "YOUR QUESTION" --recipe {path}')


@recipe.command("validate")
@click.argument("path", type=click.Path(dir_okay=False))
@click.argument("overrides", nargs=-1)
@click.pass_context
def recipe_validate(ctx, path, overrides) -> None:
    """Check a recipe (every problem at once) without running anything."""
    loaded, _ = load_for_cli(ctx, path, overrides)
    click.echo(f"{path}: ok (run directory {loaded.run_path})")


@recipe.command("show")
@click.argument("path", type=click.Path(dir_okay=False))
@click.argument("overrides", nargs=-1)
@click.pass_context
def recipe_show(ctx, path, overrides) -> None:
    """Print the fully resolved recipe (after extends and overrides) as YAML."""
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
    help="Report folder (default: runs/compare beside the first run).",
)
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
def compare(ctx, targets, out, questions, max_tokens, overrides) -> None:
    """Train (if needed) and evaluate several recipes or run directories on the same questions.

    \b
    mlxtune compare recipes/base.yaml recipes/approach.yaml recipes/qa.yaml
    Writes report.md, report.html, report.json and loss_curves.png, and MODEL_CARD.md beside
    each adapter.
    """
    from ..evaluate.compare import compare as run_compare
    from ..stages.base import output_console

    paths = run_compare(
        list(targets),
        out=out,
        questions_file=questions,
        overrides=overrides,
        plugins_dirs=ctx.obj["plugins_dirs"],
        max_tokens=max_tokens,
        console=output_console(),
    )
    for kind, path in paths.items():
        click.echo(f"{kind:>16}: {path}")


# ---------------------------------------------------------------- plan, doctor


@cli.command()
@click.argument("path", type=click.Path(dir_okay=False))
@click.argument("overrides", nargs=-1)
@click.option("--memory", help="Memory to plan for, e.g. 32GB (default: this machine's).")
@click.option(
    "--device",
    type=click.Choice(["metal", "cuda", "cpu"]),
    help="Plan for another kind of device (default: this machine's MLX device).",
)
@click.option(
    "--processes",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Plan one machine of a data-parallel mlx.launch of this many processes.",
)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def plan(ctx, path, overrides, memory, device, processes, as_json) -> None:
    """Estimate peak memory of training and generation for a recipe, and what fits.

    Reads only the model's config.json (from its folder or the hub, no weights).
    """
    from ..models.plan_recipe import plan_recipe
    from ..models.planner import GB, human, parse_memory

    recipe, registry = load_for_cli(ctx, path, overrides, check_paths=False)
    try:
        budget = parse_memory(memory) if memory else None
    except ValueError:
        raise MlxtuneError(f"--memory {memory!r}: expected a size like 32GB") from None
    result = plan_recipe(recipe, registry, budget, device, processes)
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2))
        return
    s, shape = result.setting, result.shape
    quant = f"{s.bits}-bit" if s.bits else f"{8 * s.dtype_bytes}-bit floats"
    click.echo(
        f"model    {recipe.model_ref}: {shape.params / 1e9:.2f}B parameters, {shape.layers} "
        f"layers, hidden {shape.hidden}, vocab {shape.vocab}; weights {quant}"
    )
    where = result.device
    click.echo(
        f"memory   {human(result.memory)} ({where.name}, {where.kind}), of which "
        f"{human(result.budget)} usable for training; computes in {where.compute_dtype}"
    )
    per_process = ""
    if s.processes > 1:
        per_process = f" ({s.rows_per_process} rows on each of {s.processes} processes)"
    click.echo(
        f"training batch {s.batch_size} x {s.seq_len} tokens{per_process}, {s.fine_tune_type} rank "
        f"{s.lora_rank} on {s.num_layers if s.num_layers >= 0 else 'all'} layers, "
        f"{s.optimizer}{', grad checkpointing' if s.grad_checkpoint else ''}: "
        f"{result.training.describe()}"
    )
    click.echo(f"generate {result.generation.describe()}")
    if result.fits:
        click.secho(
            f"fits: {result.training.total / GB:.1f} of {result.budget / GB:.1f} GB", fg="green"
        )
        return
    click.secho(
        f"does not fit: {result.training.total / GB:.1f} GB > {result.budget / GB:.1f} GB usable",
        fg="red",
    )
    if result.suggestion is None:
        click.echo("nothing in reach fits: choose a smaller model (model.id)")
        ctx.exit(1)
    suggestion = result.suggestion
    pasted = " ".join(
        f"{k}={str(v).lower() if isinstance(v, bool) else v}"
        for k, v in suggestion.overrides.items()
    )
    click.echo(f"fits with ({suggestion.note}): {suggestion.estimate.describe()}")
    click.echo(f"  mlxtune recipe run {path} {pasted}")
    click.echo("  (or set train.auto_fit: true and let the run choose)")
    ctx.exit(1)


@cli.command()
@click.option("--json", "as_json", is_flag=True)
def doctor(as_json) -> None:
    """Check this machine before a long run: MLX device, BLAS, memory, hub, plugins, disk."""
    from dataclasses import asdict

    from ..doctor import main_report, run_checks

    checks = run_checks()
    if as_json:
        click.echo(json.dumps([asdict(c) for c in checks], indent=2))
    else:
        click.echo(main_report(checks))
