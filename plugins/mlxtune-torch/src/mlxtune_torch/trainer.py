"""The `torch` trainer: LoRA (and QLoRA on CUDA) with transformers + PEFT.

The same recipe keys mean the same thing as for the `mlx` trainer, and the same code decides
the data: mlxtune's tokenization, truncation, packing, loss masks and data order
(`mlxtune.train.batching`), so a recipe switched with `train.use=torch` trains on the very same
batches. LoRA's `lora_scale` (mlx-lm: `W x + scale * B A x`) becomes PEFT's
`lora_alpha = scale * rank` (PEFT scales by `alpha / r`).

The adapter is written in both formats: mlx-lm's (`adapters.safetensors`, so `mlxtune ask` with
the mlx backend and `mlx_lm.generate --adapter-path` use it on a Mac) and PEFT's (`peft/`).
Checkpoints for resume are safetensors + JSON (no pickle).
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from mlxtune.adapter_format import peft_to_mlx
from mlxtune.components import Trainer, TrainResult
from mlxtune.errors import MlxtuneError
from mlxtune.records import append_jsonl, atomic_write_json, sha256_file, sha256_json
from mlxtune.train.batching import batch_arrays, epoch_batches
from mlxtune.train.checkpoint import truncate_metrics
from mlxtune.train.data import load_training_data, training_rows
from mlxtune.train.options import SharedTrainOptions
from mlxtune.train.schedule import learning_rate_at

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
        return _TorchRun(o, model, data_dir, output_dir, trust_remote_code, log).train(
            train_examples, valid_examples
        )


def lr_at(step: int, o: Any, steps: int) -> float:
    """The rate of step `step` (1-based): the mlx trainer's, update for update."""
    return learning_rate_at(step - 1, o.learning_rate, steps, o.warmup_fraction, o.min_lr_fraction)


class _TorchRun:
    def __init__(
        self,
        o: Any,
        model_ref: str,
        data_dir: Path,
        out: Path,
        trust_remote_code: bool,
        log: Callable[[str], None],
    ):
        self.o, self.model_ref, self.data_dir, self.out = o, model_ref, data_dir, out
        self.trust_remote_code, self.log = trust_remote_code, log
        self.metrics_path = out / "metrics.jsonl"
        self.ckpt = out / "checkpoint"
        self.main = True  # the process that writes (rank 0 of a multi-process launch)

    def config_hash(self) -> str:
        # not the number of processes: the gradient is the same on one device or several, so a
        # run resumes on another number of GPUs
        options = self.o.model_dump(mode="json", exclude={"resume", "steps_per_report"})
        data = [sha256_file(self.data_dir / f"{s}.jsonl") for s in ("train", "valid")]
        return sha256_json([options, self.model_ref, data, "torch", "mlx-adam"])

    def setup(self, accelerator: Any, device: Any, dtype: Any) -> tuple[Any, Any, int]:
        """The PEFT model (LoRA on the last `num_layers` blocks), its tokenizer, layer count."""
        from peft import LoraConfig, get_peft_model

        from .loading import load_model

        o = self.o
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

        o = self.o
        trainable = [p for p in net.parameters() if p.requires_grad]
        if o.optimizer == "adamw":
            return MlxAdam(trainable, lr=o.learning_rate, weight_decay=o.weight_decay)
        if o.optimizer == "adam":
            return MlxAdam(trainable, lr=o.learning_rate)
        return torch.optim.SGD(trainable, lr=o.learning_rate, momentum=0.9)

    def train(self, train_examples: list, valid_examples: list) -> TrainResult:
        """The loop. Under `accelerate launch` / `torchrun` each of the N processes computes
        the loss of every N-th row of each batch, scaled so that DistributedDataParallel's
        gradient average is exactly the one-device gradient of the whole batch: the same recipe
        gives the same run on one GPU or several (and the same data order)."""
        import torch
        from accelerate import Accelerator
        from safetensors.torch import load_file, save_file

        from .loading import pick_device, pick_dtype

        o = self.o
        torch.manual_seed(o.seed)
        accelerator = Accelerator(cpu=pick_device(o.device) == "cpu")
        device = accelerator.device
        world, rank = accelerator.num_processes, accelerator.process_index
        main = self.main = accelerator.is_main_process
        if not main:
            self.log = lambda _: None
        if o.batch_size % world:
            raise MlxtuneError(
                f"train.batch_size={o.batch_size} does not split over {world} processes: "
                f"make it a multiple of {world}"
            )
        dtype = pick_dtype(o.dtype, device.type)
        net, tokenizer, count = self.setup(accelerator, device, dtype)
        model = accelerator.unwrap_model(net)  # evaluation and saving bypass the DDP wrapper

        rows = self.rows(tokenizer, train_examples, o.packing)
        valid_rows = self.rows(tokenizer, valid_examples, False)
        if len(rows) < o.batch_size:
            raise MlxtuneError(
                f"{len(rows)} training rows, fewer than train.batch_size="
                f"{o.batch_size}: lower the batch size"
            )
        per_epoch = len(rows) // o.batch_size
        accum = o.grad_accumulation_steps
        steps = o.iters or max(1, math.ceil(o.epochs * per_epoch / accum))
        eval_steps = max(1, round(o.eval_every * steps))
        optimizer = self.make_optimizer(net)

        config_hash = self.config_hash()
        state = self.load_state(config_hash) if o.resume else None
        accelerator.wait_for_everyone()  # every process has read the state before it changes
        start, best = 0, {"loss": math.inf, "step": None, "evals_since": 0}
        window = {"loss": 0.0, "tokens": 0, "steps": 0, "seconds": 0.0}
        if main:
            self.out.mkdir(parents=True, exist_ok=True)
        if state is None:
            if main:
                shutil.rmtree(self.ckpt, ignore_errors=True)
                self.metrics_path.unlink(missing_ok=True)
        else:
            start = state["step"]
            best.update(state["best"])
            best["loss"] = math.inf if best["loss"] is None else best["loss"]
            window.update(state["window"])
            self.set_trainable(model, load_file(str(self.ckpt / "last.safetensors")))
            tensors = load_file(str(self.ckpt / "optimizer.safetensors"))
            optimizer.load_state_dict(_unflatten_optimizer(tensors, state["optimizer"]))
            if main:
                truncate_metrics(self.metrics_path, start)
            self.log(f"  resuming from the checkpoint at step {start} of {steps}")
        accelerator.wait_for_everyone()

        def summed_loss(module: Any, tokens: Any, mask: Any) -> Any:
            t = torch.from_numpy(tokens).long().to(device)
            w = torch.from_numpy(mask).to(device)
            logits = module(input_ids=t[:, :-1]).logits.float()
            ce = torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), t[:, 1:].reshape(-1), reduction="none"
            ).reshape(w.shape)
            return (ce * w).sum()

        def train_loss(batch_rows: list) -> Any:
            """This process's share of the batch's mean loss, times the process count."""
            tokens, mask = batch_arrays(batch_rows, max_width=o.max_seq_length)
            total = float(mask.sum())
            mine = summed_loss(net, tokens[rank::world], mask[rank::world])
            return mine * (world / total)

        def evaluate() -> float:
            """Whole batches split over the processes, sums reduced: the one-process number."""
            model.eval()
            ordered = sorted(valid_rows, key=len)
            batches = [ordered[i : i + o.batch_size] for i in range(0, len(ordered), o.batch_size)]
            if o.val_batches > 0:
                batches = batches[: o.val_batches]
            sums = torch.zeros(2, dtype=torch.float64, device=device)
            with torch.no_grad():
                for batch in batches[rank::world]:
                    tokens, mask = batch_arrays(batch, max_width=o.max_seq_length)
                    sums[0] += summed_loss(model, tokens, mask).double()
                    sums[1] += float(mask.sum())
            model.train()
            sums = accelerator.reduce(sums, "sum")
            return (sums[0] / sums[1]).item()

        def save_checkpoint(step: int) -> None:
            if not main:
                return
            self.ckpt.mkdir(parents=True, exist_ok=True)
            (self.ckpt / "state.json").unlink(missing_ok=True)
            save_file(self.trainable(model), str(self.ckpt / "last.safetensors"))
            tensors, meta = _flatten_optimizer(optimizer.state_dict())
            save_file(tensors, str(self.ckpt / "optimizer.safetensors"))
            atomic_write_json(
                self.ckpt / "state.json",
                {
                    "config": config_hash,
                    "step": step,
                    "window": window,
                    "optimizer": meta,
                    "best": {**best, "loss": None if math.isinf(best["loss"]) else best["loss"]},
                },
            )

        def on_eval(step: int) -> None:
            loss = evaluate()
            improved = loss < best["loss"]
            if improved:
                best.update(loss=loss, step=step, evals_since=0)
            else:
                best["evals_since"] += 1
            if main and (improved or o.keep == "last"):
                model.save_pretrained(str(self.out / "peft.partial"))
                shutil.rmtree(self.out / "peft", ignore_errors=True)
                (self.out / "peft.partial").rename(self.out / "peft")
            if main:
                append_jsonl(
                    self.metrics_path,
                    {"step": step, "epoch": step * accum / per_epoch, "val_loss": loss},
                )
            self.log(
                f"  step {step:>5}/{steps}  val loss {loss:.4f}" + (" *best*" if improved else "")
            )
            save_checkpoint(step)

        processes = f" x {world} processes" if world > 1 else ""
        self.log(
            f"  training {steps} steps on {device.type}{processes} ({dtype}), batch "
            f"{o.batch_size} x {accum}, evaluating every {eval_steps} steps"
        )
        net.train()
        started = time.perf_counter()
        if start == 0:
            on_eval(0)
        step, stopped_early, cache = start, False, {}
        try:
            for step in range(start + 1, steps + 1):
                tic = time.perf_counter()
                torch.manual_seed(o.seed * 1_000_003 + step)  # dropout repeats on resume
                for group in optimizer.param_groups:
                    group["lr"] = lr_at(step, o, steps)
                optimizer.zero_grad(set_to_none=True)
                for micro in range(accum):
                    epoch, index = divmod((step - 1) * accum + micro, per_epoch)
                    if epoch not in cache:
                        cache = {
                            epoch: epoch_batches(
                                [len(r) for r in rows], o.batch_size, o.seed, epoch
                            )
                        }
                    batch = [rows[i] for i in cache[epoch][index]]
                    # gradients are averaged over the processes once per step, not per micro-batch
                    syncing = micro == accum - 1
                    with contextlib.nullcontext() if syncing else accelerator.no_sync(net):
                        loss = train_loss(batch)
                        (loss / accum).backward()
                    window["loss"] += accelerator.reduce(loss.detach(), "mean").item()
                    window["tokens"] += sum(len(r) for r in batch)
                optimizer.step()
                window["steps"] += 1
                window["seconds"] += time.perf_counter() - tic
                if step % o.steps_per_report == 0 or step == steps:
                    self.report(step, steps, accum, per_epoch, window, lr_at(step, o, steps))
                if step % eval_steps == 0 or step == steps:
                    on_eval(step)
                    if o.patience and best["evals_since"] >= o.patience:
                        stopped_early = True
                        break
        except KeyboardInterrupt:
            save_checkpoint(step)
            raise MlxtuneError(
                f"training interrupted at step {step}; checkpoint saved: run "
                "the recipe again to resume"
            ) from None
        seconds = time.perf_counter() - started
        accelerator.wait_for_everyone()
        if main:
            self.export_mlx(o, count)
            shutil.rmtree(self.ckpt, ignore_errors=True)
        summary = {
            "kept": o.keep,
            "best_step": best["step"],
            "best_val_loss": best["loss"],
            "steps": step,
            "planned_steps": steps,
            "stopped_early": stopped_early,
            "device": device.type,
            "processes": world,
            "seconds": seconds,
        }
        if main:
            atomic_write_json(self.out / "train_summary.json", summary)
        accelerator.wait_for_everyone()  # the adapter is complete before any process returns
        if world > 1:
            accelerator.end_training()
        return TrainResult(
            adapter_path=self.out,
            steps=step,
            best_step=best["step"],
            best_val_loss=best["loss"],
            seconds=seconds,
            extra={"stopped_early": stopped_early, "kept": o.keep, "device": device.type},
        )

    def rows(self, tokenizer: Any, examples: list, pack: bool) -> list:
        o = self.o
        return training_rows(tokenizer, examples, o.max_seq_length, o.mask_prompt, pack, self.log)

    def report(
        self, step: int, steps: int, accum: int, per_epoch: int, window: dict, lr: float
    ) -> None:
        loss = window["loss"] / max(1, window["steps"] * accum)
        seconds = max(window["seconds"], 1e-9)
        if self.main:
            append_jsonl(
                self.metrics_path,
                {
                    "step": step,
                    "epoch": step * accum / per_epoch,
                    "train_loss": loss,
                    "learning_rate": lr,
                    "tokens_per_second": window["tokens"] / seconds,
                    "steps_per_second": window["steps"] / seconds,
                },
            )
        self.log(
            f"  step {step:>5}/{steps}  loss {loss:.4f}  lr {lr:.2e}  "
            f"{window['tokens'] / seconds:.0f} tok/s"
        )
        window.update(loss=0.0, tokens=0, steps=0, seconds=0.0)

    @staticmethod
    def trainable(net: Any) -> dict[str, Any]:
        return {
            n: p.detach().float().cpu().contiguous()
            for n, p in net.named_parameters()
            if p.requires_grad
        }

    @staticmethod
    def set_trainable(net: Any, tensors: dict[str, Any]) -> None:
        params = dict(net.named_parameters())
        for name, value in tensors.items():
            params[name].data.copy_(value.to(params[name].device, params[name].dtype))

    def load_state(self, config: str) -> dict[str, Any] | None:
        try:
            state = json.loads((self.ckpt / "state.json").read_text())
        except (OSError, ValueError):
            return None
        return state if state.get("config") == config else None

    def export_mlx(self, o: Any, count: int) -> None:
        """The kept PEFT adapter also in mlx-lm's format, with the training settings."""
        staging = self.out / "mlx.partial"
        shutil.rmtree(staging, ignore_errors=True)
        peft_to_mlx(self.out / "peft", staging)
        (staging / "adapters.safetensors").replace(self.out / "adapters.safetensors")
        config = json.loads((staging / "adapter_config.json").read_text())
        settings = o.model_dump(mode="json")
        for key in ("fine_tune_type", "lora_keys", "num_layers"):
            settings.pop(key)
        config.update(settings, num_layers=count, model=self.model_ref, trainer="mlxtune-torch")
        atomic_write_json(self.out / "adapter_config.json", config)
        shutil.rmtree(staging, ignore_errors=True)


def _flatten_optimizer(state_dict: dict) -> tuple[dict[str, Any], dict[str, Any]]:
    """torch optimizer state as safetensors tensors + JSON (instead of torch.save's pickle)."""
    import torch

    tensors, scalars = {}, {}
    for index, values in state_dict["state"].items():
        for key, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{index}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{index}.{key}"] = value
    return tensors, {"param_groups": state_dict["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, Any], meta: dict[str, Any]) -> dict:
    state: dict[int, dict[str, Any]] = {}
    for name, value in [*tensors.items(), *meta["scalars"].items()]:
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    return {"state": state, "param_groups": meta["param_groups"]}
