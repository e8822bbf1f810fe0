"""mlx-lm model folder -> GGUF file that llama.cpp, Ollama and LM Studio load.

Written with the `gguf` package, llama.cpp's own reader/writer: its `TensorNameMap` gives every
tensor the name llama.cpp's loader expects, its `GGUFWriter` writes the metadata keys under the
architecture's prefix, and its quantizers produce Q8_0 and Q4_0 bit for bit as llama.cpp's
converter does. `mx.save_gguf` writes only float tensors and no quantized types. The inverse of
`gguf_import`: llama's Q/K rows get llama.cpp's rotary permutation, the tokenizer goes in as
tokens, merges, token types and the pre-tokenizer's name, the chat template travels along.
Needs `pip install gguf` (the `export` extra).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import MlxtuneError
from .gguf_tokenizer import CONTROL, LLAMA3_PATTERN, NORMAL, QWEN2_PATTERN, USER_DEFINED

QUANTS = ("f16", "q8_0", "q4_0")
SUPPORTED = ("llama", "qwen2", "qwen3")


def permute(weights: Any, heads: int) -> Any:
    """llama.cpp's `LlamaModel.permute`: Hugging Face rotary layout -> llama.cpp's."""
    rows = weights.shape[0]
    return (
        weights.reshape(heads, 2, rows // heads // 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


def pre_tokenizer_name(spec: dict[str, Any]) -> str:
    """The `tokenizer.ggml.pre` llama.cpp needs, read off tokenizer.json's pre-tokenizer."""
    text = json.dumps(spec.get("pre_tokenizer"))
    if QWEN2_PATTERN.replace("\\", "\\\\") in text:
        return "qwen2"
    if LLAMA3_PATTERN.replace("\\", "\\\\") in text:
        return "llama-bpe"
    if '"Digits"' in text:
        return "smollm"
    return "gpt-2"


def load_weights(folder: Path, config: dict[str, Any]) -> dict[str, Any]:
    """float32 numpy weights under Hugging Face names (a quantized folder is dequantized)."""
    import mlx.core as mx
    import numpy as np

    from .gguf_import import dequantize_all

    arrays: dict[str, Any] = {}
    for file in sorted(folder.glob("*.safetensors")):
        arrays.update(mx.load(str(file)))
    if config.get("quantization"):
        arrays = dequantize_all(arrays, config["quantization"])
    return {name: np.array(array.astype(mx.float32)) for name, array in arrays.items()}


def add_hyperparameters(writer: Any, name: str, config: dict[str, Any], quant: str) -> None:
    """The architecture's shape and rotary settings, in the keys llama.cpp's loader reads."""
    layers = config["num_hidden_layers"]
    heads = config["num_attention_heads"]
    kv_heads = config.get("num_key_value_heads", heads)
    head_dim = config.get("head_dim") or config["hidden_size"] // heads
    writer.add_name(name)
    writer.add_block_count(layers)
    writer.add_context_length(config.get("max_position_embeddings", 4096))
    writer.add_embedding_length(config["hidden_size"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_key_length(head_dim)
    writer.add_value_length(head_dim)
    writer.add_rope_dimension_count(head_dim)
    writer.add_layer_norm_rms_eps(config.get("rms_norm_eps", 1e-6))
    writer.add_rope_freq_base(config.get("rope_theta", 10000.0))
    file_types = {"f16": 1, "q8_0": 7, "q4_0": 2}
    writer.add_file_type(file_types[quant])


def export_gguf(folder: Path, target: Path, quant: str = "f16") -> Path:
    """Write `folder` (an mlx-lm / Hugging Face model folder) as one GGUF file at `target`."""
    try:
        import gguf
    except ImportError:
        raise MlxtuneError("GGUF export needs the gguf package: pip install gguf") from None
    import numpy as np

    if quant not in QUANTS:
        raise MlxtuneError(f"--quant {quant}: not offered; choose one of {', '.join(QUANTS)}")
    config = json.loads((folder / "config.json").read_text())
    arch = config.get("model_type")
    if arch not in SUPPORTED:
        raise MlxtuneError(
            f"{folder}: cannot export architecture '{arch}' to GGUF; supported: "
            + ", ".join(SUPPORTED)
        )
    layers = config["num_hidden_layers"]
    heads = config["num_attention_heads"]
    kv_heads = config.get("num_key_value_heads", heads)
    names = gguf.get_tensor_name_map(getattr(gguf.MODEL_ARCH, arch.upper()), layers)
    weights = load_weights(folder, config)
    if config.get("tie_word_embeddings") and "lm_head.weight" in weights:
        del weights["lm_head.weight"]  # llama.cpp ties when `output` is absent

    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    writer = gguf.GGUFWriter(str(partial), arch)
    add_hyperparameters(writer, folder.name, config, quant)
    add_tokenizer(writer, folder, config)

    qtype = {"q8_0": gguf.GGMLQuantizationType.Q8_0, "q4_0": gguf.GGMLQuantizationType.Q4_0}
    for name, array in weights.items():
        if arch == "llama" and ".q_proj." in name:
            array = permute(array, heads)
        elif arch == "llama" and ".k_proj." in name:
            array = permute(array, kv_heads)
        gguf_name = names.get_name(name, try_suffixes=(".weight", ".bias"))
        if gguf_name is None:
            raise MlxtuneError(f"{folder}: tensor {name} has no llama.cpp name for {arch}")
        # norms and biases stay float32; matrices take the requested type where their rows
        # split into 32-value blocks (llama.cpp keeps the others in float16 as well)
        if array.ndim == 2 and quant in qtype and array.shape[-1] % 32 == 0:
            data = gguf.quants.quantize(array, qtype[quant])
            writer.add_tensor(gguf_name, data, raw_shape=data.shape, raw_dtype=qtype[quant])
        elif array.ndim == 2:
            writer.add_tensor(gguf_name, array.astype(np.float16))
        else:
            writer.add_tensor(gguf_name, array.astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    partial.replace(target)
    return target


def add_tokenizer(writer: Any, folder: Path, config: dict[str, Any]) -> None:
    """tokens, merges, token types, pre-tokenizer, special ids and the chat template."""
    spec = json.loads((folder / "tokenizer.json").read_text())
    model = spec.get("model", {})
    if model.get("type") != "BPE":
        raise MlxtuneError(f"{folder}: only byte-level BPE tokenizers export to GGUF")
    added = {t["content"]: t for t in spec.get("added_tokens", [])}
    vocab: dict[str, int] = dict(model["vocab"])
    for content, token in added.items():
        vocab.setdefault(content, token["id"])
    size = max(config["vocab_size"], max(vocab.values()) + 1)
    tokens = [f"[PAD{i}]" for i in range(size)]
    types = [USER_DEFINED] * size  # padding rows of the embedding: never produced
    for token, index in vocab.items():
        tokens[index] = token
        entry = added.get(token)
        types[index] = (CONTROL if entry["special"] else USER_DEFINED) if entry else NORMAL
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre_tokenizer_name(spec))
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    settings_path = folder / "tokenizer_config.json"
    settings = json.loads(settings_path.read_text()) if settings_path.is_file() else {}

    def token_id(value: Any) -> int | None:
        text = value.get("content") if isinstance(value, dict) else value
        return vocab.get(text) if text else None

    eos = token_id(settings.get("eos_token"))
    if eos is None:
        configured = config.get("eos_token_id")
        eos = configured[0] if isinstance(configured, list) else configured
    if eos is not None:
        writer.add_eos_token_id(eos)
    for name, add in (
        ("bos_token", writer.add_bos_token_id),
        ("pad_token", writer.add_pad_token_id),
    ):
        found = token_id(settings.get(name))
        if found is not None:
            add(found)
    writer.add_add_bos_token(bool(settings.get("add_bos_token", False)))
    template = settings.get("chat_template")
    if template is None and (folder / "chat_template.jinja").is_file():
        template = (folder / "chat_template.jinja").read_text()
    if template:
        writer.add_chat_template(template)


SENTINEL = "\x00QUESTION\x00"


def prompt_template(formatter: Any, tokenizer: Any) -> str:
    """The formatter's prompt as an Ollama (Go) template: the prompt for a sentinel question,
    rendered the way training saw it (the chat template for chat formatters), with the
    sentinel replaced by `{{ .Prompt }}`."""
    prompt = formatter.prompt(SENTINEL)
    if prompt.messages is not None:
        text = tokenizer.apply_chat_template(
            prompt.messages, add_generation_prompt=True, tokenize=False
        )
    else:
        text = prompt.prompt or ""
    if SENTINEL not in text:
        raise MlxtuneError(f"formatter {formatter.name}: its prompt does not hold the question")
    return text.replace(SENTINEL, "{{ .Prompt }}")


def modelfile(gguf_name: str, template: str, stops: list[str], sampling: Any) -> str:
    """An Ollama Modelfile: the GGUF, the training prompt as TEMPLATE, stops, sampling."""
    lines = [f"FROM ./{gguf_name}", f'TEMPLATE """{template}"""']
    lines += [f'PARAMETER stop "{stop}"' for stop in stops]
    lines.append(f"PARAMETER temperature {sampling.temperature}")
    if sampling.top_p < 1:
        lines.append(f"PARAMETER top_p {sampling.top_p}")
    if sampling.repetition_penalty:
        lines.append(f"PARAMETER repeat_penalty {sampling.repetition_penalty}")
    lines.append(f"PARAMETER num_predict {sampling.max_tokens}")
    return "\n".join(lines) + "\n"
