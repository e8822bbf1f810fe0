"""The repair stage (a recipe's `repair:` section): the SFT adapter that `train.start_adapter`
names answers the run's training and validation questions greedily, with no repetition
penalty, DRY or loop detector; the answers the compare report would flag become preference
pairs (data/preference_{train,valid}.jsonl) for the DPO or ORPO training that follows, and every
flagged answer is listed with its reasons in repair_flagged.jsonl (mlxtune.train.self_repair).

Without a `repair:` section the stage does not apply (it writes nothing and is not recorded).
"""

from __future__ import annotations

from typing import Any

from rich.markup import escape

from ..components import AnswerContext, Sampling
from ..errors import MlxtuneError, StageError
from ..records import load_pairs, write_jsonl
from ..train.preference_data import TRAIN_FILE, VALID_FILE
from ..train.self_repair import METRICS, Limits, Verdict, flags, preference_lines, summary, targets
from .base import Run, Stage, hash_if_exists
from .train import start_adapter_file

FLAGGED = "repair_flagged.jsonl"


def applies(run: Run) -> bool:
    return run.recipe.repair is not None


def sft_adapter(run: Run) -> Any:
    """The weights file of the SFT adapter whose answers are repaired, or a StageError."""
    train = run.recipe.component("train")
    start = start_adapter_file(run)
    if train.get("objective", "sft") == "sft" or start is None:
        raise StageError(
            "repair",
            "repair: needs train.objective: dpo or orpo and train.start_adapter naming the SFT "
            "adapter to repair (e.g. ../real-approach/adapters); or drop the repair: section",
        )
    if not start.is_file():
        raise StageError(
            "repair",
            f"train.start_adapter: no adapter at {start}: run the SFT recipe first "
            "(e.g. mlxtune recipe run recipes/real/approach.yaml)",
        )
    return start


def fingerprint_repair(run: Run) -> dict[str, Any]:
    start = sft_adapter(run)
    repair = run.recipe.repair
    return {
        "lines": 2,  # 2: lines say "rejected_eos": false
        "repair": repair.model_dump(mode="json") if repair else None,
        "format": run.recipe.component("format"),
        "backend": run.recipe.ask.backend,
        "model": run.manifest["stages"].get("model", {}).get("outputs") or run.recipe.model_ref,
        "adapter": [hash_if_exists(start), hash_if_exists(start.parent / "adapter_config.json")],
        "pairs": hash_if_exists(run.file("curated.jsonl")),
    }


def stage_repair(run: Run) -> str:
    from ..asking import load_session

    repair = run.recipe.repair
    assert repair is not None
    start = sft_adapter(run)
    formatter = run.registry.build("formatter", run.recipe.component("format"))
    try:
        todo = targets(formatter, load_pairs(run.file("curated.jsonl")))
    except ValueError as exc:
        raise StageError("repair", f"the {formatter.name} formatter's examples: {exc}") from None
    session = load_session(
        run.registry,
        run.recipe.model_ref,
        start.parent,
        backend=run.recipe.ask.backend,
        trust_remote_code=run.recipe.model.trust_remote_code,
    )
    # greedy, nothing against repetition: the model as an exported copy answers elsewhere;
    # then `samples` sampled answers per question (seeds fixed), which show more of its failures
    runs = [Sampling(max_tokens=repair.max_tokens, temperature=0.0)] + [
        Sampling(max_tokens=repair.max_tokens, temperature=repair.temperature, seed=repair.seed + n)
        for n in range(1, repair.samples + 1)
    ]
    metrics = [run.registry.build("metric", {"use": name}) for name in METRICS]
    limits = Limits(repair.max_repeat, repair.max_echo, repair.max_decoration, repair.min_rouge)
    verdicts = []
    try:
        for number, target in enumerate(todo, 1):
            for sample, sampling in enumerate(runs):
                reply = session.answer_prompt(target.prompt, sampling)
                ctx = AnswerContext(target.question, reply.text, target.chosen, reply.finish_reason)
                scores: dict[str, float | None] = {}
                for metric in metrics:
                    scores.update(metric.score(ctx))
                reasons = flags(scores, limits)
                verdicts.append(
                    Verdict(target, reply.text, reply.finish_reason, scores, reasons, sample)
                )
                run.log(
                    f"[dim]  [{number}/{len(todo)}{f' #{sample}' if sample else ''}] "
                    f"{target.split}: {reply.finish_reason}, {len(reply.text.split())} words, "
                    f"{', '.join(reasons) or 'kept'}[/]"
                )
    except MlxtuneError as exc:
        raise StageError("repair", str(exc)) from None
    return write_outputs(run, verdicts)


def write_outputs(run: Run, verdicts: list[Verdict]) -> str:
    """The preference files and the flagged list, or a StageError (nothing written) when
    there is nothing to train on."""
    train, _ = preference_lines(verdicts, "train")
    valid, all_valid = preference_lines(verdicts, "valid")
    line = summary(verdicts)
    if not train:
        raise StageError(
            "repair",
            f"{line}: no training answer to repair (repair_flagged.jsonl not written); "
            "the SFT adapter needs no preference phase, or lower repair.max_repeat / raise "
            "repair.min_rouge",
        )
    if not valid:
        raise StageError("repair", f"{line}: no validation answer to pair (no valid papers?)")
    flagged = [v for v in verdicts if v.reasons]
    write_jsonl(run.file(FLAGGED), [v.record() for v in flagged])
    write_jsonl(run.file(f"data/{VALID_FILE}"), valid)
    write_jsonl(run.file(f"data/{TRAIN_FILE}"), train)
    for v in flagged:
        name = v.target.title or v.target.document_id[:12]
        which = f" (sample {v.sample})" if v.sample else ""
        run.log(
            f"  [yellow]flagged[/] {v.target.split} {escape(name)}{which}: {', '.join(v.reasons)}"
        )
    note = " (no validation answer flagged: all of them)" if all_valid else ""
    return f"{line}; {len(train)} train and {len(valid)} valid pairs{note}"


WRITES = (f"data/{TRAIN_FILE}", f"data/{VALID_FILE}", FLAGGED)
STAGE = Stage(
    "repair",
    stage_repair,
    fingerprint_repair,
    needs=("curated.jsonl",),
    writes=WRITES,
    applies=applies,
)
