"""Chat with a run's tuned model (or its base model) from the browser: the same answering
session as `mlxtune ask` (mlxtune.asking), run on serve's generation thread (the one thread that
owns the model, mlxtune/serve/worker.py), its pieces streamed to the page as server-sent events.

A model loads on the first question asked of it, not when the app starts: reviewing pairs needs
no model."""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio

from ..components import Sampling
from ..errors import MlxtuneError
from ..serve.worker import GenerationWorker, Job


def run_recipe(root: Path, manifest: dict[str, Any], recipe: Any = None) -> Any:
    """The recipe the run was made with: the one given (`--recipe`), else the manifest's copy,
    with its run directory pinned to `root` (a tiny model lives there)."""
    from ..recipe_schema import Recipe

    if recipe is None:
        data = manifest.get("recipe")
        if not isinstance(data, dict):
            raise MlxtuneError(f"{root / 'manifest.json'} records no recipe: give --recipe")
        recipe = Recipe.model_validate(data)
    return recipe.model_copy(update={"run_dir": str(root)})


def sampling_of(recipe: Any) -> Sampling:
    from ..asking import sampling_from

    return sampling_from(recipe.ask)


class Chats:
    """One generation worker per (run, model), started on first use."""

    def __init__(self, plugins_dirs: tuple[str, ...] = ()):
        self.plugins_dirs = plugins_dirs
        self.workers: dict[tuple[str, str], GenerationWorker] = {}
        self._lock = threading.Lock()

    def worker(self, slug: str, which: str, recipe: Any) -> GenerationWorker:
        """The started worker for the tuned (`tuned`) or base (`base`) model; loads it once."""
        with self._lock:
            worker = self.workers.get((slug, which))
            if worker is None:
                worker = GenerationWorker(lambda: self._load(recipe, which))
                worker.start()  # raises a failed load here, and then tries again next time
                self.workers[(slug, which)] = worker
            return worker

    def _load(self, recipe: Any, which: str):
        """The recipe's session (its formatter, `ask:` sampling and `retrieve:`), with the
        trained adapter for `tuned`, without one for `base`."""
        from ..asking import recipe_session, trained_adapter
        from ..plugins import get_registry

        registry = get_registry([*self.plugins_dirs, *(recipe.plugins_dir or [])])
        trained = trained_adapter(recipe, recipe.name) if which == "tuned" else None
        return recipe_session(recipe, registry, Path(trained) if trained else None)

    def stop(self) -> None:
        for worker in self.workers.values():
            worker.stop()


async def stream(
    chats: Chats, slug: str, which: str, recipe: Any, question: str, sampling: Sampling
) -> AsyncIterator[bytes]:
    """Server-sent events: `{"text": piece}` as they come, then `{"done": reason, ...}` (or
    `{"error": message}`). A client that leaves cancels its answer between two pieces."""
    try:
        worker = await anyio.to_thread.run_sync(chats.worker, slug, which, recipe)
    except Exception as exc:  # noqa: BLE001 - shown in the page, not a traceback
        yield _event({"error": f"the model did not load: {exc}"})
        return
    session = worker.session
    assert session is not None and session.formatter is not None
    job = worker.submit(
        Job(await anyio.to_thread.run_sync(prompt_for, session, question), sampling)
    )
    pieces = job.pieces()
    try:
        while True:
            piece = await anyio.to_thread.run_sync(next, pieces, None)
            if piece is None:
                break
            yield _event({"text": piece})
        finished = job.finished
        yield _event(
            {
                "done": finished.reason if finished else "stop",
                "stats": finished.stats if finished else {},
            }
        )
    except Exception as exc:  # noqa: BLE001 - the backend's error, shown in the page
        yield _event({"error": str(exc)})
    finally:
        job.cancel()


def prompt_for(session: Any, question: str) -> Any:
    """The prompt `Session.answer` builds (mlxtune ask): the formatter's, with the recipe's
    retrieved passages before it when it has `retrieve:`."""
    prompt = session.formatter.prompt(question)
    if session.retrieval is not None:
        from ..retrieve import with_passages

        prompt = with_passages(prompt, session.retrieval.for_question(question, None))
    return prompt


def _event(data: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(data)}\n\n".encode()
