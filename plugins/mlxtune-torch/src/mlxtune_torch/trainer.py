"""The `torch` trainer: LoRA (and QLoRA on CUDA) with transformers + PEFT.

The same recipe keys mean the same thing as for the `mlx` trainer, and the same code decides
the data: mlxtune's tokenization, truncation, packing, loss masks and data order
(`mlxtune.train.batching`), so a recipe switched with `train.use=torch` trains on the very same
batches. LoRA's `lora_scale` (mlx-lm: `W x + scale * B A x`) becomes PEFT's
`lora_alpha = scale * rank` (PEFT scales by `alpha / r`).

The adapter is written in both formats: mlx-lm's (`adapters.safetensors`, so `mlxtune ask` with
the mlx backend and `mlx_lm.generate --adapter-path` use it on a Mac) and PEFT's (`peft/`).
The loop (resume, evaluation, best keeping, patience, metrics) is mlxtune's own
(`mlxtune.train.loop`); `steps.py` is this plugin's side of it. Checkpoints for resume are
safetensors + JSON (no pickle).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from mlxtune.api import (
    MlxtuneError,
    SharedTrainOptions,
    Trainer,
    TrainingLoop,
    TrainResult,
    atomic_write_json,
    load_training_data,
    peft_to_mlx,
    sha256_file,
    sha256_json,
    training_rows,
)

from .optim import MlxAdam

DEFAULT_KEYS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


class TorchTrainer(Trainer):
    name = "torch"
    description = "LoRA/QLoRA with transformers + PEFT (CUDA, MPS or CPU; several GPUs)"
    distributed = True

    class Options(SharedTrainOptions):
        fine_tune_type: Literal["lora"] = Field("lora", description="LoRA (DoRA/full: mlx only)")
        quantize: Literal[4, 8] | None = Field(None, description="bitsandbytes QLoRA (CUDA)")
        optimizer: Literal["adamw", "adam", "sgd"] = "adamw"
        device: Literal["auto", "cuda", "mps", "cpu"] = "auto"

        @field_validator("objective")
        @classmethod
        def _sft_only(cls, value: str) -> str:
            if value != "sft":
                raise ValueError(
                    f"the torch trainer trains objective sft only; {value} runs on the mlx "
                    "trainer (train.use: mlx)"
                )
            return value

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
        train_examples, valid_examples = load_training_data(data_dir, o.batch_size)
        return TorchRun(o, model, data_dir, output_dir, trust_remote_code, log).train(
            train_examples, valid_examples
        )


class TorchRun:
    """One run's setup: the PEFT model, the optimizer, the data, the launch's processes."""

    def __init__(
        self,
        options: Any,
        model_ref: str,
        data_dir: Path,
        out: Path,
        trust_remote_code: bool,
        log: Callable[[str], None],
    ):
        self.options, self.model_ref, self.data_dir, self.out = options, model_ref, data_dir, out
        self.trust_remote_code, self.log = trust_remote_code, log

    def config_hash(self) -> str:
        # not the number of processes: the gradient is the same on one device or several, so a
        # run resumes on another number of GPUs
        options = self.options.model_dump(mode="json", exclude={"resume", "steps_per_report"})
        data = [sha256_file(self.data_dir / f"{s}.jsonl") for s in ("train", "valid")]
        return sha256_json([options, self.model_ref, data, "torch", "mlx-adam"])

    def setup(self, accelerator: Any, device: Any, dtype: Any) -> tuple[Any, Any, int]:
        """The PEFT model (LoRA on the last `num_layers` blocks), its tokenizer, layer count."""
        from peft import LoraConfig, get_peft_model

        from .loading import load_model

        o = self.options
        net, tokenizer = load_model(
            self.model_ref,
            device=device,
            dtype=dtype,
            quantize=o.quantize,
            trust_remote_code=self.trust_remote_code,
        )
        layers = net.config.num_hidden_layers
        count = layers if o.num_layers < 0 else min(o.num_layers, layers)
        keys = [k.rsplit(".", 1)[-1] for k in (o.lora_keys or DEFAULT_KEYS)]
        lora = LoraConfig(
            r=o.lora_rank,
            lora_alpha=o.lora_scale * o.lora_rank,
            lora_dropout=o.lora_dropout,
            target_modules=keys,
            layers_to_transform=list(range(layers - count, layers)),
            bias="none",
            task_type="CAUSAL_LM",
        )
        # non-reentrant checkpointing: the variant that works under DistributedDataParallel
        checkpointing = {"use_reentrant": False}
        if o.quantize:
            from peft import prepare_model_for_kbit_training

            net = prepare_model_for_kbit_training(
                net, o.grad_checkpoint, gradient_checkpointing_kwargs=checkpointing
            )
        elif o.grad_checkpoint:
            net.gradient_checkpointing_enable(gradient_checkpointing_kwargs=checkpointing)
            net.enable_input_require_grads()
        net = get_peft_model(net, lora)
        # LoRA weights train in float32 whatever the base dtype (as mlx-lm's do)
        for param in net.parameters():
            if param.requires_grad:
                param.data = param.data.float()
        return accelerator.prepare(net), tokenizer, count

    def make_optimizer(self, net: Any) -> Any:
        import torch

        o = self.options
        trainable = [p for p in net.parameters() if p.requires_grad]
        if o.optimizer == "adamw":
            return MlxAdam(trainable, lr=o.learning_rate, weight_decay=o.weight_decay)
        if o.optimizer == "adam":
            return MlxAdam(trainable, lr=o.learning_rate)
        return torch.optim.SGD(trainable, lr=o.learning_rate, momentum=0.9)

    def train(self, train_examples: list, valid_examples: list) -> TrainResult:
        """Set the run up and hand it to mlxtune's shared loop."""
        import torch
        from accelerate import Accelerator

        from .loading import pick_device, pick_dtype
        from .steps import TorchSteps

        o = self.options
        torch.manual_seed(o.seed)
        accelerator = Accelerator(cpu=pick_device(o.device) == "cpu")
        world = accelerator.num_processes
        if not accelerator.is_main_process:
            self.log = lambda _: None
        if o.batch_size % world:
            raise MlxtuneError(
                f"train.batch_size={o.batch_size} does not split over {world} processes: "
                f"make it a multiple of {world}"
            )
        dtype = pick_dtype(o.dtype, accelerator.device.type)
        net, tokenizer, count = self.setup(accelerator, accelerator.device, dtype)
        rows = self.rows(tokenizer, train_examples, o.packing)
        valid_rows = self.rows(tokenizer, valid_examples, False)
        optimizer = self.make_optimizer(net)
        steps = TorchSteps(accelerator, net, optimizer, o, valid_rows, self.out, dtype)
        steps.on_finish = lambda: self.export_mlx(count)
        result = TrainingLoop(steps, o, rows, self.out, self.config_hash(), self.log).run()
        if world > 1:
            accelerator.end_training()
        return result

    def rows(self, tokenizer: Any, examples: list, pack: bool) -> list:
        o = self.options
        return training_rows(tokenizer, examples, o.max_seq_length, o.mask_prompt, pack, self.log)

    def export_mlx(self, count: int) -> None:
        """The kept PEFT adapter also in mlx-lm's format, with the training settings."""
        staging = self.out / "mlx.partial"
        shutil.rmtree(staging, ignore_errors=True)
        peft_to_mlx(self.out / "peft", staging)
        (staging / "adapters.safetensors").replace(self.out / "adapters.safetensors")
        config = json.loads((staging / "adapter_config.json").read_text())
        settings = self.options.model_dump(mode="json")
        for key in ("fine_tune_type", "lora_keys", "num_layers"):
            settings.pop(key)
        config.update(settings, num_layers=count, model=self.model_ref, trainer="mlxtune-torch")
        atomic_write_json(self.out / "adapter_config.json", config)
        shutil.rmtree(staging, ignore_errors=True)
