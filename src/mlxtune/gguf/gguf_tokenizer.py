"""A Hugging Face tokenizer (tokenizer.json + tokenizer_config.json) from a GGUF file's metadata.

GGUF files carry the whole tokenizer: tokens, merges, token types, the special ids and the name of
the pre-tokenizer (`tokenizer.ggml.pre`) whose regular expressions llama.cpp hard-codes. We build
the `tokenizers` pipeline ourselves rather than through transformers' GGUF converter, because that
converter drops the pre-tokenizer (SmolLM2's digit splitting, Qwen2's and Llama 3's regexes) and
writes a tokenizer class older transformers releases do not know. The regexes below are the ones
the models' own tokenizer.json files use (and llama.cpp's `llama-vocab.cpp` table).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import MlxtuneError
from ..records import atomic_write_json

# token types (llama.cpp's llama_token_type)
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6

QWEN2_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
LLAMA3_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
# pre-tokenizer name -> (kind, regex); kind says how the text is split before byte-level BPE
PRE_TOKENIZERS: dict[str, tuple[str, str | None]] = {
    "default": ("gpt2", None),
    "gpt-2": ("gpt2", None),
    "smollm": ("digits+gpt2", None),
    "starcoder": ("digits+gpt2", None),
    "refact": ("digits+gpt2", None),
    "qwen2": ("regex", QWEN2_PATTERN),
    "deepseek-r1-qwen": ("regex", QWEN2_PATTERN),
    "llama-bpe": ("regex", LLAMA3_PATTERN),
    "llama3": ("regex", LLAMA3_PATTERN),
    "smaug-bpe": ("regex", LLAMA3_PATTERN),
}


def scalar(meta: dict[str, Any], key: str, default: Any = None) -> Any:
    """A metadata value as a plain Python value (mx.load returns numbers as 0-d arrays)."""
    value = meta.get(key, default)
    return value.item() if hasattr(value, "item") and getattr(value, "ndim", 1) == 0 else value


def special_ids(meta: dict[str, Any]) -> dict[str, int | None]:
    return {
        name: scalar(meta, f"tokenizer.ggml.{name}_token_id")
        for name in ("bos", "eos", "eot", "eom", "padding", "unknown")
    }


def build_tokenizer(meta: dict[str, Any], source: str) -> Any:
    """A `tokenizers.Tokenizer` equivalent to llama.cpp's for a byte-level BPE vocabulary."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, processors
    from tokenizers import pre_tokenizers as pre

    kind = scalar(meta, "tokenizer.ggml.model")
    if kind != "gpt2":
        raise MlxtuneError(
            f"{source}: tokenizer model '{kind}' is not supported (only byte-level BPE, 'gpt2', "
            "as used by Qwen, SmolLM and Llama 3; SentencePiece vocabularies are not)"
        )
    pre_name = scalar(meta, "tokenizer.ggml.pre", "default") or "default"
    if pre_name not in PRE_TOKENIZERS:
        raise MlxtuneError(
            f"{source}: pre-tokenizer '{pre_name}' is not supported; supported: "
            + ", ".join(sorted(PRE_TOKENIZERS))
        )
    tokens: list[str] = list(meta["tokenizer.ggml.tokens"])
    merges = [tuple(m.split(" ", 1)) for m in meta.get("tokenizer.ggml.merges", [])]
    types = [int(t) for t in meta.get("tokenizer.ggml.token_type", [NORMAL] * len(tokens)).tolist()]
    vocab = {token: index for index, token in enumerate(tokens)}
    style, pattern = PRE_TOKENIZERS[pre_name]
    tokenizer = Tokenizer(
        models.BPE(vocab=vocab, merges=merges, ignore_merges=pattern == LLAMA3_PATTERN)
    )
    byte_level = pre.ByteLevel(add_prefix_space=False, use_regex=style != "regex")
    if style == "regex":
        tokenizer.pre_tokenizer = pre.Sequence(
            [pre.Split(Regex(pattern), behavior="isolated"), byte_level]
        )
        if pre_name == "qwen2":
            tokenizer.normalizer = normalizers.NFC()
    elif style == "digits+gpt2":
        tokenizer.pre_tokenizer = pre.Sequence([pre.Digits(individual_digits=True), byte_level])
    else:
        tokenizer.pre_tokenizer = byte_level
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens(
        [
            AddedToken(tok, special=True, normalized=False)
            for tok, kind in zip(tokens, types, strict=False)
            if kind == CONTROL
        ]
    )
    tokenizer.add_tokens(
        [
            AddedToken(tok, special=False, normalized=False)
            for tok, kind in zip(tokens, types, strict=False)
            if kind == USER_DEFINED
        ]
    )
    ids = special_ids(meta)
    if scalar(meta, "tokenizer.ggml.add_bos_token", False) and ids["bos"] is not None:
        bos = tokens[ids["bos"]]
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, ids["bos"])]
        )
    else:
        tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    return tokenizer


def end_of_sequence_ids(meta: dict[str, Any]) -> list[int]:
    """Every id that ends a reply: end of sequence, end of turn, end of message (Llama 3)."""
    ids = special_ids(meta)
    found = [ids[k] for k in ("eos", "eot", "eom") if ids[k] is not None]
    return list(dict.fromkeys(found))


def write_tokenizer(meta: dict[str, Any], out: Path, source: str, context: int) -> dict[str, Any]:
    """Write tokenizer.json, tokenizer_config.json and special_tokens_map.json into `out`."""
    tokenizer = build_tokenizer(meta, source)
    tokenizer.save(str(out / "tokenizer.json"))
    tokens = meta["tokenizer.ggml.tokens"]
    ids = special_ids(meta)

    def text(name: str) -> str | None:
        index = ids[name]
        return tokens[index] if index is not None and 0 <= index < len(tokens) else None

    eos = text("eot") or text("eos")  # an instruct model's turn ends with its end-of-turn token
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": text("bos"),
        "eos_token": eos,
        "pad_token": text("padding") or eos,
        "unk_token": text("unknown") if ids["unknown"] is not None else None,
        "add_bos_token": bool(scalar(meta, "tokenizer.ggml.add_bos_token", False)),
        "add_eos_token": bool(scalar(meta, "tokenizer.ggml.add_eos_token", False)),
        "model_max_length": context,
        "clean_up_tokenization_spaces": False,
    }
    template = meta.get("tokenizer.chat_template")
    if template:
        config["chat_template"] = template
    atomic_write_json(out / "tokenizer_config.json", config)
    special = {k: config[k] for k in ("bos_token", "eos_token", "pad_token", "unk_token")}
    atomic_write_json(out / "special_tokens_map.json", {k: v for k, v in special.items() if v})
    return config
