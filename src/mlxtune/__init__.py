"""mlxtune: a folder of research papers in, a LoRA-tuned local LLM that proposes approaches out.

The public API is small and lazy (importing mlxtune does not import mlx):

    from mlxtune import load_recipe, run_recipe, ask
"""

from __future__ import annotations

from typing import Any

from .version import __version__  # noqa: E402

__all__ = ["__version__", "ask", "hookimpl", "load_recipe", "run_recipe"]

from .hookspecs import hookimpl  # noqa: E402  (cheap: pluggy only)


def load_recipe(path: str, overrides: list[str] | tuple[str, ...] = (), **kwargs: Any):
    """Load and validate a recipe; returns `(Recipe, Registry)`."""
    from .recipe import load_recipe as _load

    return _load(path, overrides, **kwargs)


def run_recipe(path: str, overrides: list[str] | tuple[str, ...] = (), **kwargs: Any):
    """Load a recipe and run its stages (skipping those up to date); returns the `Run`."""
    from .pipeline import run_recipe as _run
    from .recipe import load_recipe as _load

    recipe, registry = _load(path, overrides)
    return _run(recipe, registry, **kwargs)


def ask(question: str, **kwargs: Any) -> str:
    """Answer one question with a tuned model; see `mlxtune.asking.answer`."""
    from .asking import answer

    return answer(question, **kwargs)
