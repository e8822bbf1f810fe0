"""Merge an adapter into its base model: a standalone model folder for mlx_lm.load and `ask`.

mlx-lm's LoRA/DoRA layers know how to fuse themselves (`module.fuse()`); this adds what
`mlx_lm fuse` does not know about: an adapter trained on a base that mlxtune quantized on load
(QLoRA) is fused into that quantized base (or de-quantized on request), and the config records
the quantization so that the result loads as it was trained.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from ..errors import MlxtuneError


def fuse(
    model: str,
    adapter: Path,
    output: Path,
    *,
    dequantize: bool = False,
    trust_remote_code: bool = False,
    revision: str | None = None,
) -> Path:
    from mlx.utils import tree_unflatten
    from mlx_lm.utils import dequantize_model, load_config, save

    from ..models.loading import is_quantized, load_model
    from ..models.resolve import resolve_model
    from .integrity import adapter_folder_of, check_adapter

    if output.exists() and any(output.iterdir()):
        raise MlxtuneError(f"fuse output {output} exists and is not empty: choose another folder")
    inside = adapter_folder_of(output)
    if inside is not None:
        raise MlxtuneError(
            f"fuse output {output} is inside the adapter folder {inside}, which the next "
            "training run replaces whole: choose another folder"
        )
    check_adapter(adapter)
    source = resolve_model(model, revision)
    net, tokenizer = load_model(
        model, adapter=adapter, dtype=None, trust_remote_code=trust_remote_code, revision=revision
    )
    fused = [
        (name, m.fuse(dequantize=dequantize))
        for name, m in net.named_modules()
        if hasattr(m, "fuse")
    ]
    if fused:
        net.update_modules(tree_unflatten(fused))
    config = load_config(source)
    if dequantize:
        net = dequantize_model(net)
        config.pop("quantization", None)
        config.pop("quantization_config", None)
    elif is_quantized(net) and "quantization" not in config:
        import json

        adapter_config = json.loads((adapter / "adapter_config.json").read_text())
        quantization = adapter_config.get("base_quantization") or {}
        config["quantization"] = {
            "group_size": quantization.get("group_size", 64),
            "bits": quantization.get("bits", 4),
        }
        config["quantization_config"] = config["quantization"]
    staging = output.with_name(output.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    save(staging, str(source), net, tokenizer, config, donate_model=False)
    if output.exists():
        output.rmdir()
    staging.rename(output)
    return output
