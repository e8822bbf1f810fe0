"""`ask`: answer a question with a (tuned) model, using the formatter's training prompt."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .components import Backend, Formatter, Sampling
from .errors import MlxtuneError


@dataclass
class Session:
    backend: Backend
    formatter: Formatter

    def answer(
        self, question: str, sampling: Sampling, on_text: Callable[[str], None] | None = None
    ) -> tuple[str, str | None]:
        """(answer text, finish reason: 'stop' at end-of-sequence, 'length' at max_tokens)."""
        pieces = []
        for piece in self.backend.generate(self.formatter.prompt(question), sampling):
            pieces.append(piece)
            if on_text is not None:
                on_text(piece)
        return "".join(pieces), getattr(self.backend, "finish_reason", None)


def open_session(
    *,
    recipe: str | None = None,
    overrides: tuple[str, ...] = (),
    model: str | None = None,
    adapter: str | None = None,
    formatter: str | None = None,
    backend: str | None = None,
    plugins_dirs: tuple[str, ...] = (),
) -> Session:
    """Load the model once. From a recipe: its model, trained adapter and formatter."""
    from .plugins import get_registry

    trust_remote_code = False
    format_spec: dict[str, Any] = {"use": formatter or "approach"}
    if recipe is not None:
        from .recipe import load_recipe

        loaded, registry = load_recipe(recipe, overrides, plugins_dirs, check_paths=False)
        model = model or loaded.model_ref
        trained = loaded.run_path / "adapters"
        if adapter is None:
            if not (trained / "adapters.safetensors").is_file():
                raise MlxtuneError(
                    f"no trained adapter in {trained}: run `mlxtune recipe run {recipe}` first"
                )
            adapter = str(trained)
        format_spec = loaded.component("format") if formatter is None else {"use": formatter}
        backend = backend or loaded.ask.backend
        trust_remote_code = loaded.model.trust_remote_code
    else:
        registry = get_registry(plugins_dirs)
    if not model:
        raise MlxtuneError("give --recipe R, or --model M (hub id or folder) [--adapter A]")
    session_backend = registry.build("backend", {"use": backend or "mlx"})
    session_backend.load(
        model, Path(adapter) if adapter else None, trust_remote_code=trust_remote_code
    )
    return Session(session_backend, registry.build("formatter", format_spec))  # type: ignore[arg-type]


def answer(question: str, *, sampling: Sampling | None = None, **session_args: Any) -> str:
    session = open_session(**session_args)
    text, _ = session.answer(question, sampling or Sampling())
    return text
