"""Plugin discovery (pluggy) and the registry that resolves components by name.

Sources, in order: the built-in modules in `DEFAULT_PLUGINS`, installed distributions that declare
`[project.entry-points.mlxtune]` (skipped when `MLXTUNE_DISABLE_PLUGIN_AUTOLOAD` is set), and loose
`*.py` files in plugin directories (`--plugins-dir`, a recipe's `plugins_dir:`).
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pluggy
from pydantic import ValidationError

from . import hookspecs
from .components import KINDS, Component
from .errors import MlxtuneError

DEFAULT_PLUGINS = (
    "mlxtune.extract.pypdf_extractor",
    "mlxtune.extract.text_extractor",
    "mlxtune.summarize.heuristic",
    "mlxtune.summarize.mlx_summarizer",
    "mlxtune.summarize.auto",
    "mlxtune.summarize.openai_summarizer",
    "mlxtune.curate.rules",
    "mlxtune.curate.judge",
    "mlxtune.formatters.builtin",
    "mlxtune.train.mlx_trainer",
    "mlxtune.train.none",
    "mlxtune.backends.mlx_backend",
    "mlxtune.evaluate.metrics",
    "mlxtune.track.builtin",
    "mlxtune.retrieve.bm25",
)

ENTRY_POINT_GROUP = "mlxtune"
# component names that separate distributions provide: a recipe naming one says how to get it
OPTIONAL_PLUGINS = {"torch": "mlxtune-torch"}
HOOK_FOR_KIND = {
    "extractor": "register_extractors",
    "summarizer": "register_summarizers",
    "curator": "register_curators",
    "formatter": "register_formatters",
    "trainer": "register_trainers",
    "backend": "register_backends",
    "metric": "register_metrics",
    "tracker": "register_trackers",
    "retriever": "register_retrievers",
}


@dataclass(frozen=True)
class Entry:
    cls: type[Component]
    source: str


class Registry:
    """Every registered component by kind and name, with where it came from."""

    def __init__(self, pm: pluggy.PluginManager, sources: dict[int, str]):
        self.pm = pm
        self._entries: dict[str, dict[str, Entry]] = {kind: {} for kind in KINDS}
        problems = []
        for kind, hook_name in HOOK_FOR_KIND.items():
            for impl in getattr(pm.hook, hook_name).get_hookimpls():
                source = sources.get(id(impl.plugin), impl.plugin_name)

                def register(cls: type, _kind: str = kind, _source: str = source) -> None:
                    problem = self._add(_kind, cls, _source)
                    if problem:
                        problems.append(problem)

                impl.function(**{arg: register for arg in impl.argnames})
        if problems:
            raise MlxtuneError("; ".join(problems))

    def _add(self, kind: str, cls: type, source: str) -> str | None:
        base = KINDS[kind]
        if not (isinstance(cls, type) and issubclass(cls, base)):
            return f"{source} registered {cls!r} as a {kind}, but it is not a {base.__name__}"
        name = getattr(cls, "name", None)
        if not isinstance(name, str) or not name:
            return f"{source} registered {cls.__name__} without a `name`"
        if name in self._entries[kind]:
            other = self._entries[kind][name].source
            return (
                f"duplicate {kind} name '{name}': registered by {other} and by {source}; "
                "uninstall or rename one of them"
            )
        self._entries[kind][name] = Entry(cls, source)
        return None

    def names(self, kind: str) -> list[str]:
        return sorted(self._entries[kind])

    def entries(self) -> Iterable[tuple[str, str, Entry]]:
        for kind, entries in self._entries.items():
            for name in sorted(entries):
                yield kind, name, entries[name]

    def get(self, kind: str, name: str) -> type[Component]:
        try:
            return self._entries[kind][name].cls
        except KeyError:
            raise MlxtuneError(self.unknown_message(kind, name)) from None

    def unknown_message(self, kind: str, name: str) -> str:
        available = self.names(kind)
        if name in OPTIONAL_PLUGINS:
            return (
                f"{kind} '{name}' comes with the {OPTIONAL_PLUGINS[name]} plugin, which is not "
                f"installed: pip install {OPTIONAL_PLUGINS[name]} (from a checkout: "
                f"pip install -e plugins/{OPTIONAL_PLUGINS[name]})"
            )
        close = difflib.get_close_matches(name, available, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        listing = ", ".join(available) or "none installed"
        return f"unknown {kind} '{name}'{hint}; available: {listing}"

    def option_problems(self, kind: str, spec: dict[str, Any], key: str) -> list[str]:
        """Every problem with a `{use: name, ...options}` section, as `key.sub: message`."""
        name = spec.get("use")
        if name not in self._entries[kind]:
            return [f"{key}.use: {self.unknown_message(kind, str(name))}"]
        options = {k: v for k, v in spec.items() if k != "use"}
        cls = self._entries[kind][name].cls
        try:
            cls.Options.model_validate(options)
        except ValidationError as exc:
            return [pydantic_problem(err, key, cls.Options.model_fields) for err in exc.errors()]
        return []

    def build(self, kind: str, spec: dict[str, Any]) -> Component:
        cls = self.get(kind, spec["use"])
        options = cls.Options.model_validate({k: v for k, v in spec.items() if k != "use"})
        return cls(options)


def pydantic_problem(error: dict[str, Any], prefix: str, fields: Iterable[str] = ()) -> str:
    """One readable line for one pydantic error, keyed by its dotted path."""
    loc = ".".join(str(part) for part in (prefix, *error["loc"]) if part != "")
    if error["type"] == "extra_forbidden":
        field_name = str(error["loc"][-1])
        close = difflib.get_close_matches(field_name, list(fields), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        return f"{loc}: unknown key{hint}"
    value = error.get("input")
    shown = (
        f" (got {value!r})" if error["type"] != "missing" and not isinstance(value, dict) else ""
    )
    return f"{loc}: {error['msg'].lower()}{shown}"


def _load_dir(pm: pluggy.PluginManager, directory: Path, sources: dict[int, str]) -> None:
    if not directory.is_dir():
        raise MlxtuneError(f"plugins directory not found: {directory}")
    for path in sorted(directory.glob("*.py")):
        module_name = f"mlxtune_plugins_dir.{path.stem}_{abs(hash(str(path.resolve())))}"
        spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None or spec.loader is None:
            raise MlxtuneError(f"cannot load plugin file {path}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            raise MlxtuneError(f"plugin file {path} failed to import: {exc}") from exc
        pm.register(module, name=str(path))
        sources[id(module)] = f"{path} (plugins dir)"


_CACHE: dict[tuple[str, ...], Registry] = {}


def get_registry(plugins_dirs: Sequence[str | os.PathLike[str]] = ()) -> Registry:
    """The registry for the built-ins, entry points and the given plugin directories (cached)."""
    key = tuple(str(Path(d).resolve()) for d in plugins_dirs)
    key += (os.environ.get("MLXTUNE_DISABLE_PLUGIN_AUTOLOAD", ""),)
    if key not in _CACHE:
        _CACHE[key] = _build_registry([Path(d) for d in plugins_dirs])
    return _CACHE[key]


def get_plugin_manager(plugins_dirs: Sequence[str | os.PathLike[str]] = ()) -> pluggy.PluginManager:
    return get_registry(plugins_dirs).pm


def _build_registry(plugins_dirs: list[Path]) -> Registry:
    pm = pluggy.PluginManager("mlxtune")
    pm.add_hookspecs(hookspecs)
    sources: dict[int, str] = {}
    for module_name in DEFAULT_PLUGINS:
        module = importlib.import_module(module_name)
        pm.register(module, name=module_name)
        sources[id(module)] = "mlxtune (built-in)"
    if not os.environ.get("MLXTUNE_DISABLE_PLUGIN_AUTOLOAD"):
        try:
            pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
        except Exception as exc:  # a broken third-party install must not hide the cause
            raise MlxtuneError(f"an installed mlxtune plugin failed to load: {exc}") from exc
        for plugin, dist in pm.list_plugin_distinfo():
            sources[id(plugin)] = f"{dist.metadata['name']} {dist.version} (entry point)"
    for directory in plugins_dirs:
        _load_dir(pm, directory, sources)
    for plugin in pm.get_plugins():
        _check_api(plugin, sources.get(id(plugin), str(plugin)))
    return Registry(pm, sources)


def _check_api(plugin: Any, source: str) -> None:
    """A plugin that declares the API it was written for (`MLXTUNE_API = N` in its module)
    loads only where that is this mlxtune's `mlxtune.api.API_VERSION`."""
    wanted = getattr(plugin, "MLXTUNE_API", None)
    have = hookspecs.API_VERSION
    if wanted is None or wanted == have:
        return
    raise MlxtuneError(
        f"plugin {source} needs mlxtune API {wanted}, this mlxtune has API {have}: "
        "install the versions that match (pip install -U mlxtune and the plugin)"
    )
