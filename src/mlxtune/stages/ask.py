"""The ask stage: the tuned model answers the recipe's questions (answers.jsonl), streamed to the
terminal, through the same answering session as `mlxtune ask`."""

from __future__ import annotations

from typing import Any

from ..records import load_pairs, write_jsonl
from .base import Run, Stage, hash_if_exists


def default_questions(run: Run) -> list[tuple[str, str]]:
    """One question the model trained on (recall) and one it did not (held out), if any."""
    pairs = load_pairs(run.file("pairs.jsonl"))
    chosen = []
    for split in ("train", "valid"):
        pair = next((p for p in pairs if p.split == split), None)
        if pair is not None:
            chosen.append((pair.question, "recall" if split == "train" else "heldout"))
    return chosen


def stage_ask(run: Run) -> str:
    from ..asking import recipe_session

    questions = [(q, "custom") for q in run.recipe.ask.questions] or default_questions(run)
    session = recipe_session(run.recipe, run.registry, run.adapter)
    answers = []
    for question, kind in questions:
        run.log(f"\n[bold]Q ({kind}):[/] {question}")
        run.console.print("[bold]A:[/] ", end="")
        reply = session.answer(
            question,
            on_text=lambda piece: run.console.print(piece, end="", highlight=False, markup=False),
        )
        run.console.print()
        answers.append(
            {
                "question": question,
                "kind": kind,
                "answer": reply.text,
                "finish_reason": reply.finish_reason,
            }
        )
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
    }


def needs_ask(run: Run) -> tuple[str, ...]:
    return ("adapters/adapters.safetensors", "pairs.jsonl") if run.trains else ("pairs.jsonl",)


STAGE = Stage("ask", stage_ask, fingerprint_ask, needs=needs_ask, writes=("answers.jsonl",))
