"""Preference data: `{"prompt", "chosen", "rejected"}` JSONL, checked and tokenized into pairs.

The common form (TRL, mlx-lm-lora, Unsloth), so users bring their own: the run's
`data/preference_train.jsonl` and `data/preference_valid.jsonl`. `prompt` is the text the model
sees before its answer (the recipe's formatter's prompt, template applied), or a list of chat
messages (then the answers are the assistant's turn); `chosen` and `rejected` are the two
answers. An optional `"rejected_eos": false` scores the rejected answer without an
end-of-sequence after it: for an answer cut off at a token limit (the model never said one), or
one whose fault is not that it stopped (pushing its end-of-sequence down teaches "do not stop":
docs/preference.md). Every line is read strictly: a
user's file with a bad line is an error naming the file and the line, never a silently shorter
data set.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import MlxtuneError
from ..records import Example
from ..tokens import encode_example, encode_prompt
from .batching import Row, make_rows

TRAIN_FILE, VALID_FILE = "preference_train.jsonl", "preference_valid.jsonl"


@dataclass
class Preference:
    """One line: the prompt (text, or chat messages) and the preferred and the other answer."""

    prompt: str | list[dict[str, str]]
    chosen: str
    rejected: str
    rejected_eos: bool = True  # score the end-of-sequence after the rejected answer


@dataclass
class PairRow:
    """A training row of the preference loop: both answers, each masked to its own tokens, and
    the reference log-probabilities of both (DPO) once computed. Its length is both rows' (the
    loop sorts and counts tokens by it)."""

    chosen: Row
    rejected: Row
    reference: tuple[float, float] | None = None

    def __len__(self) -> int:
        return len(self.chosen) + len(self.rejected)


def read_preferences(path: Path) -> list[Preference]:
    """Every line of `path` as a `Preference`, or one MlxtuneError naming the file and line."""
    if not path.is_file():
        return []
    rows = []
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, 1):
            if raw.strip():
                rows.append(parse_line(raw, f"{path}:{number}"))
    return rows


def parse_line(raw: bytes, where: str) -> Preference:
    fix = 'each line is {"prompt": ..., "chosen": ..., "rejected": ...}'
    try:
        row = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise MlxtuneError(f"{where}: not a JSON line; {fix}") from None
    if not isinstance(row, dict):
        raise MlxtuneError(f"{where}: a JSON {type(row).__name__}, not an object; {fix}")
    missing = [k for k in ("prompt", "chosen", "rejected") if k not in row]
    if missing:
        raise MlxtuneError(f"{where}: no {', '.join(repr(k) for k in missing)}; {fix}")
    extra = sorted(set(row) - {"prompt", "chosen", "rejected", "rejected_eos"})
    if extra:
        raise MlxtuneError(f"{where}: unknown key {extra[0]!r}; {fix}")
    for key in ("chosen", "rejected"):
        if not isinstance(row[key], str) or not row[key].strip():
            raise MlxtuneError(f"{where}: {key!r} must be a non-empty string")
    prompt = row["prompt"]
    if not (isinstance(prompt, str) or is_messages(prompt)):
        raise MlxtuneError(
            f"{where}: 'prompt' must be a string or a list of {{'role', 'content'}} messages"
        )
    if row["chosen"] == row["rejected"]:
        raise MlxtuneError(f"{where}: 'chosen' and 'rejected' are the same answer")
    eos = row.get("rejected_eos", True)
    if not isinstance(eos, bool):
        raise MlxtuneError(f"{where}: 'rejected_eos' must be true or false")
    return Preference(prompt, row["chosen"], row["rejected"], eos)


def is_messages(value: Any) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(m, dict) and set(m) == {"role", "content"} for m in value)
        and all(isinstance(v, str) for m in value for v in m.values())
    )


def load_preference_data(
    data_dir: Path, batch_size: int
) -> tuple[list[Preference], list[Preference]]:
    """(train, valid) preferences, checked before any model is loaded."""
    train, valid = read_preferences(data_dir / TRAIN_FILE), read_preferences(data_dir / VALID_FILE)
    if not train:
        raise MlxtuneError(
            f"no preference pairs in {data_dir / TRAIN_FILE}: write "
            '{"prompt", "chosen", "rejected"} lines there, or set train.objective: sft'
        )
    if len(train) < batch_size:
        raise MlxtuneError(
            f"only {len(train)} preference pairs in {data_dir / TRAIN_FILE} but train.batch_size "
            f"is {batch_size}: lower it (train.batch_size={len(train)}) or add pairs"
        )
    if not valid:
        raise MlxtuneError(
            f"no validation pairs in {data_dir / VALID_FILE}: the kept adapter and patience "
            "need some; move a few lines of the training file there"
        )
    return train, valid


def example(preference: Preference, answer: str) -> Example:
    if isinstance(preference.prompt, list):
        return Example(messages=[*preference.prompt, {"role": "assistant", "content": answer}])
    return Example(text=preference.prompt + answer, prompt=preference.prompt)


def encode_answers(tokenizer: Any, preference: Preference) -> list[tuple[list[int], int]]:
    """(tokens, prompt length) of the chosen and the rejected answer after the prompt. With
    `rejected_eos` false the rejected answer is the generation prompt and the answer's tokens
    only: no end of turn or end-of-sequence after it."""
    chosen = encode_example(tokenizer, example(preference, preference.chosen), True)
    if preference.rejected_eos:
        return [chosen, encode_example(tokenizer, example(preference, preference.rejected), True)]
    if isinstance(preference.prompt, list):
        head = encode_prompt(tokenizer, Example(messages=preference.prompt))
    else:  # as encode_example tokenizes a text prompt
        head = list(tokenizer.encode(preference.prompt)) if preference.prompt else []
    tail = list(tokenizer.encode(preference.rejected, add_special_tokens=False))
    return [chosen, (head + tail, len(head))]


def pair_rows(
    tokenizer: Any,
    preferences: list[Preference],
    max_seq_length: int,
    log: Callable[[str], None],
) -> list[PairRow]:
    """Both answers tokenized after the prompt, the loss on the answer's tokens only (the
    prompt is always masked: a preference is about the answers). A pair whose prompt fills
    `max_seq_length`, leaving an answer no token, is left out and counted in the log."""
    encoded = []
    for p in preferences:
        encoded += encode_answers(tokenizer, p)
    rows, truncated = make_rows(encoded, max_seq_length)
    pairs = [PairRow(rows[i], rows[i + 1]) for i in range(0, len(rows), 2)]
    kept = [p for p in pairs if any(p.chosen.weights[1:]) and any(p.rejected.weights[1:])]
    if truncated:
        log(
            f"  {truncated} of {len(rows)} preference answers are longer than max_seq_length="
            f"{max_seq_length} tokens and were truncated"
        )
    if len(kept) < len(pairs):
        log(
            f"  {len(pairs) - len(kept)} of {len(pairs)} preference pairs left out: their prompt "
            f"fills max_seq_length={max_seq_length} (raise it to keep them)"
        )
    return kept
