"""Summarize with a local model through mlx-lm, batching prompts across documents.

Batching is where the speed is: one decoding step for eight sequences costs little more than for
one, because a step is bound by reading the weights, not by arithmetic. mlx-lm's
`BatchGenerator` (left-padded prompts, a shared KV cache, sequences leaving the batch as they
finish) does the work; each sequence gets its own `ReplyGuard` logits processor, which
- constrains the pair replies to the pair's JSON schema with llguidance (`structured`): a small
  model then always writes parseable JSON, where unconstrained it wrote prose or nested objects;
- applies DRY and the frequency penalty to the reply's own tokens (mlxtune.repetition);
- ends a reply once it loops (`stop_loops`), which the summarizer then retries once with
  stronger penalties, instead of paying for `max_tokens` of loop.

Why llguidance: see mlxtune.json_constraint, which this summarizer and `serve` share.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Literal

from pydantic import Field

from ..hookspecs import hookimpl
from ..repetition import LoopDetector, RepetitionControl
from .llm import PAIR_SCHEMA, Completion, LLMOptions, LLMSummarizer, LoopedReply, Messages


class ReplyGuard:
    """The logits processor of one reply: JSON constraint, penalties and loop detection. It
    is called once per generated token, with the token context whose last entry (from the
    second call on) is the token sampled before."""

    def __init__(self, control: RepetitionControl, loop_window: int, matcher: Any, eos: list):
        from ..json_constraint import Mask

        self.control, self.eos = control, eos
        self.mask = Mask(matcher) if matcher is not None else None
        self.loops = LoopDetector(loop_window)
        self.calls = 0

    def __call__(self, context: Any, logits: Any) -> Any:
        import mlx.core as mx
        import numpy as np

        if self.calls:
            token = int(context[-1].item())
            self.loops.add(token)
            if self.mask is not None:
                self.mask.consume(token)
        self.calls += 1
        if self.loops.looped:  # end the reply: only an end-of-sequence token is left
            keep = np.zeros(logits.shape[-1], dtype=bool)
            keep[[t for t in self.eos if t < keep.size]] = True
            return mx.where(mx.array(keep), logits, -mx.inf)
        from ..backends.mlx_backend import apply_adjustments

        logits = apply_adjustments(logits, *self.control.adjustments(self.loops.tokens))
        if self.mask is not None:
            logits = self.mask.apply(logits)
        return logits


class MlxSummarizer(LLMSummarizer):
    name = "mlx"
    description = "a local model through mlx-lm, batched across papers"

    class Options(LLMOptions):
        model: str = Field(
            "mlx-community/Qwen2.5-7B-Instruct-4bit", description="hub id or local model folder"
        )
        revision: str | None = None
        batch_size: int = Field(8, ge=1, description="prompts decoded together")
        read: Literal["chunks", "excerpt"] = Field(
            "excerpt",
            description="excerpt: one prompt of the abstract, the introduction's problem and "
            "contribution sentences and the method's opening; chunks: the whole paper, a notes "
            "round on each chunk first (slow on a small machine)",
        )
        prefill_step: int = Field(
            256,
            ge=16,
            description="prompt tokens processed per step: a batch is padded only within a "
            "step, and attention's scores stay small (mlx-lm's default, 2048, padded every "
            "prompt to the longest)",
        )
        trust_remote_code: bool = False
        enable_thinking: bool | None = Field(
            None, description="passed to chat templates that support it (Qwen3); None: default"
        )

    _loaded: tuple[Any, Any] | None = None
    work: dict[str, float]

    def __init__(self, options: Any = None):
        super().__init__(options)
        self.work = {}

    _guidance: tuple[Any, dict[str, Any]] | None = None

    def group_size(self) -> int:
        return self.options.batch_size

    def output_options(self) -> tuple[str, ...]:
        return (*super().output_options(), "revision", "enable_thinking", "prefill_step")

    def load(self) -> tuple[Any, Any]:
        if self._loaded is None:
            from ..models.loading import load_model

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
        return self.generate(conversations, structured=False, retry=False)

    def complete_pairs(
        self, conversations: Sequence[Messages], *, retry: bool = False
    ) -> list[Completion]:
        return self.generate(
            conversations, structured=self.options.structured != "none", retry=retry
        )

    def decoding(self, retried: bool = False) -> str:
        o = self.options
        parts = [f"structured={o.structured}"]
        if o.dry_multiplier:
            parts.append(f"dry={o.dry_multiplier * (2 if retried else 1):g}")
        if o.frequency_penalty:
            parts.append(f"frequency_penalty={o.frequency_penalty:g}")
        if retried:
            parts.append("retried after a loop (no_repeat_ngram=4)")
        return "; ".join(parts)

    def account(self, stats: Any, prompts: int) -> None:
        """Add one `generate` call's work to `self.work` (prompts, tokens, seconds), which the
        bench prints: where the time goes, prompt processing or decoding."""
        work = self.work
        work["prompts"] = work.get("prompts", 0) + prompts
        for key in (
            "prompt_tokens",
            "prompt_time",
            "generation_tokens",
            "decode_time",
            "wall_time",
        ):
            work[key] = work.get(key, 0) + getattr(stats, key, 0)

    def grammar(self, tokenizer: Any) -> tuple[Any, dict[str, Any]]:
        """The tokenizer's llguidance view (built once) and the schemas of `structured`."""
        if self._guidance is None:
            from ..json_constraint import ANY_OBJECT, JsonConstraint

            self._guidance = (
                JsonConstraint(tokenizer),
                {"json_schema": PAIR_SCHEMA, "json_object": ANY_OBJECT},
            )
        return self._guidance

    def generate(
        self, conversations: Sequence[Messages], *, structured: bool, retry: bool
    ) -> list[Completion]:
        """Every conversation's reply, in order (see `stream`)."""
        replies: dict[int, Completion] = dict(
            self.stream(conversations, structured=structured, retry=retry)
        )
        return [replies[i] for i in range(len(conversations))]

    def stream_pairs(self, conversations: Sequence[Messages]) -> Iterator[tuple[int, Completion]]:
        return self.stream(conversations, structured=self.options.structured != "none", retry=False)

    def stream(
        self, conversations: Sequence[Messages], *, structured: bool, retry: bool
    ) -> Iterator[tuple[int, Completion]]:
        """(index, reply) as each reply finishes: `batch_size` replies decode together, and a
        finished one makes room for the next prompt (shortest first, so that the prompts
        prefilled together are of about one length). One ReplyGuard per reply."""
        if not conversations:
            return
        from mlx_lm.generate import BatchGenerator
        from mlx_lm.sample_utils import make_sampler

        model, tokenizer = self.load()
        o = self.options
        eos = sorted(tokenizer.eos_token_ids)
        control = RepetitionControl(
            frequency_penalty=o.frequency_penalty,
            dry_multiplier=o.dry_multiplier * (2 if retry else 1),
            no_repeat_ngram=4 if retry else 0,
            protected=frozenset(eos),
        )
        guards = []
        for _ in conversations:
            matcher = None
            if structured:
                constraint, schemas = self.grammar(tokenizer)
                matcher = constraint.matcher(schemas[o.structured])
            guards.append(ReplyGuard(control, o.stop_loops, matcher, eos))
        generator = BatchGenerator(
            model,
            stop_tokens=[[t] for t in eos],
            sampler=make_sampler(temp=o.temperature),
            completion_batch_size=o.batch_size,
            prefill_batch_size=o.batch_size,
            prefill_step_size=o.prefill_step,
        )
        prompts = [self.encode(c) for c in conversations]
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        inserted = generator.insert(
            [prompts[i] for i in order],
            [o.max_tokens] * len(prompts),
            logits_processors=[[guards[i]] for i in order],
        )
        index = dict(zip(inserted, order, strict=True))
        tokens: dict[int, list[int]] = {uid: [] for uid in inserted}
        try:
            with generator.stats() as stats:
                while responses := generator.next_generated():
                    for response in responses:
                        if response.finish_reason != "stop":
                            tokens[response.uid].append(response.token)
                        if response.finish_reason is not None:
                            i = index[response.uid]
                            text = tokenizer.decode(tokens[response.uid])
                            yield i, LoopedReply(text) if guards[i].loops.looped else text
        finally:
            generator.close()
        self.account(stats, len(prompts))


@hookimpl
def register_summarizers(register):
    register(MlxSummarizer)
