from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
from click.testing import CliRunner
from conftest import write_recipe

from mlxtune.cli import cli
from mlxtune.errors import MlxtuneError
from mlxtune.plugins import get_registry
from mlxtune.recipe import load_recipe

PLUGIN = textwrap.dedent(
    """
    from mlxtune import hookimpl
    from mlxtune.components import Formatter
    from mlxtune.records import Example

    class Shout(Formatter):
        name = "{name}"

        def prompt(self, question):
            return Example(prompt=question.upper() + "\\n")

        def examples(self, pair):
            p = self.prompt(pair.question).prompt
            return [Example(text=p + pair.approach, prompt=p)]

    @hookimpl
    def register_formatters(register):
        register(Shout)
    """
)


def test_builtins_listed_with_kind_and_source():
    result = CliRunner().invoke(cli, ["plugins"])
    assert result.exit_code == 0
    lines = {tuple(line.split(None, 2)) for line in result.output.splitlines()}
    for name, kind in [
        ("pypdf", "extractor"),
        ("heuristic", "summarizer"),
        ("approach", "formatter"),
        ("chat", "formatter"),
        ("mlx", "trainer"),
        ("mlx", "backend"),
    ]:
        assert (name, kind, "mlxtune (built-in)") in lines


def test_plugins_dir_component_is_usable_by_name(tmp_path, papers_dir):
    plugdir = tmp_path / "plugs"
    plugdir.mkdir()
    (plugdir / "shout.py").write_text(PLUGIN.format(name="shout"))
    recipe = write_recipe(
        tmp_path / "r.yaml",
        f"name: r\npapers: {papers_dir}\n"
        f"plugins_dir: plugs\nmodel: {{id: o/m}}\nformat: {{use: shout}}\n",
    )
    loaded, registry = load_recipe(recipe)
    formatter = registry.build("formatter", loaded.component("format"))
    assert formatter.prompt("why?").prompt == "WHY?\n"
    listing = CliRunner().invoke(cli, ["--plugins-dir", str(plugdir), "plugins"]).output
    assert "shout" in listing and "shout.py (plugins dir)" in listing


def test_duplicate_name_names_both_sources(tmp_path):
    plugdir = tmp_path / "plugs"
    plugdir.mkdir()
    (plugdir / "one.py").write_text(PLUGIN.format(name="approach"))
    with pytest.raises(MlxtuneError) as info:
        get_registry([plugdir])
    message = str(info.value)
    assert "duplicate formatter name 'approach'" in message
    assert "mlxtune (built-in)" in message and "one.py" in message


def test_unknown_component_lists_available():
    with pytest.raises(MlxtuneError, match="available: approach, chat"):
        get_registry().get("formatter", "aproach")


def test_entry_point_discovery(tmp_path, monkeypatch):
    """A distribution declaring [mlxtune] entry points is found without any configuration."""
    site = tmp_path / "site"
    (site / "shoutplug").mkdir(parents=True)
    (site / "shoutplug" / "__init__.py").write_text(PLUGIN.format(name="shout_ep"))
    info = site / "shoutplug-1.2.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: shoutplug\nVersion: 1.2\n")
    (info / "entry_points.txt").write_text("[mlxtune]\nshout = shoutplug\n")
    code = (
        "from mlxtune.plugins import get_registry\n"
        "for kind, name, e in get_registry().entries():\n"
        "    print(kind, name, e.source)\n"
    )
    env = {
        k: v for k, v in __import__("os").environ.items() if k != "MLXTUNE_DISABLE_PLUGIN_AUTOLOAD"
    }
    env["PYTHONPATH"] = str(site)
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout
    assert "formatter shout_ep shoutplug 1.2 (entry point)" in out
    env["MLXTUNE_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout
    assert "shout_ep" not in out


def test_help_imports_no_ml_framework():
    code = (
        "import sys\n"
        "from mlxtune.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('mlx', 'mlx_lm', 'torch', 'transformers') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    # with the installed plugins loading too (mlxtune-torch in CI): the conftest turns
    # autoload off, which hid a plugin that imported torch at module level
    env = {k: v for k, v in os.environ.items() if k != "MLXTUNE_DISABLE_PLUGIN_AUTOLOAD"}
    for environment in (os.environ.copy(), env):
        out = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env=environment,
        )
        assert "HEAVY []" in out.stdout


def test_recipe_naming_an_optional_plugin_says_how_to_install_it(tmp_path, papers_dir):
    from conftest import write_recipe

    from mlxtune.errors import RecipeError
    from mlxtune.recipe import load_recipe

    recipe = write_recipe(
        tmp_path / "r.yaml", f"name: r\npapers: {papers_dir}\nmodel: {{id: o/m}}\n"
    )
    with pytest.raises(RecipeError, match=r"pip install mlxtune-torch .*plugins/mlxtune-torch"):
        load_recipe(recipe, ["train.use=torch"])
