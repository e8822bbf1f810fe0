"""Odd papers folders and out-of-range recipes (issue 24): unreadable files, symbolic links
(to folders, out of the folder, dangling, in loops), FIFOs and sockets, tiny models too large to
build, run directories that cannot be created, an empty `papers`. Every case is a real file or
a real failure; none stops the run with a traceback."""

from __future__ import annotations

import json
import os
import resource
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import write_recipe
from pdfgen import paper_text, write_paper

from mlxtune.cli import cli
from mlxtune.errors import RecipeError
from mlxtune.extract.pool import Job, extract_one
from mlxtune.extract.text_extractor import TextExtractor
from mlxtune.recipe import load_recipe
from mlxtune.records import read_jsonl

RECIPE = """\
name: walk
papers: papers
run_dir: run
model: {{tiny: {{}}}}
extract: {{use: pypdf, workers: 1, timeout: 0{extra}}}
summarize: {{use: heuristic}}
"""


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, " ".join(result.output.split())


def recipe(tmp_path: Path, extra: str = "") -> Path:
    return write_recipe(tmp_path / "r.yaml", RECIPE.format(extra=extra))


def two_categories(root: Path, names: tuple[str, str] = ("vision", "language")) -> None:
    for category in names:
        for n in range(2):
            topic = f"{category} topic {n}"
            write_paper(
                root / category / f"p{n}.pdf", f"Learning {topic.title()}", paper_text(topic, n)
            )


def documents(tmp_path: Path) -> dict[str, dict]:
    """documents.jsonl by path relative to the papers folder."""
    papers = tmp_path / "papers"
    return {
        str(Path(d["path"]).relative_to(papers)): d
        for d in read_jsonl(tmp_path / "run" / "documents.jsonl")
    }


# ---------------------------------------------------------------- unreadable papers


def unreadable_paper(path: Path) -> Path:
    """A paper `open()` refuses to this user: `chmod 000` (the issue's case) for a user; for
    root, who reads any mode, a link to a /proc file that refuses reading even to root."""
    if os.geteuid() != 0:
        write_paper(path, "A Locked Paper", paper_text("locks"))
        path.chmod(0)
        return path
    target = Path("/proc/sys/vm/drop_caches")  # mode 0200: write-only, for root too
    try:
        target.open("rb").close()
    except PermissionError:
        path.symlink_to(target)
        return path
    except OSError:
        pass
    pytest.skip("no file here refuses reading to root")


def test_an_unreadable_paper_is_skipped_and_the_run_goes_on(tmp_path):
    papers = tmp_path / "papers"
    two_categories(papers)
    locked = unreadable_paper(papers / "vision" / "locked.pdf")
    if Path("/proc/self/mem").exists():  # opens, then every read fails: EIO
        (papers / "language" / "memory.txt").symlink_to("/proc/self/mem")
    r = recipe(tmp_path, ", follow_outside: true")  # root's unreadable file is a link out
    try:
        code, out = run("recipe", "run", str(r), "--until", "summarize")
        assert code == 0, out
        assert "skipped vision/locked.pdf: unreadable file: Permission denied" in out
        docs = documents(tmp_path)
        assert docs["vision/locked.pdf"]["status"] == "skipped"
        assert docs["vision/locked.pdf"]["problem"] == "unreadable"
        if "language/memory.txt" in docs:
            assert docs["language/memory.txt"]["problem"] == "unreadable"
            assert "Input/output error" in docs["language/memory.txt"]["reason"]
        assert sum(d["status"] == "ok" for d in docs.values()) == 4
        assert "4 pairs from 4 papers" in out
        # made readable, the paper is read on the next run (an unreadable file is not cached)
        locked.unlink()
        write_paper(locked, "A Paper Unlocked At Last", paper_text("keys"))
        code, out = run("recipe", "run", str(r), "--until", "extract")
        assert code == 0 and documents(tmp_path)["vision/locked.pdf"]["status"] == "ok", out
    finally:
        if locked.exists() and not locked.is_symlink():
            locked.chmod(0o644)


def unreadable_folder(path: Path) -> Path:
    """A folder this user cannot list: `chmod 000`, or for root a /proc folder that refuses
    listing even to root (another namespace's process)."""
    if os.geteuid() != 0:
        path.mkdir(parents=True)
        path.chmod(0)
        return path
    for target in ("/proc/1/root", "/proc/1/map_files", "/proc/1/fd"):
        try:
            os.listdir(target)
        except PermissionError:
            path.symlink_to(target)
            return path
        except OSError:
            continue
    pytest.skip("no folder here refuses listing to root")


def test_an_unreadable_folder_is_skipped_and_the_run_goes_on(tmp_path):
    papers = tmp_path / "papers"
    two_categories(papers)
    locked = unreadable_folder(papers / "vision" / "private")
    try:
        r = recipe(tmp_path, ", follow_outside: true")
        code, out = run("recipe", "run", str(r), "--until", "extract")
    finally:
        if not locked.is_symlink():
            locked.chmod(0o755)
    assert code == 0, out
    assert "4 extracted in 2 categories; 1 skipped (1 unreadable)" in out
    record = documents(tmp_path)["vision/private"]
    assert record["status"] == "skipped" and record["reason"].startswith("unreadable")
    assert "Permission denied" in record["reason"]


@pytest.mark.skipif(not Path("/proc/self/mem").exists(), reason="needs Linux's /proc")
def test_a_read_error_during_extraction_is_a_skip_not_a_crash():
    doc = extract_one(Job(0, TextExtractor(), Path("/proc/self/mem"), "c"))
    assert (doc.status, doc.problem) == ("skipped", "unreadable")
    assert doc.reason == "unreadable file: Input/output error" and doc.id


# ---------------------------------------------------------------- symbolic links


def test_linked_category_folders_are_read_when_allowed_and_named_when_not(tmp_path):
    elsewhere = tmp_path / "library"
    two_categories(elsewhere)
    papers = tmp_path / "papers"
    papers.mkdir()
    for category in ("vision", "language"):
        (papers / category).symlink_to(elsewhere / category)
    (elsewhere / "vision" / "back").symlink_to(papers)  # a loop through both folders

    code, out = run("recipe", "run", str(recipe(tmp_path)), "--until", "extract")
    assert code == 2, out
    assert "no papers (.markdown, .md, .pdf, .txt) found under" in out
    assert "language: link to a folder outside the papers folder" in out
    assert "set extract.follow_outside: true to read it" in out

    code, out = run(
        "recipe", "run", str(recipe(tmp_path, ", follow_outside: true")), "--until", "extract"
    )
    assert code == 0, out
    assert "5 files: 4 extracted in 2 categories; 1 skipped (1 link-loop)" in out
    docs = documents(tmp_path)
    assert docs["vision/p1.pdf"]["category"] == "vision" and docs["vision/p1.pdf"]["status"] == "ok"
    assert docs["vision/back"]["reason"] == "link to a folder above it (the papers folder)"


def test_links_inside_the_folder_are_followed_once(tmp_path):
    papers = tmp_path / "papers"
    two_categories(papers)
    (papers / "also-vision").symlink_to("vision")  # sorted first: the real folder still wins
    (papers / "language" / "up").symlink_to("..")
    (papers / "language" / "again.pdf").symlink_to("p0.pdf")
    code, out = run("recipe", "run", str(recipe(tmp_path)), "--until", "extract")
    assert code == 0, out
    docs = documents(tmp_path)
    assert docs["vision/p0.pdf"]["status"] == "ok"
    assert docs["also-vision"]["problem"] == "duplicate"
    assert docs["also-vision"]["reason"] == "folder already read as vision"
    assert docs["language/up"]["problem"] == "link-loop"
    assert docs["language/again.pdf"]["problem"] == "duplicate"  # read, then the same bytes
    assert "7 files: 4 extracted in 2 categories; 3 skipped (2 duplicate, 1 link-loop)" in out


def test_odd_entries_are_recorded_never_opened_and_outside_files_kept_out(tmp_path, monkeypatch):
    papers = tmp_path / "papers"
    two_categories(papers)
    odd = papers / "vision"
    (odd / "gone.pdf").symlink_to("deleted.pdf")
    (papers / "history").symlink_to(tmp_path / "unmounted" / "history")  # a lost category
    os.mkfifo(odd / "pipe.pdf")  # opening it would block the run forever
    (odd / "passwd.txt").symlink_to("/etc/passwd")
    monkeypatch.chdir(odd)  # a socket's path must be short: bind it by its relative name
    server = socket.socket(socket.AF_UNIX)
    server.bind("sock.pdf")
    try:
        r = recipe(tmp_path)
        # a subprocess with a time limit: if the FIFO were opened, the run would hang
        result = subprocess.run(
            [sys.executable, "-m", "mlxtune", "recipe", "run", str(r), "--until", "extract"],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "MLXTUNE_DISABLE_PLUGIN_AUTOLOAD": "1"},
        )
    finally:
        server.close()
    out = " ".join((result.stdout + result.stderr).split())
    assert result.returncode == 0, out
    docs = documents(tmp_path)
    skipped = {rel: (d["status"], d["problem"]) for rel, d in docs.items() if d["status"] != "ok"}
    assert skipped == {
        "vision/gone.pdf": ("skipped", "dangling-link"),
        "history": ("skipped", "dangling-link"),
        "vision/pipe.pdf": ("skipped", "special"),
        "vision/sock.pdf": ("skipped", "special"),
        "vision/passwd.txt": ("skipped", "outside"),
    }
    assert docs["vision/gone.pdf"]["reason"] == "dangling link to deleted.pdf"
    assert docs["vision/pipe.pdf"]["reason"] == "named pipe (FIFO), not a file: not opened"
    assert docs["vision/sock.pdf"]["reason"] == "socket, not a file: not opened"
    assert "(/etc/passwd); set extract.follow_outside: true" in docs["vision/passwd.txt"]["reason"]
    assert "root:" not in (tmp_path / "run" / "documents.jsonl").read_text()
    assert "9 files: 4 extracted in 2 categories; 5 skipped" in out
    assert len({d["id"] for d in docs.values()}) == 9  # skipped records are told apart


# ---------------------------------------------------------------- recipes out of range


def problems(tmp_path: Path, *overrides: str) -> list[str]:
    (tmp_path / "papers").mkdir(exist_ok=True)
    with pytest.raises(RecipeError) as info:
        load_recipe(recipe(tmp_path), list(overrides))
    return info.value.problems


def test_an_empty_papers_value_is_refused_not_the_current_folder(tmp_path, monkeypatch):
    (tmp_path / "diary.txt").write_text("Dear diary, today I fine-tuned a model on my notes.\n")
    monkeypatch.chdir(tmp_path)
    assert problems(tmp_path, "papers=") == [
        "papers: must name a folder (e.g. papers: ~/papers), not be empty (got '') [command line]"
    ]


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        (
            "model.tiny.hidden_size=1000000000",
            "model.tiny.hidden_size: input should be less than or equal to 8192",
        ),
        (
            "model.tiny.vocab_size=10000000",
            "model.tiny.vocab_size: input should be less than or equal to 262144",
        ),
        (
            "model.tiny.num_layers=1000",
            "model.tiny.num_layers: input should be less than or equal to 128",
        ),
        (
            "model.tiny={hidden_size: 8192, num_heads: 64, num_kv_heads: 8, num_layers: 64, "
            "intermediate_size: 32768}",
            "model.tiny: 61.2 billion parameters, 245 gigabytes of float32 weights; the tiny "
            "model takes at most 1 billion",
        ),
        ("model.tiny.num_kv_heads=3", "model.tiny: num_kv_heads (3) must divide num_heads (4)"),
        (
            "model.tiny.hidden_size=60",
            "model.tiny: hidden_size (60) must be num_heads (4) times an even head size",
        ),
    ],
)
def test_tiny_model_sizes_are_bounded_when_the_recipe_loads(tmp_path, override, expected):
    found = problems(tmp_path, override)
    assert len(found) == 1 and found[0].startswith(expected), found


def test_a_failed_tiny_model_build_leaves_no_partial_folder(tmp_path):
    two_categories(tmp_path / "papers")
    r = recipe(tmp_path)
    code, out = run("recipe", "run", str(r), "--until", "summarize")
    assert code == 0, out

    def small_files() -> None:  # a full disk, for this process only: writes past 200 kB fail
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))

    result = subprocess.run(
        [sys.executable, "-m", "mlxtune", "recipe", "run", str(r), "--only", "model"],
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=small_files,
        env={**os.environ, "MLXTUNE_DISABLE_PLUGIN_AUTOLOAD": "1"},
    )
    out = " ".join((result.stdout + result.stderr).split())
    assert result.returncode == 2, out
    assert "could not build the tiny model in" in out and "nothing was kept" in out, out
    assert "Traceback" not in out
    assert not (tmp_path / "run" / "model.partial").exists()
    assert not (tmp_path / "run" / "model").exists()
    assert "model" not in json.loads((tmp_path / "run" / "manifest.json").read_text())["stages"]


@pytest.mark.parametrize("where", ["/proc/x", "a file"])
def test_a_run_dir_that_cannot_be_made_is_one_clear_error(tmp_path, where):
    two_categories(tmp_path / "papers")
    if where == "a file":
        where = str(tmp_path / "notes.txt")
        Path(where).write_text("not a folder\n")
    elif not Path("/proc").is_dir():
        pytest.skip("needs /proc")
    code, out = run(
        "recipe", "run", str(recipe(tmp_path)), f"run_dir={where}", "--until", "extract"
    )
    assert code == 2, out
    assert out.startswith("error: run_dir: ") and where in out, out
    assert "set run_dir to a folder you can write to" in out and "unexpected" not in out
