"""The format stage's JSONL as training data: loaded, checked, tokenized, cut into rows (what
every trainer shares)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import MlxtuneError
from ..records import Example, read_jsonl
from ..tokens import encode_example
from .batching import Row, make_rows, pack_rows


def load_examples(path: Path) -> list[Example]:
    if not path.is_file():
        return []
    examples = []
    for number, row in enumerate(read_jsonl(path), 1):
        if not ("text" in row or "messages" in row):
            raise MlxtuneError(f"{path}:{number}: an example needs 'text' or 'messages'")
        examples.append(Example(**{k: row[k] for k in ("text", "prompt", "messages") if k in row}))
    return examples


def tokenize(
    tokenizer: Any, examples: list[Example], mask_prompt: bool
) -> list[tuple[list[int], int]]:
    return [encode_example(tokenizer, example, mask_prompt) for example in examples]


def load_training_data(data_dir: Path, batch_size: int) -> tuple[list[Example], list[Example]]:
    """(train, valid) examples, checked before any model is loaded."""
    train = load_examples(data_dir / "train.jsonl")
    valid = load_examples(data_dir / "valid.jsonl")
    check_data(train, valid, batch_size, data_dir)
    return train, valid


def check_data(train: list, valid: list, batch_size: int, data_dir: Path) -> None:
    """The bad inputs a user can fix, each as one message naming what to change."""
    if not train:
        raise MlxtuneError(
            f"no training examples in {data_dir / 'train.jsonl'}: check the split "
            "(split.per_category) and that the summarize stage produced pairs"
        )
    if len(train) < batch_size:
        raise MlxtuneError(
            f"only {len(train)} training examples but train.batch_size is {batch_size}: "
            f"lower it (train.batch_size={len(train)}) or add papers"
        )
    if not valid:
        raise MlxtuneError(
            f"the validation split is empty ({data_dir / 'valid.jsonl'}): "
            "set split.per_category.valid to 1 or more papers per category"
        )


def training_rows(
    tokenizer: Any,
    examples: list[Example],
    max_seq_length: int,
    mask_prompt: bool,
    pack: bool,
    log: Callable[[str], None],
) -> list[Row]:
    """Tokenized rows, over-long examples truncated (and counted in the log), packed if asked."""
    rows, truncated = make_rows(tokenize(tokenizer, examples, mask_prompt), max_seq_length)
    if truncated:
        log(
            f"  {truncated} of {len(rows)} examples are longer than max_seq_length="
            f"{max_seq_length} tokens and were truncated (raise train.max_seq_length "
            "to keep them whole)"
        )
    return pack_rows(rows, max_seq_length) if pack else rows
