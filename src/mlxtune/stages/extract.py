"""The extract stage: every paper under `papers/` to documents.jsonl (text, sections, status).

Files are extracted in parallel worker processes through a cache keyed by the file's hash and the
extractor's settings; a failure that may pass (timeout, crash, an unreadable file) is retried on
the next run. What the walk of the folder passes over (a dangling link, a FIFO, a link out of
the folder: `extract/walk.py`) is recorded as skipped too, so every entry is accounted for."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..cache import JsonlCache, cache_key
from ..components import Extractor
from ..errors import StageError
from ..extract.walk import Entry, PapersFolderError, walk_papers
from ..records import Document, from_row, sha256_bytes, sha256_file, write_jsonl
from ..version import __version__
from .base import Run, Stage, progress_bar


def list_papers(run: Run, table: dict[str, Extractor]) -> list[Entry]:
    """Every paper under the recipe's `papers` folder and every entry the walk passed over."""
    papers = Path(run.recipe.papers)
    follow = bool(run.recipe.component("extract").get("follow_outside", False))
    try:
        return walk_papers(papers, table, follow_outside=follow)
    except PapersFolderError as exc:
        message = f"cannot read the papers folder {papers} ({exc.strerror}): check its permissions"
        raise StageError("extract", message) from None


def extractors_by_suffix(run: Run) -> dict[str, Extractor]:
    chosen = run.registry.build("extractor", run.recipe.component("extract"))
    table: dict[str, Extractor] = {}
    for name in run.registry.names("extractor"):
        if name != chosen.name:
            other = run.registry.build("extractor", {"use": name})
            for suffix in other.suffixes:
                table.setdefault(suffix, other)
    for suffix in chosen.suffixes:  # the recipe's choice wins for its own suffixes
        table[suffix] = chosen  # type: ignore[assignment]
    return table  # type: ignore[return-value]


def extract_settings(run: Run) -> dict[str, Any]:
    """The extract section minus what cannot change the output (worker count)."""
    return {k: v for k, v in run.recipe.component("extract").items() if k != "workers"}


def fingerprint_extract(run: Run) -> dict[str, Any]:
    """The settings, the extractors' versions (an improved cleaning re-runs, as it misses the
    extraction cache) and, per entry, its hash (or why it is skipped: fixing that re-runs)."""
    papers = Path(run.recipe.papers)
    files = []
    table = extractors_by_suffix(run)
    versions = sorted({(e.name, str(e.version)) for e in table.values()})
    for entry in list_papers(run, table):
        rel = str(entry.path.relative_to(papers))
        if not entry.readable:
            files.append((rel, f"skipped: {entry.problem}"))
            continue
        try:
            files.append((rel, sha256_file(entry.path)))
        except OSError as exc:  # recorded as skipped by the stage, never a stop
            files.append((rel, f"unreadable: {exc.strerror or exc}"))
    return {"extract": extract_settings(run), "extractors": versions, "files": files}


# options that cannot change one document's text
NOT_IN_CACHE_KEY = {"workers", "timeout", "follow_outside"}
# failures worth retrying on the next run rather than remembering
TRANSIENT_PROBLEMS = {"timeout", "crashed", "unreadable"}


def stage_extract(run: Run) -> str:
    from ..extract.pool import Job, extract_all

    papers = Path(run.recipe.papers)
    table = extractors_by_suffix(run)
    entries = list_papers(run, table)
    files = [(e.path, e.category) for e in entries if e.readable]
    if not files:
        raise StageError("extract", _nothing_found(entries, papers, table))
    loose = sum(category == "uncategorized" for _, category in files)
    if loose:
        run.log(
            f"  [yellow]warning[/] {loose} of {len(files)} papers sit directly in {papers}: they "
            "form one category, 'uncategorized'. Sub-folders are categories (each gets its own "
            "valid and test papers): move the papers into one folder per topic"
        )
    chosen = run.registry.build("extractor", run.recipe.component("extract"))
    workers = chosen.options.workers or os.cpu_count() or 1
    timeout = chosen.options.timeout
    cache = JsonlCache(
        run.recipe.cache_path / "extract.jsonl",
        check=lambda row: from_row(Document, row["document"]),
    )
    documents, keys, jobs = _from_cache(files, table, cache)
    cached = sum(doc is not None for i, doc in enumerate(documents) if i in keys)
    with progress_bar(run.console) as progress:
        task = progress.add_task("extract", total=len(files), completed=len(files) - len(jobs))

        def done(job: Job, doc: Document) -> None:
            documents[job.index] = doc
            if doc.problem not in TRANSIENT_PROBLEMS and job.index in keys:
                cache.put(keys[job.index], {"document": asdict(doc)})
            progress.advance(task)

        extract_all(jobs, min(workers, max(1, len(jobs))), timeout, done)
    final = [d for d in documents if d is not None] + [
        _skipped(e) for e in entries if not e.readable
    ]
    final.sort(key=lambda doc: Path(doc.path))
    _mark_duplicates(final)
    write_jsonl(run.file("documents.jsonl"), final)
    for doc in final:
        if not doc.ok:
            run.log(f"  [yellow]{doc.status}[/] {Path(doc.path).relative_to(papers)}: {doc.reason}")
    return _summary_line(final, papers, cached)


def _nothing_found(entries: list[Entry], papers: Path, table: dict[str, Extractor]) -> str:
    message = f"no papers ({', '.join(sorted(table))}) found under {papers}"
    if entries:  # every one skipped: say why, the first few by name
        shown = "; ".join(f"{e.path.relative_to(papers)}: {e.reason}" for e in entries[:3])
        more = f"; and {len(entries) - 3} more" if len(entries) > 3 else ""
        message += f"; {len(entries)} skipped: {shown}{more}"
    return message


def _skipped(entry: Entry) -> Document:
    """The record of an entry the walk passed over; its id tells such records apart."""
    return Document(
        id=sha256_bytes(f"{entry.problem}: {entry.path}".encode()),
        path=str(entry.path),
        category=entry.category,
        status="skipped",
        problem=entry.problem,
        reason=entry.reason,
    )


def _summary_line(final: list[Document], papers: Path, cached: int) -> str:
    ok = [d for d in final if d.ok]
    if not ok:
        raise StageError("extract", f"none of the {len(final)} papers under {papers} gave text")
    categories = len({d.category for d in ok})
    line = f"{len(final)} files: {len(ok)} extracted in {categories} categories"
    for status in ("skipped", "failed"):
        problems = Counter(d.problem or "other" for d in final if d.status == status)
        ranked = sorted(problems.items(), key=lambda item: (-item[1], item[0]))
        detail = ", ".join(f"{n} {problem}" for problem, n in ranked)
        line += f"; {sum(problems.values())} {status}" + (f" ({detail})" if detail else "")
    return line + (f"; {cached} from cache" if cached else "")


def _from_cache(
    files: list[tuple[Path, str]], table: dict[str, Extractor], cache: JsonlCache
) -> tuple[list[Document | None], dict[int, str], list[Any]]:
    """Documents found in the cache (or unreadable), their cache keys, and the jobs left."""
    from ..extract.pool import Job

    documents: list[Document | None] = [None] * len(files)
    keys: dict[int, str] = {}
    jobs = []
    for index, (path, category) in enumerate(files):
        extractor = table[path.suffix.lower()]
        try:
            file_hash = sha256_file(path)
        except OSError as exc:
            reason = f"unreadable file: {exc.strerror or exc}"
            documents[index] = _skipped(Entry(path, category, "unreadable", reason))
            continue
        keys[index] = cache_key(
            __version__,  # cleaning improves between versions
            file_hash,
            extractor.name,
            extractor.version,
            extractor.options.model_dump(mode="json", exclude=NOT_IN_CACHE_KEY),
        )
        hit = cache.get(keys[index])
        if hit is not None:
            doc = Document(**hit["document"])
            doc.path, doc.category = str(path), category  # the same file may have moved
            documents[index] = doc
        else:
            jobs.append(Job(index, extractor, path, category))
    return documents, keys, jobs


def _mark_duplicates(documents: list[Document]) -> None:
    """The same bytes under two names is one paper: later copies are skipped, and a link is
    the copy of the file it names."""
    first: dict[str, Document] = {}
    for doc in sorted(documents, key=lambda d: Path(d.path).is_symlink()):  # stable: by path
        if not doc.ok:
            continue
        if doc.id in first:
            doc.status, doc.problem = "skipped", "duplicate"
            doc.reason = f"same file as {first[doc.id].path}"
            doc.text, doc.sections = "", {}
        else:
            first[doc.id] = doc


STAGE = Stage("extract", stage_extract, fingerprint_extract, writes=("documents.jsonl",))
