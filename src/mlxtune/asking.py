"""`ask`: answer a question with a (tuned) model, using the formatter's training prompt."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .components import Backend, Formatter, Sampling
from .errors import MlxtuneError
from .records import Example


def conversation_prompt(
    formatter: Formatter, history: list[tuple[str, str]], question: str
) -> Example:
    """The formatter's prompt for `question`, preceded by the earlier turns: chat prompts get
    them as user/assistant messages, completion prompts as earlier question/answer texts."""
    prompt = formatter.prompt(question)
    if prompt.messages is not None:
        head = [m for m in prompt.messages[:-1] if m["role"] == "system"]
        turns = []
        for q, a in history:
            turns += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
        return Example(messages=[*head, *turns, prompt.messages[-1]])
    earlier = "".join(f"{formatter.prompt(q).prompt} {a.strip()}\n\n" for q, a in history)
    return Example(prompt=earlier + (prompt.prompt or ""))


def sampling_from(ask: Any, **overrides: Any) -> Sampling:
    """A recipe's `ask:` section as Sampling; `overrides` that are not None win (command-line
    flags: the recipe gives the defaults, a flag replaces one)."""
    names = {f.name for f in fields(Sampling)}
    values = {k: v for k, v in ask.model_dump().items() if k in names}
    values.update({k: v for k, v in overrides.items() if v is not None})
    return Sampling(**values)


@dataclass
class Session:
    backend: Backend
    formatter: Formatter
    history: list[tuple[str, str]] = field(default_factory=list)
    sampling: Sampling = field(default_factory=Sampling)  # the recipe's `ask:` settings

    def answer(
        self,
        question: str,
        sampling: Sampling,
        on_text: Callable[[str], None] | None = None,
        *,
        remember: bool = False,
    ) -> tuple[str, str | None]:
        """(answer text, finish reason: 'stop' at end-of-sequence, 'length' at max_tokens,
        'loop' when the loop detector ended it).

        With `remember`, earlier questions and answers of this session precede the prompt.
        """
        pieces = []
        prompt = (
            conversation_prompt(self.formatter, self.history, question)
            if remember
            else self.formatter.prompt(question)
        )
        for piece in self.backend.generate(prompt, sampling):
            pieces.append(piece)
            if on_text is not None:
                on_text(piece)
        text = "".join(pieces)
        if remember:
            self.history.append((question, text))
        return text, getattr(self.backend, "finish_reason", None)


def trained_adapter(loaded: Any, recipe: str) -> str | None:
    """A recipe's trained adapter folder (None for `train: {use: none}`); a clear error when
    the recipe trains but has not been run."""
    if loaded.train.use == "none":
        return None
    trained = loaded.run_path / "adapters"
    if not (trained / "adapters.safetensors").is_file():
        raise MlxtuneError(
            f"no trained adapter in {trained}: run `mlxtune recipe run {recipe}` first"
        )
    return str(trained)


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
    sampling = Sampling()
    format_spec: dict[str, Any] = {"use": formatter or "approach"}
    if recipe is not None:
        from .recipe import load_recipe

        loaded, registry = load_recipe(recipe, overrides, plugins_dirs, check_paths=False)
        model = model or loaded.model_ref
        adapter = adapter or trained_adapter(loaded, recipe)
        format_spec = loaded.component("format") if formatter is None else {"use": formatter}
        backend = backend or loaded.ask.backend
        trust_remote_code = loaded.model.trust_remote_code
        sampling = sampling_from(loaded.ask)
    else:
        registry = get_registry(plugins_dirs)
    if not model:
        raise MlxtuneError("give --recipe R, or --model M (hub id or folder) [--adapter A]")
    session_backend = registry.build("backend", {"use": backend or "mlx"})
    session_backend.load(
        model, Path(adapter) if adapter else None, trust_remote_code=trust_remote_code
    )
    formatter_component = registry.build("formatter", format_spec)
    return Session(session_backend, formatter_component, sampling=sampling)  # type: ignore[arg-type]


def answer(question: str, *, sampling: Sampling | None = None, **session_args: Any) -> str:
    session = open_session(**session_args)
    text, _ = session.answer(question, sampling or Sampling())
    return text
