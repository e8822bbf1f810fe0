"""Tokenizing examples and prompts the same way for training and for generation.

Works with any Hugging Face-style tokenizer (mlx-lm's TokenizerWrapper forwards to one), so the
mlx and torch backends share it and a prompt at `ask` time is tokenized exactly as in training.
"""

from __future__ import annotations

from typing import Any

from .records import Example


def encode_prompt(tokenizer: Any, example: Example) -> list[int]:
    """Tokens of a generation prompt (chat template with the assistant header, or plain text)."""
    if example.messages is not None:
        return list(
            tokenizer.apply_chat_template(
                example.messages, add_generation_prompt=True, tokenize=True, return_dict=False
            )
        )
    return list(tokenizer.encode(example.prompt or ""))


def encode_example(tokenizer: Any, example: Example, mask_prompt: bool) -> tuple[list[int], int]:
    """(tokens ending with EOS, number of leading tokens excluded from the loss)."""
    if example.messages is not None:
        tokens = list(
            tokenizer.apply_chat_template(example.messages, tokenize=True, return_dict=False)
        )
        prompt_len = len(encode_prompt(tokenizer, Example(messages=example.messages[:-1])))
    else:
        text = example.text or ""
        prompt = example.prompt or ""
        if not text.startswith(prompt):
            raise ValueError("example 'text' does not start with its 'prompt'")
        head = list(tokenizer.encode(prompt)) if prompt else []
        tail = list(tokenizer.encode(text[len(prompt) :], add_special_tokens=False))
        tokens = head + tail
        prompt_len = len(head)
    eos = tokenizer.eos_token_id
    # chat templates end a turn with the end-of-turn token plus a newline: that already stops
    if eos is not None and eos not in tokens[-2:]:
        tokens.append(eos)
    return tokens, (prompt_len if mask_prompt else 0)
