"""One run directory as the pages read it: its manifest, its papers and pairs (through the
byte-offset indexes of index.py), the curator's verdicts, the reviewer's decisions and the
training's progress. Nothing here writes except `review`, through mlxtune.reviews."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..records import sha256_file
from ..reviews import Review, append_review, load_reviews, pair_key
from .index import Cached, Entry, JsonlIndex

PAGE = 20  # rows per page of papers and pairs
LIVE_SECONDS = 120  # a partial training whose metrics changed this recently is "running"


def _doc_summary(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": str(row.get("id", "")),
        "category": str(row.get("category", "")),
        "status": str(row.get("status", "")),
        "reason": str(row.get("reason", "")),
        "title": str(row.get("title", ""))[:200],
        "readability": row.get("readability"),
        "pages": row.get("pages"),
        "path": str(row.get("path", "")),
    }


def _pair_summary(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "key": pair_key(row),
        "category": str(row.get("category", "")),
        "document_id": str(row.get("document_id", "")),
    }


def _reject_summary(row: dict[str, Any]) -> dict[str, Any]:
    return {"key": pair_key(row), "reason": str(row.get("reason", "")), "score": row.get("score")}


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _metrics(path: Path) -> list[dict[str, Any]]:
    rows = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue  # a line being written
        if isinstance(row, dict):
            rows.append({k: v for k, v in row.items() if k != "sample"})
    return rows


@dataclass
class Training:
    """A training's state for the Runs page: running (a partial adapter) or finished."""

    state: str  # "running", "stopped" (partial, not updated lately), "done", "none"
    metrics: list[dict[str, Any]]
    step: int
    planned: int | None
    summary: dict[str, Any]
    updated: float | None  # seconds since the metrics last changed


class RunDir:
    """A run directory given to `mlxtune ui` (its name in URLs is `slug`)."""

    def __init__(self, root: Path, slug: str, recipe: Any = None):
        self.root, self.slug, self.recipe = root, slug, recipe
        self.documents = JsonlIndex(root / "documents.jsonl", _doc_summary)
        self.pairs = JsonlIndex(root / "pairs.jsonl", _pair_summary)
        self.rejects = JsonlIndex(root / "curation_rejects.jsonl", _reject_summary)
        self._manifest = Cached(root / "manifest.json", _read_json, {})
        self._reviews = Cached(root / "reviews.jsonl", lambda p: load_reviews(p.parent), {})
        self._doc_hash: dict[str, tuple[tuple[int, int], str]] = {}

    # ------------------------------------------------------------ the run

    def manifest(self) -> dict[str, Any]:
        return self._manifest.get()

    def name(self) -> str:
        recipe = self.manifest().get("recipe") or {}
        return str(recipe.get("name") or self.root.name)

    def stages(self) -> list[dict[str, Any]]:
        """Every stage in pipeline order: recorded ones with their summary, time and date."""
        from ..stages import STAGE_NAMES

        recorded = self.manifest().get("stages", {})
        rows = []
        for name in STAGE_NAMES:
            rec = recorded.get(name)
            if rec is None:
                rows.append({"name": name, "status": "not run", "summary": "", "seconds": None})
                continue
            rows.append(
                {
                    "name": name,
                    "status": "done",
                    "summary": rec.get("summary", ""),
                    "seconds": rec.get("seconds"),
                    "finished": rec.get("finished", ""),
                }
            )
        if self.training().state == "running":
            for row in rows:
                if row["name"] == "train":
                    row["status"] = "running"
        return rows

    def counts(self) -> dict[str, Any]:
        docs = [e.fields["status"] for e in self.documents.entries()]
        curated = self.root / "curated.jsonl"
        kept = _count_lines(curated) if curated.is_file() else None
        summary = self.training().summary
        return {
            "papers_ok": sum(1 for s in docs if s == "ok"),
            "papers_skipped": sum(1 for s in docs if s != "ok"),
            "pairs": len(self.pairs.entries()),
            "kept": kept,
            "rejected": len(self.rejects.entries()) if kept is not None else None,
            "reviewed": len(self.reviews()),
            "best_step": summary.get("best_step"),
            "best_val_loss": summary.get("best_val_loss"),
        }

    def training(self) -> Training:
        """The partial adapter's metrics while training runs, else the finished adapter's."""
        partial, done = self.root / "adapters.partial", self.root / "adapters"
        metrics_path = partial / "metrics.jsonl"
        if metrics_path.is_file():
            age = time.time() - metrics_path.stat().st_mtime
            state = _read_json(partial / "checkpoint" / "state.json")
            rows = _metrics(metrics_path)
            return Training(
                "running" if age < LIVE_SECONDS else "stopped",
                rows,
                max((int(r.get("step", 0)) for r in rows), default=0),
                state.get("planned_steps") or self._planned(),
                {},
                age,
            )
        metrics_path = done / "metrics.jsonl"
        if not metrics_path.is_file():
            return Training("none", [], 0, None, {}, None)
        summary = _read_json(done / "train_summary.json")
        rows = _metrics(metrics_path)
        return Training(
            "done",
            rows,
            int(summary.get("steps") or 0),
            summary.get("planned_steps"),
            summary,
            None,
        )

    def _planned(self) -> int | None:
        train = (self.manifest().get("recipe") or {}).get("train") or {}
        iters = train.get("iters")
        return int(iters) if isinstance(iters, int) else None

    def compare_reports(self) -> list[Path]:
        """Comparison report folders beside this run (`compare/<names>/`, as `mlxtune compare`
        writes them) that compared this run."""
        found = []
        for report in sorted(self.root.parent.glob("compare/*/report.json")):
            data = _read_json(report)
            names = [m.get("name") for m in data.get("models", []) if isinstance(m, dict)]
            if self.name() in names and (report.parent / "report.html").is_file():
                found.append(report.parent.resolve())
        return found

    # ------------------------------------------------------------ papers

    def filter_documents(self, category: str = "", status: str = "") -> list[Entry]:
        return [
            e
            for e in self.documents.entries()
            if (not category or e.fields["category"] == category)
            and (not status or e.fields["status"] == status)
        ]

    def document(self, doc_id: str) -> dict[str, Any] | None:
        for entry in self.documents.entries():
            if entry.fields["id"] == doc_id:
                return self.documents.read(entry)
        return None

    def categories(self) -> list[str]:
        return sorted({e.fields["category"] for e in self.documents.entries()})

    def recorded_pdf(self, doc_id: str) -> Path | None:
        """The paper's file, only if it is a PDF whose bytes are still the recorded document
        (its id is their SHA-256): no other file on the disk can be asked for."""
        entry = next((e for e in self.documents.entries() if e.fields["id"] == doc_id), None)
        if entry is None or not entry.fields["path"].lower().endswith(".pdf"):
            return None
        path = Path(entry.fields["path"])
        if not path.is_absolute():  # the extract stage records absolute paths
            return None
        try:
            st = path.stat()
        except OSError:
            return None
        key = (st.st_size, st.st_mtime_ns)
        cached = self._doc_hash.get(doc_id)
        digest = cached[1] if cached and cached[0] == key else sha256_file(path)
        self._doc_hash[doc_id] = (key, digest)
        return path if digest == doc_id else None

    # ------------------------------------------------------------ pairs

    def reviews(self) -> dict[str, Review]:
        return self._reviews.get()

    def curator(self) -> dict[str, dict[str, Any]]:
        """key -> the curate stage's rejection (reason, score) of a pair."""
        return {e.fields["key"]: e.fields for e in self.rejects.entries()}

    def curated(self) -> bool:
        return (self.root / "curated.jsonl").is_file()

    def filter_pairs(self, category: str = "", verdict: str = "", review: str = "") -> list[Entry]:
        """The pairs that pass the filters: category, the curator's verdict (kept, rejected)
        and the review state (unreviewed, accept, reject, edit)."""
        rejected, reviews = self.curator(), self.reviews()
        out = []
        for entry in self.pairs.entries():
            key = entry.fields["key"]
            if category and entry.fields["category"] != category:
                continue
            if verdict and ("rejected" if key in rejected else "kept") != verdict:
                continue
            state = reviews[key].verdict if key in reviews else "unreviewed"
            if review and state != review:
                continue
            out.append(entry)
        return out

    def pair_entry(self, key: str) -> Entry | None:
        return next((e for e in self.pairs.entries() if e.fields["key"] == key), None)

    def review(self, key: str, verdict: str, **texts: str) -> Review:
        """Record a decision on the pair `key` of this run (a KeyError for an unknown pair)."""
        entry = self.pair_entry(key)
        if entry is None:
            raise KeyError(key)
        return append_review(
            self.root,
            Review(pair=key, verdict=verdict, document_id=entry.fields["document_id"], **texts),
        )


def _count_lines(path: Path) -> int:
    with open(path, "rb") as fh:
        return sum(1 for line in fh if line.strip())
