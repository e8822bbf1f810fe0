"""A tiny random-weight Qwen2-shaped model, built locally, for offline quick-starts and tests.

It is a real model directory in the Hugging Face layout (config.json, model.safetensors,
tokenizer.json + tokenizer_config.json with a ChatML template), so `mlx_lm.load`, transformers and
mlxtune all load it the way they load a downloaded Qwen model, with no network.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path

from ..errors import MlxtuneError
from ..records import atomic_write_json

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
BUILTIN_TEXT = """\
Research question: how can a neural network learn useful representations from few labels?
Approach: we train a convolutional network with a consistency loss on unlabeled images and
a cross-entropy loss on the labeled subset, and we compare it with supervised baselines.
Research question: why do deep recurrent networks forget long-range context?
Approach: we add gated memory cells, train with truncated backpropagation through time, and
measure accuracy on sequences of growing length.
Abstract. We propose a method for segmentation, normalization and attention in deep models.
The model is trained end to end with stochastic gradient descent on a large dataset.
Results show that the approach improves accuracy, robustness and speed over prior work.
"""


def train_tokenizer(texts: Iterable[str], vocab_size: int):
    """A byte-level BPE tokenizer (every byte encodable) with ChatML special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(list(texts), trainer=trainer)
    return tokenizer


# what a real model's config lends the tiny one (`shape_config`)
SHAPE_KEYS = (
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "intermediate_size",
    "tie_word_embeddings",
    "rope_theta",
    "rms_norm_eps",
)


def build_tiny_model(
    out_dir: str | Path,
    *,
    texts: Iterable[str] = (),
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    num_kv_heads: int = 2,
    intermediate_size: int = 128,
    vocab_size: int = 1024,
    seed: int = 0,
    shape_config: dict | None = None,
) -> Path:
    """Write the model directory; returns its path. Weights are float32, random (see `init`).

    `shape_config` (a real model's config.json) gives the model its shape (and an embedding as
    large as its vocabulary) while keeping the small local tokenizer: how the memory planner is
    checked against real training steps without downloading weights. A build that fails
    (disk full, out of memory) removes the folder it created and raises `MlxtuneError`.
    """
    out = Path(out_dir)
    with _removed_if_failed(out):
        _build(
            out,
            [BUILTIN_TEXT, *texts],
            dict(
                hidden_size=hidden_size,
                num_hidden_layers=num_layers,
                num_attention_heads=num_heads,
                num_key_value_heads=num_kv_heads,
                intermediate_size=intermediate_size,
            ),
            vocab_size,
            seed,
            shape_config,
        )
    return out


@contextlib.contextmanager
def _removed_if_failed(out: Path) -> Iterator[None]:
    """Create `out`; if the build fails (disk full, out of memory), remove it again, so a
    half-written folder is never taken for a model, and say so in one line."""
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        yield
    except BaseException as exc:
        if created:
            shutil.rmtree(out, ignore_errors=True)
        if isinstance(exc, Exception) and not isinstance(exc, MlxtuneError):
            raise MlxtuneError(
                f"could not build the tiny model in {out} ({type(exc).__name__}: {exc}); "
                "nothing was kept: free disk space or memory, or lower model.tiny's sizes"
            ) from exc
        raise


def _build(
    out: Path, texts: list[str], shape: dict, vocab_size: int, seed: int, shape_config: dict | None
) -> None:
    tokenizer = train_tokenizer(texts, vocab_size)
    tokenizer.save(str(out / "tokenizer.json"))
    ids = {tok: tokenizer.token_to_id(tok) for tok in SPECIAL_TOKENS}
    real_vocab = tokenizer.get_vocab_size()

    config = {
        "architectures": ["Qwen2ForCausalLM"],
        "model_type": "qwen2",
        **shape,
        "vocab_size": real_vocab,
        "max_position_embeddings": 4096,
        "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0,
        "tie_word_embeddings": True,
        "hidden_act": "silu",
        "torch_dtype": "float32",
        "bos_token_id": None,
        "eos_token_id": [ids["<|im_end|>"], ids["<|endoftext|>"]],
        "pad_token_id": ids["<|endoftext|>"],
    }
    if shape_config is not None:
        config.update({k: shape_config[k] for k in SHAPE_KEYS if k in shape_config})
        config["vocab_size"] = max(real_vocab, shape_config.get("vocab_size", real_vocab))
    write_config_files(out, config)
    write_random_weights(out, config, seed)


def write_config_files(out: Path, config: dict) -> None:
    """config.json, the tokenizer's config (ChatML template), special tokens, generation."""
    atomic_write_json(out / "config.json", config)
    atomic_write_json(
        out / "tokenizer_config.json",
        {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "eos_token": "<|im_end|>",
            "pad_token": "<|endoftext|>",
            "bos_token": None,
            "unk_token": None,
            "model_max_length": 4096,
            "chat_template": CHATML_TEMPLATE,
            "clean_up_tokenization_spaces": False,
        },
    )
    atomic_write_json(
        out / "special_tokens_map.json", {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"}
    )
    atomic_write_json(out / "generation_config.json", {"eos_token_id": config["eos_token_id"]})


def write_random_weights(out: Path, config: dict, seed: int) -> None:
    """model.safetensors with the random initialization below, and a README saying so."""
    import mlx.core as mx
    from mlx.utils import tree_flatten
    from mlx_lm.models import qwen2

    hidden_size = config["hidden_size"]
    args = qwen2.ModelArgs.from_dict(config)
    mx.random.seed(seed)
    model = qwen2.Model(args)

    # Unit-scale random features: matrices get std 1/sqrt(fan_in), so attention is not uniform,
    # and embeddings (tied with the frozen output head) std 1/sqrt(d), so a logit can reach
    # |norm(h)| * |row| ~ sqrt(d). With HF's 0.02 a tiny model's logits stay near uniform and LoRA
    # can barely lower the loss. (Larger embeddings memorize faster but make the quick-start's
    # held-out loss rise from the first steps.) Norms start at 1, biases at 0.
    def init(name: str, shape: tuple[int, ...]):
        if "norm" in name:
            return mx.ones(shape, dtype=mx.float32)
        if name.endswith("bias"):
            return mx.zeros(shape, dtype=mx.float32)
        std = hidden_size**-0.5 if "embed_tokens" in name else shape[-1] ** -0.5
        return std * mx.random.normal(shape, dtype=mx.float32)

    weights = {}
    for name, value in tree_flatten(model.parameters()):
        weights[name] = init(name, value.shape)
        mx.eval(weights[name])
    del model
    mx.save_safetensors(str(out / "model.safetensors"), weights, metadata={"format": "mlx"})
    (out / "README.md").write_text(
        "# tiny random-weight Qwen2-shaped model\n\nBuilt by `mlxtune model tiny` for offline "
        "tests and the quick-start. Its weights are random: it knows nothing until trained.\n"
        + "\n```json\n"
        + json.dumps(config, indent=2)
        + "\n```\n"
    )
