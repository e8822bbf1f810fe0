"""The one thread that owns the model: it loads it and runs every generation, in order.

MLX arrays are lazy and its streams belong to the thread that created them: weights loaded in
one thread and first evaluated in another fail ("There is no Stream(cpu, 0) in current thread",
mlx 0.32). mlx-lm's own server keeps one generation thread for the same reason. Request threads
only queue jobs and read the pieces back, so any number of clients wait without touching MLX.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ..asking import Session
from ..components import Sampling
from ..records import Example


@dataclass
class Finished:
    """The end of a job: why the answer ended and the backend's token counts."""

    reason: str
    stats: dict[str, float]


@dataclass
class Job:
    """One answer to generate; its pieces, then a `Finished` (or the exception), arrive on
    `out`. `cancel()` stops it between two pieces (a client that left, a stop string)."""

    prompt: Example
    sampling: Sampling
    json_schema: dict[str, Any] | None = None
    out: queue.Queue = field(default_factory=queue.Queue)
    cancelled: threading.Event = field(default_factory=threading.Event)
    finished: Finished | None = None

    def cancel(self) -> None:
        self.cancelled.set()

    def pieces(self) -> Iterator[str]:
        """The answer's text pieces as they come; then `finished` is set. An exception raised
        by the backend is raised here, in the request's thread."""
        while True:
            item = self.out.get()
            if isinstance(item, Finished):
                self.finished = item
                return
            if isinstance(item, BaseException):
                raise item
            yield item


class GenerationWorker:
    """Loads the session with `load` in its own thread, then answers queued jobs one at a
    time (one model, one answer at a time; none is dropped)."""

    def __init__(self, load: Callable[[], Session]):
        self._load = load
        self.jobs: queue.Queue[Job | None] = queue.Queue()
        self.session: Session | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._stopping = threading.Event()  # Ctrl-C: queued and running jobs end at once
        self.thread = threading.Thread(target=self._run, name="mlxtune-generation", daemon=True)

    def start(self) -> Session:
        """Start the thread and wait for the model; a failed load is raised here."""
        self.thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error
        assert self.session is not None
        return self.session

    def submit(self, job: Job) -> Job:
        if not self.thread.is_alive():
            raise RuntimeError("the generation thread has stopped")
        self.jobs.put(job)
        return job

    def stop(self) -> None:
        """End the thread: the running answer stops at its next piece, queued ones are answered
        "cancelled" without generating (a Ctrl-C must not wait for a queue of work)."""
        self._stopping.set()
        self.jobs.put(None)
        self.thread.join(timeout=30)

    def _run(self) -> None:
        try:
            self.session = self._load()
        except BaseException as exc:  # noqa: BLE001 - handed to start() in the main thread
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        while (job := self.jobs.get()) is not None:
            self._answer(job)

    def _answer(self, job: Job) -> None:
        if job.cancelled.is_set() or self._stopping.is_set():  # its client left, or Ctrl-C
            job.out.put(Finished("cancelled", {}))
            return
        backend = self.session.backend  # type: ignore[union-attr]
        extra = {"json_schema": job.json_schema} if job.json_schema is not None else {}
        stream = backend.generate(job.prompt, job.sampling, **extra)
        try:
            for piece in stream:
                job.out.put(piece)
                if job.cancelled.is_set() or self._stopping.is_set():
                    break
            job.out.put(Finished(backend.finish_reason or "stop", dict(backend.stats or {})))
        except Exception as exc:  # noqa: BLE001 - answered as a 500 by the request's thread
            job.out.put(exc)
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()
