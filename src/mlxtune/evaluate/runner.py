"""Evaluate one recipe's model on a question set: answers, per-answer metrics, held-out loss.

Results are written to `runs/<name>/evaluation.json` (`evaluation.<name>.json` for a recipe that
shares another's run directory, as the retrieval variants do) with a key of everything that
decides them (adapter, model, formatter, questions, sampling, metrics, retrieval); a comparison
run again reuses them. With a `retrieve:` section every prompt carries the top passages of the
run's papers, and each answer records the passages it was given.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from ..asking import Session, recipe_session
from ..components import AnswerContext, Backend, Formatter, Sampling
from ..pipeline import run_recipe
from ..plugins import Registry
from ..recipe import Recipe
from ..records import atomic_write_json, load_pairs, read_jsonl, sha256_file, sha256_json
from ..retrieve import Retrieval, with_passages
from ..retrieve.context import passage_record
from ..version import __version__
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
    retrieval: dict[str, Any] = field(default_factory=dict)  # the `retrieve:` spec, index size

    def to_json(self) -> dict[str, Any]:
        return self.__dict__.copy()


def evaluate_recipe(
    recipe: Recipe,
    registry: Registry,
    questions: list[Question],
    sampling: Sampling,
    *,
    console: Console,
    run: Any = None,
) -> ModelEvaluation:
    """Train what is not trained yet (unless `run` is the recipe's run, already up to train),
    then answer and score (or reuse a matching evaluation)."""
    run = run or run_recipe(recipe, registry, until="train", console=console)
    adapter = run.adapter
    metric_names = recipe.evaluate.metrics or registry.names("metric")
    retrieve = recipe.retrieve.model_dump() if recipe.retrieve is not None else None
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
            "retrieve": retrieve,
            "documents": sha256_file(run.file("documents.jsonl")) if retrieve else None,
        }
    )
    own = run.root.name == recipe.name  # else the run is shared: one cache file per recipe
    cache_path = run.file("evaluation.json" if own else f"evaluation.{recipe.name}.json")
    if cache_path.is_file():
        cached = json.loads(cache_path.read_text())
        if cached.get("key") == key:
            console.print(f"[dim]- evaluate  {recipe.name}: up to date, reused[/]")
            return ModelEvaluation(**cached["evaluation"])

    session = recipe_session(recipe, registry, adapter)
    metrics = [registry.build("metric", {"use": name}) for name in metric_names]
    retrieval = session.retrieval  # the recipe's `retrieve:`, indexed once by the session
    result = ModelEvaluation(
        name=recipe.name,
        model=recipe.model_ref,
        adapter=str(adapter) if adapter else None,
        formatter=session.formatter.name,
        trained=run.trains,
        sampling=dict(sampling.__dict__),
    )
    if retrieval is not None:
        result.retrieval = {**(retrieve or {}), "passages_indexed": retrieval.passages}
    for number, question in enumerate(questions, 1):
        started = time.monotonic()
        answer = answer_and_score(session, metrics, question, sampling, retrieval)
        result.answers.append(answer)
        console.print(
            f"  [{number}/{len(questions)}] {recipe.name} · {question.kind}: "
            f"{_short(question.question)} [dim]→ {answer['finish_reason']}, "
            f"{len(answer['answer'].split())} words, {time.monotonic() - started:.1f}s[/]",
            markup=True,
            highlight=False,
        )
    console.print(f"  held-out loss of {recipe.name}…")
    result.heldout = heldout_loss(
        session.backend, session.formatter, load_pairs(run.file("pairs.jsonl")), retrieval
    )
    if recipe.evaluate.judge is not None:
        Judge(recipe.evaluate.judge, registry).grade(result.answers)
    result.training = training_record(adapter)
    result.curation = curation_record(run.root)
    atomic_write_json(cache_path, {"key": key, "evaluation": result.to_json()})
    return result


def _short(text: str, width: int = 60) -> str:
    text = " ".join(text.split()).replace("[", "(").replace("]", ")")
    return text if len(text) <= width else text[: width - 1] + "…"


def own_paper(question: Question) -> str | None:
    """The paper a held-out question came from: retrieval must not quote it."""
    return question.document_id if question.kind == "heldout" else None


def answer_and_score(
    session: Session,
    metrics: list[Any],
    question: Question,
    sampling: Sampling,
    retrieval: Retrieval | None = None,
) -> dict[str, Any]:
    passages = []
    if retrieval is None:
        reply = session.answer(question.question, sampling)
    else:
        assert session.formatter is not None
        passages = retrieval.for_question(question.question, own_paper(question))
        prompt = with_passages(session.formatter.prompt(question.question), passages)
        reply = session.answer_prompt(prompt, sampling)
    text, finish = reply.text, reply.finish_reason
    ctx = AnswerContext(question.question, text, question.reference, finish)
    scores: dict[str, float | None] = {}
    for metric in metrics:
        scores.update(metric.score(ctx))
    answer = {**question.to_json(), "answer": text, "finish_reason": finish, "metrics": scores}
    if retrieval is not None:
        answer["passages"] = [passage_record(p) for p in passages]
    return answer


def heldout_loss(
    backend: Backend, formatter: Formatter, pairs: list, retrieval: Retrieval | None = None
) -> dict[str, Any]:
    """Mean loss of the reference approaches of the held-out papers (test split, else valid),
    each after the model's own prompt for its question (with its retrieved passages, never
    from the paper itself, for a retrieval variant): comparable across prompt formats, because
    the scored tokens are the same approach text for every model."""
    held = [p for p in pairs if p.split == "test"] or [p for p in pairs if p.split == "valid"]
    if not held:
        return {"loss": None, "perplexity": None, "papers": 0, "tokens": 0}
    sums: dict[str, list[float]] = {}
    try:
        for pair in held:
            prompt = formatter.prompt(pair.question)
            if retrieval is not None:
                passages = retrieval.for_question(pair.question, pair.document_id)
                prompt = with_passages(prompt, passages)
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
