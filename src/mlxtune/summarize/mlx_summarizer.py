"""Summarize with a local model through mlx-lm, batching prompts across documents.

Batching is where the speed is: one decoding step for eight sequences costs little more than for
one, because a step is bound by reading the weights, not by arithmetic. mlx-lm's
`batch_generate` (left-padded prompts, a shared KV cache, sequences leaving the batch as they
finish) does the work; this module only builds prompts and reads replies.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import Field

from ..hookspecs import hookimpl
from .llm import Completion, LLMOptions, LLMSummarizer, Messages


class MlxSummarizer(LLMSummarizer):
    name = "mlx"
    description = "a local model through mlx-lm, batched across papers"

    class Options(LLMOptions):
        model: str = Field(
            "mlx-community/Qwen2.5-7B-Instruct-4bit", description="hub id or local model folder"
        )
        revision: str | None = None
        batch_size: int = Field(8, ge=1, description="prompts decoded together")
        trust_remote_code: bool = False
        enable_thinking: bool | None = Field(
            None, description="passed to chat templates that support it (Qwen3); None: default"
        )

    _loaded: tuple[Any, Any] | None = None

    def group_size(self) -> int:
        return self.options.batch_size

    def output_options(self) -> tuple[str, ...]:
        return (*super().output_options(), "revision", "enable_thinking")

    def load(self) -> tuple[Any, Any]:
        if self._loaded is None:
            from ..backends.mlx_backend import load_model

            self._loaded = load_model(
                self.options.model,
                revision=self.options.revision,
                trust_remote_code=self.options.trust_remote_code,
            )
        return self._loaded

    def encode(self, conversation: Messages) -> list[int]:
        _, tokenizer = self.load()
        kwargs = {}
        if self.options.enable_thinking is not None:
            kwargs["enable_thinking"] = self.options.enable_thinking
        if getattr(tokenizer, "chat_template", None):
            tokens = tokenizer.apply_chat_template(
                conversation, add_generation_prompt=True, tokenize=True, **kwargs
            )
            if not isinstance(tokens, list):  # a BatchEncoding in newer transformers
                tokens = tokens["input_ids"]
            return list(tokens)
        text = "\n\n".join(m["content"] for m in conversation)  # base models: plain prompt
        return list(tokenizer.encode(text))

    def complete(self, conversations: Sequence[Messages]) -> list[Completion]:
        if not conversations:
            return []
        from mlx_lm.generate import batch_generate
        from mlx_lm.sample_utils import make_sampler

        model, tokenizer = self.load()
        prompts = [self.encode(c) for c in conversations]
        size = self.options.batch_size
        response = batch_generate(
            model,
            tokenizer,
            prompts,
            max_tokens=self.options.max_tokens,
            sampler=make_sampler(temp=self.options.temperature),
            completion_batch_size=size,
            prefill_batch_size=size,
        )
        return list(response.texts)


@hookimpl
def register_summarizers(register):
    register(MlxSummarizer)
