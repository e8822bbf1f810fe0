"""The records that flow between stages, and safe file IO for them.

Every stage output is a plain file. Whole files are written atomically (temp file + rename) so a
crash never leaves half a file; caches are append-only JSONL, flushed and fsynced per record, and
a torn last line (a crash mid-write) is ignored on read. A cache line damaged otherwise (bad
bytes, not JSON, not an object) is skipped with a warning by `mlxtune.cache.JsonlCache`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from types import UnionType
from typing import Any, TypeVar, Union, get_args, get_origin, get_type_hints

from .errors import MlxtuneError

R = TypeVar("R")


class DamagedFileError(MlxtuneError, ValueError):
    """A JSONL line that cannot be read (a ValueError too, as before this class existed)."""


@dataclass
class Document:
    """One input paper after extraction. `id` is the SHA-256 of the file's bytes."""

    id: str
    path: str
    category: str
    status: str = "ok"  # ok | skipped (nothing to extract) | failed (could not be read)
    reason: str = ""  # one line for the user, e.g. "encrypted PDF (password required; ...)"
    problem: str = ""  # short kind for counting: encrypted, image-only, corrupt, timeout, ...
    title: str = ""
    text: str = ""
    sections: dict[str, str] = field(default_factory=dict)
    pages: int = 0
    readability: float | None = None  # extract/quality.py: 1.0 ordinary prose, < 0.5 garbage

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass
class Pair:
    """A [research question, approach] pair with its provenance."""

    document_id: str
    category: str
    question: str
    approach: str
    title: str = ""
    split: str = "train"
    summarizer: str = ""
    model: str = ""
    prompt_hash: str = ""
    decoding: str = ""  # LLM summarizers: structured decoding, penalties, a retry after a loop
    # the sentences the pair was drawn from: {"field": "question"|"approach", "section",
    # "start", "end" (character offsets into the Document's text), "text"}; checked by the
    # rules curator (curate/rules.py)
    evidence: list[dict[str, Any]] = field(default_factory=list)
    # a human's decision applied by the curate stage (mlxtune/reviews.py): accepted | edited |
    # rejected; empty where nobody reviewed the pair
    review: str = ""


@dataclass
class Example:
    """One training example in mlx-lm's data formats.

    Completion-style formatters set `text` (the whole example) and `prompt` (its leading part,
    masked from the loss); `mlx_lm.lora --data` reads `text` as a plain text dataset. Chat
    formatters set `messages`, which mlx-lm reads as a chat dataset.
    """

    text: str | None = None
    prompt: str | None = None
    messages: list[dict[str, str]] | None = None

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_json(value: Any) -> str:
    return sha256_bytes(json.dumps(value, sort_keys=True, default=str).encode())


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write `data` to `path` so that readers see the old file or the new one, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], value: Any) -> None:
    atomic_write_text(path, json.dumps(value, indent=2, sort_keys=False, default=str) + "\n")


def replace_dir(staging: Path, target: Path) -> None:
    """Swap a finished directory into place; the old one is removed only after success."""
    old = target.with_name(target.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    staging.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def write_jsonl(path: str | os.PathLike[str], rows: Iterable[Any]) -> int:
    """Atomically write rows (dataclasses or dicts) as JSON lines; returns the row count."""
    lines = []
    for row in rows:
        lines.append(json.dumps(_plain(row), ensure_ascii=False))
    atomic_write_text(path, "".join(line + "\n" for line in lines))
    return len(lines)


def read_jsonl(
    path: str | os.PathLike[str], on_bad: Callable[[int, str], None] | None = None
) -> Iterator[dict[str, Any]]:
    """Yield each JSON object line; a torn final line (crash mid-append) is skipped.

    A damaged line elsewhere (not UTF-8, not JSON, not an object) is passed to `on_bad(line
    number, reason)` and skipped; without `on_bad` it is a `DamagedFileError` naming the file and
    line (a stage's own output, written whole, is never damaged by a crash)."""
    for _, row in numbered_jsonl(path, on_bad):
        yield row


def numbered_jsonl(
    path: str | os.PathLike[str], on_bad: Callable[[int, str], None] | None = None
) -> Iterator[tuple[int, dict[str, Any]]]:
    """`read_jsonl`, each object with its line number (for messages about the line)."""
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            try:
                row = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError as exc:
                problem = f"not UTF-8 (byte {raw[exc.start]:#04x})"
            except ValueError:  # json.JSONDecodeError, or a number of 5,000 digits
                problem = "not valid JSON"
            else:
                if isinstance(row, dict):
                    yield number, row
                    continue
                problem = f"a JSON {type(row).__name__}, not an object"
            if not raw.endswith(b"\n"):
                return  # torn last line from an interrupted append
            if on_bad is None:
                raise DamagedFileError(f"{path} line {number}: {problem}; fix or delete that line")
            on_bad(number, problem)


def from_row(cls: type[R], row: Any) -> R:
    """A record dataclass (Document, Pair, ...) from a JSON object read back, or a ValueError
    naming the field that is missing, unknown or of the wrong type (so that a damaged cache
    line is found when it is read, not when a stage trips over it)."""
    if not isinstance(row, dict):
        raise ValueError(f"expected an object for {cls.__name__}, got {type(row).__name__}")
    hints = get_type_hints(cls)
    for f in fields(cls):  # type: ignore[arg-type]
        if f.name not in row and f.default is MISSING and f.default_factory is MISSING:
            raise ValueError(f"{cls.__name__} field '{f.name}' is missing")
    for name, value in row.items():
        if name not in hints:
            raise ValueError(f"{cls.__name__} has no field '{name}'")
        if not _fits(value, hints[name]):
            raise ValueError(f"{cls.__name__} field '{name}' is a {type(value).__name__}")
    return cls(**row)


def _fits(value: Any, hint: Any) -> bool:
    """Whether a JSON value has the type a record field declares (str, int, float, None, and
    dicts, lists and unions of them)."""
    origin, args = get_origin(hint), get_args(hint)
    if hint is Any:
        return True
    if origin in (Union, UnionType):
        return any(_fits(value, a) for a in args)
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is dict:
        return isinstance(value, dict) and all(_fits(v, args[-1]) for v in value.values())
    if origin is list:
        return isinstance(value, list) and all(_fits(v, args[0]) for v in value)
    return isinstance(value, hint) if isinstance(hint, type) else True


def append_jsonl(path: str | os.PathLike[str], row: Any) -> None:
    """Append one record durably: one write of a whole line, flushed and fsynced.

    An exclusive lock makes appends from concurrent runs sharing a cache safe (POSIX; elsewhere
    the single `write` of a whole line is the protection).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = (json.dumps(_plain(row), ensure_ascii=False) + "\n").encode("utf-8")
    with open(path, "ab") as fh:
        _lock(fh)
        _drop_torn_tail(path)
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _lock(fh: Any) -> None:
    try:
        import fcntl
    except ImportError:  # Windows
        return
    fcntl.flock(fh.fileno(), fcntl.LOCK_EX)  # released when the file is closed


def _drop_torn_tail(path: Path) -> None:
    """Cut an incomplete last line (a crash mid-append) so the next record starts clean."""
    if not path.exists() or path.stat().st_size == 0:
        return
    with open(path, "r+b") as fh:
        fh.seek(-1, os.SEEK_END)
        if fh.read(1) == b"\n":
            return
        size = fh.seek(0, os.SEEK_END)
        chunk = min(size, 1 << 20)
        while True:
            fh.seek(size - chunk)
            cut = fh.read(chunk).rfind(b"\n")
            if cut >= 0 or chunk == size:
                fh.truncate(size - chunk + cut + 1 if cut >= 0 else 0)
                return
            chunk = min(size, chunk * 2)


def _plain(row: Any) -> Any:
    if hasattr(row, "to_json"):
        return row.to_json()
    if hasattr(row, "__dataclass_fields__"):
        return asdict(row)
    return row


def load_documents(path: str | os.PathLike[str]) -> list[Document]:
    return [Document(**row) for row in read_jsonl(path)]


def load_pairs(path: str | os.PathLike[str]) -> list[Pair]:
    return [Pair(**row) for row in read_jsonl(path)]
