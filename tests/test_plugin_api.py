"""The declared plugin surface (mlxtune.api): the bundled plugins import nothing else of mlxtune,
every name it declares resolves, and a plugin written for another API version is refused."""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from mlxtune import api
from mlxtune.cli import cli

PLUGINS = Path(__file__).resolve().parents[1] / "plugins"


def mlxtune_imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "mlxtune":
                found += [f"mlxtune.{alias.name}" for alias in node.names]
            elif node.module.startswith("mlxtune."):
                found.append(node.module)
        elif isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.startswith("mlxtune.")]
    return found


def test_bundled_plugins_import_only_the_api_module():
    sources = sorted(PLUGINS.glob("*/src/**/*.py"))
    assert len(sources) >= 8
    outside = {
        f"{path.relative_to(PLUGINS)}: {name}"
        for path in sources
        for name in mlxtune_imports(path)
        if name != "mlxtune.api"
    }
    assert not outside, sorted(outside)


def test_every_declared_name_resolves_without_importing_mlx():
    import subprocess
    import sys

    code = (
        "import sys, mlxtune.api as a\n"
        "assert 'mlx.core' not in sys.modules\n"
        "[getattr(a, n) for n in a.__all__]\n"
        "print(len(a.__all__))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) == len(api.__all__) > 40
    with pytest.raises(AttributeError, match="not part of the plugin API"):
        api.load_recipe  # noqa: B018


def test_a_plugin_for_another_api_version_is_refused(tmp_path):
    (tmp_path / "future.py").write_text(
        textwrap.dedent(
            """
            from mlxtune.api import Formatter, Example, hookimpl

            MLXTUNE_API = 2

            class Future(Formatter):
                name = "future"

                def prompt(self, question):
                    return Example(prompt=question)

                def examples(self, pair):
                    return []

            @hookimpl
            def register_formatters(register):
                register(Future)
            """
        )
    )
    result = CliRunner().invoke(cli, ["--plugins-dir", str(tmp_path), "plugins"])
    assert result.exit_code == 2
    assert "needs mlxtune API 2, this mlxtune has API 1" in result.output
    (tmp_path / "future.py").write_text(
        (tmp_path / "future.py").read_text().replace("MLXTUNE_API = 2", "MLXTUNE_API = 1")
    )
    from mlxtune import plugins

    plugins._CACHE.clear()
    result = CliRunner().invoke(cli, ["--plugins-dir", str(tmp_path), "plugins"])
    assert result.exit_code == 0 and "future" in result.output
