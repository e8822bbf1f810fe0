from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import write_recipe

from mlxtune.cli import cli
from mlxtune.errors import RecipeError
from mlxtune.recipe import load_recipe


def test_every_problem_reported_at_once_with_key_names(tmp_path):
    recipe = write_recipe(
        tmp_path / "bad.yaml",
        "name: bad\npapers: ./missing\nmodel: {id: org/model}\n"
        "train: {use: mlx, batchsize: 4, iters: many}\n",
    )
    for command in ("validate", "run"):
        result = CliRunner().invoke(cli, ["recipe", command, str(recipe)])
        assert result.exit_code != 0
        out = result.output
        assert "3 problems" in out
        assert "train.batchsize: unknown key; did you mean 'batch_size'?" in out
        assert "train.iters:" in out and "'many'" in out
        assert "papers: folder not found" in out and "missing" in out
        assert "Traceback" not in out


def test_extends_overrides_and_relative_paths(tmp_path, papers_dir):
    (tmp_path / "sub").mkdir()
    write_recipe(
        tmp_path / "base.yaml",
        f"name: base\npapers: {papers_dir.name}\nmodel: {{id: org/model}}\n"
        "train: {use: mlx, batch_size: 8, lora_rank: 4}\n",
    )
    child = write_recipe(
        tmp_path / "sub" / "child.yaml",
        "extends: ../base.yaml\nname: child\ntrain: {lora_rank: 16}\n",
    )
    # papers_dir lives in tmp_path, the folder of base.yaml: resolved against that file
    recipe, _ = load_recipe(child, ["train.iters=7", "format.use=chat", "format.system=hi"])
    assert recipe.name == "child"
    assert recipe.papers == str(papers_dir.resolve())
    train = recipe.component("train")
    assert (train["batch_size"], train["lora_rank"], train["iters"]) == (8, 16, 7)
    assert recipe.component("format") == {"use": "chat", "system": "hi"}


def test_problem_in_base_names_its_file(tmp_path, papers_dir):
    write_recipe(
        tmp_path / "base.yaml",
        f"name: b\npapers: {papers_dir}\nmodel: {{tiny: {{}}}}\n"
        "summarize: {use: heuristic, max_words: 3}\n",
    )
    child = write_recipe(tmp_path / "child.yaml", "extends: base.yaml\nname: c\n")
    with pytest.raises(RecipeError) as info:
        load_recipe(child)
    assert "summarize.max_words: unknown key" in str(info.value)
    assert "base.yaml" in str(info.value)


def test_unsafe_yaml_is_refused(tmp_path):
    recipe = write_recipe(
        tmp_path / "evil.yaml", "name: !!python/object/apply:os.system ['true']\n"
    )
    with pytest.raises(RecipeError, match="invalid YAML"):
        load_recipe(recipe)


def test_extends_cycle(tmp_path):
    write_recipe(tmp_path / "a.yaml", "extends: b.yaml\nname: a\n")
    write_recipe(tmp_path / "b.yaml", "extends: a.yaml\nname: b\n")
    with pytest.raises(RecipeError, match="cycle"):
        load_recipe(tmp_path / "a.yaml")


def test_switching_component_keeps_shared_options_and_drops_the_rest(tmp_path, papers_dir):
    recipe = write_recipe(
        tmp_path / "r.yaml",
        f"name: r\npapers: {papers_dir}\n"
        "model: {id: org/m}\nformat: {use: chat, system: be brief}\n"
        "train: {use: mlx, lora_rank: 4, quantize_group_size: 32}\n",
    )
    loaded, _ = load_recipe(recipe, ["format.use=approach", "train.use=none"])
    assert loaded.component("format") == {"use": "approach"}
    assert loaded.component("train") == {"use": "none"}
    loaded, _ = load_recipe(recipe, ["format.use=prompt_qa"])
    assert loaded.component("format") == {"use": "prompt_qa"}
    with pytest.raises(RecipeError, match="train.lora_rnk: unknown key"):
        load_recipe(recipe, ["train.lora_rnk=3"])


def test_show_prints_resolved_recipe(tmp_path, papers_dir):
    recipe = write_recipe(
        tmp_path / "r.yaml", f"name: r\npapers: {papers_dir}\nmodel: {{id: o/m}}\n"
    )
    result = CliRunner().invoke(cli, ["recipe", "show", str(recipe), "train.iters=3"])
    assert result.exit_code == 0, result.output
    assert "iters: 3" in result.output and "use: heuristic" in result.output


def test_every_problem_at_once_across_sections(tmp_path):
    """A schema problem in one section used to hide the path checks: the missing papers
    folder and model folder were reported only once the schema was fixed."""
    from mlxtune.errors import RecipeError
    from mlxtune.recipe import load_recipe

    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "name: r\npapers: no-such-folder\nmodel: {path: no-such-model}\n"
        "ask: {max_tokens: lots}\ntrain: {use: mlx, iters: -3}\n"
    )
    with pytest.raises(RecipeError) as info:
        load_recipe(recipe)
    problems = info.value.problems
    assert any(p.startswith("papers: folder not found") for p in problems), problems
    assert any(p.startswith("model.path: folder not found") for p in problems), problems
    assert any(p.startswith("ask.max_tokens") for p in problems), problems
    assert any(p.startswith("train.iters") for p in problems), problems


def test_every_path_key_given_as_an_override_is_relative_to_the_working_folder(
    tmp_path, papers_dir, monkeypatch
):
    """A path set on the command line, as a key or inside a mapping, is resolved from where the
    command runs, like `papers=...`; the recipe file's own paths stay relative to the file."""
    from mlxtune.recipe import PATH_KEYS

    recipe = write_recipe(
        tmp_path / "r.yaml", f"name: r\npapers: {papers_dir}\nmodel: {{id: org/model}}\n"
    )
    here = tmp_path / "elsewhere"
    here.mkdir()
    monkeypatch.chdir(here)
    loaded, _ = load_recipe(recipe, ["run_dir=out", "cache_dir=c"], check_paths=False)
    assert loaded.run_dir == str(here / "out") and loaded.cache_dir == str(here / "c")
    (here / "m.gguf").write_bytes(b"GGUF")  # only its existence is checked when loading
    loaded, _ = load_recipe(recipe, ["model={gguf: m.gguf}"], check_paths=False)
    assert loaded.model.gguf == str(here / "m.gguf")
    loaded, _ = load_recipe(recipe, ["evaluate.questions_file=q.yaml"], check_paths=False)
    assert loaded.evaluate.questions_file == str(here / "q.yaml")
    assert "evaluate.judge.prompt_file" in PATH_KEYS and "model.gguf" in PATH_KEYS


def test_run_of_shares_a_named_run_in_the_current_folder_wherever_the_recipe_is(
    tmp_path, papers_dir, monkeypatch
):
    """A shipped variant (inside site-packages) must not put its run beside its own file."""
    (tmp_path / "deep" / "er").mkdir(parents=True)
    recipe = write_recipe(
        tmp_path / "deep" / "er" / "v.yaml",
        f"name: v\npapers: {papers_dir}\nmodel: {{id: org/model}}\nrun_of: base-run\n",
    )
    monkeypatch.chdir(tmp_path)
    loaded, _ = load_recipe(recipe, check_paths=False)
    assert loaded.run_path == Path("runs") / "base-run"
    with pytest.raises(RecipeError, match="run_dir or run_of, not both"):
        load_recipe(recipe, ["run_dir=x"], check_paths=False)
    with pytest.raises(RecipeError, match="run_of"):
        load_recipe(recipe, ["run_of=../up"], check_paths=False)
