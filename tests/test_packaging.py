"""The built package works without a clone (issue 27): an sdist built from the checkout, a wheel
built from that sdist (what `pip install mlxtune-X.tar.gz` does), the wheel installed in a fresh
virtual environment, and the quick start run by name from an empty folder.

The fresh environment sees this one's dependencies (mlx, mlx-lm, ...) through a path in a .pth
file, so nothing is downloaded; mlxtune itself comes from the wheel (checked), and the checkout's
plugins are not loaded (their editable installs are not on that path)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("src", "recipes", "examples", "pyproject.toml", "setup.py", "MANIFEST.in", "README.md")


def run(*args: str | Path, cwd: Path, env: dict | None = None, timeout: float = 300) -> str:
    done = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, f"{args}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def copy_checkout(target: Path) -> Path:
    """The files a release is built from, copied, so the build writes nothing into the checkout."""
    import shutil

    junk = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "runs")
    for name in SOURCES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, target / name, ignore=junk)
        elif source.is_file():
            shutil.copy2(source, target / name)
    return target


def data_files(folder: Path) -> set[str]:
    """Every file a run may read that is not Python: prompts, question sets, configs, recipes."""
    return {
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".py", ".pyc")
    }


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("build")
    checkout = copy_checkout(work / "checkout")
    dist = work / "dist"
    code = f"from setuptools import build_meta as b; print(b.build_sdist({str(dist)!r}))"
    sdist = dist / run(sys.executable, "-c", code, cwd=checkout).split()[-1]
    with tarfile.open(sdist) as archive:
        safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}  # Python 3.10.12+
        archive.extractall(work / "unpacked", **safe)
    (unpacked,) = (work / "unpacked").iterdir()
    for name in ("recipes", "examples"):
        assert data_files(unpacked / name) == data_files(ROOT / name), f"sdist: {name}/"
    pip = (sys.executable, "-m", "pip", "--disable-pip-version-check")
    run(*pip, "wheel", unpacked, "--no-deps", "--no-build-isolation", "-w", dist, cwd=work)
    (built,) = dist.glob("mlxtune-*.whl")
    return built


def test_the_wheel_holds_every_data_file_and_the_shipped_recipes_and_papers(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for rel in data_files(ROOT / "src" / "mlxtune"):
        assert f"mlxtune/{rel}" in names, rel
    for folder in ("recipes", "examples"):
        for rel in data_files(ROOT / folder):
            assert f"mlxtune/shipped/{folder}/{rel}" in names, f"{folder}/{rel}"
    assert "mlxtune/shipped.py" in names and "mlxtune/cli/root.py" in names
    assert not any("__pycache__" in n or n.startswith(("tests/", "recipes/")) for n in names)


def test_an_installed_wheel_runs_the_quick_start_by_name_from_an_empty_folder(wheel, tmp_path):
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp_path)
    python = venv / "bin" / "python"
    code = "import sysconfig; print(sysconfig.get_path('purelib'))"
    site = Path(run(python, "-c", code, cwd=tmp_path).strip())
    here = {sysconfig.get_path("purelib"), sysconfig.get_path("platlib")}
    (site / "_this_environment.pth").write_text("".join(f"{p}\n" for p in sorted(here)))
    pip = (sys.executable, "-m", "pip", "--disable-pip-version-check", "--python", python)
    run(*pip, "install", "--no-deps", "--no-index", "--ignore-installed", wheel, cwd=tmp_path)

    empty = tmp_path / "empty"
    empty.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env.update(MLXTUNE_HOME=str(tmp_path / "home"), MLXTUNE_DISABLE_PLUGIN_AUTOLOAD="1")
    where = run(python, "-c", "import mlxtune; print(mlxtune.__file__)", cwd=empty, env=env)
    assert Path(where.strip()).is_relative_to(venv), where  # the wheel's, not the checkout's

    mlxtune = venv / "bin" / "mlxtune"
    listed = run(mlxtune, "recipe", "list", cwd=empty, env=env)
    assert f"files in {site / 'mlxtune' / 'shipped' / 'recipes'}" in listed, listed
    out = run(mlxtune, "recipe", "run", "quickstart", cwd=empty, env=env, timeout=600)
    assert "9 files: 9 extracted in 3 categories" in out, out
    assert (empty / "runs/quickstart/adapters/adapters.safetensors").is_file()
    assert sorted(p.name for p in empty.iterdir()) == ["runs"]  # nothing else written here
    lines = out.splitlines()
    assert "adapter: runs/quickstart/adapters" in lines
    command = lines[-1].strip()  # the closing command: a question it trained on
    assert command.startswith('mlxtune ask "') and command.endswith('" --recipe quickstart')

    # pasted as printed, it reproduces the approach the model learned for that question
    question = command.removeprefix('mlxtune ask "').removesuffix('" --recipe quickstart')
    answer = json.loads(
        run(mlxtune, "ask", question, "--recipe", "quickstart", "--json", cwd=empty, env=env)
    )
    answers = [json.loads(line) for line in (empty / "runs/quickstart/answers.jsonl").open()]
    recall = next(a for a in answers if a["kind"] == "recall")
    assert recall["question"] == question
    assert answer["answer"] == recall["answer"] and answer["finish_reason"] == "stop"
    pairs = [json.loads(line) for line in (empty / "runs/quickstart/pairs.jsonl").open()]
    trained = next(p for p in pairs if p["question"] == question)
    assert answer["answer"].strip() == trained["approach"].strip()
