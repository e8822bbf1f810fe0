"""The `mlxtune` command line: thin, it parses, calls the API and prints.

Nothing heavy is imported at start-up (no mlx, no mlx_lm), so `mlxtune --help` is instant. The
root group is in root.py; each module adds its commands to it.
"""

from __future__ import annotations

from . import answering, models, recipes, ui
from .root import Group, cli, main

__all__ = ["Group", "answering", "cli", "main", "models", "recipes", "ui"]
