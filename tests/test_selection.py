"""What to load is decided once (`mlxtune.selection`): a recipe gives its model, trained adapter,
formatter, backend and sampling; a flag that is given wins; `fuse` and `export` take the same
decision as `ask` (before, `fuse --recipe` took `<run>/adapters` without asking whether the
recipe trains or has been run)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import write_recipe

from mlxtune.cli import cli
from mlxtune.errors import MlxtuneError
from mlxtune.selection import select


def recipe(tmp_path: Path, train: str) -> Path:
    return write_recipe(
        tmp_path / "r.yaml",
        f"name: sel\npapers: {tmp_path / 'papers'}\nrun_dir: {tmp_path / 'run'}\n"
        f"model: {{id: some/model}}\ntrain: {train}\nask: {{max_tokens: 77}}\n",
    )


def test_a_recipe_gives_its_trained_adapter_and_a_flag_wins(tmp_path):
    path = recipe(tmp_path, "{use: mlx}")
    with pytest.raises(MlxtuneError, match=r"no trained adapter in .*run.*adapters: run `mlxtune"):
        select(recipe=str(path))  # it trains, but has not been run
    (tmp_path / "run" / "adapters").mkdir(parents=True)
    (tmp_path / "run" / "adapters" / "adapters.safetensors").write_bytes(b"x")
    chosen = select(recipe=str(path))
    assert (chosen.model, chosen.adapter) == ("some/model", tmp_path / "run" / "adapters")
    assert chosen.sampling.max_tokens == 77 and chosen.name == "sel"
    flagged = select(recipe=str(path), model="other/model", adapter="elsewhere", formatter="qa")
    assert (flagged.model, flagged.adapter) == ("other/model", Path("elsewhere"))
    assert flagged.formatter == {"use": "qa"} and flagged.sampling.max_tokens == 77


def test_flags_alone_and_the_base_model(tmp_path):
    assert select(recipe=str(recipe(tmp_path, "{use: none}"))).adapter is None
    chosen = select(model="m")
    assert (chosen.adapter, chosen.formatter, chosen.backend) == (None, {"use": "approach"}, "mlx")
    with pytest.raises(MlxtuneError, match="export needs"):
        select(usage="export needs --recipe")


@pytest.mark.parametrize("train", ["{use: none}", "{use: mlx}"])
def test_fuse_takes_the_same_decision(tmp_path, train):
    result = CliRunner().invoke(
        cli, ["fuse", "--recipe", str(recipe(tmp_path, train)), "-o", str(tmp_path / "out")]
    )
    assert result.exit_code == 2, result.output
    expected = "has no adapter to fuse" if "none" in train else "no trained adapter in"
    assert expected in result.output
    assert not (tmp_path / "out").exists()
