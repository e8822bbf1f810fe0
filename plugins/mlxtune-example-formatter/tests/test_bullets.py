from __future__ import annotations

import os
import subprocess
import sys

from mlxtune.api import Pair

# needs the plugin installed: pip install ./plugins/mlxtune-example-formatter
ENV = {k: v for k, v in os.environ.items() if k != "MLXTUNE_DISABLE_PLUGIN_AUTOLOAD"}


def mlxtune(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mlxtune.cli", *args], env=ENV, capture_output=True, text=True
    )


def test_examples_are_numbered_steps():
    from mlxtune_example_formatter import BulletsFormatter

    pair = Pair(
        document_id="d",
        category="c",
        question="Why?",
        approach="Collect data. Train a model! Evaluate it.",
    )
    (example,) = BulletsFormatter().examples(pair)
    assert example.text == (
        "Research question: Why?\nSteps:\n1. Collect data.\n2. Train a model!\n3. Evaluate it."
    )
    assert example.text.startswith(example.prompt)


def test_discovered_through_the_entry_point():
    out = mlxtune("plugins").stdout
    line = next(line for line in out.splitlines() if line.startswith("bullets"))
    assert "formatter" in line and "mlxtune-example-formatter 0.1.0 (entry point)" in line


def test_a_recipe_uses_it_by_name(tmp_path):
    (tmp_path / "papers").mkdir()
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "name: r\npapers: papers\nmodel: {id: org/m}\nformat: {use: bullets, max_steps: 3}\n"
    )
    assert mlxtune("recipe", "validate", str(recipe)).returncode == 0
    bad = mlxtune("recipe", "validate", str(recipe), "format.max_stepz=2")
    assert bad.returncode != 0 and "format.max_stepz: unknown key" in bad.stderr
