"""Self-repair data: the SFT model's own answers that the compare report would flag, each paired
with the answer its formatter trains (the paper's approach) as a preference.

The model answers every training and validation question greedily with no guard against
repetition (no repetition penalty, DRY or loop detector: what Ollama or LM Studio do with an
exported model), and an answer is flagged by the compare report's own metrics
(`evaluate.metrics`): it ran to `max_tokens` ("loops"), its longest repeated stretch is longer
than `max_repeat` words ("repeats"), it copies the question ("echo"), it is decoration
(`**`, `###`, ...), or its ROUGE-L to the paper's approach is below `min_rouge`. A flagged answer
is the `rejected` side of a `{"prompt", "chosen", "rejected"}` line (preference_data.py); the
`chosen` side is the completion of the formatter's own training example, so DPO or ORPO moves the
model from what it says towards what it was taught. This module holds the pure part (targets,
flags, lines, the summary); the repair stage (stages/repair.py) generates and writes.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ..records import Example, Pair

# flag -> how the summary line counts it
FLAG_LABELS = {
    "loops": "loops",
    "repeats": "repeats",
    "echo": "echoes",
    "decoration": "decorated",
    "low_rouge": "low ROUGE-L",
}
# the compare report's metric plugins the flags read
METRICS = ("stop", "repetition", "echo", "decoration", "rouge")
SPLITS = ("train", "valid")


@dataclass
class Target:
    """One question the SFT model answers: the formatter's example for it, split apart into
    the generation prompt and the answer it trains (the chosen side of a pair)."""

    split: str
    question: str
    title: str
    document_id: str
    prompt: Example  # what the model is given, exactly as in training
    chosen: str  # the completion the formatter trains: the paper's approach

    @property
    def preference_prompt(self) -> str | list[dict[str, str]]:
        """The prompt as a preference line holds it: text, or the chat messages."""
        if self.prompt.messages is not None:
            return self.prompt.messages
        return self.prompt.prompt or ""


@dataclass
class Limits:
    """When an answer is flagged (the recipe's `repair:` section)."""

    max_repeat: int = 6
    max_echo: float = 0.5
    max_decoration: float = 0.1
    min_rouge: float = 0.0


@dataclass
class Verdict:
    """One answer, its scores and why it is flagged (no reasons: kept)."""

    target: Target
    answer: str
    finish_reason: str | None
    scores: dict[str, float | None]
    reasons: list[str] = field(default_factory=list)
    sample: int = 0  # 0: the greedy answer; n: the n-th sampled one (repair.samples)

    @property
    def pairable(self) -> bool:
        """An empty answer, or the trained one word for word, makes no preference pair."""
        return bool(self.answer.strip()) and self.answer != self.target.chosen

    def record(self) -> dict[str, Any]:
        """Its line in repair_flagged.jsonl."""
        t = self.target
        return {
            "split": t.split,
            "title": t.title,
            "document_id": t.document_id,
            "question": t.question,
            "sample": self.sample,
            "reasons": self.reasons,
            "paired": self.pairable,
            "finish_reason": self.finish_reason,
            "metrics": self.scores,
            "answer": self.answer,
        }

    def line(self) -> dict[str, Any]:
        """Its `{"prompt", "chosen", "rejected"}` preference line."""
        t = self.target
        # never its end-of-sequence: a cut-off answer had none, and the fault of one that
        # repeats or echoes is not that it stopped (scoring it down teaches "do not stop")
        return {
            "prompt": t.preference_prompt,
            "chosen": t.chosen,
            "rejected": self.answer,
            "rejected_eos": False,
        }


def targets(formatter: Any, pairs: list[Pair]) -> list[Target]:
    """Every training and validation example of the curated pairs, as the formatter builds it
    (the data/*.jsonl lines), split into prompt and trained answer."""
    found = []
    for pair in pairs:
        if pair.split not in SPLITS:
            continue
        for example in formatter.examples(pair):
            prompt, chosen = split_example(example)
            found.append(
                Target(pair.split, pair.question, pair.title, pair.document_id, prompt, chosen)
            )
    return found


def split_example(example: Example) -> tuple[Example, str]:
    """(generation prompt, trained answer) of a training example."""
    if example.messages is not None:
        *head, last = example.messages
        if last.get("role") != "assistant" or not head:
            raise ValueError("a chat example must end with the assistant's answer")
        return Example(messages=head), last["content"]
    text, prompt = example.text or "", example.prompt or ""
    if not text.startswith(prompt):
        raise ValueError("example 'text' does not start with its 'prompt'")
    return Example(prompt=prompt), text[len(prompt) :]


def flags(scores: dict[str, float | None], limits: Limits) -> list[str]:
    """Why the compare report would flag an answer with these scores (its metrics' names)."""
    found = []
    if scores.get("stopped") == 0.0:
        found.append("loops")
    if (scores.get("longest_repeat") or 0.0) > limits.max_repeat:
        found.append("repeats")
    if (scores.get("echo") or 0.0) > limits.max_echo:
        found.append("echo")
    if (scores.get("decoration") or 0.0) > limits.max_decoration:
        found.append("decoration")
    rouge = scores.get("rouge_l")
    if rouge is not None and rouge < limits.min_rouge:
        found.append("low_rouge")
    return found


def preference_lines(verdicts: list[Verdict], split: str) -> tuple[list[dict[str, Any]], bool]:
    """The split's preference lines: its flagged answers, each distinct answer to a question
    once (a sampled answer may repeat the greedy one word for word). A validation split with
    none flagged takes all its answers instead (the kept adapter and patience need validation
    pairs); the bool says that happened."""
    mine, seen = [], set()
    for v in verdicts:
        key = (id(v.target), v.answer)
        if v.target.split == split and v.pairable and key not in seen:
            seen.add(key)
            mine.append(v)
    flagged = [v for v in mine if v.reasons]
    if split == "valid" and not flagged:
        return [v.line() for v in mine], True
    return [v.line() for v in flagged], False


def summary(verdicts: list[Verdict]) -> str:
    """ "N of M answers flagged: a loops, b repeats, ..." (an answer may count under several)."""
    flagged = [v for v in verdicts if v.reasons]
    kinds = Counter(reason for v in flagged for reason in v.reasons)
    detail = ", ".join(f"{kinds[k]} {label}" for k, label in FLAG_LABELS.items() if kinds[k])
    line = f"{len(flagged)} of {len(verdicts)} answers flagged"
    return line + (f": {detail}" if detail else "")
