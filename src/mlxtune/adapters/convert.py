"""Converting LoRA adapters between mlx-lm's format and PEFT's, both ways.

So an adapter trained on a CUDA box (transformers + PEFT) is asked on a Mac, and the reverse.
Both are `W x + s * B A x`; they differ in layout and naming only:

- files: mlx-lm `adapters.safetensors`; PEFT `adapter_model.safetensors` (each with its own
  `adapter_config.json`);
- A: mlx-lm `model.layers.N.<module>.lora_a`, shape (in, r); PEFT
  `base_model.model.model.layers.N.<module>.lora_A.weight`, shape (r, in);
- B: mlx-lm `...lora_b`, (r, out); PEFT `...lora_B.weight`, (out, r);
- s: mlx-lm `lora_parameters.scale`; PEFT `lora_alpha / r` (`lora_alpha / sqrt(r)`, rsLoRA);
- where: mlx-lm the last `num_layers` blocks and `lora_parameters.keys`; PEFT `target_modules`
  and `layers_to_transform`.

Only plain LoRA converts: DoRA's magnitude vectors and full fine-tunes have no common layout.
Uses MLX to read and write safetensors (any dtype, bf16 included); no torch needed.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

from ..errors import MlxtuneError
from ..records import atomic_write_json

PEFT_PREFIX = "base_model.model."
_LAYER = re.compile(r"(?:^|\.)layers\.(\d+)\.")


def detect(path: Path) -> str:
    if (path / "adapters.safetensors").is_file():
        return "mlx"
    if (path / "adapter_model.safetensors").is_file():
        return "peft"
    raise MlxtuneError(
        f"{path}: no adapters.safetensors (mlx-lm) or adapter_model.safetensors (PEFT) there"
    )


def mlx_to_peft(src: Path, dst: Path, base_model: str | None = None) -> Path:
    import mlx.core as mx

    config = json.loads((src / "adapter_config.json").read_text())
    kind = config.get("fine_tune_type", "lora")
    if kind != "lora":
        raise MlxtuneError(
            f"{src}: only LoRA adapters convert ({kind} has no PEFT equivalent "
            "here); fuse it instead (`mlxtune fuse`)"
        )
    params = config["lora_parameters"]
    rank, scale = int(params["rank"]), float(params["scale"])
    weights = mx.load(str(src / "adapters.safetensors"))
    out: dict[str, Any] = {}
    modules, layers = set(), set()
    for key, value in weights.items():
        prefix, leaf = key.rsplit(".", 1)
        if leaf not in ("lora_a", "lora_b"):
            raise MlxtuneError(f"{src}: unexpected tensor {key} in a LoRA adapter")
        name = "lora_A" if leaf == "lora_a" else "lora_B"
        out[f"{PEFT_PREFIX}{prefix}.{name}.weight"] = value.astype(mx.float32).T
        modules.add(prefix.rsplit(".", 1)[1])
        match = _LAYER.search(prefix)
        if match:
            layers.add(int(match.group(1)))
    dst.mkdir(parents=True, exist_ok=True)
    mx.save_safetensors(str(dst / "adapter_model.safetensors"), out, metadata={"format": "pt"})
    atomic_write_json(
        dst / "adapter_config.json",
        {
            "peft_type": "LORA",
            "task_type": "CAUSAL_LM",
            "base_model_name_or_path": base_model or config.get("model"),
            "r": rank,
            "lora_alpha": scale * rank,
            "lora_dropout": float(params.get("dropout", 0.0)),
            "target_modules": sorted(modules),
            "layers_to_transform": sorted(layers) or None,
            "bias": "none",
            "fan_in_fan_out": False,
            "use_rslora": False,
            "use_dora": False,
            "inference_mode": True,
        },
    )
    return dst


def peft_to_mlx(src: Path, dst: Path) -> Path:
    import mlx.core as mx

    config = json.loads((src / "adapter_config.json").read_text())
    if config.get("peft_type", "LORA") != "LORA" or config.get("use_dora"):
        raise MlxtuneError(
            f"{src}: only plain LoRA PEFT adapters convert (this one is "
            f"{config.get('peft_type')}{', DoRA' if config.get('use_dora') else ''})"
        )
    rank = int(config["r"])
    alpha = float(config.get("lora_alpha", rank))
    scale = alpha / math.sqrt(rank) if config.get("use_rslora") else alpha / rank
    weights = mx.load(str(src / "adapter_model.safetensors"))
    out: dict[str, Any] = {}
    keys, layers = set(), set()
    for key, value in weights.items():
        match = re.fullmatch(r"(?:base_model\.model\.)?(.+)\.lora_([AB])(?:\.[^.]+)?\.weight", key)
        if not match:
            raise MlxtuneError(f"{src}: cannot map tensor {key} to mlx-lm (not a LoRA A/B weight)")
        prefix, which = match.groups()
        out[f"{prefix}.lora_{which.lower()}"] = value.astype(mx.float32).T
        layer = _LAYER.search(prefix)
        if layer is None:
            raise MlxtuneError(
                f"{src}: {key} is outside the transformer blocks; mlx-lm's "
                "adapters live in model.layers only"
            )
        layers.add(int(layer.group(1)))
        keys.add(prefix[layer.end() :])
    ordered = sorted(layers)
    if ordered != list(range(ordered[0], ordered[-1] + 1)):
        raise MlxtuneError(
            f"{src}: adapted layers {ordered} are not contiguous; mlx-lm adapts the last N blocks"
        )
    dst.mkdir(parents=True, exist_ok=True)
    mx.save_safetensors(str(dst / "adapters.safetensors"), out)
    atomic_write_json(
        dst / "adapter_config.json",
        {
            "fine_tune_type": "lora",
            # mlx-lm counts from the last block; the adapter must reach it (checked at load)
            "num_layers": len(ordered),
            "lora_parameters": {
                "rank": rank,
                "scale": scale,
                "dropout": float(config.get("lora_dropout", 0.0)),
                "keys": sorted(keys),
            },
            "model": config.get("base_model_name_or_path"),
            "converted_from": "peft",
        },
    )
    return dst


def convert(src: Path, dst: Path, to: str | None = None, base_model: str | None = None) -> str:
    """Convert the adapter in `src` into `dst`; returns the target format."""
    source = detect(src)
    target = to or ("peft" if source == "mlx" else "mlx")
    if target == source:
        raise MlxtuneError(f"{src} is already in {source} format")
    if dst.exists() and any(dst.iterdir()):
        raise MlxtuneError(f"{dst} exists and is not empty: choose another folder")
    if target == "peft":
        mlx_to_peft(src, dst, base_model)
    else:
        peft_to_mlx(src, dst)
    return target
