"""Loading the format stage's JSONL into tokenized (tokens, prompt_length) examples."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import MlxtuneError
from ..records import Example, read_jsonl
from ..tokens import encode_example


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
