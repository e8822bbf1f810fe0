"""Answering questions with a (tuned) model through the formatter's training prompt: the one
session that `mlxtune ask`, `chat`, `serve`, the ask stage, evaluation and the judge all use."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .components import Answer, Backend, Formatter, Sampling
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
    flags: the recipe gives the defaults, a flag replaces one), checked by the same bounds."""
    from .sampling import with_overrides

    return with_overrides(ask.sampling(), overrides)


@dataclass
class Session:
    """A loaded model (and adapter) with the formatter whose prompt it was trained on."""

    backend: Backend
    formatter: Formatter | None
    history: list[tuple[str, str]] = field(default_factory=list)
    sampling: Sampling = field(default_factory=Sampling)  # the recipe's `ask:` settings

    def answer(
        self,
        question: str,
        sampling: Sampling | None = None,
        on_text: Callable[[str], None] | None = None,
        *,
        remember: bool = False,
    ) -> Answer:
        """The answer to `question` in the formatter's prompt (the session's sampling unless
        one is given). With `remember`, earlier questions and answers of this session precede
        the prompt."""
        if self.formatter is None:
            raise MlxtuneError("this session has no formatter: use answer_prompt")
        prompt = (
            conversation_prompt(self.formatter, self.history, question)
            if remember
            else self.formatter.prompt(question)
        )
        reply = self.answer_prompt(prompt, sampling, on_text)
        if remember:
            self.history.append((question, reply.text))
        return reply

    def answer_prompt(
        self,
        prompt: Example,
        sampling: Sampling | None = None,
        on_text: Callable[[str], None] | None = None,
    ) -> Answer:
        """The answer to a prompt built elsewhere (the judge's grading prompt)."""
        return self.backend.answer(prompt, sampling or self.sampling, on_text)


def load_session(
    registry: Any,
    model: str,
    adapter: Path | None = None,
    *,
    backend: str = "mlx",
    formatter: dict[str, Any] | None = None,
    trust_remote_code: bool = False,
    sampling: Sampling | None = None,
) -> Session:
    """Build the backend and formatter and load the model (and adapter) once."""
    if adapter is not None:  # the run's record of its adapter, as `recipe run` checks it
        from .adapters.integrity import check_adapter

        check_adapter(Path(adapter))
    loaded = registry.build("backend", {"use": backend})
    loaded.load(model, adapter, trust_remote_code=trust_remote_code)
    built = registry.build("formatter", formatter) if formatter is not None else None
    return Session(loaded, built, sampling=sampling or Sampling())


def recipe_session(recipe: Any, registry: Any, adapter: Path | None) -> Session:
    """A recipe's model with `adapter`, its formatter, backend and `ask:` sampling."""
    return load_session(
        registry,
        recipe.model_ref,
        adapter,
        backend=recipe.ask.backend,
        formatter=recipe.component("format"),
        trust_remote_code=recipe.model.trust_remote_code,
        sampling=sampling_from(recipe.ask),
    )


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

    if recipe is not None:
        from .recipe import load_recipe

        loaded, registry = load_recipe(recipe, overrides, plugins_dirs, check_paths=False)
        trained = Path(adapter) if adapter else _trained(loaded, recipe)
        return load_session(
            registry,
            model or loaded.model_ref,
            trained,
            backend=backend or loaded.ask.backend,
            formatter=loaded.component("format") if formatter is None else {"use": formatter},
            trust_remote_code=loaded.model.trust_remote_code,
            sampling=sampling_from(loaded.ask),
        )
    if not model:
        raise MlxtuneError("give --recipe R, or --model M (hub id or folder) [--adapter A]")
    return load_session(
        get_registry(plugins_dirs),
        model,
        Path(adapter) if adapter else None,
        backend=backend or "mlx",
        formatter={"use": formatter or "approach"},
    )


def _trained(loaded: Any, recipe: str) -> Path | None:
    trained = trained_adapter(loaded, recipe)
    return Path(trained) if trained else None


def answer(question: str, *, sampling: Sampling | None = None, **session_args: Any) -> str:
    session = open_session(**session_args)
    return session.answer(question, sampling or Sampling()).text
