"""The extract stage: every paper under `papers/` to documents.jsonl (text, sections, status).

Files are extracted in parallel worker processes through a cache keyed by the file's hash and the
extractor's settings; a failure that may pass (timeout, crash) is retried on the next run."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .. import __version__
from ..cache import JsonlCache, cache_key
from ..components import Extractor
from ..errors import StageError
from ..records import Document, sha256_file, write_jsonl
from .base import Run, Stage, progress_bar

NOT_PAPERS = ("readme", "license", "licence", "changelog", "notice")


def list_papers(papers: Path, extractors: dict[str, Extractor]) -> list[tuple[Path, str]]:
    """(file, category) for every file an extractor handles; category = first sub-folder.

    Hidden files and a folder's own README/LICENSE are not papers.
    """
    found = []
    for path in sorted(papers.rglob("*")):
        rel = path.relative_to(papers)
        if not path.is_file() or any(part.startswith(".") for part in rel.parts):
            continue
        if path.stem.lower() in NOT_PAPERS:
            continue
        if path.suffix.lower() in extractors:
            category = rel.parts[0] if len(rel.parts) > 1 else "uncategorized"
            found.append((path, category))
    return found


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
    papers = Path(run.recipe.papers)
    files = list_papers(papers, extractors_by_suffix(run))
    return {
        "extract": extract_settings(run),
        "files": [(str(p.relative_to(papers)), sha256_file(p)) for p, _ in files],
    }


# failures worth retrying on the next run rather than remembering
TRANSIENT_PROBLEMS = {"timeout", "crashed", "unreadable"}


def stage_extract(run: Run) -> str:
    from ..extract.pool import Job, extract_all

    papers = Path(run.recipe.papers)
    table = extractors_by_suffix(run)
    files = list_papers(papers, table)
    if not files:
        suffixes = ", ".join(sorted(table))
        raise StageError("extract", f"no papers ({suffixes}) found under {papers}")
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
    cache = JsonlCache(run.recipe.cache_path / "extract.jsonl")
    documents, keys, jobs = _from_cache(files, table, cache)
    cached = len(files) - len(jobs)
    with progress_bar(run.console) as progress:
        task = progress.add_task("extract", total=len(files), completed=cached)

        def done(job: Job, doc: Document) -> None:
            documents[job.index] = doc
            if doc.problem not in TRANSIENT_PROBLEMS and job.index in keys:
                cache.put(keys[job.index], {"document": asdict(doc)})
            progress.advance(task)

        extract_all(jobs, min(workers, max(1, len(jobs))), timeout, done)
    final = [d for d in documents if d is not None]
    _mark_duplicates(final)
    write_jsonl(run.file("documents.jsonl"), final)
    for doc in final:
        if not doc.ok:
            run.log(f"  [yellow]{doc.status}[/] {Path(doc.path).relative_to(papers)}: {doc.reason}")
    return _summary_line(final, papers, cached)


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
            documents[index] = Document(
                id="",
                path=str(path),
                category=category,
                status="failed",
                problem="unreadable",
                reason=f"unreadable file: {exc.strerror or exc}",
            )
            continue
        keys[index] = cache_key(
            __version__,  # cleaning improves between versions
            file_hash,
            extractor.name,
            extractor.version,
            extractor.options.model_dump(mode="json", exclude={"workers", "timeout"}),
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
    """The same bytes under two names is one paper: later copies are skipped."""
    first: dict[str, Document] = {}
    for doc in documents:
        if not doc.ok:
            continue
        if doc.id in first:
            doc.status, doc.problem = "skipped", "duplicate"
            doc.reason = f"same file as {first[doc.id].path}"
            doc.text, doc.sections = "", {}
        else:
            first[doc.id] = doc


STAGE = Stage("extract", stage_extract, fingerprint_extract, writes=("documents.jsonl",))
