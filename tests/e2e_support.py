"""Helpers for tests/test_e2e.py: the installed `mlxtune` command run as a user runs it (its own
process, a fresh folder holding copies of recipes/ and examples/), and `mlxtune serve` started in
the background, waited for and always stopped."""

from __future__ import annotations

import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MLXTUNE = Path(sys.executable).with_name("mlxtune")
SERVING = re.compile(r"serving (\S+) at (http://\S+/v1)")


def user_folder(folder: Path) -> Path:
    """A folder laid out as the README expects: recipes/ and examples/ beside each other."""
    for name in ("recipes", "examples"):
        shutil.copytree(ROOT / name, folder / name)
    return folder


def user_env(home: Path) -> dict[str, str]:
    """The user's environment: installed plugins load (the test suite's autouse fixture turns
    that off for in-process tests), imported models go to a scratch MLXTUNE_HOME."""
    env = dict(os.environ)
    env.pop("MLXTUNE_DISABLE_PLUGIN_AUTOLOAD", None)
    env["MLXTUNE_HOME"] = str(home)
    return env


@dataclass
class User:
    """Types `mlxtune ...` in `folder` with `env`."""

    folder: Path
    env: dict[str, str]

    def run(
        self, *args: str, input: str | None = None, timeout: float = 300, ok: bool = True
    ) -> subprocess.CompletedProcess:
        """One command; with `ok`, its exit status must be 0 (the output is in the message)."""
        done = subprocess.run(
            [str(MLXTUNE), *args],
            cwd=self.folder,
            env=self.env,
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if ok:
            assert done.returncode == 0, described(args, done)
        return done


def described(args: tuple[str, ...], done: subprocess.CompletedProcess) -> str:
    return (
        f"`mlxtune {' '.join(args)}` exited {done.returncode}\n"
        f"--- stdout\n{done.stdout[-4000:]}\n--- stderr\n{done.stderr[-4000:]}"
    )


@dataclass
class Served:
    name: str
    base_url: str
    process: subprocess.Popen
    stdout: list[str]
    stderr_path: Path
    reader: threading.Thread

    def output(self) -> str:
        return "".join(self.stdout) + "\n--- stderr\n" + self.stderr_path.read_text()

    def ended(self, timeout: float = 60) -> int:
        """Wait for the process to exit and its stdout to be read; its exit status."""
        code = self.process.wait(timeout=timeout)
        self.reader.join(timeout=timeout)
        return code


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@contextmanager
def serving(user: User, *args: str, startup: float = 180) -> Iterator[Served]:
    """`mlxtune serve ARGS --port 0` in the background: waits for its "serving NAME at URL"
    line (the port is read from it), yields, and stops the process whatever happened."""
    stderr_path = user.folder / f"serve-{time.monotonic_ns()}.stderr"
    with open(stderr_path, "w") as stderr:
        process = subprocess.Popen(
            [str(MLXTUNE), "serve", *args, "--port", "0"],
            cwd=user.folder,
            env=user.env,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            # as typed in a terminal: a shell runs background jobs (a CI script started with `&`)
            # with SIGINT ignored, and Python then never turns Ctrl-C into KeyboardInterrupt
            preexec_fn=_default_sigint,
        )
    lines: queue.Queue[str | None] = queue.Queue()
    seen: list[str] = []

    def pump() -> None:  # keeps reading, so a chatty server never blocks on a full pipe
        assert process.stdout is not None
        for line in process.stdout:
            seen.append(line)
            lines.put(line)
        lines.put(None)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        served = None
        deadline = time.monotonic() + startup
        while served is None:
            left = deadline - time.monotonic()
            try:
                line = lines.get(timeout=max(left, 0.01))
            except queue.Empty:
                line = None
                left = 0
            if line is None:
                why = "exited" if process.poll() is not None else f"printed nothing in {startup}s"
                raise AssertionError(
                    f"`mlxtune serve {' '.join(args)}` {why} before its serving line\n"
                    + "".join(seen)
                    + "\n--- stderr\n"
                    + stderr_path.read_text()
                )
            match = SERVING.search(line)
            if match:
                served = Served(match[1], match[2], process, seen, stderr_path, reader)
        yield served
    finally:
        stop(process)


def stop(process: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)
