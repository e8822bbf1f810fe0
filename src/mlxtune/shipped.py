"""The recipes and sample papers that ship with mlxtune, found by name.

An installed wheel carries the repository's recipes/ and examples/ folders as
mlxtune/shipped/recipes and mlxtune/shipped/examples (setup.py puts them there); a clone or an
editable install has them at the top level of the checkout. Either way `mlxtune recipe run
quickstart` finds the quick start, and its `papers: ../examples/papers` resolves beside it, while
the run is written under the current folder as for any recipe.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import MlxtuneError

PACKAGE = Path(__file__).resolve().parent
SUFFIX = ".yaml"


def shipped_root() -> Path | None:
    """The folder holding `recipes/` and `examples/`: the package's own copy (a wheel), else the
    checkout this package runs from (a clone or an editable install)."""
    for root in (PACKAGE / "shipped", PACKAGE.parent.parent):
        if (root / "recipes" / f"quickstart{SUFFIX}").is_file():
            return root
    return None


def shipped_recipes() -> dict[str, Path]:
    """Every shipped recipe by name: `quickstart`, `real`, `real/base`, `tiny/approach`, ..."""
    root = shipped_root()
    if root is None:
        return {}
    folder = root / "recipes"
    found = {
        path.relative_to(folder).with_suffix("").as_posix(): path
        for path in folder.rglob(f"*{SUFFIX}")
    }
    return {name: found[name] for name in sorted(found, key=lambda n: (n.count("/"), n))}


def shipped_name(ref: str) -> str | None:
    """The shipped recipe that `ref` names: `quickstart`, `quickstart.yaml` or the clone's path
    `recipes/quickstart.yaml`; None when it names none."""
    name = ref.replace(os.sep, "/").removeprefix("./").removeprefix("recipes/")
    name = name.removesuffix(SUFFIX)
    return name if name in shipped_recipes() else None


def resolve_recipe(ref: str) -> str:
    """A recipe file to load: `ref` itself when it exists, else the shipped recipe it names.

    A path that exists always wins, so a user's own `quickstart.yaml` (or a clone's
    recipes/quickstart.yaml) is never replaced by the shipped copy."""
    if Path(ref).expanduser().exists():
        return ref
    name = shipped_name(ref)
    if name is not None:
        return str(shipped_recipes()[name])
    if "/" not in ref and os.sep not in ref and not ref.endswith((SUFFIX, ".yml")):
        names = ", ".join(shipped_recipes()) or "none found in this installation"
        raise MlxtuneError(
            f"recipe not found: {ref} (give a recipe file, or the name of a shipped recipe: "
            f"{names}; `mlxtune recipe list` describes them)"
        )
    return ref  # a missing file: load_recipe names it
