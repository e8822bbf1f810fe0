"""Extraction across worker processes, with a time limit per document.

`concurrent.futures` cannot stop one stuck task, and some PDFs make pure-Python parsers spin for
minutes; so this is a small pool of our own: each worker is a process we can kill and replace,
and a document that runs past its limit (or kills its worker) is recorded as failed with the
reason, while the other workers carry on.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from ..components import Extractor
from ..records import Document, sha256_bytes, sha256_file


@dataclass
class Job:
    index: int
    extractor: Extractor
    path: Path
    category: str


Done = Callable[[Job, Document], None]


def extract_one(job: Job) -> Document:
    """Run one extractor in this process; an unexpected exception becomes a failed document
    (a skipped one when the file itself cannot be read: permissions, I/O errors)."""
    try:
        return job.extractor.extract(job.path, job.category)
    except Exception as exc:  # a bug or an odd file in a plugin must not stop a 1,000-paper run
        unreadable = _unreadable(job.path)
        if unreadable:  # the file's fault (permissions, I/O), not the extractor's
            return Document(
                id=sha256_bytes(f"unreadable: {job.path}".encode()),
                path=str(job.path),
                category=job.category,
                status="skipped",
                problem="unreadable",
                reason=f"unreadable file: {unreadable}",
            )
        return failed_document(job, "crashed", f"extractor error ({type(exc).__name__}: {exc})")


def _unreadable(path: Path) -> str:
    """Why the file cannot be read through ("" when it can)."""
    try:
        sha256_file(path)
    except OSError as exc:
        return exc.strerror or str(exc)
    return ""


def failed_document(job: Job, problem: str, reason: str) -> Document:
    try:
        doc_id = sha256_file(job.path)
    except OSError:
        doc_id = ""
    return Document(
        id=doc_id,
        path=str(job.path),
        category=job.category,
        status="failed",
        reason=reason,
        problem=problem,
    )


def _worker_main(conn: Connection) -> None:
    while True:
        try:
            job = conn.recv()
        except EOFError:
            return
        if job is None:
            return
        conn.send((job.index, asdict(extract_one(job))))


@dataclass
class _Worker:
    process: Any
    conn: Connection
    job: Job | None = None
    started: float = 0.0


class ExtractionPool:
    """`workers` processes; `timeout` seconds per document (0 = no limit)."""

    def __init__(self, workers: int, timeout: float):
        self.workers = max(1, workers)
        self.timeout = timeout
        # spawn: the same behaviour on Linux and macOS, and no fork of a threaded parent
        self._ctx = multiprocessing.get_context("spawn")

    def run(self, jobs: Sequence[Job], done: Done) -> None:
        pending = list(reversed(jobs))
        pool = [self._start() for _ in range(min(self.workers, len(jobs)))]
        try:
            while pending or any(w.job for w in pool):
                for worker in pool:
                    if worker.job is None and pending:
                        self._assign(worker, pending.pop())
                busy = [w for w in pool if w.job is not None]
                ready = wait([w.conn for w in busy], timeout=self._wait_time(busy))
                for worker in busy:
                    if worker.conn in ready:
                        self._collect(pool, worker, done)
                    elif self.timeout and time.monotonic() - worker.started > self.timeout:
                        job = worker.job
                        self._replace(pool, worker)
                        assert job is not None
                        done(job, failed_document(job, "timeout", self._timeout_reason()))
        finally:
            for worker in pool:
                self._stop(worker)

    def _timeout_reason(self) -> str:
        return f"timed out after {self.timeout:g}s (raise extract.timeout, or lower max_pages)"

    def _wait_time(self, busy: list[_Worker]) -> float | None:
        if not self.timeout:
            return None
        now = time.monotonic()
        return max(0.0, min(w.started + self.timeout - now for w in busy)) + 0.01

    def _collect(self, pool: list[_Worker], worker: _Worker, done: Done) -> None:
        job = worker.job
        assert job is not None
        try:
            index, fields = worker.conn.recv()
        except (EOFError, OSError):  # the worker died: segfault, out of memory, killed
            worker.process.join(1)
            code = worker.process.exitcode
            self._replace(pool, worker)
            done(job, failed_document(job, "crashed", f"extractor process died (exit {code})"))
            return
        worker.job = None
        done(job, Document(**fields))

    def _assign(self, worker: _Worker, job: Job) -> None:
        worker.job, worker.started = job, time.monotonic()
        worker.conn.send(job)

    def _start(self) -> _Worker:
        parent, child = self._ctx.Pipe()
        process = self._ctx.Process(target=_worker_main, args=(child,), daemon=True)
        process.start()
        child.close()
        return _Worker(process, parent)

    def _replace(self, pool: list[_Worker], worker: _Worker) -> None:
        worker.process.kill()
        worker.process.join(5)
        worker.conn.close()
        pool[pool.index(worker)] = self._start()

    def _stop(self, worker: _Worker) -> None:
        with contextlib.suppress(OSError, ValueError):
            worker.conn.send(None)
        worker.process.join(2)
        if worker.process.is_alive():
            worker.process.kill()
            worker.process.join(2)
        worker.conn.close()


def runs_in_subprocess(extractor: Extractor) -> bool:
    """Loose plugin files (`plugins_dir`) are not importable by name in a fresh process."""
    return not type(extractor).__module__.startswith("mlxtune_plugins_dir.")


def extract_all(jobs: Sequence[Job], workers: int, timeout: float, done: Done) -> None:
    """Extract every job, calling `done(job, document)` as each finishes (in any order)."""
    local = [j for j in jobs if not runs_in_subprocess(j.extractor)]
    remote = [j for j in jobs if runs_in_subprocess(j.extractor)]
    for job in local:
        done(job, extract_one(job))
    if not remote:
        return
    if workers == 1 and not timeout:
        for job in remote:
            done(job, extract_one(job))
        return
    ExtractionPool(workers, timeout).run(remote, done)
