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
from .sampling import sampling_from as sampling_from  # the recipe's `ask:` (compare, ui)
from .selection import Selection, of_recipe, select
from .selection import trained_adapter as trained_adapter  # for callers of the old name


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


@dataclass
class Session:
    """A loaded model (and adapter) with the formatter whose prompt it was trained on."""

    backend: Backend
    formatter: Formatter | None
    history: list[tuple[str, str]] = field(default_factory=list)
    sampling: Sampling = field(default_factory=Sampling)  # the recipe's `ask:` settings
    # a recipe's `retrieve:` (mlxtune.retrieve.Retrieval): every question's top passages go
    # before it, as in `compare`; `passages` holds those of the last answer, for the caller
    retrieval: Any = None
    passages: list[Any] = field(default_factory=list)

    def answer(
        self,
        question: str,
        sampling: Sampling | None = None,
        on_text: Callable[[str], None] | None = None,
        *,
        remember: bool = False,
        own_paper: str | None = None,
    ) -> Answer:
        """The answer to `question` in the formatter's prompt (the session's sampling unless
        one is given). With `remember`, earlier questions and answers of this session precede
        the prompt. With retrieval, `own_paper` (a held-out question's paper) is never quoted."""
        if self.formatter is None:
            raise MlxtuneError("this session has no formatter: use answer_prompt")
        prompt = (
            conversation_prompt(self.formatter, self.history, question)
            if remember
            else self.formatter.prompt(question)
        )
        if self.retrieval is not None:
            from .retrieve import with_passages

            self.passages = self.retrieval.for_question(question, own_paper)
            prompt = with_passages(prompt, self.passages)
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
    return session_of(of_recipe(recipe, registry, adapter))


def session_of(chosen: Selection) -> Session:
    """Load what `selection` chose, once (with the recipe's `retrieve:`, when from a recipe)."""
    session = load_session(
        chosen.registry,
        chosen.model,
        chosen.adapter,
        backend=chosen.backend,
        formatter=chosen.formatter,
        trust_remote_code=chosen.trust_remote_code,
        sampling=chosen.sampling,
    )
    if chosen.recipe is None:
        return session
    return with_recipe_retrieval(session, chosen.recipe, chosen.registry)


def with_recipe_retrieval(session: Session, recipe: Any, registry: Any) -> Session:
    """The session with the recipe's `retrieve:` over its run's papers (as is, without one)."""
    if recipe.retrieve is None:
        return session
    from .retrieve import build_retrieval

    documents = recipe.run_path / "documents.jsonl"
    if not documents.is_file():
        raise MlxtuneError(
            f"retrieve: no extracted papers in {documents}: run `mlxtune recipe run` with this "
            "recipe first (its passages come from the run's documents.jsonl)"
        )
    session.retrieval = build_retrieval(recipe.retrieve.model_dump(), registry, documents)
    return session


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
    """Load the model once: what `selection.select` chose from a recipe or the flags."""
    return session_of(
        select(
            recipe=recipe,
            overrides=overrides,
            model=model,
            adapter=adapter,
            formatter=formatter,
            backend=backend,
            plugins_dirs=plugins_dirs,
        )
    )


def answer(question: str, *, sampling: Sampling | None = None, **session_args: Any) -> str:
    session = open_session(**session_args)
    return session.answer(question, sampling or Sampling()).text
