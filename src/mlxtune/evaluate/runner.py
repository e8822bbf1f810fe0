"""Evaluate one recipe's model on a question set: answers, per-answer metrics, held-out loss.

Results are written to `runs/<name>/evaluation.json` with a key of everything that decides them
(adapter, model, formatter, questions, sampling, metrics); a comparison run again reuses them.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from .. import __version__
from ..asking import Session, recipe_session
from ..components import AnswerContext, Backend, Formatter, Sampling
from ..pipeline import run_recipe
from ..plugins import Registry
from ..recipe import Recipe
from ..records import atomic_write_json, load_pairs, read_jsonl, sha256_file, sha256_json
from .judge import Judge
from .questions import Question


@dataclass
class ModelEvaluation:
    name: str
    model: str
    adapter: str | None
    formatter: str
    trained: bool
    answers: list[dict[str, Any]] = field(default_factory=list)
    heldout: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    sampling: dict[str, Any] = field(default_factory=dict)
    curation: dict[str, Any] = field(default_factory=dict)  # pairs kept / rejected by curate

    def to_json(self) -> dict[str, Any]:
        return self.__dict__.copy()


def evaluate_recipe(
    recipe: Recipe,
    registry: Registry,
    questions: list[Question],
    sampling: Sampling,
    *,
    console: Console,
) -> ModelEvaluation:
    """Train what is not trained yet, then answer and score (or reuse a matching evaluation)."""
    run = run_recipe(recipe, registry, until="train", console=console)
    adapter = run.adapter
    metric_names = recipe.evaluate.metrics or registry.names("metric")
    key = sha256_json(
        {
            "version": __version__,
            "model": recipe.model_ref,
            "model_files": run.manifest["stages"].get("model", {}).get("outputs"),
            "adapter": sha256_file(adapter / "adapters.safetensors") if adapter else None,
            "format": recipe.component("format"),
            "backend": recipe.ask.backend,
            "questions": [q.to_json() for q in questions],
            "sampling": sampling.__dict__,
            "metrics": metric_names,
            "judge": recipe.evaluate.judge.model_dump() if recipe.evaluate.judge else None,
            "pairs": sha256_file(run.file("pairs.jsonl")),
        }
    )
    cache_path = run.file("evaluation.json")
    if cache_path.is_file():
        cached = json.loads(cache_path.read_text())
        if cached.get("key") == key:
            console.print(f"[dim]- evaluate  {recipe.name}: up to date, reused[/]")
            return ModelEvaluation(**cached["evaluation"])

    session = recipe_session(recipe, registry, adapter)
    metrics = [registry.build("metric", {"use": name}) for name in metric_names]
    result = ModelEvaluation(
        name=recipe.name,
        model=recipe.model_ref,
        adapter=str(adapter) if adapter else None,
        formatter=session.formatter.name,
        trained=run.trains,
        sampling=dict(sampling.__dict__),
    )
    console.print(f"  evaluating [bold]{recipe.name}[/] on {len(questions)} questions")
    for question in questions:
        result.answers.append(answer_and_score(session, metrics, question, sampling))
    result.heldout = heldout_loss(
        session.backend, session.formatter, load_pairs(run.file("pairs.jsonl"))
    )
    if recipe.evaluate.judge is not None:
        Judge(recipe.evaluate.judge, registry).grade(result.answers)
    result.training = training_record(adapter)
    result.curation = curation_record(run.root)
    atomic_write_json(cache_path, {"key": key, "evaluation": result.to_json()})
    return result


def answer_and_score(
    session: Session, metrics: list[Any], question: Question, sampling: Sampling
) -> dict[str, Any]:
    reply = session.answer(question.question, sampling)
    text, finish = reply.text, reply.finish_reason
    ctx = AnswerContext(question.question, text, question.reference, finish)
    scores: dict[str, float | None] = {}
    for metric in metrics:
        scores.update(metric.score(ctx))
    return {**question.to_json(), "answer": text, "finish_reason": finish, "metrics": scores}


def heldout_loss(backend: Backend, formatter: Formatter, pairs: list) -> dict[str, Any]:
    """Mean loss of the reference approaches of the held-out papers (test split, else valid),
    each after the model's own prompt for its question: comparable across prompt formats,
    because the scored tokens are the same approach text for every model."""
    held = [p for p in pairs if p.split == "test"] or [p for p in pairs if p.split == "valid"]
    if not held:
        return {"loss": None, "perplexity": None, "papers": 0, "tokens": 0}
    sums: dict[str, list[float]] = {}
    try:
        for pair in held:
            prompt = formatter.prompt(pair.question)
            completion = pair.approach.strip()
            if prompt.messages is None:
                completion = " " + completion  # as the completion formatters write it
            nll, n = backend.score(prompt, completion)
            acc = sums.setdefault(pair.category, [0.0, 0])
            acc[0], acc[1] = acc[0] + nll, acc[1] + n
    except NotImplementedError:
        return {"loss": None, "perplexity": None, "papers": len(held), "tokens": 0}
    total = sum(v[0] for v in sums.values())
    tokens = int(sum(v[1] for v in sums.values()))
    loss = total / max(tokens, 1)
    return {
        "loss": loss,
        "perplexity": math.exp(min(loss, 50)),
        "papers": len(held),
        "split": held[0].split,
        "tokens": tokens,
        "by_category": {c: v[0] / max(v[1], 1) for c, v in sorted(sums.items())},
    }


def curation_record(root: Path) -> dict[str, Any]:
    """How many pairs the curate stage kept and rejected (nothing for a run made before it)."""
    kept, rejected = root / "curated.jsonl", root / "curation_rejects.jsonl"
    if not kept.is_file():
        return {}
    return {"kept": len(list(read_jsonl(kept))), "rejected": len(list(read_jsonl(rejected)))}


def training_record(adapter: Path | None) -> dict[str, Any]:
    if adapter is None or not (adapter / "metrics.jsonl").is_file():
        return {}
    summary_path = adapter / "train_summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    curves = [
        {k: row[k] for k in ("step", "train_loss", "val_loss") if k in row}
        for row in read_jsonl(adapter / "metrics.jsonl")
    ]
    return {"summary": summary, "curves": curves}
