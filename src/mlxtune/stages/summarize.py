"""The summarize stage: a [research question, approach] pair per paper (pairs.jsonl)."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..cache import JsonlCache, cache_key
from ..components import SummaryFailure
from ..errors import StageError
from ..records import Document, Pair, from_row, load_documents, sha256_json, write_jsonl
from .base import Run, Stage, hash_if_exists, progress_bar


def build_summarizer(run: Run) -> tuple[Any, str]:
    """The recipe's summarizer, `auto` resolved (summarize_auto.py), and the line saying what
    auto chose and why ("" for a summarizer named outright)."""
    summarizer = run.registry.build("summarizer", run.recipe.component("summarize"))
    if summarizer.name != "auto":
        return summarizer, ""
    from .summarize_auto import resolve_auto

    choice = resolve_auto(run.recipe, summarizer.options)
    return choice.summarizer, choice.reason


def fingerprint_summarize(run: Run) -> dict[str, Any]:
    summarizer, _ = build_summarizer(run)
    return {
        "summarizer": summarizer.fingerprint(),
        "documents": hash_if_exists(run.file("documents.jsonl")),
        "splits": hash_if_exists(run.file("splits.json")),
    }


def stage_summarize(run: Run) -> str:
    """Summarize every paper in a split, through a cache that makes the stage resumable.

    Each finished summary is appended to `<cache>/summaries.jsonl` before the next one is asked
    for, keyed by (document id, summarizer fingerprint); a re-run after a crash, Ctrl-C or SIGKILL
    only summarizes what is missing. `pairs.jsonl` is then written whole from the cache.
    """
    summarizer, chosen = build_summarizer(run)
    if chosen:
        heuristic = summarizer.name == "heuristic"
        run.log(f"  [yellow]warning:[/] {chosen}" if heuristic else f"  {chosen}")
    splits = json.loads(run.file("splits.json").read_text())["splits"]
    in_split = {doc_id for doc_id, split in splits.items() if split != "unused"}
    docs = [d for d in load_documents(run.file("documents.jsonl")) if d.ok and d.id in in_split]
    docs = list({d.id: d for d in docs}.values())  # the same file twice is one paper
    fingerprint = summarizer.fingerprint()
    cache = JsonlCache(run.recipe.cache_path / "summaries.jsonl", check=check_summary_record)
    # keyed by what the summarizer reads, so better extraction or cleaning is never hidden
    keys = {d.id: cache_key(d.id, content_hash(d), fingerprint) for d in docs}
    records: dict[str, dict[str, Any]] = {}
    for doc in docs:
        hit = cache.get(keys[doc.id])
        if hit is not None:
            records[doc.id] = hit
    todo = [d for d in docs if d.id not in records]
    transient = _summarize_missing(run, summarizer, todo, keys, cache, records, len(docs))
    pairs, failures = [], []
    for doc in docs:
        record = records.get(doc.id)
        if record is None:
            continue
        if record["status"] == "ok":
            pair = Pair(**record["pair"])
            pair.split = splits[doc.id]
            pair.category = doc.category
            pairs.append(pair)
        else:
            failures.append({"path": doc.path, **record})
            run.log(f"  [yellow]no pair[/] {Path(doc.path).name}: {record['reason']}")
    write_jsonl(run.file("summary_failures.jsonl"), failures)
    if not pairs:
        raise StageError("summarize", "no document gave a question/approach pair")
    if transient:
        raise StageError(
            "summarize",
            f"{len(transient)} of {len(docs)} papers could not be summarized "
            f"({transient[0].reason}); the {len(records)} finished are cached: "
            "run again to do the rest",
        )
    write_jsonl(run.file("pairs.jsonl"), pairs)
    model = f", {pairs[0].model}" if pairs[0].model else ""
    cached = len(docs) - len(todo)
    line = f"{len(pairs)} pairs from {len(docs)} papers ({summarizer.name}{model})"
    line += f"; {len(failures)} failed" + (f"; {cached} from cache" if cached else "")
    return line + ("; failures in summary_failures.jsonl" if failures else "")


def _summarize_missing(
    run: Run,
    summarizer: Any,
    todo: list[Document],
    keys: dict[str, str],
    cache: JsonlCache,
    records: dict[str, dict[str, Any]],
    total: int,
) -> list[SummaryFailure]:
    """Summarize `todo` into `records`, each result cached as it arrives (except the transient
    failures, returned so that the stage can say the next run retries them)."""
    transient: list[SummaryFailure] = []
    lines = None if run.console.is_terminal or not todo else ProgressLines(run.log, len(todo))
    with progress_bar(run.console) as progress, lines or contextlib.nullcontext():
        label = f"summarize ({summarizer.name})"
        task = progress.add_task(label, total=total, completed=len(records))
        started, done, failed = time.perf_counter(), 0, 0
        for result in summarizer.summarize(todo) if todo else ():
            if isinstance(result, tuple):  # plugins written against the first API
                result = SummaryFailure(*result)
            record = summary_record(result)
            if isinstance(result, SummaryFailure) and result.transient:
                transient.append(result)
            else:
                cache.put(keys[record["document_id"]], record)
            records[record["document_id"]] = record
            done, failed = done + 1, failed + (record["status"] != "ok")
            per_minute = done / max(time.perf_counter() - started, 1e-9) * 60
            progress.update(
                task,
                advance=1,
                description=f"{label}: {failed} failed, {per_minute:.1f} papers/min",
            )
            if lines is not None:
                lines.update(done, failed)
    return transient


# progress lines where the bar cannot show: every PROGRESS_EVERY_S seconds (also while no paper
# finishes), or at each tenth of the papers once the stage has run PROGRESS_QUIET_S seconds (an
# instant summarizer prints none)
PROGRESS_EVERY_S = 30.0
PROGRESS_QUIET_S = 5.0


class ProgressLines:
    """Progress as plain lines where the bar cannot show (output to a file or a pipe), when due,
    and at the end of a run that printed any. As a context manager, a thread also prints one
    every PROGRESS_EVERY_S seconds while no paper finishes (a batch's first replies can take
    minutes on a small machine)."""

    def __init__(self, log: Any, total: int):
        self.log, self.total = log, total
        self.started = self.last_time = time.perf_counter()
        self.step = max(1, -(-total // 10))
        self.done = self.failed = self.last_done = 0
        self.printed = False
        self.lock, self.stop = threading.Lock(), threading.Event()
        self.beat = threading.Thread(target=self._beat, daemon=True)

    def __enter__(self) -> ProgressLines:
        self.beat.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.beat.join()

    def _beat(self) -> None:
        while not self.stop.wait(1.0):
            if time.perf_counter() - self.last_time >= PROGRESS_EVERY_S:
                self.update(self.done, self.failed)

    def update(self, done: int, failed: int) -> None:
        with self.lock:
            now = time.perf_counter()
            elapsed = now - self.started
            self.done, self.failed = done, failed
            due = now - self.last_time >= PROGRESS_EVERY_S or (
                elapsed >= PROGRESS_QUIET_S and done - self.last_done >= self.step
            )
            if not due and not (done == self.total and self.printed):
                return
            self.last_time, self.last_done, self.printed = now, done, True
            per_minute = done / max(elapsed, 1e-9) * 60
            line = f"  summarized {done}/{self.total} papers ({per_minute:.1f}/min"
            if done == 0:
                line = f"  summarizing {self.total} papers: none finished yet ({elapsed:.0f} s"
            elif done < self.total:
                line += f", eta {(self.total - done) / per_minute:.0f} min"
            self.log(line + ")" + (f"; {failed} failed" if failed else ""))


def content_hash(doc: Document) -> str:
    return sha256_json([doc.title, doc.category, doc.sections, doc.text])


def summary_record(result: Pair | SummaryFailure) -> dict[str, Any]:
    """What the cache keeps for one document: the pair, or the reason and the raw reply."""
    if isinstance(result, Pair):
        return {"document_id": result.document_id, "status": "ok", "pair": asdict(result)}
    return {
        "document_id": result.document.id,
        "status": "failed",
        "reason": result.reason,
        "raw": result.raw,
    }


def check_summary_record(record: dict[str, Any]) -> None:
    """A cached summary this stage can use, or a ValueError (a damaged or hand-edited line)."""
    if record.get("status") == "ok":
        from_row(Pair, record.get("pair"))
    elif record.get("status") != "failed" or not isinstance(record.get("reason"), str):
        raise ValueError("neither an 'ok' pair nor a 'failed' reason")


NEEDS = ("documents.jsonl", "splits.json")
WRITES = ("pairs.jsonl", "summary_failures.jsonl")
STAGE = Stage("summarize", stage_summarize, fingerprint_summarize, needs=NEEDS, writes=WRITES)
