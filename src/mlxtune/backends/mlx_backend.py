"""Generation with MLX through mlx-lm (models load through `mlxtune.models.loading`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..components import Backend, Sampling
from ..hookspecs import hookimpl
from ..models.loading import load_model
from ..records import Example
from ..repetition import LoopDetector, RepetitionControl, breaker_ids
from ..tokens import encode_prompt


def apply_adjustments(logits: Any, penalties: dict[int, float], banned: set[int]) -> Any:
    """Subtract the penalties from MLX logits [1, V] and ban tokens (mlxtune.repetition)."""
    import mlx.core as mx

    if penalties:
        ids = mx.array(list(penalties))
        logits[:, ids] = logits[:, ids] - mx.array(list(penalties.values()), dtype=logits.dtype)
    if banned:
        logits[:, mx.array(sorted(banned))] = -mx.inf
    return logits


def repetition_processor(control: RepetitionControl, prompt_length: int):
    """An mlx-lm logits processor applying `control` to the answer generated so far."""

    def process(tokens: Any, logits: Any) -> Any:
        return apply_adjustments(logits, *control.adjustments(tokens[prompt_length:].tolist()))

    return process


class MlxBackend(Backend):
    name = "mlx"
    description = "mlx-lm generation (Metal, CUDA or CPU)"

    def load(self, model: str, adapter: Path | None = None, *, trust_remote_code: bool = False):
        self.model, self.tokenizer = load_model(
            model, adapter=adapter, trust_remote_code=trust_remote_code
        )
        self._breakers: frozenset[int] | None = None

    supports_json_schema = True

    def context_length(self) -> int | None:
        args = getattr(self.model, "args", None)
        length = getattr(args, "max_position_embeddings", None)
        return int(length) if length else None

    def count_tokens(self, prompt: Example) -> int | None:
        return len(encode_prompt(self.tokenizer, prompt))

    def generate(
        self, prompt: Example, sampling: Sampling, json_schema: dict[str, Any] | None = None
    ) -> Iterator[str]:
        """The answer's pieces; with `json_schema`, kept to it (mlxtune.json_constraint)."""
        import mlx.core as mx
        from mlx_lm import stream_generate
        from mlx_lm.sample_utils import make_logits_processors, make_sampler

        mx.random.seed(sampling.seed)
        tokens = encode_prompt(self.tokenizer, prompt)
        sampler = make_sampler(
            sampling.temperature,
            top_p=sampling.top_p if sampling.top_p < 1 else 0.0,
            min_p=sampling.min_p,
        )
        processors = make_logits_processors(repetition_penalty=sampling.repetition_penalty)
        control = RepetitionControl.from_sampling(
            sampling,
            protected=frozenset(self.tokenizer.eos_token_ids),
            breakers=self.breakers() if sampling.dry_multiplier else frozenset(),
        )
        if control.active:
            processors.append(repetition_processor(control, len(tokens)))
        if json_schema is not None:
            from ..json_constraint import json_processor

            processors.append(json_processor(self.constraint().matcher(json_schema), len(tokens)))
        loops = LoopDetector(sampling.stop_loops)
        self.finish_reason = None
        self.answer_tokens: list[int] = loops.tokens  # the generated ids, for tests and metrics
        for response in stream_generate(
            self.model,
            self.tokenizer,
            mx.array(tokens),
            max_tokens=sampling.max_tokens,
            sampler=sampler,
            logits_processors=processors,
        ):
            if response.text:
                yield response.text
            if response.finish_reason:
                self.finish_reason = response.finish_reason
            elif loops.add(response.token):
                self.finish_reason = "loop"
            self.stats = {
                "prompt_tokens": response.prompt_tokens,
                "prompt_tps": response.prompt_tps,
                "generation_tokens": response.generation_tokens,
                "generation_tps": response.generation_tps,
                "peak_memory_gb": response.peak_memory,
            }
            if self.finish_reason == "loop":
                return

    def constraint(self) -> Any:
        """llguidance's view of this tokenizer, built on the first constrained answer."""
        if getattr(self, "_constraint", None) is None:
            from ..json_constraint import JsonConstraint

            self._constraint = JsonConstraint(self.tokenizer)
        return self._constraint

    def breakers(self) -> frozenset[int]:
        """DRY's sequence-breaker ids for this tokenizer (decoded once per loaded model)."""
        if self._breakers is None:
            size = len(self.tokenizer.get_vocab()) if hasattr(self.tokenizer, "get_vocab") else 0
            self._breakers = frozenset(breaker_ids(self.tokenizer, size))
        return self._breakers

    def score(self, prompt: Example, completion: str) -> tuple[float, int]:
        import mlx.core as mx
        import mlx.nn as nn

        from ..tokens import encode_example

        if prompt.messages is not None:
            messages = [*prompt.messages, {"role": "assistant", "content": completion}]
            example = Example(messages=messages)
        else:
            example = Example(text=(prompt.prompt or "") + completion, prompt=prompt.prompt)
        tokens, offset = encode_example(self.tokenizer, example, mask_prompt=True)
        array = mx.array([tokens])
        logits = self.model(array[:, :-1])
        losses = nn.losses.cross_entropy(logits, array[:, 1:])[0]
        start = max(offset, 1) - 1  # target i predicts token i + 1
        total = losses[start:].astype(mx.float32).sum().item()
        return total, len(tokens) - 1 - start


@hookimpl
def register_backends(register):
    register(MlxBackend)
