"""What the importer needs from a GGUF header, checked before a single weight is read.

llama.cpp's naming (which tensors a llama/qwen2/qwen3 file holds and what they are called in
Hugging Face's layout) lives here, with the shapes those tensors must have given the
architecture's keys. `check_model` verifies the architecture's keys (integers of a sane size,
finite positive floats), the tokenizer's keys (the types the tokenizer builder reads) and every
tensor's name, layer, type and shape; a file that passes converts without an unexpected error,
one that does not gets one line naming the key or tensor.
"""

from __future__ import annotations

import math
import re
from typing import Any, NoReturn

from ..errors import MlxtuneError
from .gguf_header import FLOAT_TYPES, FLOATS, INTEGER_TYPES, STRING, Header

ARCHITECTURES = {
    "llama": "LlamaForCausalLM",
    "qwen2": "Qwen2ForCausalLM",
    "qwen3": "Qwen3ForCausalLM",
}
TOP_LEVEL = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"}
PER_LAYER = {
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "attn_q_norm": "self_attn.q_norm",
    "attn_k_norm": "self_attn.k_norm",
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
LAYER_NAME = re.compile(r"^blk\.(0|[1-9][0-9]*)\.([a-z_]+)\.(weight|bias|scales|biases)\Z")
TOP_NAME = re.compile(r"^([a-z_]+)\.(weight|bias|scales|biases)\Z")
# every layer's weights (qwen3 adds its Q/K norms)
REQUIRED = ("attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm")
REQUIRED += ("ffn_gate", "ffn_up", "ffn_down")
LIMIT = 1 << 31  # the largest count or length a config may hold
SPECIAL = ("bos", "eos", "eot", "eom")  # ids that index the token list


def no_counterpart(name: str, source: str) -> NoReturn:
    raise MlxtuneError(
        f"{source}: tensor {name!r} has no counterpart in the supported architectures "
        "(mixture-of-experts and multimodal models are not supported)"
    )


def unsupported_architecture(arch: Any, source: str) -> NoReturn:
    raise MlxtuneError(
        f"{source}: architecture {arch!r} is not supported; supported: " + ", ".join(ARCHITECTURES)
    )


class _Keys:
    """Typed access to a header's metadata; each wrong type or range is one clear error."""

    def __init__(self, header: Header, source: str) -> None:
        self.header, self.source = header, source

    def fail(self, key: str, value: Any, wanted: str) -> NoReturn:
        shown = repr(value) if len(repr(value)) < 60 else repr(value)[:57] + "..."
        raise MlxtuneError(f"{self.source}: metadata '{key}' is {shown}; expected {wanted}")

    def has(self, key: str) -> bool:
        return key in self.header.metadata

    def integer(self, key: str, default: int | None = None, low: int = 1) -> int:
        if not self.has(key):
            if default is None:
                raise MlxtuneError(f"{self.source}: metadata '{key}' is missing")
            return default
        value = self.header.metadata[key]
        if self.header.types[key][0] not in INTEGER_TYPES or not low <= value <= LIMIT:
            self.fail(key, value, f"an integer from {low} to {LIMIT}")
        return value

    def positive(self, key: str) -> None:
        if self.has(key):
            value = self.header.metadata[key]
            number = self.header.types[key][0] in FLOAT_TYPES | INTEGER_TYPES
            if not number or not math.isfinite(value) or value <= 0:
                self.fail(key, value, "a finite number above 0")

    def text(self, key: str) -> None:
        if self.has(key) and self.header.types[key] != (STRING, None):
            self.fail(key, self.header.metadata[key], "a string")

    def array(self, key: str, kinds: frozenset[int], what: str) -> list[Any] | None:
        if not self.has(key):
            return None
        kind, element = self.header.types[key]
        if element is None or element not in kinds:
            self.fail(key, self.header.metadata[key], f"an array of {what}")
        return self.header.metadata[key]


def check_model(header: Header, source: str) -> None:
    """Every key and tensor the importer reads, checked (MlxtuneError on the first problem)."""
    keys = _Keys(header, source)
    keys.text("general.architecture")
    arch = header.metadata.get("general.architecture")
    if arch not in ARCHITECTURES:
        unsupported_architecture(arch, source)
    dims = _dimensions(keys, arch)
    _check_tokenizer(keys)
    _check_tensors(header, arch, dims, source)


def _dimensions(keys: _Keys, arch: str) -> dict[str, int]:
    """The architecture's shape keys, as build_config reads them."""
    hidden = keys.integer(f"{arch}.embedding_length")
    heads = keys.integer(f"{arch}.attention.head_count")
    kv_heads = keys.integer(f"{arch}.attention.head_count_kv", heads)
    if hidden < heads and not keys.has(f"{arch}.attention.key_length"):
        keys.fail(f"{arch}.attention.head_count", heads, f"at most the {hidden} embedding values")
    head_dim = keys.integer(f"{arch}.attention.key_length", hidden // heads)
    if heads % kv_heads:
        keys.fail(f"{arch}.attention.head_count_kv", kv_heads, f"a divisor of {heads} heads")
    if arch == "llama" and head_dim % 2:
        keys.fail(f"{arch}.attention.key_length", head_dim, "an even head size (rotary)")
    keys.integer(f"{arch}.context_length", 4096)
    for name in ("attention.layer_norm_rms_epsilon", "rope.freq_base", "rope.scaling.factor"):
        keys.positive(f"{arch}.{name}")
    keys.text(f"{arch}.rope.scaling.type")
    scaling = keys.header.metadata.get(f"{arch}.rope.scaling.type")
    if scaling in ("linear", "yarn") and not keys.has(f"{arch}.rope.scaling.factor"):
        raise MlxtuneError(f"{keys.source}: metadata '{arch}.rope.scaling.factor' is missing")
    if scaling == "yarn":
        keys.integer(f"{arch}.rope.scaling.original_context_length")
    return {
        "hidden": hidden,
        "heads": heads * head_dim,
        "kv": kv_heads * head_dim,
        "head_dim": head_dim,
        "ffn": keys.integer(f"{arch}.feed_forward_length"),
        "layers": keys.integer(f"{arch}.block_count"),
    }


def _check_tokenizer(keys: _Keys) -> None:
    """The types gguf_tokenizer reads: a list of token strings, merges as strings, token types
    as integers (one per token), special ids that are tokens."""
    for key in ("model", "pre"):
        keys.text(f"tokenizer.ggml.{key}")
    keys.text("tokenizer.chat_template")
    tokens = keys.array("tokenizer.ggml.tokens", frozenset({STRING}), "strings")
    if not tokens:
        raise MlxtuneError(f"{keys.source}: metadata 'tokenizer.ggml.tokens' is missing or empty")
    keys.array("tokenizer.ggml.merges", frozenset({STRING}), "strings")
    types = keys.array("tokenizer.ggml.token_type", INTEGER_TYPES, "integers")
    if types is None:  # llama.cpp writes it for every vocabulary; the builder reads it
        raise MlxtuneError(f"{keys.source}: metadata 'tokenizer.ggml.token_type' is missing")
    if len(types) != len(tokens):
        raise MlxtuneError(
            f"{keys.source}: metadata 'tokenizer.ggml.token_type' has {len(types)} entries for "
            f"{len(tokens)} tokens"
        )
    for name in (*SPECIAL, "padding", "unknown"):
        key = f"tokenizer.ggml.{name}_token_id"
        high = len(tokens) - 1 if name in SPECIAL else LIMIT
        if keys.has(key):
            value = keys.header.metadata[key]
            if keys.header.types[key][0] not in INTEGER_TYPES or not 0 <= value <= high:
                keys.fail(key, value, f"a token id from 0 to {high}")
    for flag in ("add_bos_token", "add_eos_token"):
        key = f"tokenizer.ggml.{flag}"
        if keys.has(key) and keys.header.types[key][0] not in INTEGER_TYPES | {7}:
            keys.fail(key, keys.header.metadata[key], "a boolean")
    if keys.has("general.file_type"):
        keys.integer("general.file_type", low=0)


def _check_tensors(header: Header, arch: str, dims: dict[str, int], source: str) -> None:
    """Every tensor named as llama.cpp names it, in a layer that exists, of the shape the
    architecture's keys imply (GGUF lists a matrix's columns first)."""
    embedding = header.tensors.get("token_embd.weight")
    if embedding is None:
        raise MlxtuneError(f"{source}: tensor 'token_embd.weight' (the embeddings) is missing")
    h, q, kv, ffn = dims["hidden"], dims["heads"], dims["kv"], dims["ffn"]
    vocab = embedding.dims[-1]
    weights = {
        "token_embd": (h, vocab),
        "output": (h, vocab),
        "output_norm": (h,),
        "attn_norm": (h,),
        "ffn_norm": (h,),
        "attn_q": (h, q),
        "attn_k": (h, kv),
        "attn_v": (h, kv),
        "attn_output": (q, h),
        "attn_q_norm": (dims["head_dim"],),
        "attn_k_norm": (dims["head_dim"],),
        "ffn_gate": (h, ffn),
        "ffn_up": (h, ffn),
        "ffn_down": (ffn, h),
    }
    if dims["layers"] > len(header.tensors):
        raise MlxtuneError(
            f"{source}: metadata '{arch}.block_count' says {dims['layers']} layers but the "
            f"file holds only {len(header.tensors)} tensors"
        )
    for name, info in header.tensors.items():
        if name == "rope_freqs.weight":
            continue  # refused with its own message when the config is built
        leaf, kind = _leaf(name, dims["layers"], source)
        expected = weights[leaf] if kind == "weight" else weights[leaf][-1:]
        if info.dims != expected:
            raise MlxtuneError(
                f"{source}: tensor '{name}' has shape {list(info.dims)}; the metadata's sizes "
                f"give {list(expected)}"
            )
        if len(info.dims) == 1 and info.type_name not in FLOATS:
            raise MlxtuneError(f"{source}: tensor '{name}' is a vector stored as {info.type_name}")
    required = REQUIRED + (("attn_q_norm", "attn_k_norm") if arch == "qwen3" else ())
    for layer in range(dims["layers"]):
        for leaf in required:
            if f"blk.{layer}.{leaf}.weight" not in header.tensors:
                raise MlxtuneError(f"{source}: tensor 'blk.{layer}.{leaf}.weight' is missing")
    if "output_norm.weight" not in header.tensors:
        raise MlxtuneError(f"{source}: tensor 'output_norm.weight' is missing")


def _leaf(name: str, layers: int, source: str) -> tuple[str, str]:
    """(llama.cpp leaf name, weight|bias) of a tensor name, its layer checked."""
    match = LAYER_NAME.match(name)
    if match and match.group(2) in PER_LAYER and match.group(3) in ("weight", "bias"):
        if int(match.group(1)) >= layers:
            raise MlxtuneError(
                f"{source}: tensor '{name}' is in layer {match.group(1)}, but the file has "
                f"{layers} layers"
            )
        return match.group(2), match.group(3)
    match = TOP_NAME.match(name)
    if match and match.group(1) in TOP_LEVEL and match.group(2) in ("weight", "bias"):
        return match.group(1), match.group(2)
    no_counterpart(name, source)
