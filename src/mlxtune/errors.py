"""User-facing errors.

Anything a user can fix (a bad recipe key, a missing folder, too few examples) raises
`MlxtuneError`; the CLI prints its message on one line and exits non-zero, with no traceback.
"""

from __future__ import annotations


class MlxtuneError(Exception):
    """An error whose message tells the user what is wrong and what to do."""

    exit_code = 2


class RecipeError(MlxtuneError):
    """A recipe that cannot be loaded or validated; carries every problem found at once."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        noun = "problem" if len(problems) == 1 else "problems"
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{source}: {len(problems)} {noun}:\n{lines}")


class StageError(MlxtuneError):
    """A pipeline stage that cannot do its job (no documents, no examples, no model)."""

    def __init__(self, stage: str, message: str):
        self.stage = stage
        super().__init__(f"stage '{stage}': {message}")
