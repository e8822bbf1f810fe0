"""The root `mlxtune` group and its error handling (every command module adds to it)."""

from __future__ import annotations

import os
import sys

import click

from .. import __version__
from ..errors import MlxtuneError

NO_MLX = (
    "MLX is not installed: on Linux pip install 'mlxtune[cpu]' (or [cuda12] / [cuda13] for an "
    "NVIDIA GPU; from a checkout: pip install -e '.[cpu]'); on a Mac it needs Apple Silicon and "
    "an arm64 Python (mlxtune doctor says which)"
)


class Group(click.Group):
    """Turns user-facing errors into one message and a non-zero exit, never a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except MlxtuneError as exc:
            click.secho(f"error: {exc}", fg="red", err=True)
            ctx.exit(exc.exit_code)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except KeyboardInterrupt:
            click.secho("interrupted", fg="yellow", err=True)
            ctx.exit(130)
        except Exception as exc:
            if isinstance(exc, ModuleNotFoundError) and (exc.name or "").split(".")[0] == "mlx":
                click.secho(f"error: {NO_MLX}", fg="red", err=True)
                ctx.exit(2)
            if os.environ.get("MLXTUNE_DEBUG"):
                raise
            click.secho(
                f"error: unexpected {type(exc).__name__}: {exc} "
                "(set MLXTUNE_DEBUG=1 for the traceback)",
                fg="red",
                err=True,
            )
            ctx.exit(1)


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mlxtune")
@click.option(
    "--plugins-dir",
    "plugins_dirs",
    multiple=True,
    type=click.Path(file_okay=False),
    help="Load plugin modules (*.py) from this folder (repeatable).",
)
@click.pass_context
def cli(ctx: click.Context, plugins_dirs: tuple[str, ...]) -> None:
    """Turn a folder of research papers into a fine-tuned local LLM.

    \b
    Quick start (offline, tiny model):
      mlxtune recipe run recipes/quickstart.yaml
      mlxtune ask "How can we segment cells?" --recipe recipes/quickstart.yaml
    """
    ctx.obj = {"plugins_dirs": plugins_dirs}


def model_options(recipe_help: str):
    """--recipe / --model / --adapter: where a command's model (and trained adapter) come from."""

    def decorate(function):
        function = click.option(
            "--adapter", type=click.Path(file_okay=False), help="Adapter folder (mlx-lm format)."
        )(function)
        function = click.option(
            "--model", help="Hub id or local model folder (instead of --recipe)."
        )(function)
        return click.option(
            "--recipe", "recipe_path", type=click.Path(dir_okay=False), help=recipe_help
        )(function)

    return decorate


def load_for_cli(
    ctx: click.Context, path: str, overrides: tuple[str, ...], check_paths: bool = True
):
    """A recipe with the command's overrides and the --plugins-dir folders."""
    from ..recipe import load_recipe

    return load_recipe(path, overrides, ctx.obj["plugins_dirs"], check_paths=check_paths)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: adds plugin commands (register_commands hook), then runs."""
    if not os.environ.get("MLXTUNE_DISABLE_PLUGIN_AUTOLOAD"):
        try:
            from ..plugins import get_plugin_manager

            get_plugin_manager().hook.register_commands(cli=cli)
        except MlxtuneError as exc:
            click.secho(f"error: {exc}", fg="red", err=True)
            sys.exit(exc.exit_code)
    cli.main(args=argv, prog_name="mlxtune")
