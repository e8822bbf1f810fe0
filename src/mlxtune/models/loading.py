"""Loading an MLX model for training, asking, fusing and exporting: one place for mlx-lm's
`load`, the dtype policy's application (`mlxtune.device.resolve_dtype` decides it), QLoRA's
quantized base and the adapter the way it was trained."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..device import resolve_dtype
from ..errors import MlxtuneError
from .resolve import resolve_model

ADAPTER_LEAVES = ("lora_a", "lora_b", "m")  # LoRA's matrices and DoRA's magnitudes (mlx-lm)


def load_model(
    ref: str,
    *,
    adapter: Path | None = None,
    dtype: str | None = "auto",
    trust_remote_code: bool = False,
    revision: str | None = None,
) -> tuple[Any, Any]:
    """Load model + tokenizer with mlx-lm, then the adapter (if any) the way it was trained.

    `dtype="auto"` follows `mlxtune.device.resolve_dtype`; None keeps the model's stored dtype.
    An adapter trained with QLoRA on a base that mlxtune quantized on load (`base_quantization`
    in its config) gets the same quantization first, so asking sees exactly the weights training
    saw.
    """
    import mlx.core as mx
    from mlx_lm import load

    path = resolve_model(ref, revision)
    config = None
    if adapter is not None:
        if not (Path(adapter) / "adapters.safetensors").is_file():
            raise MlxtuneError(f"no adapter at {adapter} (expected adapters.safetensors there)")
        config = json.loads((Path(adapter) / "adapter_config.json").read_text())
    try:
        model, tokenizer = load(str(path), trust_remote_code=trust_remote_code)
    except ValueError as exc:
        if "not supported" in str(exc):
            raise MlxtuneError(f"mlx-lm cannot load {ref}: {exc}") from None
        raise
    dtype = resolve_dtype(dtype, "cpu" if mx.default_device() == mx.cpu else "gpu")
    if dtype:
        model.set_dtype(getattr(mx, dtype))
    if adapter is not None and config is not None:
        quantization = config.get("base_quantization")
        if quantization and not is_quantized(model):
            quantize_base(model, quantization["bits"], quantization["group_size"])
        from mlx_lm.tuner.utils import load_adapters

        try:
            load_adapters(model, str(adapter))
        except ValueError as exc:
            raise MlxtuneError(
                f"adapter {adapter} does not fit model {ref} (trained on another base model?): "
                f"{str(exc).splitlines()[0]}"
            ) from None
        except RuntimeError as exc:  # MLX's safetensors reader: a cut-short or garbled file
            raise MlxtuneError(
                f"adapter {adapter}: cannot read adapters.safetensors ({exc}); it is damaged: "
                "train it again"
            ) from None
        check_finite(model, adapter)
        model.eval()
    return model, tokenizer


def check_finite(model: Any, adapter: Path) -> None:
    """Training never keeps a non-finite adapter (a NaN loss stops it), so a NaN or infinity in
    the loaded adapter weights is damage: refuse it rather than answer with empty text."""
    import mlx.core as mx
    from mlx.utils import tree_flatten

    for name, value in tree_flatten(model.parameters()):
        if name.rsplit(".", 1)[-1] not in ADAPTER_LEAVES:
            continue
        if not mx.isfinite(value).all().item():
            raise MlxtuneError(
                f"adapter {adapter}: its weight {name} holds NaN or infinite values; the adapter "
                "is damaged: train it again"
            )


def is_quantized(model: Any) -> bool:
    import mlx.nn as nn

    return any(isinstance(m, nn.QuantizedLinear) for _, m in model.named_modules())


def quantize_base(model: Any, bits: int, group_size: int) -> dict[str, int]:
    """Quantize a loaded model in place (QLoRA's frozen base); layers whose input size is not a
    multiple of the group size stay in full precision."""
    import mlx.nn as nn

    def eligible(_path: str, module: Any) -> bool:
        weight = getattr(module, "weight", None)
        return (
            hasattr(module, "to_quantized")
            and weight is not None
            and weight.shape[-1] % group_size == 0
        )

    try:
        nn.quantize(model, group_size=group_size, bits=bits, class_predicate=eligible)
    except ValueError as exc:
        raise MlxtuneError(f"train.quantize: {exc} (try train.quantize_group_size=32)") from None
    if not is_quantized(model):
        raise MlxtuneError(
            f"train.quantize: no layer's input size is a multiple of group size {group_size}; "
            "set train.quantize_group_size to 32 or 64"
        )
    return {"bits": bits, "group_size": group_size}
