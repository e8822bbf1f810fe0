"""Generation with MLX through mlx-lm, and the model loading shared with the mlx trainer."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..components import Backend, Sampling
from ..errors import MlxtuneError
from ..hookspecs import hookimpl
from ..models.resolve import resolve_model
from ..records import Example
from ..tokens import encode_prompt


def load_model(
    ref: str,
    *,
    adapter: Path | None = None,
    dtype: str = "auto",
    trust_remote_code: bool = False,
    revision: str | None = None,
) -> tuple[Any, Any]:
    """Load model + tokenizer with mlx-lm; float32 on the CPU backend unless told otherwise."""
    import mlx.core as mx
    from mlx_lm import load

    path = resolve_model(ref, revision)
    if adapter is not None and not (Path(adapter) / "adapters.safetensors").is_file():
        raise MlxtuneError(f"no adapter at {adapter} (expected adapters.safetensors there)")
    try:
        model, tokenizer = load(
            str(path),
            adapter_path=str(adapter) if adapter else None,
            trust_remote_code=trust_remote_code,
        )
    except ValueError as exc:
        if "not supported" in str(exc):
            raise MlxtuneError(f"mlx-lm cannot load {ref}: {exc}") from None
        if adapter is not None:
            raise MlxtuneError(
                f"adapter {adapter} does not fit model {ref} (trained on another base model?): "
                f"{str(exc).splitlines()[0]}"
            ) from None
        raise
    if dtype == "auto":
        dtype = "float32" if mx.default_device() == mx.cpu else ""
    if dtype:
        model.set_dtype(getattr(mx, dtype))
    return model, tokenizer


class MlxBackend(Backend):
    name = "mlx"
    description = "mlx-lm generation (Metal, CUDA or CPU)"

    def load(self, model: str, adapter: Path | None = None, *, trust_remote_code: bool = False):
        self.model, self.tokenizer = load_model(
            model, adapter=adapter, trust_remote_code=trust_remote_code
        )
        self.finish_reason: str | None = None

    def generate(self, prompt: Example, sampling: Sampling) -> Iterator[str]:
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
        self.finish_reason = None
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


@hookimpl
def register_backends(register):
    register(MlxBackend)
