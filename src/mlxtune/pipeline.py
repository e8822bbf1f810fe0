"""Runs the stages of a recipe, each writing plain files into the run directory.

papers -> documents.jsonl -> splits.json -> pairs.jsonl -> data/*.jsonl -> model/ -> adapters/
-> answers.jsonl. Every stage records a fingerprint of its inputs (recipe section + the hashes of
the files it reads) and the hashes of what it wrote in manifest.json; a stage whose fingerprint
and outputs are unchanged is skipped, so a re-run only does what changed.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import random
import shutil
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from . import __version__
from .cache import JsonlCache, cache_key
from .components import Extractor, SummaryFailure
from .errors import MlxtuneError, StageError
from .plugins import Registry
from .recipe import STAGES, Recipe
from .records import (
    Document,
    Pair,
    atomic_write_json,
    load_documents,
    load_pairs,
    replace_dir,
    sha256_file,
    sha256_json,
    write_jsonl,
)

OUTPUTS: dict[str, tuple[str, ...]] = {
    "extract": ("documents.jsonl",),
    "split": ("splits.json",),
    "summarize": ("pairs.jsonl", "summary_failures.jsonl"),
    "format": ("data/train.jsonl", "data/valid.jsonl", "data/test.jsonl"),
    "model": (),  # set per recipe: the tiny model's files, or nothing for a hub/local model
    "train": ("adapters/adapters.safetensors", "adapters/adapter_config.json"),
    "ask": ("answers.jsonl",),
}
VERSIONED_PACKAGES = ("mlx", "mlx-lm", "pypdf", "transformers", "huggingface_hub", "pydantic")


@dataclass
class Run:
    recipe: Recipe
    registry: Registry
    console: Console = field(default_factory=Console)
    root: Path = field(init=False)
    manifest: dict[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        self.root = self.recipe.run_path
        path = self.root / "manifest.json"
        self.manifest = {"stages": {}}
        if path.is_file():
            try:
                self.manifest = json.loads(path.read_text())
            except ValueError:
                self.console.print(f"[yellow]ignoring unreadable {path}; every stage re-runs")
        self.manifest.setdefault("stages", {})

    def file(self, rel: str) -> Path:
        return self.root / rel

    @property
    def trains(self) -> bool:
        """False for `train: {use: none}`: the base model is used without an adapter."""
        return self.recipe.train.use != "none"

    @property
    def adapter(self) -> Path | None:
        return self.file("adapters") if self.trains else None

    def outputs(self, stage: str) -> tuple[str, ...]:
        if stage == "train" and not self.trains:
            return ()
        if stage == "model":
            if self.recipe.model.tiny is None:
                return ()
            return ("model/config.json", "model/model.safetensors", "model/tokenizer.json")
        return OUTPUTS[stage]

    def log(self, message: str) -> None:
        self.console.print(message, highlight=False)

    def save_manifest(self) -> None:
        self.manifest.update(
            mlxtune=__version__,
            recipe=self.recipe.model_dump(mode="json"),
            versions=package_versions(),
            updated=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        )
        atomic_write_json(self.root / "manifest.json", self.manifest)


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version(), "mlxtune": __version__}
    for name in VERSIONED_PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[name] = metadata.version(name)
    return versions


def hash_if_exists(path: Path) -> str | None:
    return sha256_file(path) if path.is_file() else None


# ---------------------------------------------------------------- extract


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
    from .extract.pool import Job, extract_all

    papers = Path(run.recipe.papers)
    table = extractors_by_suffix(run)
    files = list_papers(papers, table)
    if not files:
        suffixes = ", ".join(sorted(table))
        raise StageError("extract", f"no papers ({suffixes}) found under {papers}")
    chosen = run.registry.build("extractor", run.recipe.component("extract"))
    workers = chosen.options.workers or os.cpu_count() or 1
    timeout = chosen.options.timeout
    cache = JsonlCache(run.recipe.cache_path / "extract.jsonl")
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
    cached = len(files) - len(jobs)
    with _progress(run.console) as progress:
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
    ok = [d for d in final if d.ok]
    if not ok:
        raise StageError("extract", f"none of the {len(files)} papers under {papers} gave text")
    categories = len({d.category for d in ok})
    line = f"{len(final)} files: {len(ok)} extracted in {categories} categories"
    for status in ("skipped", "failed"):
        problems = Counter(d.problem or "other" for d in final if d.status == status)
        ranked = sorted(problems.items(), key=lambda item: (-item[1], item[0]))
        detail = ", ".join(f"{n} {problem}" for problem, n in ranked)
        line += f"; {sum(problems.values())} {status}" + (f" ({detail})" if detail else "")
    return line + (f"; {cached} from cache" if cached else "")


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


# ---------------------------------------------------------------- split


def count_for(spec: float, n: int) -> int:
    """An int >= 1 is a count; a float < 1 a share of the category (rounded, at least 1)."""
    if spec >= 1:
        return int(spec)
    return max(1, round(spec * n)) if spec > 0 else 0


def assign_category(
    members: list[Document], counts: Any, seed: int, category: str
) -> tuple[dict[str, str], bool]:
    """Shuffle one category by seed and deal papers to valid, test, then train; the rest unused.

    A category too small for its valid + test papers and one train paper goes to train whole
    (training data matters most) and is reported.
    """
    members = sorted(members, key=lambda d: d.id)
    random.Random(f"{seed}:{category}").shuffle(members)
    n = len(members)
    n_valid, n_test = count_for(counts.valid, n), count_for(counts.test, n)
    n_train = n - n_valid - n_test if counts.train == "rest" else count_for(counts.train, n)
    if n_valid + n_test + 1 > n:
        return {d.id: "train" for d in members}, True
    n_train = max(1, min(n_train, n - n_valid - n_test))
    labels = ["valid"] * n_valid + ["test"] * n_test + ["train"] * n_train
    labels += ["unused"] * (n - len(labels))
    return {d.id: label for d, label in zip(members, labels, strict=True)}, False


def stage_split(run: Run) -> str:
    spec = run.recipe.split
    docs = [d for d in load_documents(run.file("documents.jsonl")) if d.ok]
    by_category: dict[str, dict[str, Document]] = defaultdict(dict)
    for doc in docs:
        by_category[doc.category].setdefault(doc.id, doc)
    assignment: dict[str, str] = {}
    too_small = []
    for category in sorted(by_category):
        members = list(by_category[category].values())
        labels, small = assign_category(members, spec.per_category, spec.seed, category)
        assignment.update(labels)
        if small:
            too_small.append(f"{category} ({len(members)})")
    atomic_write_json(run.file("splits.json"), {"splits": assignment, "too_small": too_small})
    counts = Counter(assignment.values())
    line = ", ".join(f"{counts.get(s, 0)} {s}" for s in ("train", "valid", "test"))
    line += f" papers in {len(by_category)} categories"
    if counts.get("unused"):
        line += f"; {counts['unused']} unused (beyond split.per_category)"
    if too_small:
        line += f"; all-train (too small to split): {', '.join(too_small)}"
    return line


# ---------------------------------------------------------------- summarize


def fingerprint_summarize(run: Run) -> dict[str, Any]:
    summarizer = run.registry.build("summarizer", run.recipe.component("summarize"))
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
    summarizer = run.registry.build("summarizer", run.recipe.component("summarize"))
    splits = json.loads(run.file("splits.json").read_text())["splits"]
    in_split = {doc_id for doc_id, split in splits.items() if split != "unused"}
    docs = [d for d in load_documents(run.file("documents.jsonl")) if d.ok and d.id in in_split]
    docs = list({d.id: d for d in docs}.values())  # the same file twice is one paper
    fingerprint = summarizer.fingerprint()
    cache = JsonlCache(run.recipe.cache_path / "summaries.jsonl")
    # keyed by what the summarizer reads, so better extraction or cleaning is never hidden
    keys = {d.id: cache_key(d.id, content_hash(d), fingerprint) for d in docs}
    records: dict[str, dict[str, Any]] = {}
    for doc in docs:
        hit = cache.get(keys[doc.id])
        if hit is not None:
            records[doc.id] = hit
    todo = [d for d in docs if d.id not in records]
    transient: list[SummaryFailure] = []
    with _progress(run.console) as progress:
        label = f"summarize ({summarizer.name})"
        task = progress.add_task(label, total=len(docs), completed=len(records))
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


# ---------------------------------------------------------------- format


def stage_format(run: Run) -> str:
    formatter = run.registry.build("formatter", run.recipe.component("format"))
    pairs = load_pairs(run.file("pairs.jsonl"))
    by_split: dict[str, list[dict[str, Any]]] = {"train": [], "valid": [], "test": []}
    for pair in pairs:
        by_split[pair.split].extend(e.to_json() for e in formatter.examples(pair))
    if not by_split["train"]:
        raise StageError("format", "no training examples (every pair is in valid/test?)")
    for split, rows in by_split.items():
        write_jsonl(run.file(f"data/{split}.jsonl"), rows)
    return ", ".join(f"{len(rows)} {split}" for split, rows in by_split.items()) + (
        f" examples ({formatter.name})"
    )


# ---------------------------------------------------------------- model


def fingerprint_model(run: Run) -> dict[str, Any]:
    model = run.recipe.model.model_dump(mode="json")
    if run.recipe.model.tiny is not None:  # its tokenizer is trained on the pairs
        model["pairs"] = hash_if_exists(run.file("pairs.jsonl"))
    if run.recipe.model.import_ref:  # the import folder's name keys the source's identity
        model["imported"] = run.recipe.model_ref
    return model


def stage_model(run: Run) -> str:
    tiny = run.recipe.model.tiny
    if run.recipe.model.import_ref:
        from .models.importing import ImportOptions, import_model

        section = run.recipe.model
        lines: list[str] = []
        import_model(
            section.import_ref,
            options=ImportOptions(section.dequantize, section.quantize),
            log=lines.append,
        )
        return lines[-1]
    if tiny is None:
        return f"uses {run.recipe.model_ref}"
    from .models.tiny import build_tiny_model

    # the tokenizer learns the pairs' text (not one formatter's), so that the variants of a
    # comparison share the same tiny base model
    texts = [
        f"Research question: {p.question}\nApproach: {p.approach}"
        for p in load_pairs(run.file("pairs.jsonl"))
    ]
    target = run.file("model")
    staging = run.file("model.partial")
    shutil.rmtree(staging, ignore_errors=True)
    build_tiny_model(staging, texts=texts, **tiny.model_dump())
    replace_dir(staging, target)
    return f"built a tiny random-weight Qwen2 model in {target}"


# ---------------------------------------------------------------- train


def fingerprint_train(run: Run) -> dict[str, Any]:
    return {
        "train": run.recipe.component("train"),
        "data": [hash_if_exists(run.file(f"data/{s}.jsonl")) for s in ("train", "valid")],
        "model": run.manifest["stages"].get("model", {}).get("outputs") or run.recipe.model_ref,
        "revision": run.recipe.model.revision,
    }


def stage_train(run: Run) -> str:
    trainer = run.registry.build("trainer", run.recipe.component("train"))
    staging = run.file("adapters.partial")
    main_process = launch_rank()[0] == 0  # in a multi-process launch only rank 0 writes
    if main_process and not (staging / "checkpoint" / "state.json").is_file():
        shutil.rmtree(staging, ignore_errors=True)  # else: an interrupted run the trainer resumes
    try:
        result = trainer.train(
            run.recipe.model_ref,
            run.file("data"),
            staging,
            trust_remote_code=run.recipe.model.trust_remote_code,
            log=run.log,
        )
    except MlxtuneError as exc:
        raise StageError("train", str(exc)) from None
    if not run.trains:
        shutil.rmtree(run.file("adapters"), ignore_errors=True)
        return "no training (train.use: none): the base model is used as it is"
    if main_process:
        replace_dir(staging, run.file("adapters"))
    best = f"{result.best_val_loss:.4f}" if result.best_val_loss is not None else "n/a"
    peak = f", peak memory {result.peak_memory_gb:.2f} GB" if result.peak_memory_gb else ""
    kept = "kept the last adapter; " if result.extra.get("kept") == "last" else ""
    early = " (early stop)" if result.extra.get("stopped_early") else ""
    return (
        f"{result.steps} steps{early} in {result.seconds:.1f}s; {kept}best val loss {best} at "
        f"step {result.best_step}{peak}; adapter: {run.file('adapters')}"
    )


# ---------------------------------------------------------------- ask


def default_questions(run: Run) -> list[tuple[str, str]]:
    """One question the model trained on (recall) and one it did not (held out), if any."""
    pairs = load_pairs(run.file("pairs.jsonl"))
    chosen = []
    for split in ("train", "valid"):
        pair = next((p for p in pairs if p.split == split), None)
        if pair is not None:
            chosen.append((pair.question, "recall" if split == "train" else "heldout"))
    return chosen


def stage_ask(run: Run) -> str:
    from .asking import sampling_from

    ask = run.recipe.ask
    questions = [(q, "custom") for q in ask.questions] or default_questions(run)
    formatter = run.registry.build("formatter", run.recipe.component("format"))
    backend = run.registry.build("backend", {"use": ask.backend})
    backend.load(
        run.recipe.model_ref,
        run.adapter,
        trust_remote_code=run.recipe.model.trust_remote_code,
    )
    sampling = sampling_from(ask)
    answers = []
    for question, kind in questions:
        run.log(f"\n[bold]Q ({kind}):[/] {question}")
        run.console.print("[bold]A:[/] ", end="")
        pieces = []
        for piece in backend.generate(formatter.prompt(question), sampling):
            pieces.append(piece)
            run.console.print(piece, end="", highlight=False, markup=False)
        run.console.print()
        answers.append(
            {
                "question": question,
                "kind": kind,
                "answer": "".join(pieces),
                "finish_reason": getattr(backend, "finish_reason", None),
            }
        )
    write_jsonl(run.file("answers.jsonl"), answers)
    stopped = sum(a["finish_reason"] == "stop" for a in answers)
    looped = sum(a["finish_reason"] == "loop" for a in answers)
    line = f"{len(answers)} answers, {stopped} stopped at end-of-sequence"
    return line + (f", {looped} ended as loops" if looped else "")


# ---------------------------------------------------------------- driver


@dataclass(frozen=True)
class StageDef:
    run: Callable[[Run], str]
    fingerprint: Callable[[Run], dict[str, Any]]
    needs: tuple[str, ...]  # upstream files that must exist


def _simple(section: str, *inputs: str) -> Callable[[Run], dict[str, Any]]:
    def fingerprint(run: Run) -> dict[str, Any]:
        value = getattr(run.recipe, section)
        spec = value.model_dump(mode="json") if hasattr(value, "model_dump") else value
        return {section: spec, "inputs": [hash_if_exists(run.file(i)) for i in inputs]}

    return fingerprint


STAGE_DEFS: dict[str, StageDef] = {
    "extract": StageDef(stage_extract, fingerprint_extract, ()),
    "split": StageDef(stage_split, _simple("split", "documents.jsonl"), ("documents.jsonl",)),
    "summarize": StageDef(
        stage_summarize, fingerprint_summarize, ("documents.jsonl", "splits.json")
    ),
    "format": StageDef(stage_format, _simple("format", "pairs.jsonl"), ("pairs.jsonl",)),
    "model": StageDef(stage_model, fingerprint_model, ("pairs.jsonl",)),
    "train": StageDef(stage_train, fingerprint_train, ("data/train.jsonl", "data/valid.jsonl")),
    "ask": StageDef(
        stage_ask,
        lambda run: {
            "ask": run.recipe.ask.model_dump(mode="json"),
            "format": run.recipe.component("format"),
            "adapter": hash_if_exists(run.file("adapters/adapters.safetensors")),
            "pairs": hash_if_exists(run.file("pairs.jsonl")),
        },
        ("adapters/adapters.safetensors", "pairs.jsonl"),
    ),
}
assert tuple(STAGE_DEFS) == STAGES


def select_stages(only: str | None = None, until: str | None = None) -> list[str]:
    for value in (only, until):
        if value is not None and value not in STAGES:
            raise MlxtuneError(f"unknown stage '{value}'; stages: {', '.join(STAGES)}")
    if only:
        return [only]
    if until:
        return list(STAGES[: STAGES.index(until) + 1])
    return list(STAGES)


def launch_rank() -> tuple[int, int]:
    """(rank, world size) of a multi-process launch (`accelerate launch` and `torchrun` set
    RANK and WORLD_SIZE), else (0, 1)."""
    try:
        return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 0, 1


def run_recipe(
    recipe: Recipe,
    registry: Registry,
    *,
    only: str | None = None,
    until: str | None = None,
    force: tuple[str, ...] = (),
    console: Console | None = None,
) -> Run:
    """Run (or skip, when up to date) the selected stages in order.

    In a multi-process launch (several GPUs) every process runs this, and only the train stage
    runs: the stages before it must be up to date (they are one process's work, and summarizing
    can take days), those after it are left for a one-process run. Only rank 0 writes.
    """
    for name in force:
        select_stages(only=name)
    rank, world = launch_rank()
    if rank > 0:
        console = Console(quiet=True)
    run = Run(recipe, registry, console or Console())
    run.root.mkdir(parents=True, exist_ok=True)
    selected = select_stages(only, until)
    if recipe.model.tiny is None and {"train", "ask"} & set(selected):
        _preflight_model(recipe, imported_here="model" in selected)
    for name in selected:
        if world > 1 and STAGES.index(name) > STAGES.index("train"):
            run.log(f"[dim]- {name:<9} not run in a launch of {world} processes: run it in one[/]")
            continue
        stage = STAGE_DEFS[name]
        needs = [r for r in stage.needs if run.trains or not r.startswith("adapters/")]
        missing = [rel for rel in needs if not run.file(rel).is_file()]
        if missing:
            raise StageError(
                name,
                f"missing {', '.join(missing)} in {run.root}: run the earlier "
                "stages first (drop --only)",
            )
        inputs = stage.fingerprint(run)
        fingerprint = sha256_json({"version": __version__, "inputs": inputs})
        record = run.manifest["stages"].get(name, {})
        if name not in force and _up_to_date(run, name, record, fingerprint):
            run.log(f"[dim]- {name:<9} up to date, skipped ({record.get('summary', '')})[/]")
            continue
        if world > 1:
            _check_launch(run, name, world)
        started = time.perf_counter()
        summary = stage.run(run)
        seconds = time.perf_counter() - started
        if rank > 0:
            continue
        run.manifest["stages"][name] = {
            "fingerprint": fingerprint,
            "inputs": inputs,
            "outputs": {rel: hash_if_exists(run.file(rel)) for rel in run.outputs(name)},
            "summary": summary,
            "seconds": round(seconds, 3),
            "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        run.save_manifest()
        run.log(f"[green]✓[/] {name:<9} {summary} [dim]({seconds:.1f}s)[/]")
    return run


def _check_launch(run: Run, name: str, world: int) -> None:
    """In a launch of `world` processes a stage that is due runs only if it is train, with a
    trainer that can run as several processes (what comes after train is skipped earlier)."""
    if name == "train":
        trainer = run.registry.get("trainer", run.recipe.train.use)
        if not trainer.distributed:
            raise StageError(
                "train",
                f"the '{trainer.name}' trainer runs in one process, but this is a launch of "
                f"{world} processes: run it without accelerate/torchrun, or use a trainer that "
                "trains on several devices (train.use=torch, from mlxtune-torch)",
            )
        return
    raise StageError(
        name,
        f"not up to date, and a launch of {world} processes only trains: prepare the data in "
        "one process first (mlxtune recipe run RECIPE --until model, with the same overrides), "
        "then launch the training again",
    )


def _preflight_model(recipe: Recipe, imported_here: bool) -> None:
    """Fail before hours of extraction and summarizing if the model cannot be had. A GGUF or
    Ollama model was found when the recipe loaded; the model stage imports it."""
    from .models.resolve import resolve_model

    if recipe.model.import_ref:
        if not imported_here and not (Path(recipe.model_ref) / "config.json").is_file():
            raise StageError(
                "model",
                f"{recipe.model.import_ref} is not imported yet: run the model stage first "
                "(drop --only, or mlxtune recipe run RECIPE --only model)",
            )
        return
    try:
        resolve_model(recipe.model_ref, recipe.model.revision)
    except MlxtuneError as exc:
        raise StageError("model", str(exc)) from None


def _up_to_date(run: Run, name: str, record: dict[str, Any], fingerprint: str) -> bool:
    if record.get("fingerprint") != fingerprint:
        return False
    recorded = record.get("outputs", {})
    return all(
        recorded.get(rel) is not None and hash_if_exists(run.file(rel)) == recorded.get(rel)
        for rel in run.outputs(name)
    )


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("  {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    )
