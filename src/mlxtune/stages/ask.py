"""The ask stage: the tuned model answers the recipe's questions (answers.jsonl), streamed to the
terminal, through the same answering session as `mlxtune ask`."""

from __future__ import annotations

from typing import Any

from ..records import load_pairs, write_jsonl
from .base import Run, Stage, hash_if_exists


def default_questions(run: Run) -> list[tuple[str, str, str | None]]:
    """One question the model trained on (recall) and one it did not (held out: a test paper's,
    which chose nothing; a validation paper's only where there is no test split), if any."""
    pairs = load_pairs(run.file("pairs.jsonl"))
    chosen = []
    recall = next((p for p in pairs if p.split == "train"), None)
    if recall is not None:
        chosen.append((recall.question, "recall", None))
    held = next((p for p in pairs if p.split == "test"), None) or next(
        (p for p in pairs if p.split == "valid"), None
    )
    if held is not None:
        chosen.append((held.question, "heldout", held.document_id))
    return chosen


def stage_ask(run: Run) -> str:
    from ..asking import recipe_session
    from ..retrieve.context import passage_record

    questions = [(q, "custom", None) for q in run.recipe.ask.questions] or default_questions(run)
    session = recipe_session(run.recipe, run.registry, run.adapter)
    answers = []
    for question, kind, own_paper in questions:
        run.log(f"\n[bold]Q ({kind}):[/] {question}")
        run.console.print("[bold]A:[/] ", end="")
        reply = session.answer(
            question,
            on_text=lambda piece: run.console.print(piece, end="", highlight=False, markup=False),
            own_paper=own_paper,  # retrieval never quotes a held-out question's own paper
        )
        run.console.print()
        record = {
            "question": question,
            "kind": kind,
            "answer": reply.text,
            "finish_reason": reply.finish_reason,
        }
        if session.retrieval is not None:
            record["passages"] = [passage_record(p) for p in session.passages]
        answers.append(record)
    write_jsonl(run.file("answers.jsonl"), answers)
    stopped = sum(a["finish_reason"] == "stop" for a in answers)
    looped = sum(a["finish_reason"] == "loop" for a in answers)
    line = f"{len(answers)} answers, {stopped} stopped at end-of-sequence"
    return line + (f", {looped} ended as loops" if looped else "")


def fingerprint_ask(run: Run) -> dict[str, Any]:
    return {
        "ask": run.recipe.ask.model_dump(mode="json"),
        "format": run.recipe.component("format"),
        "adapter": hash_if_exists(run.file("adapters/adapters.safetensors")),
        "pairs": hash_if_exists(run.file("pairs.jsonl")),
        "retrieve": _retrieval(run),
    }


def _retrieval(run: Run) -> dict[str, Any] | None:
    """A `retrieve:` section puts passages of the run's papers in every prompt."""
    if run.recipe.retrieve is None:
        return None
    spec = run.recipe.retrieve.model_dump(mode="json")
    return {"spec": spec, "documents": hash_if_exists(run.file("documents.jsonl"))}


def needs_ask(run: Run) -> tuple[str, ...]:
    return ("adapters/adapters.safetensors", "pairs.jsonl") if run.trains else ("pairs.jsonl",)


STAGE = Stage("ask", stage_ask, fingerprint_ask, needs=needs_ask, writes=("answers.jsonl",))
