"""One MLX training run's setup: the model with its adapters (LoRA, DoRA, QLoRA's quantized base,
or every weight), the optimizer and schedule, the rows, the launch's ranks; the shared loop
(loop.py) runs it through `MlxSteps` (mlx_steps.py). The SFT run; preference_run.py builds the
DPO/ORPO run on it, and mlx_trainer.py (the plugin) picks one per objective.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..components import TrainResult
from ..device import current_device, resolve_dtype, wired_limit
from ..errors import MlxtuneError
from ..records import Example, atomic_write_json, sha256_file, sha256_json
from .batching import Row
from .data import training_rows
from .loop import TrainingLoop, planned_steps
from .mlx_distributed import Ranks, launch_group

# options that do not change the trained weights, so changing them keeps a checkpoint resumable:
# gradient checkpointing recomputes the same numbers, the chunked loss computes the same loss, and
# an auto-fit retry that splits the batch keeps the effective batch (the hash holds batch_size x
# grad_accumulation_steps); so does the number of processes of a launch
NOT_IN_CONFIG = {
    "resume",
    "steps_per_report",
    "sample_max_tokens",
    "auto_fit",
    "grad_checkpoint",
    "chunked_loss",
    "batch_size",
    "grad_accumulation_steps",
}

PREFERENCE_KEYS = {"objective", "preference_beta", "preference_nll", "start_adapter"}


class MlxRun:
    """One training run's setup: the model with its adapters, the optimizer, the data; the
    shared loop (loop.py) runs it through `MlxSteps` (mlx_steps.py)."""

    def __init__(
        self,
        options: Any,
        model_ref: str,
        data_dir: Path,
        output_dir: Path,
        trust_remote_code: bool,
        log: Callable[[str], None],
    ):
        self.options = options
        self.model_ref = model_ref
        self.data_dir = data_dir
        self.out = output_dir
        self.trust_remote_code = trust_remote_code
        self.log = log
        self.cleanups: list[Callable[[], None]] = []
        self.device = current_device()

    # ------------------------------------------------------------ setup

    def config_hash(self) -> str:
        # the preference keys are not in an sft run's hash: its checkpoints from before they
        # existed stay resumable (preference_run.py hashes its own)
        options = self.options.model_dump(mode="json", exclude=NOT_IN_CONFIG | PREFERENCE_KEYS)
        options["effective_batch"] = self.options.batch_size * self.options.grad_accumulation_steps
        data = [sha256_file(self.data_dir / f"{s}.jsonl") for s in ("train", "valid")]
        return sha256_json([options, self.model_ref, data])

    def setup_model(self) -> tuple[Any, Any, dict[str, Any]]:
        import mlx.core as mx

        from ..models.loading import is_quantized, load_model, quantize_base

        o = self.options
        mx.random.seed(o.seed)
        dtype = resolve_dtype(o.dtype, self.device.kind)
        net, tokenizer = load_model(
            self.model_ref, dtype=dtype, trust_remote_code=self.trust_remote_code
        )
        if o.dtype == "auto":
            self.log(f"  dtype auto: {dtype} on {self.device.name} ({self.device.kind})")
        quantization = None
        if o.quantize:
            if is_quantized(net):
                self.log("  the model is already quantized; train.quantize ignored")
            else:
                quantization = quantize_base(net, o.quantize, o.quantize_group_size)
        num_layers, lora_parameters = attach_adapters(net, o)
        if o.grad_checkpoint:
            from mlx_lm.tuner.trainer import grad_checkpoint

            block = type(net.layers[0])
            original = block.__call__
            grad_checkpoint(net.layers[0])  # patches the class: undone when training ends
            self.cleanups.append(lambda: setattr(block, "__call__", original))
        config = {
            "fine_tune_type": o.fine_tune_type,
            "num_layers": num_layers,
            "lora_parameters": lora_parameters,
            "base_quantization": quantization,
            "model": self.model_ref,
            "trainer": "mlxtune.mlx",
            **{
                k: v
                for k, v in self.options.model_dump(mode="json").items()
                if k not in ("fine_tune_type", "lora_keys")
            },
        }
        return net, tokenizer, config

    def rows(self, tokenizer: Any, examples: list[Example], pack: bool) -> list[Row]:
        o = self.options
        return training_rows(tokenizer, examples, o.max_seq_length, o.mask_prompt, pack, self.log)

    def make_optimizer(self, steps: int) -> Any:
        import mlx.optimizers as optim
        from mlx_lm.tuner.utils import build_schedule

        o = self.options
        warmup = int(o.warmup_fraction * steps)
        schedule = build_schedule(
            {
                "name": "cosine_decay",
                "arguments": [
                    o.learning_rate,
                    max(1, steps - warmup),
                    o.learning_rate * o.min_lr_fraction,
                ],
                "warmup": warmup,
            }
        )
        if o.optimizer == "adamw":
            return optim.AdamW(learning_rate=schedule, weight_decay=o.weight_decay)
        if o.optimizer == "adam":
            return optim.Adam(learning_rate=schedule)
        if o.optimizer == "sgd":
            return optim.SGD(learning_rate=schedule, momentum=0.9)
        return optim.Adafactor(learning_rate=schedule, relative_step=False, scale_parameter=False)

    def train(self, train_examples: list[Example], valid_examples: list[Example]) -> TrainResult:
        from .mlx_steps import MlxSteps, sample_prompt

        o = self.options
        ranks = self.ranks()
        net, tokenizer, adapter_config = self.setup_model()
        train_rows = self.rows(tokenizer, train_examples, o.packing)
        valid_rows = self.rows(tokenizer, valid_examples, False)
        prompt = sample_prompt(tokenizer, o, valid_examples)
        rows = (train_rows, valid_rows)
        return self.run_loop(MlxSteps, ranks, net, tokenizer, adapter_config, rows, prompt)

    def run_loop(
        self,
        steps_class: type,
        ranks: Ranks,
        net: Any,
        tokenizer: Any,
        adapter_config: dict[str, Any],
        rows: tuple[list[Any], list[Any]],
        prompt: list[int] | None,
        unit: str | None = None,
    ) -> TrainResult:
        """What every objective shares once its rows exist: the adapter's config (rank 0),
        the optimizer over the planned steps, and the shared loop over `steps_class`."""
        o, (train_rows, valid_rows) = self.options, rows
        config_hash = self.config_hash()
        steps = planned_steps(o, len(train_rows))
        self.out.mkdir(parents=True, exist_ok=True)
        adapter_config.update(iters=steps, config_hash=config_hash)
        if ranks.rank == 0:
            atomic_write_json(self.out / "adapter_config.json", adapter_config)
        optimizer = self.make_optimizer(steps)
        optimizer.init(net.trainable_parameters())
        backend = steps_class(net, tokenizer, optimizer, o, valid_rows, self.out, prompt, ranks)
        loop = TrainingLoop(backend, o, train_rows, self.out, config_hash, self.log, unit=unit)
        loop.memory_budget = self.device.budget
        with wired_limit(self.device, self.log):
            return loop.run()

    def ranks(self) -> Ranks:
        """This process's place in an mlx.launch (one process: rank 0 of 1)."""
        from .launch import launch_kind

        if launch_kind() == "torch":
            raise MlxtuneError(
                "the mlx trainer runs several processes under mlx.launch (MLX's distributed "
                "layer), not accelerate/torchrun: mlx.launch -n 2 mlxtune recipe run RECIPE"
            )
        ranks = Ranks(launch_group())
        if ranks.size > self.options.batch_size:
            raise MlxtuneError(
                f"train.batch_size={self.options.batch_size} is smaller than the launch's "
                f"{ranks.size} processes: each process needs a row of every batch"
            )
        return ranks


def attach_adapters(net: Any, o: Any) -> tuple[int, dict[str, Any]]:
    """LoRA/DoRA layers on the last `num_layers` blocks (the rest frozen), or everything
    trainable for full fine-tuning; returns the block count and the LoRA parameters."""
    from ..models.loading import is_quantized

    n_layers = len(net.layers)
    num_layers = n_layers if o.num_layers < 0 else min(o.num_layers, n_layers)
    lora_parameters: dict[str, Any] = {
        "rank": o.lora_rank,
        "scale": o.lora_scale,
        "dropout": o.lora_dropout,
    }
    if o.lora_keys:
        lora_parameters["keys"] = o.lora_keys
    if o.fine_tune_type == "full":
        if is_quantized(net):
            raise MlxtuneError(
                "train.fine_tune_type=full needs an unquantized model: drop train.quantize "
                "or use a full-precision model id"
            )
        net.unfreeze()
        return num_layers, lora_parameters
    from mlx_lm.tuner.utils import linear_to_lora_layers

    net.freeze()
    try:
        linear_to_lora_layers(net, num_layers, lora_parameters, use_dora=o.fine_tune_type == "dora")
    except ValueError as exc:
        raise MlxtuneError(f"train.lora_keys: {exc}") from None
    return num_layers, lora_parameters
