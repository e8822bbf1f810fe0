"""What to load, decided in one place: the model, adapter, formatter, backend and sampling that
`ask`, `chat`, `serve`, `compare` (and the ask stage), `export` and `fuse` use, from a recipe or
from flags.

A flag that is given replaces the recipe's value. A recipe that trains brings its trained adapter
(none for `train: {use: none}`); one that has not been run yet is one clear error. The dtype is
not chosen here: loading follows the one policy, `mlxtune.device.resolve_dtype`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .components import Sampling
from .errors import MlxtuneError
from .sampling import sampling_from


@dataclass(frozen=True)
class Selection:
    model: str  # hub id, folder, or an imported GGUF/Ollama model's folder
    adapter: Path | None
    formatter: dict[str, Any]  # the formatter's component spec: {"use": name, ...options}
    backend: str
    registry: Any  # the recipe's registry (its plugin folders), or the flags' one
    trust_remote_code: bool = False
    revision: str | None = None
    sampling: Sampling = field(default_factory=Sampling)  # the recipe's `ask:` settings
    name: str = "model"  # the recipe's name (export names its files after it)
    recipe: Any = None  # the loaded Recipe (its run folder, `retrieve:`), when from one


def trained_adapter(recipe: Any, recipe_path: str) -> str | None:
    """A loaded recipe's trained adapter folder (None for `train: {use: none}`); a clear error
    when the recipe trains but has not been run."""
    if recipe.train.use == "none":
        return None
    trained = recipe.run_path / "adapters"
    if not (trained / "adapters.safetensors").is_file():
        raise MlxtuneError(
            f"no trained adapter in {trained}: run `mlxtune recipe run {recipe_path}` first"
        )
    return str(trained)


def of_recipe(recipe: Any, registry: Any, adapter: Path | None) -> Selection:
    """A loaded recipe's model, formatter, backend and sampling with `adapter` (a run's own,
    as the ask stage and `compare` pass it)."""
    return Selection(
        model=recipe.model_ref,
        adapter=adapter,
        formatter=recipe.component("format"),
        backend=recipe.ask.backend,
        registry=registry,
        trust_remote_code=recipe.model.trust_remote_code,
        revision=recipe.model.revision,
        sampling=sampling_from(recipe.ask),
        name=recipe.name,
        recipe=recipe,
    )


def select(
    *,
    recipe: str | None = None,
    overrides: tuple[str, ...] = (),
    model: str | None = None,
    adapter: str | None = None,
    formatter: str | None = None,
    backend: str | None = None,
    plugins_dirs: tuple[str, ...] = (),
    usage: str = "give --recipe R, or --model M (hub id or folder) [--adapter A]",
) -> Selection:
    """From a recipe file (its trained adapter unless `adapter` is given), or from the flags
    alone (`usage` is the error when neither names a model)."""
    if recipe is not None:
        from .recipe import load_recipe

        loaded, registry = load_recipe(recipe, overrides, plugins_dirs, check_paths=False)
        trained = adapter or trained_adapter(loaded, recipe)
        chosen = of_recipe(loaded, registry, Path(trained) if trained else None)
        return replace(
            chosen,
            model=model or chosen.model,
            formatter={"use": formatter} if formatter is not None else chosen.formatter,
            backend=backend or chosen.backend,
        )
    if not model:
        raise MlxtuneError(usage)
    from .plugins import get_registry

    return Selection(
        model=model,
        adapter=Path(adapter) if adapter else None,
        formatter={"use": formatter or "approach"},
        backend=backend or "mlx",
        registry=get_registry(plugins_dirs),
    )
