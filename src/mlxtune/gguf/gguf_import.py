"""GGUF file -> mlx-lm model folder (config.json, model.safetensors, tokenizer, generation config).

`mx.load` reads GGUF natively: Q4_0, Q4_1 and Q8_0 tensors arrive in MLX's own affine quantized
format (group size 32), every other type as float16. What is left to us is llama.cpp's naming,
its config keys, its rotary layout and its tokenizer. The output is a plain Hugging Face-layout
folder, so `mlx_lm.load` opens it unchanged (and transformers too, once dequantized).

llama.cpp's converter permutes the rows of a llama model's Q and K projections for its own rotary
layout; we permute them back, so the imported model is an ordinary llama checkpoint (no
`rope_traditional` knob that only mlx-lm knows). Rows are whole quantization groups, so the
permutation is exact for quantized weights too. Qwen2 and Qwen3 are stored unpermuted.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from ..errors import MlxtuneError
from ..records import atomic_write_json
from .gguf_checks import (
    ARCHITECTURES,
    LAYER_NAME,
    PER_LAYER,
    TOP_LEVEL,
    TOP_NAME,
    check_model,
    no_counterpart,
    unsupported_architecture,
)
from .gguf_header import read_header
from .gguf_tokenizer import end_of_sequence_ids, scalar, special_ids, write_tokenizer

GGUF_GROUP_SIZE = 32  # the block size of Q4_0, Q4_1 and Q8_0


def read_gguf(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(tensors, metadata). The header is read and checked in Python first (gguf_header,
    gguf_checks): MLX's reader trusts its counts and lengths and crashes the process on a
    hostile or damaged file, so it only ever sees a file whose every field was bounded."""
    import mlx.core as mx

    check_model(read_header(path), str(path))
    try:
        return mx.load(str(path), format="gguf", return_metadata=True)
    except (RuntimeError, ValueError) as exc:
        detail = str(exc).removeprefix("[load_gguf] ")
        raise MlxtuneError(
            f"{path}: cannot read this GGUF file ({detail}); download it again"
        ) from None


def architecture(meta: dict[str, Any], source: str) -> str:
    arch = scalar(meta, "general.architecture")
    if arch not in ARCHITECTURES:
        unsupported_architecture(arch, source)
    return arch


def build_config(meta: dict[str, Any], tensors: dict[str, Any], source: str) -> dict[str, Any]:
    """config.json in the Hugging Face names mlx-lm and transformers read."""
    arch = architecture(meta, source)

    def get(key: str, default: Any = None) -> Any:
        return scalar(meta, f"{arch}.{key}", default)

    heads = int(get("attention.head_count"))
    hidden = int(get("embedding_length"))
    config: dict[str, Any] = {
        "architectures": [ARCHITECTURES[arch]],
        "model_type": arch,
        "hidden_size": hidden,
        "intermediate_size": int(get("feed_forward_length")),
        "num_hidden_layers": int(get("block_count")),
        "num_attention_heads": heads,
        "num_key_value_heads": int(get("attention.head_count_kv", heads)),
        "head_dim": int(get("attention.key_length", hidden // heads)),
        "rms_norm_eps": float(get("attention.layer_norm_rms_epsilon", 1e-6)),
        "rope_theta": float(get("rope.freq_base", 10000.0)),
        "max_position_embeddings": int(get("context_length", 4096)),
        "vocab_size": int(tensors["token_embd.weight"].shape[0]),
        "tie_word_embeddings": "output.weight" not in tensors,
        "hidden_act": "silu",
    }
    if arch == "llama":
        config.update(attention_bias="blk.0.attn_q.bias" in tensors, mlp_bias=False)
    scaling = scalar(meta, f"{arch}.rope.scaling.type")
    if scaling == "linear":
        config["rope_scaling"] = {"type": "linear", "factor": float(get("rope.scaling.factor"))}
    elif scaling == "yarn":
        config["rope_scaling"] = {
            "type": "yarn",
            "factor": float(get("rope.scaling.factor")),
            "original_max_position_embeddings": int(get("rope.scaling.original_context_length")),
        }
    elif scaling not in (None, "none"):
        raise MlxtuneError(f"{source}: rope scaling {scaling!r} is not supported")
    if "rope_freqs.weight" in tensors:
        raise MlxtuneError(
            f"{source}: Llama 3.1-style rope frequencies (rope_freqs) are not supported yet"
        )
    ids = special_ids(meta)
    config["bos_token_id"] = ids["bos"]
    config["eos_token_id"] = end_of_sequence_ids(meta)
    config["pad_token_id"] = ids["padding"]
    return config


def hf_name(name: str, source: str) -> str:
    """llama.cpp's tensor name -> the Hugging Face name mlx-lm's models use."""
    match = LAYER_NAME.match(name)
    if match and match.group(2) in PER_LAYER:
        layer, leaf, kind = match.groups()
        return f"model.layers.{layer}.{PER_LAYER[leaf]}.{kind}"
    match = TOP_NAME.match(name)
    if match and match.group(1) in TOP_LEVEL:
        return f"{TOP_LEVEL[match.group(1)]}.{match.group(2)}"
    no_counterpart(name, source)


def unpermute_rows(array: Any, heads: int) -> Any:
    """Undo llama.cpp's rotary permutation of Q/K rows (exact: each row keeps its groups)."""
    rows = array.shape[0]
    rest = array.shape[1:]
    # llama.cpp stores row (head, pair j, half t) at head * d + 2 j + t; the Hugging Face
    # layout keeps the halves apart, at head * d + t * d / 2 + j
    return array.reshape(heads, rows // heads // 2, 2, *rest).swapaxes(1, 2).reshape(array.shape)


def convert_tensors(tensors: dict[str, Any], config: dict[str, Any], source: str) -> dict[str, Any]:
    """Rename to Hugging Face names; llama's Q/K rows back to the Hugging Face rotary layout."""
    out = {}
    permute = config["model_type"] == "llama"
    for name, array in tensors.items():
        if name == "rope_freqs.weight":
            continue
        new = hf_name(name, source)
        if permute and ".self_attn.q_proj." in new:
            array = unpermute_rows(array, config["num_attention_heads"])
        elif permute and ".self_attn.k_proj." in new:
            array = unpermute_rows(array, config["num_key_value_heads"])
        out[new] = array
    return out


def quantization_of(weights: dict[str, Any]) -> dict[str, Any] | None:
    """mlx-lm's `quantization` config for the quantized tensors: the most common bits as the
    default and a per-module entry for the others (GGUF files mix Q8_0 embeddings with Q4
    layers)."""
    bits = {}
    for name, scales in weights.items():
        if name.endswith(".scales"):
            module = name.removesuffix(".scales")
            bits[module] = (
                weights[f"{module}.weight"].shape[-1] * 32 // (scales.shape[-1] * GGUF_GROUP_SIZE)
            )
    if not bits:
        return None
    common = Counter(bits.values()).most_common(1)[0][0]
    config: dict[str, Any] = {"group_size": GGUF_GROUP_SIZE, "bits": common}
    for module, b in bits.items():
        if b != common:
            config[module] = {"group_size": GGUF_GROUP_SIZE, "bits": b}
    return config


def dequantize_all(weights: dict[str, Any], quantization: dict[str, Any]) -> dict[str, Any]:
    import mlx.core as mx

    out = {}
    for name, array in weights.items():
        module = name.rsplit(".", 1)[0]
        if name.endswith((".scales", ".biases")) and f"{module}.scales" in weights:
            continue  # folded into the weight below
        if name.endswith(".weight") and f"{module}.scales" in weights:
            spec = quantization.get(module, quantization)
            array = mx.dequantize(
                array,
                weights[f"{module}.scales"],
                weights[f"{module}.biases"],
                group_size=spec["group_size"],
                bits=spec["bits"],
            )
        out[name] = array
    return out


def quantize_all(weights: dict[str, Any], bits: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Re-quantize every linear and embedding matrix (group 64 where it divides, else 32)."""
    import mlx.core as mx

    matrices = [
        n
        for n, a in weights.items()
        if n.endswith(".weight") and a.ndim == 2 and not n.endswith("norm.weight")
    ]
    group = 64 if all(weights[n].shape[-1] % 64 == 0 for n in matrices) else 32
    out = dict(weights)
    for name in matrices:
        if weights[name].shape[-1] % group:
            continue
        module = name.removesuffix(".weight")
        w, scales, biases = mx.quantize(weights[name], group_size=group, bits=bits)
        out[name], out[f"{module}.scales"], out[f"{module}.biases"] = w, scales, biases
    return out, {"group_size": group, "bits": bits}


def planned_config(path: Path, *, dequantize: bool, quantize: int | None) -> dict[str, Any]:
    """The config.json an import would write, without writing anything (for `mlxtune plan`)."""
    tensors, meta = read_gguf(path)
    config = build_config(meta, tensors, str(path))
    stored = quantization_of(convert_tensors(tensors, config, str(path)))
    if quantize:
        config["quantization"] = {"group_size": 64, "bits": quantize}
    elif stored is not None and not dequantize:
        config["quantization"] = stored
    return config


def import_gguf(
    path: Path,
    out: Path,
    *,
    dequantize: bool,
    quantize: int | None = None,
    generation: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write the model folder for `path` into `out` (which must be empty); returns a report."""
    import mlx.core as mx

    source = str(path)
    tensors, meta = read_gguf(path)
    config = build_config(meta, tensors, source)
    weights = convert_tensors(tensors, config, source)
    stored = quantization_of(weights)
    if stored is not None and (dequantize or quantize):
        weights = dequantize_all(weights, stored)
    quantization = stored if stored is not None and not (dequantize or quantize) else None
    if quantize:
        weights, quantization = quantize_all(weights, quantize)
    if quantization is not None:
        config["quantization"] = quantization
        config["quantization_config"] = quantization
    half = {a.dtype for a in weights.values()} & {mx.float16, mx.bfloat16}
    config["torch_dtype"] = "bfloat16" if half == {mx.bfloat16} else "float16"
    out.mkdir(parents=True, exist_ok=True)
    try:
        tokenizer = write_tokenizer(meta, out, source, config["max_position_embeddings"])
    except MlxtuneError:
        raise
    except Exception as exc:  # the tokenizers library raises plain Exceptions (bad merges)
        raise MlxtuneError(f"{source}: its tokenizer cannot be built: {exc}") from None
    mx.save_safetensors(str(out / "model.safetensors"), weights, metadata={"format": "mlx"})
    atomic_write_json(out / "config.json", config)
    atomic_write_json(
        out / "generation_config.json",
        {"eos_token_id": config["eos_token_id"], **(generation or {})},
    )
    return {
        "architecture": config["model_type"],
        "name": scalar(meta, "general.name", path.stem),
        "layers": config["num_hidden_layers"],
        "vocab_size": config["vocab_size"],
        "stored": describe_quantization(stored),
        "written": describe_quantization(quantization) if quantization else "float16",
        "chat_template": "chat_template" in tokenizer,
        "file_type": scalar(meta, "general.file_type"),
    }


def describe_quantization(spec: dict[str, Any] | None) -> str:
    if spec is None:
        return "float16 (not stored in a quantization MLX keeps: Q4_0, Q4_1 or Q8_0)"
    others = sorted({v["bits"] for v in spec.values() if isinstance(v, dict)})
    extra = f" (some tensors {'/'.join(map(str, others))}-bit)" if others else ""
    return f"{spec['bits']}-bit, group {spec['group_size']}{extra}"
