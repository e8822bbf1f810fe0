"""Constrained decoding to a JSON schema with llguidance, for MLX logits: the `mlx` summarizer's
pair replies and `serve`'s `response_format`.

Why llguidance: no dependencies (a Rust wheel for macOS and Linux), a token mask in microseconds
from a JSON schema, any Hugging Face fast tokenizer; its masks are plain bit arrays that we apply
to MLX logits on any device. outlines pulls in a large stack, xgrammar needs torch for its mask
kernels, lm-format-enforcer walks the vocabulary in Python at every step.
"""

from __future__ import annotations

import json
from typing import Any

from .errors import MlxtuneError

ANY_OBJECT: dict[str, Any] = {"type": "object"}


class JsonConstraint:
    """A tokenizer's llguidance view (built once: about a second) and compiled schemas."""

    def __init__(self, tokenizer: Any):
        import llguidance.hf

        hf = getattr(tokenizer, "_tokenizer", tokenizer)
        self.lltokenizer = llguidance.hf.from_tokenizer(hf, eos_token=tokenizer.eos_token_id)
        self.grammars: dict[str, str] = {}

    def grammar(self, schema: dict[str, Any]) -> str:
        """The compiled grammar of `schema`; a schema llguidance cannot compile is refused."""
        key = json.dumps(schema, sort_keys=True)
        if key not in self.grammars:
            import llguidance

            try:
                grammar = llguidance.LLMatcher.grammar_from_json_schema(
                    key, defaults={"whitespace_flexible": False}
                )
                error = llguidance.LLMatcher.validate_grammar(grammar, self.lltokenizer)
            except (ValueError, TypeError, RuntimeError) as exc:
                raise MlxtuneError(f"the JSON schema cannot be enforced: {exc}") from None
            if error:
                raise MlxtuneError(f"the JSON schema cannot be enforced: {error}")
            self.grammars[key] = grammar
        return self.grammars[key]

    def matcher(self, schema: dict[str, Any]) -> Any:
        import llguidance

        return llguidance.LLMatcher(self.lltokenizer, self.grammar(schema))


class Mask:
    """The allowed-token mask of one reply's matcher, applied to MLX logits [1, V]."""

    def __init__(self, matcher: Any):
        self.matcher, self.bits = matcher, None

    def consume(self, token: int) -> None:
        if not self.matcher.is_stopped():
            self.matcher.consume_token(token)

    def apply(self, logits: Any) -> Any:
        import mlx.core as mx
        import numpy as np
        from llguidance.numpy import allocate_token_bitmask, fill_next_token_bitmask

        size = logits.shape[-1]
        if self.bits is None:
            self.bits = allocate_token_bitmask(1, size)
        fill_next_token_bitmask(self.matcher, self.bits)
        allowed = np.unpackbits(self.bits.view(np.uint8), bitorder="little")[:size]
        return mx.where(mx.array(allowed.astype(bool)), logits, -mx.inf)


def json_processor(matcher: Any, prompt_length: int):
    """An mlx-lm logits processor keeping a reply inside `matcher`'s grammar: each call first
    consumes the token sampled before (the context's last, once the reply has begun)."""
    mask = Mask(matcher)

    def process(tokens: Any, logits: Any) -> Any:
        if len(tokens) > prompt_length:
            mask.consume(int(tokens[-1].item()))
        return mask.apply(logits)

    return process
