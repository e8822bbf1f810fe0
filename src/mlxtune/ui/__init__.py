"""`mlxtune ui`: a local web app to read a run's papers and pairs, decide on pairs (accept,
reject, edit: reviews.jsonl, applied by the curate stage), watch training and chat with the
model. Its libraries (Starlette, Jinja2, uvicorn) come with `pip install "mlxtune[ui]"`."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from ..errors import MlxtuneError

MISSING = 'mlxtune ui needs its extra: pip install "mlxtune[ui]" (Starlette, Jinja2, uvicorn)'


def require_ui() -> None:
    """One line naming the extra when one of its libraries is missing."""
    for module in ("starlette", "jinja2", "uvicorn"):
        if importlib.util.find_spec(module) is None:
            raise MlxtuneError(MISSING)


def open_runs(folders: list[str], recipes: list[Any] = ()) -> list[Any]:
    """The run directories given (and those of the recipes), each with a unique URL name."""
    from .runs import RunDir

    given: list[tuple[Path, Any]] = [(Path(f), None) for f in folders]
    given += [(r.run_path, r) for r in recipes]
    runs, seen, slugs = [], set(), set()
    for path, recipe in given:
        root = path.expanduser().resolve()
        if root in seen:
            continue
        if not (root / "manifest.json").is_file():
            raise MlxtuneError(
                f"{path} is not a run directory (no manifest.json): run "
                "`mlxtune recipe run RECIPE` first, or give its runs/<name> folder"
            )
        seen.add(root)
        slug, n = _slug(root.name), 2
        while slug in slugs:
            slug, n = f"{_slug(root.name)}-{n}", n + 1
        slugs.add(slug)
        runs.append(RunDir(root, slug, recipe))
    return runs


def _slug(name: str) -> str:
    text = "".join(c if c.isalnum() or c in "-_." else "-" for c in name).strip(".")
    return text or "run"
