"""`mlxtune --help` describes everything: every command, every option and every argument (issue
27), and the errors all start the same way, click's own included."""

from __future__ import annotations

from collections.abc import Iterator

import click
import pytest
from click.testing import CliRunner

from mlxtune.cli import cli


def commands(command: click.Command, path: tuple[str, ...] = ("mlxtune",)) -> Iterator:
    yield path, command
    if isinstance(command, click.Group):
        for name, sub in sorted(command.commands.items()):
            yield from commands(sub, (*path, name))


ALL = list(commands(cli))


def test_the_walk_sees_every_command():
    names = {" ".join(path) for path, _ in ALL}
    for expected in (
        "mlxtune recipe run",
        "mlxtune recipe list",
        "mlxtune plan",
        "mlxtune ask",
        "mlxtune serve",
        "mlxtune export",
        "mlxtune model import",
        "mlxtune adapter convert",
    ):
        assert expected in names, names


@pytest.mark.parametrize("path,command", ALL, ids=[" ".join(p) for p, _ in ALL])
def test_every_command_option_and_argument_has_help(path, command):
    assert (command.help or "").strip(), f"{' '.join(path)}: no help text"
    for param in command.params:
        if isinstance(param, click.Option):
            assert (param.help or "").strip(), f"{' '.join(path)} {param.opts}: no help line"
        elif isinstance(param, click.Argument):  # click has no help for arguments: the text
            name = param.human_readable_name  # of the command names each one
            assert name in command.help, f"{' '.join(path)}: {name} is not described"
    shown = CliRunner().invoke(cli, [*path[1:], "--help"])
    assert shown.exit_code == 0, shown.output


def test_model_help_names_every_accepted_form():
    for path, command in ALL:
        for param in command.params:
            if isinstance(param, click.Option) and "--model" in param.opts:
                text = param.help
                for form in ("hub id", "folder", "GGUF file", "ollama:", "package:"):
                    assert form in text, (path, form, text)


@pytest.mark.parametrize(
    "args,says",
    [
        (["recipe", "run", "--bogus", "x.yaml"], "error: No such option"),
        (["recipe", "run"], "error: Missing argument 'PATH'"),
        (["plan", "quickstart", "--device", "mac"], "error: Invalid value for '--device'"),
        (["recipe", "validate", "no-such-recipe"], "error: recipe not found: no-such-recipe"),
        (["ask", "hi", "--recipe", "missing.yaml"], "error: "),
    ],
)
def test_every_error_starts_with_one_prefix(args, says):
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output
    assert says in result.output, result.output
    assert "Error:" not in result.output, result.output  # click's own prefix, capitalized
