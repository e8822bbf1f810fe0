"""LoRA, DoRA, QLoRA and full fine-tuning with MLX.

Built from mlx-lm's parts (model loading, `linear_to_lora_layers`, learning-rate schedules,
`grad_checkpoint`) around a training loop of our own, because what this project needs lives
inside the loop: evaluation at a fraction of the steps with the best adapter kept, early stopping,
packing with an exact per-token loss mask, a sample answer at each evaluation, and resuming a
crashed run from its last checkpoint with the same data order. The step itself is compiled the
way mlx-lm compiles its own (model, optimizer and random state as compile inputs/outputs).
The output directory is in mlx-lm's adapter format, so `mlx_lm.generate --adapter-path` reads it.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from ..components import Trainer, TrainResult
from ..errors import MlxtuneError
from ..hookspecs import hookimpl
from ..records import Example, append_jsonl, atomic_write_json, sha256_file, sha256_json
from .batching import Row, batch_arrays, epoch_batches, useful_tokens
from .checkpoint import Checkpoint, truncate_metrics
from .data import load_training_data, training_rows
from .losses import choose_inputs, gathered_loss, masked_loss, split_head, unlikelihood_loss
from .options import SharedTrainOptions

# options that do not change the trained weights, so changing them keeps a checkpoint resumable
NOT_IN_CONFIG = {"resume", "steps_per_report", "sample_max_tokens", "auto_fit"}


class MlxTrainer(Trainer):
    name = "mlx"
    description = "LoRA/DoRA/QLoRA/full fine-tuning on MLX (Metal, CUDA or CPU)"

    class Options(SharedTrainOptions):
        fine_tune_type: Literal["lora", "dora", "full"] = "lora"
        quantize: Literal[4, 8] | None = Field(
            None, description="quantize the base model on load to 4 or 8 bits (QLoRA)"
        )
        quantize_group_size: int = Field(64, description="quantization group size (32, 64, 128)")
        optimizer: Literal["adamw", "adam", "sgd", "adafactor"] = "adamw"
        sample_question: str | None = Field(
            None, description="prompt answered at each evaluation (default: the first valid one)"
        )
        sample_max_tokens: int = Field(48, ge=0, description="0 turns the sample answers off")
        unlikelihood: float = Field(
            0.0,
            ge=0,
            description="weight of an unlikelihood term against repeating earlier tokens of the "
            "answer (Welleck et al. 2019); 0: off. Validation loss stays plain cross-entropy",
        )
        auto_fit: bool = Field(
            False,
            description="apply the memory planner's settings when the run would not fit, and "
            "retry smaller after an out-of-memory error",
        )

    def train(
        self,
        model: str,
        data_dir: Path,
        output_dir: Path,
        *,
        trust_remote_code: bool = False,
        log: Callable[[str], None] = print,
    ) -> TrainResult:
        options = self.options
        train_examples, valid_examples = load_training_data(data_dir, options.batch_size)
        if options.auto_fit:
            options = fitted_options(model, options, log)
        while True:
            run = _Run(options, model, data_dir, output_dir, trust_remote_code, log)
            try:
                return run.train(train_examples, valid_examples)
            except OutOfMemory as oom:
                smaller = smaller_options(model, options)
                changes = _changes(options, smaller) if smaller else "none in reach"
                if not options.auto_fit or smaller is None:
                    raise MlxtuneError(
                        f"out of memory at step {oom.step} ({oom.detail}); the last checkpoint "
                        f"is kept. Settings the planner expects to fit: {changes} (or set "
                        "train.auto_fit: true to retry with them automatically)"
                    ) from None
                log(f"  out of memory at step {oom.step}: auto_fit retries with {changes}")
                options = smaller
            finally:
                for cleanup in run.cleanups:
                    cleanup()


OOM_MARKERS = (
    "insufficient memory",
    "kiogpucommandbuffercallbackerroroutofmemory",
    "[metal::malloc]",
    "resource limit",
    "out of memory",
    "std::bad_alloc",
    "unable to allocate",
    "[cuda::malloc]",
)


class OutOfMemory(Exception):
    def __init__(self, step: int, detail: str):
        super().__init__(detail)
        self.step, self.detail = step, detail


def is_out_of_memory(exc: BaseException) -> bool:
    """Metal's `Insufficient Memory` / command-buffer OOM, the allocators' errors elsewhere."""
    if isinstance(exc, MemoryError):
        return True
    text = str(exc).lower()
    return any(marker in text for marker in OOM_MARKERS)


def _planner_inputs(model: str, options: Any) -> tuple[Any, Any]:
    from ..models.plan_recipe import setting_from_options
    from ..models.planner import ModelShape
    from ..models.resolve import resolve_model

    config = json.loads((resolve_model(model) / "config.json").read_text())
    return ModelShape.from_config(config), setting_from_options(options.model_dump(), config)


def _apply(options: Any, overrides: dict[str, Any]) -> Any:
    return options.model_copy(update={k.split(".", 1)[1]: v for k, v in overrides.items()})


def _changes(old: Any, new: Any) -> str:
    before, after = old.model_dump(), new.model_dump()
    return " ".join(f"train.{k}={after[k]}" for k in after if after[k] != before[k]) or "none"


def fitted_options(model: str, options: Any, log: Callable[[str], None]) -> Any:
    """`auto_fit`: the planner's least-lossy settings that fit this machine, if needed."""
    from ..models.planner import GB, estimate_training, fit, machine_memory, usable_fraction

    shape, setting = _planner_inputs(model, options)
    budget = machine_memory() * usable_fraction()
    estimate = estimate_training(shape, setting)
    if estimate.total <= budget:
        log(
            f"  auto_fit: {estimate.total / GB:.1f} GB estimated, {budget / GB:.1f} GB usable: "
            "settings kept"
        )
        return options
    suggestion = fit(shape, setting, budget)
    if suggestion is None:
        raise MlxtuneError(
            f"the model needs ~{estimate.total / GB:.1f} GB to train and nothing in reach fits "
            f"{budget / GB:.1f} GB: choose a smaller model"
        )
    fitted = _apply(options, suggestion.overrides)
    log(
        f"  auto_fit: {estimate.total / GB:.1f} GB would not fit {budget / GB:.1f} GB; using "
        f"{_changes(options, fitted)} ({suggestion.estimate.total / GB:.1f} GB)"
    )
    return fitted


def smaller_options(model: str, options: Any) -> Any | None:
    """After an out-of-memory error: the next setting the planner expects to need at most
    three quarters of the current estimate (least quality lost first)."""
    from ..models.planner import candidates, estimate_training

    shape, setting = _planner_inputs(model, options)
    current = estimate_training(shape, setting).total
    for overrides, candidate, _ in candidates(setting):
        if estimate_training(shape, candidate).total <= 0.75 * current:
            return _apply(options, overrides)
    return None


class _Run:
    """One training run: model setup, the loop, evaluation, checkpoints, metrics."""

    def __init__(
        self,
        options: Any,
        model_ref: str,
        data_dir: Path,
        output_dir: Path,
        trust_remote_code: bool,
        log: Callable[[str], None],
    ):
        self.o = options
        self.model_ref = model_ref
        self.data_dir = data_dir
        self.out = output_dir
        self.trust_remote_code = trust_remote_code
        self.log = log
        self.metrics_path = output_dir / "metrics.jsonl"
        self.checkpoint = Checkpoint(output_dir)
        self.cleanups: list[Callable[[], None]] = []

    # ------------------------------------------------------------ setup

    def config_hash(self) -> str:
        options = self.o.model_dump(mode="json", exclude=NOT_IN_CONFIG)
        data = [sha256_file(self.data_dir / f"{s}.jsonl") for s in ("train", "valid")]
        return sha256_json([options, self.model_ref, data])

    def setup_model(self) -> tuple[Any, Any, dict[str, Any]]:
        import mlx.core as mx

        from ..backends.mlx_backend import is_quantized, load_model, quantize_base

        o = self.o
        mx.random.seed(o.seed)
        net, tokenizer = load_model(
            self.model_ref, dtype=o.dtype, trust_remote_code=self.trust_remote_code
        )
        quantization = None
        if o.quantize:
            if is_quantized(net):
                self.log("  the model is already quantized; train.quantize ignored")
            else:
                quantization = quantize_base(net, o.quantize, o.quantize_group_size)
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
        else:
            from mlx_lm.tuner.utils import linear_to_lora_layers

            net.freeze()
            try:
                linear_to_lora_layers(
                    net, num_layers, lora_parameters, use_dora=o.fine_tune_type == "dora"
                )
            except ValueError as exc:
                raise MlxtuneError(f"train.lora_keys: {exc}") from None
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
                for k, v in self.o.model_dump(mode="json").items()
                if k not in ("fine_tune_type", "lora_keys")
            },
        }
        return net, tokenizer, config

    def rows(self, tokenizer: Any, examples: list[Example], pack: bool) -> list[Row]:
        o = self.o
        return training_rows(tokenizer, examples, o.max_seq_length, o.mask_prompt, pack, self.log)

    def make_optimizer(self, steps: int) -> Any:
        import mlx.optimizers as optim
        from mlx_lm.tuner.utils import build_schedule

        o = self.o
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

    # ------------------------------------------------------------ the run

    def train(self, train_examples: list[Example], valid_examples: list[Example]) -> TrainResult:
        import mlx.core as mx
        import mlx.nn as nn
        from mlx.utils import tree_flatten, tree_map

        o = self.o
        config_hash = self.config_hash()
        state = self.checkpoint.load_state(config_hash) if o.resume else None
        if state is None:
            self.checkpoint.remove()
            self.metrics_path.unlink(missing_ok=True)
            (self.out / "adapters.safetensors").unlink(missing_ok=True)
        self.out.mkdir(parents=True, exist_ok=True)

        net, tokenizer, adapter_config = self.setup_model()
        train_rows = self.rows(tokenizer, train_examples, o.packing)
        valid_rows = self.rows(tokenizer, valid_examples, False)
        if len(train_rows) < o.batch_size:
            raise MlxtuneError(
                f"packing made {len(train_rows)} rows of up to {o.max_seq_length} tokens, fewer "
                f"than train.batch_size={o.batch_size}: lower the batch size or max_seq_length"
            )
        per_epoch = len(train_rows) // o.batch_size
        accum = o.grad_accumulation_steps
        steps = o.iters or max(1, math.ceil(o.epochs * per_epoch / accum))
        eval_steps = max(1, round(o.eval_every * steps))
        adapter_config.update(iters=steps, config_hash=config_hash)
        atomic_write_json(self.out / "adapter_config.json", adapter_config)

        optimizer = self.make_optimizer(steps)
        optimizer.init(net.trainable_parameters())
        start = 0
        best: dict[str, Any] = {"loss": math.inf, "step": None, "evals_since": 0}
        window = {"loss": 0.0, "tokens": 0, "steps": 0, "seconds": 0.0}
        if state is not None:
            start = int(state["step"])
            best.update(state["best"])
            best["loss"] = float(best["loss"]) if best["loss"] is not None else math.inf
            window.update(state["window"])
            net.load_weights(
                list(mx.load(str(self.checkpoint.array_file("last.safetensors"))).items()),
                strict=False,
            )
            saved = mx.load(str(self.checkpoint.array_file("optimizer.safetensors")))
            for name, value in saved.items():
                set_leaf(optimizer.state, name, value)
            truncate_metrics(self.metrics_path, start)
            self.log(f"  resuming from the checkpoint at step {start} of {steps}")

        # the loss in two forms with one value (losses.py): the head on every position, or on
        # the learned targets only where the model's head splits off
        head = split_head(net)
        losses = {"masked": masked_loss}
        if head is not None:
            losses["gathered"] = gathered_loss(head)
        compiled_state = [net.state, optimizer.state, mx.random.state]

        def make_step(loss_fn: Callable) -> Callable:
            loss_and_grad = nn.value_and_grad(net, loss_fn)

            @partial(mx.compile, inputs=compiled_state, outputs=compiled_state)
            def micro_step(tokens, targets, previous, update):
                (loss, n), grad = loss_and_grad(net, tokens, targets)
                if previous is not None:
                    grad = tree_map(lambda a, b: a + b, grad, previous)
                if update:
                    if accum > 1:
                        grad = tree_map(lambda g: g / accum, grad)
                    optimizer.update(net, grad)
                    grad = None
                return loss, n, grad

            return micro_step

        # the unlikelihood term needs every position's logits: trained in the masked form only;
        # evaluation keeps the plain cross-entropy, so validation losses stay comparable
        if o.unlikelihood:
            micro_steps = {"masked": make_step(unlikelihood_loss(o.unlikelihood))}
        else:
            micro_steps = {kind: make_step(fn) for kind, fn in losses.items()}

        def batch(rows: list[Row], gather: bool = True) -> tuple[str, Any, Any]:
            tokens, mask = batch_arrays(rows, max_width=o.max_seq_length)
            kind, targets = choose_inputs(mask, gather and head is not None)
            return kind, mx.array(tokens), mx.array(targets)

        def evaluate() -> float:
            net.eval()
            total, count = mx.array(0.0), mx.array(0.0)
            ordered = sorted(valid_rows, key=len)
            limit = o.val_batches if o.val_batches > 0 else len(ordered)
            for b, i in enumerate(range(0, len(ordered), o.batch_size)):
                if b >= limit:
                    break
                kind, tokens, targets = batch(ordered[i : i + o.batch_size])
                loss, n = losses[kind](net, tokens, targets)
                total, count = total + loss * n, count + n
                mx.eval(total, count)
            net.train()
            return (total / count).item()

        sample_prompt = self.sample_prompt(tokenizer, valid_examples)

        def on_eval(step: int) -> None:
            loss = evaluate()
            record: dict[str, Any] = {
                "step": step,
                "epoch": step * accum / per_epoch,
                "val_loss": loss,
            }
            improved = loss < best["loss"]
            if improved:
                best.update(loss=loss, step=step, evals_since=0)
            else:
                best["evals_since"] += 1
            if improved or o.keep == "last":
                weights = dict(tree_flatten(net.trainable_parameters()))
                tmp = self.out / ".adapters.tmp.safetensors"
                mx.save_safetensors(str(tmp), weights)
                tmp.replace(self.out / "adapters.safetensors")
            sample = self.sample(net, tokenizer, sample_prompt)
            if sample is not None:
                record["sample"] = sample
            append_jsonl(self.metrics_path, record)
            mark = " *best*" if improved else ""
            self.log(f"  step {step:>5}/{steps}  val loss {loss:.4f}{mark}")
            if sample is not None:
                self.log(f"    sample: {sample[:200]!r}")
            save_checkpoint(step)

        def save_checkpoint(step: int) -> None:
            self.checkpoint.save(
                {
                    "last.safetensors": dict(tree_flatten(net.trainable_parameters())),
                    "optimizer.safetensors": dict(tree_flatten(optimizer.state)),
                },
                {
                    "config": config_hash,
                    "step": step,
                    "best": {**best, "loss": None if math.isinf(best["loss"]) else best["loss"]},
                    "window": window,
                },
            )

        net.train()
        mx.reset_peak_memory()
        started = time.perf_counter()
        unit = "packed rows" if o.packing else "examples"
        self.log(
            f"  training {steps} steps ({len(train_rows)} {unit}, batch {o.batch_size} x "
            f"{accum}, evaluating every {eval_steps} steps)"
        )
        epoch_cache: dict[int, list[list[int]]] = {}
        step = start
        stopped_early = False
        try:
            if start == 0:
                on_eval(0)
            for step in range(start + 1, steps + 1):
                tic = time.perf_counter()
                # randomness (dropout) is a function of (seed, step): a resumed run repeats it
                mx.random.seed(o.seed * 1_000_003 + step)
                grad = None
                for micro in range(accum):
                    position = (step - 1) * accum + micro
                    epoch, index = divmod(position, per_epoch)
                    if epoch not in epoch_cache:
                        epoch_cache.clear()
                        epoch_cache[epoch] = epoch_batches(
                            [len(r) for r in train_rows], o.batch_size, o.seed, epoch
                        )
                    rows = [train_rows[i] for i in epoch_cache[epoch][index]]
                    kind, tokens, targets = batch(rows, gather=not o.unlikelihood)
                    loss, n, grad = micro_steps[kind](tokens, targets, grad, micro == accum - 1)
                    mx.eval(compiled_state, loss, n, grad)
                    window["loss"] += loss.item()
                    window["tokens"] += useful_tokens(rows)
                window["steps"] += 1
                window["seconds"] += time.perf_counter() - tic
                if step % o.steps_per_report == 0 or step == steps:
                    self.report(step, steps, accum, per_epoch, window, optimizer)
                if step % eval_steps == 0 or step == steps:
                    on_eval(step)
                    if o.patience and best["evals_since"] >= o.patience:
                        stopped_early = True
                        self.log(
                            f"  early stop: no improvement in {o.patience} evaluations "
                            f"(best {best['loss']:.4f} at step {best['step']})"
                        )
                        break
        except Exception as exc:
            if is_out_of_memory(exc):
                raise OutOfMemory(step, str(exc).splitlines()[0][:200]) from exc
            raise
        except KeyboardInterrupt:
            save_checkpoint(step)
            raise MlxtuneError(
                f"training interrupted at step {step} of {steps}; checkpoint saved: run the "
                "recipe again to resume"
            ) from None
        peak = mx.get_peak_memory() / 1e9
        seconds = time.perf_counter() - started
        last = self.checkpoint.array_file("last.safetensors")
        if last.is_file():
            last.replace(self.out / "last.safetensors")
        self.checkpoint.remove()
        summary = {
            "kept": o.keep,
            "best_step": best["step"],
            "best_val_loss": best["loss"],
            "steps": step,
            "planned_steps": steps,
            "stopped_early": stopped_early,
            "peak_memory_gb": peak,
            "seconds": seconds,
        }
        atomic_write_json(self.out / "train_summary.json", summary)
        return TrainResult(
            adapter_path=self.out,
            steps=step,
            best_step=best["step"],
            best_val_loss=float(best["loss"]),
            final_train_loss=window.get("last_loss"),
            peak_memory_gb=peak,
            seconds=seconds,
            extra={
                "metrics_path": str(self.metrics_path),
                "stopped_early": stopped_early,
                "kept": o.keep,
            },
        )

    def report(
        self,
        step: int,
        steps: int,
        accum: int,
        per_epoch: int,
        window: dict[str, Any],
        optimizer: Any,
    ) -> None:
        import mlx.core as mx

        loss = window["loss"] / max(1, window["steps"] * accum)
        seconds = max(window["seconds"], 1e-9)
        record = {
            "step": step,
            "epoch": step * accum / per_epoch,
            "train_loss": loss,
            "learning_rate": optimizer.learning_rate.item(),
            "tokens_per_second": window["tokens"] / seconds,
            "steps_per_second": window["steps"] / seconds,
            "peak_memory_gb": mx.get_peak_memory() / 1e9,
        }
        append_jsonl(self.metrics_path, record)
        eta = (steps - step) / max(record["steps_per_second"], 1e-9)
        self.log(
            f"  step {step:>5}/{steps}  loss {loss:.4f}  lr {record['learning_rate']:.2e}  "
            f"{record['tokens_per_second']:.0f} tok/s  peak {record['peak_memory_gb']:.2f} GB  "
            f"eta {_duration(eta)}"
        )
        window.update(loss=0.0, tokens=0, steps=0, seconds=0.0, last_loss=loss)

    def sample_prompt(self, tokenizer: Any, valid: list[Example]) -> list[int] | None:
        from ..tokens import encode_prompt

        if not self.o.sample_max_tokens:
            return None
        if self.o.sample_question is not None:
            return list(tokenizer.encode(self.o.sample_question))
        first = valid[0]
        if first.messages is not None:
            return encode_prompt(tokenizer, Example(messages=first.messages[:-1]))
        if first.prompt:
            return encode_prompt(tokenizer, Example(prompt=first.prompt))
        return list(tokenizer.encode((first.text or "")[:200]))

    def sample(self, net: Any, tokenizer: Any, prompt: list[int] | None) -> str | None:
        """A short greedy answer, so a user watches outputs change (and any looping) in training."""
        if prompt is None:
            return None
        import mlx.core as mx
        from mlx_lm.generate import generate_step

        net.eval()
        tokens = []
        eos = set(tokenizer.eos_token_ids)
        for token, _ in generate_step(mx.array(prompt), net, max_tokens=self.o.sample_max_tokens):
            token = int(token)
            if token in eos:
                break
            tokens.append(token)
        net.train()
        return tokenizer.decode(tokens)


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"


def set_leaf(tree: Any, dotted: str, value: Any) -> None:
    """Put one leaf of a `tree_flatten` name back into a nested dict/list tree, in place (the
    compiled step holds the optimizer's state object, so it must not be replaced)."""
    *parents, leaf = dotted.split(".")
    node = tree
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
    if isinstance(node, list):
        node[int(leaf)] = value
    else:
        node[leaf] = value


def read_adapter_config(adapter_dir: Path) -> dict[str, Any]:
    return json.loads((adapter_dir / "adapter_config.json").read_text())


@hookimpl
def register_trainers(register):
    register(MlxTrainer)
