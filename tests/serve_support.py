"""`mlxtune serve` as a user starts it: its own process, the installed entry point, the port
read from the line it prints. Nothing generates in the test's process before a request."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

MLXTUNE = str(Path(sys.executable).with_name("mlxtune"))


def command_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "MLXTUNE_API_KEY"}
    env.update(extra)
    return env


@contextmanager
def serving(
    *args: str, env: dict[str, str] | None = None, timeout: float = 180, cwd: Path | None = None
):
    """Start `mlxtune serve ARGS --port 0`; yield (base url, process); always stop it."""
    process = subprocess.Popen(
        [MLXTUNE, "serve", *args, "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env or command_env(),
        cwd=cwd,
    )
    try:
        deadline = time.monotonic() + timeout
        line = ""
        while time.monotonic() < deadline:
            line = process.stdout.readline()  # type: ignore[union-attr]
            if not line and process.poll() is not None:
                raise AssertionError(f"serve exited {process.returncode}: {process.stderr.read()}")  # type: ignore[union-attr]
            if match := re.search(r"at (http://\S+/v1)", line):
                yield match.group(1), process
                return
        raise AssertionError(f"serve printed no address in {timeout} s: {line!r}")
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def ask_json(*args: str, cwd: Path | None = None) -> dict:
    """What `mlxtune ask --json` answers, in its own process."""
    done = subprocess.run(
        [MLXTUNE, "ask", *args, "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        env=command_env(),
        cwd=cwd,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def recipe_run(folder: Path, *overrides: str) -> subprocess.CompletedProcess:
    """`mlxtune recipe run recipes/quickstart.yaml [overrides]` in its own process in `folder`."""
    done = subprocess.run(
        [MLXTUNE, "recipe", "run", "recipes/quickstart.yaml", *overrides],
        capture_output=True,
        text=True,
        timeout=600,
        env=command_env(),
        cwd=folder,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return done


def quickstart(folder: Path, *overrides: str) -> Path:
    """The README's quick start in `folder`: its recipes and sample papers, then
    `mlxtune recipe run recipes/quickstart.yaml` (a tiny model with a trained adapter)."""
    import shutil

    root = Path(__file__).resolve().parents[1]
    for name in ("recipes", "examples"):
        shutil.copytree(root / name, folder / name)
    recipe_run(folder, *overrides)
    return folder


def post(
    url: str, body: object, timeout: float = 120, headers: dict | None = None
) -> tuple[int, dict]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data, {"Content-Type": "application/json", **(headers or {})}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, _json(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, _json(exc.read())


def _json(raw: bytes) -> dict:
    try:
        return json.loads(raw)
    except ValueError:
        return {"raw": raw.decode(errors="replace")}


def raw_request(base: str, head: bytes, body: bytes = b"", wait: float = 30) -> bytes:
    """Send bytes as they are (a lying Content-Length, a huge header) and read the reply."""
    host, port = re.match(r"http://([^:/]+):(\d+)", base).groups()  # type: ignore[union-attr]
    with socket.create_connection((host, int(port)), timeout=wait) as sock:
        sock.sendall(head + body)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not chunk:
                break
            chunks.append(chunk)
            if b"\r\n\r\n" in b"".join(chunks) and b'"error"' in b"".join(chunks):
                break
        return b"".join(chunks)


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0
