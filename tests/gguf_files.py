"""Write GGUF files for tests with llama.cpp's own `gguf` package (its writer, its tensor-name
table and its numpy quantizers), so the importer is checked against llama.cpp's conventions and
not against a mirror of its own code."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

CONTROL, NORMAL = 3, 1


def random_model(arch: str, seed: int = 0, **shape: Any) -> tuple[Any, dict[str, Any]]:
    """A random-weight mlx-lm model of `arch` (llama, qwen2 or qwen3) and its config."""
    import importlib

    import mlx.core as mx

    config = {
        "model_type": arch,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 16,
        "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0,
        "vocab_size": 0,
        "tie_word_embeddings": False,
        "max_position_embeddings": 2048,
        **shape,
    }
    module = importlib.import_module(f"mlx_lm.models.{arch}")
    mx.random.seed(seed)
    model = module.Model(module.ModelArgs.from_dict(config))
    # unit-scale weights so that attention and every layer matter to the logits
    params = {}
    for name, value in _flat(model.parameters()):
        scale = 1.0 if name.endswith("norm.weight") else float(value.shape[-1]) ** -0.5
        base = 1.0 if name.endswith("norm.weight") else 0.0
        params[name] = base + scale * mx.random.normal(value.shape) * (0.3 if base else 1.0)
    model.load_weights(list(params.items()))
    mx.eval(model.parameters())
    return model, config


def _flat(tree: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(tree, dict):
        return [kv for k, v in tree.items() for kv in _flat(v, f"{prefix}{k}.")]
    if isinstance(tree, list):
        return [kv for i, v in enumerate(tree) for kv in _flat(v, f"{prefix}{i}.")]
    return [(prefix[:-1], tree)]


def llama_cpp_permute(weights: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's convert_hf_to_gguf.py `LlamaModel.permute`, verbatim."""
    return (
        weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


def write_gguf(
    path: Path,
    model: Any,
    config: dict[str, Any],
    tokenizer_json: Path,
    *,
    qtype: str = "F32",
    pre: str = "default",
    chat_template: str | None = None,
    eos: str = "<|im_end|>",
    arch_name: str | None = None,
) -> Path:
    """Write `model` as llama.cpp's converter would (names from gguf's TensorNameMap; llama's
    Q/K permuted; matrices in `qtype`: F32, F16, Q8_0 or Q4_0). The model's weights are then
    replaced by what the file holds (quantized and dequantized by gguf's own code), so it is the
    reference an import must reproduce."""
    import gguf
    import mlx.core as mx

    arch = config["model_type"]
    enum = {"llama": gguf.MODEL_ARCH.LLAMA, "qwen2": gguf.MODEL_ARCH.QWEN2}.get(
        arch, gguf.MODEL_ARCH.QWEN3
    )
    names = gguf.get_tensor_name_map(enum, config["num_hidden_layers"])
    writer = gguf.GGUFWriter(str(path), arch_name or arch)
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(config["num_attention_heads"])
    writer.add_head_count_kv(config["num_key_value_heads"])
    writer.add_key_length(config["head_dim"])
    writer.add_value_length(config["head_dim"])
    writer.add_layer_norm_rms_eps(config["rms_norm_eps"])
    writer.add_rope_freq_base(config["rope_theta"])
    writer.add_file_type(0)

    spec = json.loads(Path(tokenizer_json).read_text())
    vocab: dict[str, int] = spec["model"]["vocab"]
    tokens = [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
    special = {t["content"] for t in spec["added_tokens"] if t["special"]}
    merges = [m if isinstance(m, str) else " ".join(m) for m in spec["model"]["merges"]]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types([CONTROL if t in special else NORMAL for t in tokens])
    writer.add_token_merges(merges)
    writer.add_eos_token_id(vocab[eos])
    writer.add_add_bos_token(False)
    if chat_template:
        writer.add_chat_template(chat_template)

    quant = getattr(gguf.GGMLQuantizationType, qtype)
    held = []
    for name, value in _flat(model.parameters()):
        array = np.array(value, dtype=np.float32)
        if arch == "llama" and ".q_proj." in name:
            array = llama_cpp_permute(array, config["num_attention_heads"])
        elif arch == "llama" and ".k_proj." in name:
            array = llama_cpp_permute(array, config["num_key_value_heads"])
        target = names.get_name(name, try_suffixes=(".weight", ".bias"))
        assert target is not None, name
        stored = np.array(value, dtype=np.float32)
        if array.ndim == 2 and qtype != "F32":
            if qtype == "F16":
                writer.add_tensor(target, array.astype(np.float16))
                stored = np.array(value, dtype=np.float16).astype(np.float32)
            else:
                data = gguf.quants.quantize(array, quant)
                writer.add_tensor(target, data, raw_shape=data.shape, raw_dtype=quant)
                back = gguf.quants.dequantize(data, quant).reshape(array.shape)
                stored = np.array(value, dtype=np.float32)
                if arch == "llama" and (".q_proj." in name or ".k_proj." in name):
                    heads = config[
                        "num_attention_heads" if ".q_proj." in name else "num_key_value_heads"
                    ]
                    rows = back.shape[0]
                    back = back.reshape(heads, rows // heads // 2, 2, -1).swapaxes(1, 2)
                stored = back.reshape(stored.shape)
        else:
            writer.add_tensor(target, array)
        held.append((name, mx.array(stored)))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    model.load_weights(held)
    return path
