"""Memory planner: peak memory of LoRA training and of generation, from a model's config.json.

The estimate counts what MLX keeps alive at the peak of a training step:
- weights: every parameter at its storage size (quantized: bits/8 plus a 16-bit scale and bias
  per group; full precision: the compute dtype, float32 on the CPU backend);
- adapters + optimizer: trainable parameters in float32 with their gradient and optimizer state
  (AdamW: two moments);
- activations: what the backward pass needs per token and layer (the block's inputs, projections,
  MLP intermediates) plus the attention scores and probabilities (heads x T x T), from the first
  adapted layer on; with gradient checkpointing only each layer's input plus one layer's worth;
- logits: batch x T x vocab for the logits, their softmax and their gradient; with the chunked
  loss (the `mlx` trainer's default for a frozen head) two chunks' logits plus the learned
  targets' hidden states and their gradient.
Generation: weights, the KV cache for the context, one step's logits.

The per-token coefficients were derived from the block's computation and checked against
`mx.get_peak_memory()` of real training steps (bench/planner_check.py; docs/memory.md has the
table): every estimate within 20%.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

GB = 1e9
DEFAULT_KEYS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
# floats kept per token per adapted layer for the backward pass, in units of hidden / kv / mlp
ACT_HIDDEN, ACT_KV, ACT_MLP, ACT_SCORES = 12, 4, 5, 2
LOGIT_COPIES = 3  # logits, softmax, gradient
# chunks of the chunked loss whose float32 logits count at a step's peak: the loss phase alone
# holds more (~9 chunk buffers in flight, measured), but a step's peak comes later, in the
# backward pass through the layers; two chunks' logits fit the measured peaks (docs/memory.md)
CHUNKS_IN_FLIGHT = 2
OPTIMIZER_STATES = {"adamw": 2, "adam": 2, "sgd": 1, "adafactor": 1}


@dataclass(frozen=True)
class ModelShape:
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    tied: bool
    name: str = ""

    @classmethod
    def from_config(cls, config: dict[str, Any], name: str = "") -> ModelShape:
        text = config.get("text_config", config)
        hidden = text["hidden_size"]
        heads = text["num_attention_heads"]
        return cls(
            hidden=hidden,
            layers=text["num_hidden_layers"],
            heads=heads,
            kv_heads=text.get("num_key_value_heads", heads),
            head_dim=text.get("head_dim") or hidden // heads,
            intermediate=text["intermediate_size"],
            vocab=text["vocab_size"],
            tied=bool(text.get("tie_word_embeddings", False)),
            name=name,
        )

    def linears(self) -> dict[str, tuple[int, int]]:
        """(in, out) of each linear layer in one block."""
        q, kv = self.heads * self.head_dim, self.kv_heads * self.head_dim
        return {
            "q_proj": (self.hidden, q),
            "k_proj": (self.hidden, kv),
            "v_proj": (self.hidden, kv),
            "o_proj": (q, self.hidden),
            "gate_proj": (self.hidden, self.intermediate),
            "up_proj": (self.hidden, self.intermediate),
            "down_proj": (self.intermediate, self.hidden),
        }

    @property
    def block_params(self) -> int:
        return sum(i * o for i, o in self.linears().values())

    @property
    def embedding_params(self) -> int:
        return self.vocab * self.hidden * (1 if self.tied else 2)

    @property
    def params(self) -> int:
        return self.layers * self.block_params + self.embedding_params


@dataclass(frozen=True)
class Setting:
    """What decides memory: quantization, dtypes, adapters, batch, sequence, checkpointing."""

    bits: int | None = None  # None: full precision
    group_size: int = 64
    dtype_bytes: int = 4  # compute dtype: 4 on the CPU backend (float32), 2 for bf16
    fine_tune_type: str = "lora"
    lora_rank: int = 8
    num_layers: int = 16
    keys: tuple[str, ...] = DEFAULT_KEYS
    batch_size: int = 4
    grad_accumulation_steps: int = 1
    seq_len: int = 2048
    grad_checkpoint: bool = False
    optimizer: str = "adamw"
    chunked_loss: bool = False  # the head and loss over chunks (the mlx trainer's default)
    processes: int = 1  # data parallel (mlx.launch): each process holds its share of a batch
    sequences_per_row: int = 1  # 2 for preference training: a row is a chosen and a rejected

    @property
    def rows_per_process(self) -> int:
        return -(-self.batch_size // self.processes) * self.sequences_per_row


@dataclass
class Estimate:
    parts: dict[str, float] = field(default_factory=dict)  # bytes

    @property
    def total(self) -> float:
        return sum(self.parts.values())

    def describe(self) -> str:
        parts = ", ".join(f"{name} {human(value)}" for name, value in self.parts.items())
        return f"{human(self.total)} ({parts})"


def human(size: float) -> str:
    return f"{size / GB:.2f} GB" if size >= 0.1 * GB else f"{size / 1e6:.1f} MB"


def weight_bytes(shape: ModelShape, setting: Setting) -> float:
    if setting.bits is None:
        return shape.params * setting.dtype_bytes
    per_weight = setting.bits / 8 + 4 / setting.group_size  # + fp16 scale and bias per group
    return shape.params * per_weight


def estimate_training(shape: ModelShape, setting: Setting) -> Estimate:
    layers = shape.layers if setting.num_layers < 0 else min(setting.num_layers, shape.layers)
    if setting.fine_tune_type == "full":
        trainable = shape.params
        adapted = shape.layers
    else:
        linears = shape.linears()
        per_layer = sum(
            setting.lora_rank * (i + o) for k, (i, o) in linears.items() if k in setting.keys
        )
        if setting.fine_tune_type == "dora":
            per_layer += sum(o for k, (_, o) in linears.items() if k in setting.keys)
        trainable = per_layer * layers
        adapted = layers
    states = OPTIMIZER_STATES.get(setting.optimizer, 2)
    tokens = setting.rows_per_process * setting.seq_len
    kv = shape.kv_heads * shape.head_dim
    per_token_layer = (
        ACT_HIDDEN * shape.hidden
        + ACT_KV * kv
        + ACT_MLP * shape.intermediate
        + ACT_SCORES * shape.heads * setting.seq_len
    ) * setting.dtype_bytes
    if setting.dtype_bytes < 4 and setting.fine_tune_type != "full":
        # the float32 adapters promote each adapted layer's input to a float32 copy, kept for
        # the backward pass
        per_token_layer += 4 * sum(i for k, (i, _) in shape.linears().items() if k in setting.keys)
    if setting.grad_checkpoint:
        activations = tokens * (adapted * shape.hidden * setting.dtype_bytes + per_token_layer)
    else:
        activations = tokens * adapted * per_token_layer
    return Estimate(
        {
            "weights": weight_bytes(shape, setting),
            "adapters+optimizer": trainable * 4 * (2 + states),
            "activations": activations,
            "logits": logits_bytes(shape, setting, tokens),
        }
    )


def logits_bytes(shape: ModelShape, setting: Setting, tokens: int) -> float:
    """The loss's share of the peak: the whole logits in float32 (its copies), after the head's
    own output when that is in a smaller dtype; or, chunked, the chunks in flight and the
    [tokens, hidden] states the chunks are cut from, with their gradient."""
    if setting.chunked_loss and setting.fine_tune_type != "full":
        from .chunked_loss import chunk_tokens

        in_flight = min(tokens, chunk_tokens(shape.vocab) * CHUNKS_IN_FLIGHT)
        return in_flight * shape.vocab * 4 + tokens * shape.hidden * 4 * 2
    own = setting.dtype_bytes if setting.dtype_bytes < 4 else 0
    return tokens * shape.vocab * (LOGIT_COPIES * 4 + own)


def estimate_generation(
    shape: ModelShape, setting: Setting, context: int = 4096, batch: int = 1
) -> Estimate:
    kv_cache = 2 * shape.layers * shape.kv_heads * shape.head_dim * context * batch
    return Estimate(
        {
            "weights": weight_bytes(shape, setting),
            "kv cache": kv_cache * setting.dtype_bytes,
            "logits": batch * shape.vocab * 4 * 2,
        }
    )


@dataclass
class Suggestion:
    overrides: dict[str, Any]
    setting: Setting
    estimate: Estimate
    note: str


def candidates(setting: Setting) -> list[tuple[dict[str, Any], Setting, str]]:
    """Changes in order of quality lost: none (checkpointing, accumulation keep the result),
    then quantization, then shorter sequences, then fewer adapted layers."""
    out: list[tuple[dict[str, Any], Setting, str]] = []
    current, overrides = setting, {}

    def step(change: dict[str, Any], setting_change: dict[str, Any], note: str) -> None:
        nonlocal current, overrides
        current = replace(current, **setting_change)
        overrides = {**overrides, **change}
        out.append((dict(overrides), current, note))

    if not current.grad_checkpoint:
        step(
            {"train.grad_checkpoint": True},
            {"grad_checkpoint": True},
            "gradient checkpointing: same result, ~30% slower",
        )
    batch, accum = current.batch_size, current.grad_accumulation_steps
    while batch // 2 >= current.processes:  # every process keeps a row of each batch
        batch //= 2
        accum *= 2
        step(
            {"train.batch_size": batch, "train.grad_accumulation_steps": accum},
            {"batch_size": batch, "grad_accumulation_steps": accum},
            "smaller batches with gradient accumulation: same effective batch",
        )
    for bits in (8, 4):  # QLoRA: only for adapters (full fine-tuning needs the weights as they are)
        if setting.fine_tune_type != "full" and (current.bits is None or current.bits > bits):
            step(
                {"train.quantize": bits},
                {"bits": bits},
                f"QLoRA: the frozen base quantized to {bits} bits",
            )
    seq = current.seq_len
    while seq > 256:
        seq //= 2
        step(
            {"train.max_seq_length": seq},
            {"seq_len": seq},
            "shorter sequences: longer examples are truncated",
        )
    layers = current.num_layers if current.num_layers > 0 else 10**6
    while layers > 4:
        layers //= 2
        step({"train.num_layers": layers}, {"num_layers": layers}, "adapters on fewer layers")
    return out


def fit(shape: ModelShape, setting: Setting, budget: float) -> Suggestion | None:
    """The first candidate (least quality lost) whose estimate fits `budget` bytes."""
    for overrides, candidate, note in candidates(setting):
        estimate = estimate_training(shape, candidate)
        if estimate.total <= budget:
            return Suggestion(overrides, candidate, estimate, note)
    return None


def parse_memory(text: str) -> float:
    value = text.strip().upper().removesuffix("B")
    units = {"K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}
    if value and value[-1] in units:
        return float(value[:-1]) * units[value[-1]]
    return float(value)


BUNDLED = Path(__file__).parent / "configs"


def bundled_config(model_ref: str) -> dict[str, Any] | None:
    """The shape of a well-known model (the Qwen2.5 family, QwQ-32B) from mlxtune's own copy of
    its config, with the quantization that an mlx-community name states (`-4bit`)."""
    name = model_ref.rsplit("/", 1)[-1].lower()
    for path in sorted(BUNDLED.glob("*.json"), key=lambda p: -len(p.stem)):
        if name.startswith(path.stem.lower() + "-") or name == path.stem.lower():
            config = json.loads(path.read_text())
            for bits in (3, 4, 6, 8):
                if f"-{bits}bit" in name:
                    config["quantization"] = {"group_size": 64, "bits": bits}
            return config
    return None


def load_config(model_ref: str, revision: str | None = None) -> dict[str, Any]:
    """config.json alone (no weights): from a local folder, the hub cache, mlxtune's bundled
    copies of well-known configs, or the hub."""
    from ..errors import MlxtuneError

    path = Path(model_ref).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise MlxtuneError(f"{path} has no config.json")
        return json.loads((path / "config.json").read_text())
    from huggingface_hub import hf_hub_download

    try:
        cached = hf_hub_download(model_ref, "config.json", revision=revision, local_files_only=True)
        return json.loads(Path(cached).read_text())
    except Exception:
        pass
    bundled = bundled_config(model_ref)
    if bundled is not None:
        return bundled
    try:
        return json.loads(
            Path(hf_hub_download(model_ref, "config.json", revision=revision)).read_text()
        )
    except Exception as exc:
        raise MlxtuneError(
            f"cannot read config.json of '{model_ref}' (local folder or hub id; offline and not "
            f"cached?): {type(exc).__name__}"
        ) from None


def quantization_bits(config: dict[str, Any]) -> int | None:
    quant = config.get("quantization") or config.get("quantization_config") or {}
    return quant.get("bits") if isinstance(quant, dict) else None


def setting_from_options(
    options: Any, config: dict[str, Any], device: Any, processes: int = 1
) -> Setting:
    """The planner's view of a trainer's validated options (every default comes from the
    trainer's Options class; the keys only some trainers have fall back to mlx's meaning), for
    one of `processes` data-parallel processes."""
    from ..device import dtype_bytes
    from .options import SharedTrainOptions

    if not isinstance(options, SharedTrainOptions):  # train.use: none plans the defaults
        options = SharedTrainOptions()
    bits = quantization_bits(config) or getattr(options, "quantize", None)
    keys = tuple(k.rsplit(".", 1)[-1] for k in options.lora_keys or DEFAULT_KEYS)
    return Setting(
        bits=bits,
        group_size=getattr(options, "quantize_group_size", 64),
        dtype_bytes=dtype_bytes(options.dtype, device.kind),
        fine_tune_type=getattr(options, "fine_tune_type", "lora"),
        lora_rank=options.lora_rank,
        num_layers=options.num_layers,
        keys=keys,
        batch_size=options.batch_size,
        grad_accumulation_steps=options.grad_accumulation_steps,
        seq_len=options.max_seq_length,
        grad_checkpoint=options.grad_checkpoint,
        optimizer=getattr(options, "optimizer", "adamw"),
        chunked_loss=getattr(options, "chunked_loss", False),
        processes=processes,
        sequences_per_row=1 if getattr(options, "objective", "sft") == "sft" else 2,
    )
