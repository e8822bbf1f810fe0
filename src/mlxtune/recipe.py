"""Recipes: YAML files that drive a whole run.

Loading is a few small steps, each collecting problems instead of stopping at the first:
read the file chain (`extends:`), resolve relative paths against the file that wrote them, apply
`a.b=c` overrides, validate the core schema with pydantic, then validate each component's options
against the component the recipe names. All problems are reported at once with their dotted key
and the file they came from.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from .errors import RecipeError
from .plugins import Registry, get_registry, pydantic_problem
from .recipe_schema import (
    COMPONENT_SECTIONS,
    DEFAULT_COMPONENTS,
    PATH_KEYS,
    AskSection,
    ComponentSpec,
    EvaluateSection,
    JudgeSection,
    ModelSection,
    Recipe,
    SplitCounts,
    SplitSection,
    Strict,
    TinyModel,
)
from .safe_yaml import YamlProblem, load_yaml_file, load_yaml_text

__all__ = [
    "AskSection",
    "ComponentSpec",
    "EvaluateSection",
    "JudgeSection",
    "ModelSection",
    "Recipe",
    "SplitCounts",
    "SplitSection",
    "Strict",
    "TinyModel",
    "apply_overrides",
    "load_recipe",
]


def _read_yaml(path: Path, chain: tuple[Path, ...]) -> tuple[dict[str, Any], dict[str, str]]:
    """Read one recipe file and its `extends:` chain; returns (data, origin of each dotted key)."""
    if path in chain:
        cycle = " -> ".join(str(p) for p in (*chain, path))
        raise RecipeError(str(chain[0]), [f"extends: cycle {cycle}"])
    if not path.is_file():
        where = str(chain[-1]) if chain else str(path)
        raise RecipeError(where, [f"recipe file not found: {path}"])
    try:
        data = load_yaml_file(path) or {}
    except OSError as exc:
        raise RecipeError(str(path), [f"cannot read it: {exc.strerror or exc}"]) from None
    except YamlProblem as exc:  # alias bombs, deep nesting, duplicate keys, binary: one line
        where = f" at line {exc.line}" if exc.line else ""
        raise RecipeError(str(path), [f"invalid YAML{where}: {exc.problem}"]) from None
    if not isinstance(data, dict):
        raise RecipeError(str(path), ["a recipe must be a mapping of keys to values"])
    _resolve_paths(data, path.parent)
    origins = {key: str(path) for key in _dotted_keys(data)}
    base_ref = data.pop("extends", None)
    if base_ref is None:
        return data, origins
    if not isinstance(base_ref, str):
        raise RecipeError(str(path), ["extends: must be a path to another recipe"])
    base_path = (path.parent / base_ref).resolve()
    base, base_origins = _read_yaml(base_path, (*chain, path))
    base_origins.update(origins)
    return deep_merge(base, data), base_origins


def _resolve_paths(data: dict[str, Any], base: Path, under: str = "") -> None:
    """Make the PATH_KEYS in `data` (those at or below the key `under`) absolute from `base`."""
    for dotted in PATH_KEYS:
        if under and not (dotted == under or dotted.startswith(under + ".")):
            continue
        parent, _, leaf = dotted.rpartition(".")
        holder = _get(data, parent) if parent else data
        if not isinstance(holder, dict) or leaf not in holder:
            continue
        value = holder[leaf]
        if isinstance(value, list):
            holder[leaf] = [_resolve_one(v, base) for v in value]
        else:
            holder[leaf] = _resolve_one(value, base)


def _resolve_one(value: Any, base: Path) -> Any:
    if not isinstance(value, str) or not value or value.startswith("package:") or "\0" in value:
        return value  # a NUL byte (`"a\0b"`) is reported by _path_problems
    expanded = os.path.expanduser(os.path.expandvars(value))
    return str((base / expanded).resolve()) if not os.path.isabs(expanded) else expanded


def _get(data: dict[str, Any], dotted: str) -> Any:
    node: Any = data
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _dotted_keys(data: dict[str, Any], prefix: str = "") -> list[str]:
    keys = []
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        keys.append(dotted)
        if isinstance(value, dict):
            keys.extend(_dotted_keys(value, dotted + "."))
    return keys


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Mappings merge key by key; anything else (lists included) is replaced."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            # switching a component (`use:`) keeps the options; those the new component does
            # not take are dropped once the registry is known (`drop_foreign_options`)
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> list[str]:
    """Apply `a.b=c` overrides in place (values parsed as YAML); returns the problems."""
    problems = []
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            problems.append(f"override '{item}': expected KEY=VALUE, e.g. train.iters=100")
            continue
        try:
            raw.encode("utf-8")
            value = load_yaml_text(raw) if raw.strip() else ""
        except UnicodeEncodeError:
            problems.append(f"override '{key.strip()}': the value is not UTF-8 text")
            continue
        except YamlProblem as exc:
            if not exc.syntax:  # an alias bomb or an unreadable value, not just text
                problems.append(f"override '{key.strip()}': invalid value: {exc}")
                continue
            value = raw  # not YAML (`name=[draft`): the text itself, as always
        parts = key.strip().split(".")
        node = data
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[parts[-1]] = value
        _resolve_paths(data, Path.cwd(), under=key.strip())  # relative to where it runs
    return problems


def load_recipe(
    path: str | os.PathLike[str],
    overrides: list[str] | tuple[str, ...] = (),
    plugins_dirs: list[str] | tuple[str, ...] = (),
    *,
    check_paths: bool = True,
) -> tuple[Recipe, Registry]:
    """Load, merge, override and validate a recipe; one `RecipeError` lists every problem."""
    path = Path(path).resolve()
    data, origins = _read_yaml(path, ())
    # default components first, so `train.iters=3` works on a recipe with no `train:` section
    data = deep_merge({s: {"use": u} for s, u in DEFAULT_COMPONENTS.items()}, data)
    problems = apply_overrides(data, list(overrides))
    for item in overrides:
        origins[item.partition("=")[0].strip()] = "command line"
    if isinstance(data.get("plugins_dir"), str):
        data["plugins_dir"] = [data["plugins_dir"]]
    if isinstance(data.get("track"), (str, dict)):
        data["track"] = [data["track"]]
    if isinstance(data.get("track"), list):  # `track: [tensorboard]` is `[{use: tensorboard}]`
        data["track"] = [{"use": t} if isinstance(t, str) else t for t in data["track"]]

    def where(loc: str) -> str:
        key = loc.partition(":")[0]
        while key and key not in origins:
            key = key.rpartition(".")[0]
        origin = origins.get(key)
        return f"{loc} [{_short(origin)}]" if origin and origin != str(path) else loc

    recipe: Recipe | None = None
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as exc:
        problems += [pydantic_problem(e, "", _fields_at(Recipe, e["loc"])) for e in exc.errors()]

    named = data.get("plugins_dir")  # not a list (`plugins_dir: 5`): the schema says so
    dirs = [*plugins_dirs, *(named if isinstance(named, list) else [])]
    registry = None
    try:
        registry = get_registry([d for d in dirs if isinstance(d, str)])
    except Exception as exc:
        problems.append(f"plugins: {exc}")

    if registry is not None:
        problems += _component_problems(data, registry)
        if recipe is not None:  # rebuilt without the dropped options
            recipe = Recipe.model_validate(data)

    problems += _path_problems(data, check_paths)  # read from the raw data: reported even
    # when the schema failed, so every problem comes at once

    if problems:
        raise RecipeError(str(path), [where(p) for p in problems])
    assert recipe is not None and registry is not None
    return recipe, registry


def _component_problems(data: dict[str, Any], registry: Registry) -> list[str]:
    """Each component section's options checked against the component it names (options of
    a component the recipe switched away from dropped), and the backends and metrics named."""
    problems = []
    for section, kind in COMPONENT_SECTIONS.items():
        spec = data.get(section)
        if isinstance(spec, dict) and isinstance(spec.get("use"), str):  # else the schema says
            drop_foreign_options(spec, kind, registry)
            problems += registry.option_problems(kind, spec, section)
    for key in ("ask.backend", "evaluate.judge.backend"):
        backend = _get(data, key) or "mlx"
        if isinstance(backend, str) and backend not in registry.names("backend"):
            problems.append(f"{key}: {registry.unknown_message('backend', backend)}")
    metrics = _get(data, "evaluate.metrics") or []
    for name in metrics if isinstance(metrics, list) else []:
        if name not in registry.names("metric"):
            problems.append(f"evaluate.metrics: {registry.unknown_message('metric', name)}")
    trackers = data.get("track") or []
    for i, spec in enumerate(trackers if isinstance(trackers, list) else []):
        if isinstance(spec, dict) and isinstance(spec.get("use"), str):
            problems += registry.option_problems("tracker", spec, f"track.{i}")
    return problems


def _path_problems(data: dict[str, Any], check_paths: bool) -> list[str]:
    """The model choice and the files and folders a recipe names."""
    problems = []
    model = data.get("model") if isinstance(data.get("model"), dict) else {}
    chosen = [k for k in ("id", "path", "gguf", "ollama", "tiny") if model.get(k) not in (None, "")]
    if not chosen and "model" in data:
        problems.append(
            "model: set one of model.id (hub id), model.path, model.gguf, model.ollama or "
            "model.tiny"
        )
    elif len(chosen) > 1:
        problems.append(f"model: set only one of {', '.join('model.' + c for c in chosen)}")
    for dotted in PATH_KEYS:
        value = _get(data, dotted)
        if any(
            isinstance(v, str) and "\0" in v
            for v in (value if isinstance(value, list) else [value])
        ):
            problems.append(f"{dotted}: a path cannot contain a NUL character")
    papers = data.get("papers")
    if check_paths and isinstance(papers, str) and not Path(papers).is_dir():
        problems.append(f"papers: folder not found: {papers} (point it at your folder of PDFs)")
    path = model.get("path")
    if isinstance(path, str) and path and not Path(path).is_dir():
        problems.append(f"model.path: folder not found: {path}")
    for key, ref in (("gguf", model.get("gguf")), ("ollama", model.get("ollama"))):
        if isinstance(ref, str) and ref:
            problems += _import_problems(ref if key == "gguf" else f"ollama:{ref}")
    return problems


def _import_problems(ref: str) -> list[str]:
    """A GGUF file or Ollama model that cannot be found, reported with the other problems."""
    from .errors import MlxtuneError
    from .gguf.importing import locate

    key = "model.ollama" if ref.startswith("ollama:") else "model.gguf"
    try:
        locate(ref)
    except MlxtuneError as exc:
        return [f"{key}: {exc}"]
    return []


def drop_foreign_options(spec: dict[str, Any], kind: str, registry: Registry) -> None:
    """After `use:` switched components (`train.use=torch` on an mlx recipe), drop the options
    the new component does not take but another component of its kind does: they belonged to
    the old one. Keys no component takes stay, so a typo is still an error."""
    name = spec.get("use")
    if name not in registry.names(kind):
        return
    own = set(registry.get(kind, name).Options.model_fields)
    others = set()
    for other in registry.names(kind):
        others |= set(registry.get(kind, other).Options.model_fields)
    for key in [k for k in spec if k != "use" and k not in own and k in others]:
        del spec[key]


def _fields_at(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Field names of the sub-model that holds `loc`, for 'did you mean' hints."""
    current: Any = model
    for part in loc[:-1]:
        field = getattr(current, "model_fields", {}).get(part)
        if field is None:
            return []
        annotation = field.annotation
        candidates = getattr(annotation, "__args__", (annotation,))
        current = next((c for c in candidates if hasattr(c, "model_fields")), None)
        if current is None:
            return []
    return list(getattr(current, "model_fields", {}))


def _short(path: str | None) -> str:
    if not path or path == "command line":
        return path or ""
    try:
        return os.path.relpath(path)
    except ValueError:
        return path
