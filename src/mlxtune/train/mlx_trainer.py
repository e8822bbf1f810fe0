"""LoRA/DoRA training with MLX, wrapping mlx-lm's tuner.

mlx-lm does the heavy lifting (`linear_to_lora_layers`, the compiled training step, `evaluate`);
around it we add what it lacks: epochs turned into iterations, evaluation at a fraction of the
steps, keeping the adapter with the best validation loss (mlx-lm keeps the last), a float32
compute dtype on the CPU backend (bf16 has no BLAS path there), metrics.jsonl and clear errors.
The output directory is in mlx-lm's adapter format, so `mlx_lm.generate --adapter-path` reads it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from pydantic import Field

from ..components import ComponentOptions, Trainer, TrainResult
from ..errors import MlxtuneError
from ..hookspecs import hookimpl
from ..records import append_jsonl, atomic_write_json
from .data import load_examples, tokenize


class MlxTrainer(Trainer):
    name = "mlx"
    description = "LoRA/DoRA on MLX (Metal, CUDA or CPU) through mlx-lm's tuner"

    class Options(ComponentOptions):
        fine_tune_type: Literal["lora", "dora"] = "lora"
        iters: int | None = Field(None, ge=1, description="training steps; overrides epochs")
        epochs: float = Field(3.0, gt=0, description="passes over the training set")
        batch_size: int = Field(4, ge=1)
        grad_accumulation_steps: int = Field(1, ge=1)
        learning_rate: float = Field(1e-4, gt=0)
        warmup_fraction: float = Field(0.05, ge=0, lt=1)
        lora_rank: int = Field(8, ge=1)
        lora_scale: float = Field(20.0, gt=0)
        lora_dropout: float = Field(0.0, ge=0, lt=1)
        num_layers: int = Field(16, description="how many of the last blocks get adapters; -1 all")
        lora_keys: list[str] | None = Field(None, description="module keys, e.g. self_attn.q_proj")
        max_seq_length: int = Field(2048, ge=8)
        mask_prompt: bool = Field(True, description="loss on the completion only")
        eval_every: float = Field(0.1, gt=0, le=1, description="evaluate every this share of steps")
        val_batches: int = Field(-1, description="-1: the whole validation set")
        grad_checkpoint: bool = False
        dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
            "auto", description="auto: float32 on the CPU backend, the model's dtype elsewhere"
        )
        seed: int = 0
        steps_per_report: int = Field(10, ge=1)

    def train(
        self,
        model: str,
        data_dir: Path,
        output_dir: Path,
        *,
        trust_remote_code: bool = False,
        log: Callable[[str], None] = print,
    ) -> TrainResult:
        o = self.options
        train_examples = load_examples(data_dir / "train.jsonl")
        valid_examples = load_examples(data_dir / "valid.jsonl")
        if not train_examples:
            raise MlxtuneError(f"no training examples in {data_dir / 'train.jsonl'}")
        if len(train_examples) < o.batch_size:
            raise MlxtuneError(
                f"only {len(train_examples)} training examples but train.batch_size is "
                f"{o.batch_size}: lower train.batch_size (e.g. train.batch_size="
                f"{len(train_examples)}) or add papers"
            )
        if not valid_examples:
            raise MlxtuneError(
                f"the validation split is empty ({data_dir / 'valid.jsonl'}): "
                "set split.valid to 1 or more papers per category"
            )

        import mlx.core as mx
        import mlx.optimizers as optim
        import numpy as np
        from mlx.utils import tree_flatten
        from mlx_lm.tuner.trainer import TrainingArgs, TrainingCallback, evaluate, iterate_batches
        from mlx_lm.tuner.trainer import train as mlx_train
        from mlx_lm.tuner.utils import build_schedule, linear_to_lora_layers

        from ..backends.mlx_backend import load_model

        mx.random.seed(o.seed)
        np.random.seed(o.seed)
        net, tokenizer = load_model(model, dtype=o.dtype, trust_remote_code=trust_remote_code)
        train_set = tokenize(tokenizer, train_examples, o.mask_prompt)
        valid_set = tokenize(tokenizer, valid_examples, o.mask_prompt)
        too_long = sum(len(t) > o.max_seq_length for t, _ in train_set + valid_set)
        if too_long:
            log(
                f"  {too_long} examples are longer than max_seq_length={o.max_seq_length} "
                "tokens and will be truncated"
            )

        n_layers = len(net.layers)
        num_layers = n_layers if o.num_layers < 0 else min(o.num_layers, n_layers)
        lora_parameters = {"rank": o.lora_rank, "scale": o.lora_scale, "dropout": o.lora_dropout}
        if o.lora_keys:
            lora_parameters["keys"] = o.lora_keys
        net.freeze()
        linear_to_lora_layers(net, num_layers, lora_parameters, use_dora=o.fine_tune_type == "dora")

        updates_per_epoch = len(train_set) / o.batch_size
        iters = o.iters or max(1, math.ceil(o.epochs * updates_per_epoch))
        eval_steps = max(1, round(o.eval_every * iters))
        warmup = int(o.warmup_fraction * iters)
        schedule = build_schedule(
            {
                "name": "cosine_decay",
                "arguments": [o.learning_rate, max(1, iters - warmup), o.learning_rate * 0.1],
                "warmup": warmup,
            }
        )
        optimizer = optim.AdamW(learning_rate=schedule)

        output_dir.mkdir(parents=True, exist_ok=True)
        metrics_path = output_dir / "metrics.jsonl"
        metrics_path.unlink(missing_ok=True)
        adapter_config = {
            "fine_tune_type": o.fine_tune_type,
            "num_layers": num_layers,
            "lora_parameters": lora_parameters,
            "model": model,
            "trainer": "mlxtune.mlx",
            "mask_prompt": o.mask_prompt,
            "iters": iters,
            "batch_size": o.batch_size,
            "learning_rate": o.learning_rate,
            "max_seq_length": o.max_seq_length,
            "seed": o.seed,
        }
        atomic_write_json(output_dir / "adapter_config.json", adapter_config)
        best: dict[str, float | int | None] = {"loss": math.inf, "step": None}

        def save_if_best(step: int, val_loss: float) -> None:
            append_jsonl(
                metrics_path,
                {"step": step, "epoch": step / updates_per_epoch, "val_loss": val_loss},
            )
            if val_loss < best["loss"]:
                best.update(loss=val_loss, step=step)
                weights = dict(tree_flatten(net.trainable_parameters()))
                mx.save_safetensors(str(output_dir / "adapters.safetensors"), weights)

        last_train: dict[str, float] = {}

        class Callback(TrainingCallback):
            def on_train_loss_report(self, info: dict) -> None:
                step = int(info["iteration"])
                last_train["loss"] = float(info["train_loss"])
                append_jsonl(
                    metrics_path,
                    {
                        "step": step,
                        "epoch": step / updates_per_epoch,
                        "train_loss": float(info["train_loss"]),
                        "learning_rate": float(info["learning_rate"]),
                        "tokens_per_second": float(info["tokens_per_second"]),
                        "peak_memory_gb": float(info["peak_memory"]),
                    },
                )

            def on_val_loss_report(self, info: dict) -> None:
                save_if_best(int(info["iteration"]), float(info["val_loss"]))

        def batches(dataset, batch_size, max_seq_length, loop=False, seed=None, comm_group=None):
            if not loop:  # evaluation: a batch size that covers every example exactly
                batch_size = max(
                    b for b in range(1, min(batch_size, len(dataset)) + 1) if len(dataset) % b == 0
                )
            return iterate_batches(dataset, batch_size, max_seq_length, loop, seed, comm_group)

        args = TrainingArgs(
            batch_size=o.batch_size,
            iters=iters,
            val_batches=o.val_batches,
            steps_per_report=min(o.steps_per_report, iters),
            steps_per_eval=eval_steps,
            steps_per_save=iters + 1,  # we save the best adapter ourselves
            max_seq_length=o.max_seq_length,
            adapter_file=str(output_dir / "last.safetensors"),
            grad_checkpoint=o.grad_checkpoint,
            grad_accumulation_steps=o.grad_accumulation_steps,
        )
        mx.reset_peak_memory()
        started = time.perf_counter()
        log(
            f"  training {iters} steps ({len(train_set)} examples, batch {o.batch_size}, "
            f"eval every {eval_steps} steps)"
        )
        mlx_train(
            net,
            optimizer,
            train_set,
            valid_set,
            args=args,
            iterate_batches=batches,
            training_callback=Callback(),
        )
        final_loss = evaluate(
            net, valid_set, o.batch_size, o.val_batches, o.max_seq_length, iterate_batches=batches
        )
        save_if_best(iters, final_loss)
        peak = mx.get_peak_memory() / 1e9
        (output_dir / "last.safetensors").unlink(missing_ok=True)
        summary = {
            "best_step": best["step"],
            "best_val_loss": best["loss"],
            "steps": iters,
            "peak_memory_gb": peak,
        }
        atomic_write_json(output_dir / "train_summary.json", summary)
        return TrainResult(
            adapter_path=output_dir,
            steps=iters,
            best_step=int(best["step"]) if best["step"] is not None else None,
            best_val_loss=float(best["loss"]),
            final_train_loss=last_train.get("loss"),
            peak_memory_gb=peak,
            seconds=time.perf_counter() - started,
            extra={"metrics_path": str(metrics_path)},
        )


@hookimpl
def register_trainers(register):
    register(MlxTrainer)
