"""Device and dtype choice, and loading a model the way the recipe means it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlxtune.api import MlxtuneError, resolve_model


def pick_device(choice: str = "auto") -> str:
    """CUDA, then Apple MPS, then CPU (or the recipe's `device`)."""
    import torch

    if choice != "auto":
        if choice == "cuda" and not torch.cuda.is_available():
            raise MlxtuneError("train.device=cuda but no CUDA device is visible to torch")
        if choice == "mps" and not torch.backends.mps.is_available():
            raise MlxtuneError("train.device=mps but Apple MPS is not available")
        return choice
    if torch.cuda.is_available():
        return "cuda"
    if torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def pick_dtype(choice: str, device: str) -> Any:
    """auto: bf16 where the device supports it (CUDA with bf16), else float32."""
    import torch

    if choice != "auto":
        return getattr(torch, choice)
    if device == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def load_model(
    ref: str,
    *,
    device: str,
    dtype: Any,
    quantize: int | None = None,
    trust_remote_code: bool = False,
    revision: str | None = None,
) -> tuple[Any, Any]:
    """(model, tokenizer) from a local folder or hub id on `device` ("cuda", "cuda:1", "cpu",
    a torch.device); 4/8-bit via bitsandbytes on CUDA."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve_model(ref, revision)
    extra: dict[str, Any] = {}
    if quantize:
        if str(device).split(":")[0] != "cuda":
            raise MlxtuneError(
                f"train.quantize={quantize} with the torch trainer needs bitsandbytes on a CUDA "
                f"GPU (this run is on {device}); drop train.quantize, or use the mlx trainer, "
                "which quantizes on any device"
            )
        extra["device_map"] = {"": str(device)}  # this process's GPU in a multi-GPU launch
        try:
            from transformers import BitsAndBytesConfig
        except ImportError:  # pragma: no cover
            raise MlxtuneError("pip install 'mlxtune-torch[cuda]' for 4/8-bit training") from None
        extra["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=quantize == 4,
            load_in_8bit=quantize == 8,
            bnb_4bit_compute_dtype=dtype,
            bnb_4bit_quant_type="nf4",
        )
    tokenizer = AutoTokenizer.from_pretrained(str(path), trust_remote_code=trust_remote_code)
    try:
        model = AutoModelForCausalLM.from_pretrained(
            str(path), dtype=dtype, trust_remote_code=trust_remote_code, **extra
        )
    except (ValueError, KeyError) as exc:
        raise MlxtuneError(f"transformers cannot load {ref}: {str(exc).splitlines()[0]}") from None
    if not quantize:
        model.to(device)
    return model, tokenizer


def peft_dir(adapter: Path) -> Path:
    """The PEFT adapter of an mlxtune adapter folder (`peft/`), or the folder itself."""
    if (adapter / "peft" / "adapter_model.safetensors").is_file():
        return adapter / "peft"
    if (adapter / "adapter_model.safetensors").is_file():
        return adapter
    raise FileNotFoundError(adapter)
