"""The pluggy hook specifications: the whole plugin contract.

A plugin module implements any of these with `@mlxtune.hookimpl`. Each `register_*` hook receives
a `register` function; call it with component classes (subclasses of the ABCs in
`mlxtune.components`). Built-in components register through these same hooks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

# the plugin API's version (`mlxtune.api.API_VERSION`): kept beside the hooks, on the ground
# floor, so that the registry checks it without importing the API module's lazy names
API_VERSION = 1

hookspec = pluggy.HookspecMarker("mlxtune")
hookimpl = pluggy.HookimplMarker("mlxtune")

Register = Callable[[type], None]


@hookspec
def register_extractors(register: Register) -> None:
    """Register `Extractor` classes, which turn input files (by suffix) into documents."""


@hookspec
def register_summarizers(register: Register) -> None:
    """Register `Summarizer` classes, which turn documents into question/approach pairs."""


@hookspec
def register_curators(register: Register) -> None:
    """Register `Curator` classes, which keep or reject pairs before they are formatted."""


@hookspec
def register_formatters(register: Register) -> None:
    """Register `Formatter` classes, which turn pairs into training text and prompts."""


@hookspec
def register_trainers(register: Register) -> None:
    """Register `Trainer` classes, which train an adapter from the formatted data."""


@hookspec
def register_backends(register: Register) -> None:
    """Register `Backend` classes, which generate text for `ask` and LLM summarizers."""


@hookspec
def register_metrics(register: Register) -> None:
    """Register `Metric` classes, which score generated answers in `mlxtune compare`."""


@hookspec
def register_trackers(register: Register) -> None:
    """Register `Tracker` classes, which send training runs to an experiment tracker."""


@hookspec
def register_retrievers(register: Register) -> None:
    """Register `Retriever` classes, which find the papers' passages for a prompt (`retrieve:`)."""


@hookspec
def register_commands(cli: Any) -> None:
    """Add commands to the `mlxtune` click group (`cli` is a `click.Group`)."""
