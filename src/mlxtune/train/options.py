"""The training options every trainer shares, so that `train.use=torch` on an `mlx` recipe keeps
each key with the same meaning and default (a trainer adds its own on top)."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import ConfigDict, Field

from ..components import ComponentOptions
from ..errors import MlxtuneError

# The most optimizer steps a run may plan: the int32 range. An MLX array made from a Python step
# is int32, and mlx-lm's schedule fails past int64 ("std::bad_cast", issue 24); 2**31 steps at
# one a millisecond is 25 days, so no real run is refused.
MAX_STEPS = 2**31 - 1
# The largest seed: the per-step seed is seed * 1_000_003 + step, which MLX takes as uint64.
MAX_SEED = 2**32 - 1


class SharedTrainOptions(ComponentOptions):
    """Every number must be finite (`.inf`/`.nan` are refused with the key), and every bound
    is one the loop can run: a recipe that validates trains, or fails for a reason it names."""

    model_config = ConfigDict(allow_inf_nan=False)

    iters: int | None = Field(
        None, ge=1, le=MAX_STEPS, description="optimizer steps; overrides epochs"
    )
    epochs: float = Field(3.0, gt=0, description="passes over the training set")
    batch_size: int = Field(4, ge=1)
    grad_accumulation_steps: int = Field(1, ge=1)
    weight_decay: float = Field(0.01, ge=0, description="adamw only")
    learning_rate: float = Field(1e-4, gt=0)
    warmup_fraction: float = Field(0.05, ge=0, lt=1)
    min_lr_fraction: float = Field(0.1, ge=0, le=1, description="cosine decays to this share")
    lora_rank: int = Field(8, ge=1)
    lora_scale: float = Field(20.0, gt=0, description="W x + scale * B A x (PEFT: alpha / rank)")
    lora_dropout: float = Field(0.0, ge=0, lt=1)
    num_layers: int = Field(16, description="how many of the last blocks get adapters; -1 all")
    lora_keys: list[str] | None = Field(None, description="module keys, e.g. self_attn.q_proj")
    max_seq_length: int = Field(2048, ge=8)
    mask_prompt: bool = Field(True, description="loss on the completion only")
    packing: bool = Field(False, description="concatenate examples into max_seq_length rows")
    eval_every: float = Field(0.1, gt=0, le=1, description="evaluate every this share of steps")
    val_batches: int = Field(-1, description="-1: the whole validation set")
    keep: Literal["best", "last"] = Field(
        "best",
        description="which adapter ends in adapters.safetensors: lowest val loss, or last",
    )
    patience: int | None = Field(
        None, ge=1, description="stop after this many evaluations without improvement"
    )
    grad_checkpoint: bool = False
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="auto: float32 on the CPU backend, bfloat16 on a GPU (Metal, CUDA)"
    )
    seed: int = Field(0, ge=0, le=MAX_SEED)
    steps_per_report: int = Field(10, ge=1)
    resume: bool = Field(True, description="continue an interrupted run from its checkpoint")
    objective: Literal["sft", "dpo", "orpo"] = Field(
        "sft",
        description="sft: cross-entropy on data/train.jsonl; dpo, orpo: preference training on "
        "data/preference_{train,valid}.jsonl ({prompt, chosen, rejected} lines)",
    )


def planned_steps(options: SharedTrainOptions, rows: int) -> int:
    """The run's optimizer updates: `iters`, else `epochs` over `rows` training rows."""
    if rows < options.batch_size:
        raise MlxtuneError(
            f"{rows} training rows of up to {options.max_seq_length} tokens, fewer than "
            f"train.batch_size={options.batch_size}: lower the batch size or max_seq_length"
        )
    per_epoch = rows // options.batch_size
    accum = options.grad_accumulation_steps
    steps = options.iters or max(1, math.ceil(options.epochs * per_epoch / accum))
    if steps > MAX_STEPS:
        raise MlxtuneError(
            f"train.epochs={options.epochs:g} over {rows} rows is {steps} steps, more than the "
            f"{MAX_STEPS} a run can count: lower train.epochs or set train.iters"
        )
    return steps
