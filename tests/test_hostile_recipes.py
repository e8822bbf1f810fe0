"""Hostile recipes: alias bombs, binary and UTF-16 files, 50,000-deep nesting, duplicate keys, huge
numbers, NaN, wrong types in every section. Each must be one clear error (exit 2, no traceback,
no 'unexpected'), from `mlxtune recipe validate` in a real process (memory and time capped, so a
regression cannot take the machine down) and from `load_recipe` on hypothesis-generated input."""

from __future__ import annotations

import os
import re
import resource
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlxtune.errors import MlxtuneError, RecipeError
from mlxtune.evaluate.questions import load_questions
from mlxtune.recipe import load_recipe
from mlxtune.recipe_schema import Recipe

BASE = "name: h\npapers: papers\nmodel: {tiny: {}}\n"
SECTIONS = list(Recipe.model_fields)


def laughs(indent: str = "  ") -> str:
    """The classic nine levels of nine aliases: 9**9 (387 million) strings once expanded."""
    rows = ["l0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    rows += [f"l{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    return "".join(f"{indent}{row}\n" for row in rows)


def flow_laughs() -> str:
    """The same bomb as one flow sequence (fits a command-line `a.b=c` value)."""
    levels = ["&a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    levels += [f"&a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    return f"[{', '.join(levels)}]"


def merge_laughs() -> str:
    rows = ["  m0: &m0 {a: 1, b: 2}"]
    rows += [
        f"  m{i}: &m{i} {{<<: [{', '.join([f'*m{i - 1}'] * 9)}], c{i}: 1}}" for i in range(1, 10)
    ]
    return "".join(row + "\n" for row in rows)


# name -> (file bytes, what the one error says)
CORPUS: dict[str, tuple[bytes, str]] = {
    "alias bomb in train": (
        (BASE + "train:\n" + laughs()).encode(),
        "its aliases expand to more than",
    ),
    "alias bomb in a list": (
        (BASE + "evaluate:\n  metrics:\n  - " + flow_laughs() + "\n").encode(),
        "its aliases expand to more than",
    ),
    "merge-key bomb": ((BASE + "ask:\n" + merge_laughs()).encode(), "its aliases expand"),
    "recursive alias": (
        (BASE + "train: &t {use: mlx, x: *t}\n").encode(),
        "at line 4: alias *t refers to the node that contains it",
    ),
    "binary": (bytes(range(256)) * 8, "at line 1: binary data, not YAML text"),
    "latin-1": ((BASE + "description: café\n").encode("latin-1"), "not UTF-8 text (byte 0xe9)"),
    "utf-16": ((BASE + "description: café\n").encode("utf-16"), "UTF-16 text; save"),
    "50,000 nested brackets": (
        (BASE + "description: " + "[" * 50_000 + "]" * 50_000 + "\n").encode(),
        "at line 4: nested deeper than 64 levels",
    ),
    "50,000 nested block lists": (
        (BASE + "description:\n" + "- " * 50_000 + "x\n").encode(),
        "nested deeper than 64 levels",
    ),
    "duplicate top-level key": (
        (BASE + "name: again\n").encode(),
        "at line 4: duplicate key 'name' (first at line 1)",
    ),
    "duplicate nested key": (
        (BASE + "train:\n  iters: 3\n  lora_rank: 8\n  iters: 30\n").encode(),
        "at line 7: duplicate key 'iters' (first at line 5)",
    ),
    "5,000-digit integer": (
        (BASE + "train: {iters: " + "9" * 5000 + "}\n").encode(),
        "at line 4: cannot read the value '9999",
    ),
    "NaN and infinity": (
        (BASE + "train: {learning_rate: .nan, iters: .inf}\n").encode(),
        "train.iters: input should be a finite number",
    ),
    "impossible date": (b"name: 2024-13-45\n", "cannot read the value '2024-13-45'"),
    "control character": ((BASE + "description: a\x07b\n").encode(), "character 0x7 is not"),
    "every section a list": (
        "".join(f"{s}: [1, [2]]\n" for s in SECTIONS).encode(),
        "\n  - track",
    ),
    "every section a mapping": (
        "".join(f"{s}: {{x: {{y: 1}}}}\n" for s in SECTIONS).encode(),
        "\n  - train.x: unknown key",
    ),
}


def _limits() -> None:
    """A child that goes wrong fails fast instead of eating the machine's memory."""
    resource.setrlimit(resource.RLIMIT_AS, (3 << 29, 3 << 29))  # 1.5 GiB; it needs ~350 MiB


def validate(path: Path, *overrides: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MLXTUNE_DISABLE_PLUGIN_AUTOLOAD": "1", "OPENBLAS_NUM_THREADS": "1"}
    env.pop("MLXTUNE_DEBUG", None)
    command = [sys.executable, "-m", "mlxtune", "recipe", "validate", str(path), *overrides]
    try:
        return subprocess.run(
            command,
            capture_output=True,
            text=True,
            errors="replace",
            cwd=path.parent,
            env=env,
            timeout=30,
            preexec_fn=_limits,
        )
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(command, -9, "", "timed out after 30 s")


def assert_one_clear_error(result: subprocess.CompletedProcess[str], path: Path, says: str):
    err = result.stderr
    assert result.returncode == 2, (result.returncode, err[-2000:])  # negative: a signal
    assert result.stdout == ""
    assert "Traceback" not in err and "unexpected" not in err
    lines = err.splitlines()
    assert lines[0].startswith(f"error: {path}: ") and lines[0].endswith(":"), lines[0]
    assert lines[1:] and all(line.startswith("  - ") and len(line) < 400 for line in lines[1:])
    assert says in err, err


# expanded, these take gigabytes: only ever loaded in a child process whose memory is capped
BOMBS = ["alias bomb in train", "alias bomb in a list", "merge-key bomb"]
# the CLI's handling, in real processes (each ~1 s of imports); the rest runs in-process too
IN_A_PROCESS = [
    *BOMBS,
    "binary",
    "utf-16",
    "50,000 nested brackets",
    "duplicate nested key",
    "5,000-digit integer",
    "every section a list",
]


def test_hostile_recipes_are_one_clear_error_from_the_cli(tmp_path):
    (tmp_path / "papers").mkdir()
    paths = {}
    for number, name in enumerate(IN_A_PROCESS):
        paths[name] = tmp_path / f"hostile{number}.yaml"
        paths[name].write_bytes(CORPUS[name][0])
    # extends: a base that is a bomb is named as the file at fault
    (tmp_path / "child.yaml").write_text("extends: hostile0.yaml\nname: c\n")
    paths["extends a bomb"] = tmp_path / "child.yaml"
    # `a.b=c` values go through the same loader
    (tmp_path / "ok.yaml").write_text(BASE)
    jobs = [(name, path, ()) for name, path in paths.items()]
    jobs += [
        ("override bomb", tmp_path / "ok.yaml", (f"evaluate.metrics={flow_laughs()}",)),
        ("ok", tmp_path / "ok.yaml", ()),
    ]
    with ThreadPoolExecutor(3) as pool:
        results = dict(
            zip(jobs, pool.map(lambda job: validate(job[1], *job[2]), jobs), strict=True)
        )
    ok = results.pop(jobs[-1])
    assert ok.returncode == 0 and "ok.yaml: ok" in ok.stdout, ok.stderr
    for (name, path, _), result in results.items():
        says = {
            "extends a bomb": f"{tmp_path / 'hostile0.yaml'}: 1 problem:",
            "override bomb": "override 'evaluate.metrics': invalid value: at line 1: its aliases",
        }.get(name) or CORPUS[name][1]
        where = tmp_path / "hostile0.yaml" if name == "extends a bomb" else path
        try:
            assert_one_clear_error(result, where, says)
        except AssertionError as exc:
            raise AssertionError(f"{name}: {exc}") from None


@pytest.mark.parametrize("name", [name for name in CORPUS if name not in BOMBS])
def test_hostile_recipes_raise_only_recipe_errors(tmp_path, name):
    (tmp_path / "papers").mkdir()
    path = tmp_path / "r.yaml"
    path.write_bytes(CORPUS[name][0])
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    assert CORPUS[name][1] in str(info.value)


@pytest.mark.parametrize("section", SECTIONS)
@pytest.mark.parametrize("value", ["[1, [2]]", "3.5", "{x: {y: 1}}", "true", "2024-01-01"])
def test_a_wrong_type_in_any_section_is_a_recipe_error_naming_it(tmp_path, section, value):
    (tmp_path / "papers").mkdir()
    path = tmp_path / "r.yaml"
    text = yaml.safe_load(BASE) | {section: "@"}  # the section last, whatever it is
    path.write_text(yaml.safe_dump(text).replace("'@'", value))
    with pytest.raises(RecipeError, match=rf"\n  - {section}[.:]"):
        load_recipe(path)


def test_hostile_override_values_are_problems_and_plain_text_still_works(tmp_path):
    (tmp_path / "papers").mkdir()
    (tmp_path / "r.yaml").write_text(BASE)
    for value, says in [  # (the bomb as a value: in the CLI test, in a capped process)
        ("[" * 30_000, "nested deeper than 64 levels"),
        ("9" * 5000, "cannot read the value '999"),
        ("a\udcffb", "the value is not UTF-8 text"),  # undecodable bytes in argv
    ]:
        with pytest.raises(RecipeError, match=f"override 'description': .*{re.escape(says)}"):
            load_recipe(tmp_path / "r.yaml", [f"description={value}"])
    recipe, _ = load_recipe(tmp_path / "r.yaml", ["description=[draft", "train.iters=0x10"])
    assert recipe.description == "[draft" and recipe.component("train")["iters"] == 16


def test_anchors_merge_keys_and_extends_still_work(tmp_path):
    (tmp_path / "papers").mkdir()
    (tmp_path / "base.yaml").write_text(
        BASE + "split: {per_category: {valid: &one 1, test: *one}}\n"
    )
    (tmp_path / "r.yaml").write_text(
        "extends: base.yaml\ntrain: {<<: {use: mlx, iters: 7, lora_rank: 4}, iters: 9}\n"
    )
    recipe, _ = load_recipe(tmp_path / "r.yaml")
    assert (recipe.split.per_category.valid, recipe.split.per_category.test) == (1, 1)
    assert recipe.component("train")["iters"] == 9  # a key beside a merge is no duplicate
    assert recipe.component("train")["lora_rank"] == 4


def test_limits_of_the_loader_itself():
    from mlxtune.safe_yaml import MAX_BYTES, YamlProblem, load_yaml_bytes

    with pytest.raises(YamlProblem, match="too large"):
        load_yaml_bytes(b"#" * (MAX_BYTES + 1))
    assert load_yaml_bytes("\ufeffname: é\n".encode()) == {"name": "é"}  # a UTF-8 BOM is fine
    assert load_yaml_bytes(b"a: &x 1\nb: *x\n") == {"a": 1, "b": 1}
    with pytest.raises(YamlProblem, match="more than 100 aliases"):
        load_yaml_bytes(("a: &x 1\nb: [" + ", ".join(["*x"] * 101) + "]\n").encode())


def test_a_hostile_questions_file_is_one_error_naming_it(tmp_path):
    path = tmp_path / "q.yaml"
    for text, says in [
        ("questions:\n" + laughs(), "its aliases expand"),
        ("questions:\n- {question: a, kind: custom, kind: recall}\n", "duplicate key 'kind'"),
        ("questions: " + "[" * 50_000, "nested deeper than 64"),
    ]:
        path.write_text(text)
        with pytest.raises(MlxtuneError, match=f"questions file {path}: invalid YAML.*{says}"):
            load_questions(path)


YAMLISH = st.sampled_from(
    ["name", "papers", "model", "tiny", "train", "iters", "use", "track", "extends", "&a", "*a",
     "&b", "*b", "<<", "!!binary", "!!set", "!!int", "!!float", "!!timestamp", "!!python/none",
     "? ", "---", "...", "%YAML 1.1", "~", ".nan", "-.inf", "0x1F", "1e999", "2024-13-45", "yes",
     "\\0", "\udcff", "\x85", "\ufeff", "é", "\t", "'", '"', "|", ">", "#", ":", "-", "[", "]",
     "{", "}", ",", " ", "\n", "  "]
)  # fmt: skip
TEXTS = st.lists(st.one_of(YAMLISH, st.text(max_size=3)), max_size=60).map("".join)
VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=12)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(
            st.sampled_from([*SECTIONS, "use", "iters", "tiny", "x"]), inner, max_size=3
        ),
    ),
    max_leaves=12,
)
FILES = st.one_of(
    TEXTS.map(lambda text: text.encode("utf-8", "surrogatepass")),
    st.binary(max_size=120),
    st.dictionaries(st.sampled_from([*SECTIONS, "extends"]), VALUES, max_size=6).map(
        lambda data: yaml.safe_dump(data).encode()
    ),
)
OVERRIDES = st.lists(
    st.tuples(
        st.sampled_from(["train.iters", "name", "model.tiny", "papers", "track", ""]), TEXTS
    ).map("=".join),
    max_size=2,
)


@settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=FILES, overrides=OVERRIDES)
def test_any_file_and_override_give_a_recipe_or_a_recipe_error(tmp_path, data, overrides):
    (tmp_path / "papers").mkdir(exist_ok=True)
    path = tmp_path / "r.yaml"
    path.write_bytes(data)
    try:
        load_recipe(path, overrides)
    except RecipeError as exc:
        assert all(len(line) < 2000 for line in str(exc).splitlines())
