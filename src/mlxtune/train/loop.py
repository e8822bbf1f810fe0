"""The one resumable training loop every trainer runs, over a small per-framework interface.

What a fine-tuning run needs besides the gradient step is the same on every framework: the data
order (`epoch_batches`, a function of seed and epoch), evaluation at a share of the steps, the
best (or last) adapter kept, patience, the loss window and its metrics, a sample answer at each
evaluation, a checkpoint at each evaluation and on Ctrl-C, and resuming from it with the same data
order and randomness. It lives here once. A trainer supplies a `TrainingBackend` (its model, its
optimizer, its files) and calls `TrainingLoop(...).run()`; the mlx trainer, the torch plugin and a
test trainer in the suite all do. See docs/plugins.md, "Writing a trainer".
"""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..components import TrainResult
from ..errors import MlxtuneError
from ..records import append_jsonl, atomic_write_json
from ..track import track_record
from .batching import Row, epoch_batches, useful_tokens
from .checkpoint import Checkpoint, truncate_metrics
from .options import SharedTrainOptions
from .schedule import learning_rate_at

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


WATCHED_STEPS = 3  # steps whose peak memory is checked against the device's budget


class OutOfMemory(Exception):
    """Training ran out of memory at `step` (the last checkpoint is kept)."""

    def __init__(self, step: int, detail: str):
        super().__init__(detail)
        self.step, self.detail = step, detail


def is_out_of_memory(exc: BaseException) -> bool:
    """Metal's `Insufficient Memory` / command-buffer OOM, CUDA's and the allocators' errors."""
    if isinstance(exc, MemoryError):
        return True
    text = str(exc).lower()
    return any(marker in text for marker in OOM_MARKERS)


class TrainingBackend(ABC):
    """One framework's part of a training run: its model, optimizer and files.

    The loop calls `start_step` once per optimizer update, then `micro_batch` once per gradient
    accumulation step (`last=True` on the one that applies the update). Only the writing process
    (`main`, rank 0 of a multi-process launch) is asked to save anything.
    """

    main: bool = True

    @abstractmethod
    def start_step(self, step: int, learning_rate: float) -> None:
        """Prepare update `step` (1-based): its randomness, its rate, cleared gradients."""

    @abstractmethod
    def micro_batch(self, rows: list[Row], last: bool) -> float:
        """Forward and backward on `rows`; apply the update when `last`. Returns the rows' mean
        loss per learned token (averaged over the processes of a launch)."""

    @abstractmethod
    def evaluate(self) -> float:
        """The validation loss per learned token (the whole launch's number on every process)."""

    @abstractmethod
    def save_adapter(self) -> None:
        """Write the current adapter as the kept one (into the output directory)."""

    @abstractmethod
    def save_checkpoint(self, directory: Path) -> tuple[list[str], dict[str, Any]]:
        """Write weights and optimizer state into `directory`; return the file names written
        and any JSON-able state the framework needs back (it is stored in state.json)."""

    @abstractmethod
    def load_checkpoint(self, directory: Path, state: dict[str, Any]) -> None:
        """Restore what `save_checkpoint` wrote (`state` is the whole saved state)."""

    def sample(self) -> str | None:
        """A short answer to a fixed prompt, logged at each evaluation (None: no samples)."""
        return None

    def peak_memory_gb(self) -> float | None:
        return None

    def barrier(self) -> None:
        """Wait for every process of a launch (one process: nothing to wait for)."""
        return None

    def share_state(self, state: dict[str, Any] | None) -> dict[str, Any] | None:
        """The main process's checkpoint state, on every process of a launch (so the others
        need no copy of the checkpoint: another machine's disk). One process: `state`."""
        return state

    def finish(self, checkpoint_dir: Path) -> None:
        """After the last step, on the main process, before the checkpoint is removed."""
        return None

    def summary(self) -> dict[str, Any]:
        """Extra entries for train_summary.json and TrainResult.extra."""
        return {}

    def describe(self) -> str:
        """Words for the log's first line, e.g. ' on cuda (bfloat16)'."""
        return ""


def planned_steps(options: SharedTrainOptions, rows: int) -> int:
    """The run's optimizer updates: `iters`, else `epochs` over `rows` training rows."""
    if rows < options.batch_size:
        raise MlxtuneError(
            f"{rows} training rows of up to {options.max_seq_length} tokens, fewer than "
            f"train.batch_size={options.batch_size}: lower the batch size or max_seq_length"
        )
    per_epoch = rows // options.batch_size
    accum = options.grad_accumulation_steps
    return options.iters or max(1, math.ceil(options.epochs * per_epoch / accum))


class TrainingLoop:
    """Runs `backend` over `rows` with the shared options' schedule, resumably.

    `config_hash` names everything that decides the run: a checkpoint saved under another one is
    never resumed. `steps` and `per_epoch` are known on construction (a trainer writes them into
    its adapter config before the loop runs: `planned_steps`).
    """

    def __init__(
        self,
        backend: TrainingBackend,
        options: SharedTrainOptions,
        rows: list[Row],
        output_dir: Path,
        config_hash: str,
        log: Callable[[str], None] = print,
        unit: str | None = None,
    ):
        self.backend, self.options, self.rows = backend, options, rows
        self.out, self.config_hash, self.log = output_dir, config_hash, log
        self.unit = unit or ("packed rows" if options.packing else "examples")
        self.checkpoint = Checkpoint(output_dir)
        self.metrics_path = output_dir / "metrics.jsonl"
        self.accum = options.grad_accumulation_steps
        self.steps = planned_steps(options, len(rows))
        self.per_epoch = len(rows) // options.batch_size
        self.eval_steps = max(1, round(options.eval_every * self.steps))
        # bytes the device offers (models.device): the first steps' peak is checked against it,
        # so a run that would swap (Metal) or fail later stops early with the auto-fit error
        self.memory_budget: float | None = None
        self.best: dict[str, Any] = {"loss": math.inf, "step": None, "evals_since": 0}
        self.window: dict[str, Any] = {"loss": 0.0, "tokens": 0, "steps": 0, "seconds": 0.0}
        self._order: dict[int, list[list[int]]] = {}

    # ------------------------------------------------------------ the run

    def run(self) -> TrainResult:
        start = self.resume_or_start()
        o, backend = self.options, self.backend
        self.log(
            f"  training {self.steps} steps{backend.describe()} ({len(self.rows)} {self.unit}, "
            f"batch {o.batch_size} x {self.accum}, evaluating every {self.eval_steps} steps)"
        )
        started = time.perf_counter()
        step, done, stopped_early = start, start, False
        try:
            if start == 0:
                self.on_eval(0)
            for step in range(start + 1, self.steps + 1):
                self.train_step(step)
                done = step  # the update is applied: a checkpoint from here on resumes after it
                if step <= start + WATCHED_STEPS:
                    self.check_peak(step)
                if step % o.steps_per_report == 0 or step == self.steps:
                    self.report(step)
                if step % self.eval_steps == 0 or step == self.steps:
                    self.on_eval(step)
                    if o.patience and self.best["evals_since"] >= o.patience:
                        stopped_early = True
                        self.log(
                            f"  early stop: no improvement in {o.patience} evaluations "
                            f"(best {self.best['loss']:.4f} at step {self.best['step']})"
                        )
                        break
        except KeyboardInterrupt:
            self.save_checkpoint(done)  # not the step in progress: its update was not applied
            raise MlxtuneError(
                f"training interrupted at step {step} of {self.steps}; checkpoint saved after "
                f"step {done}: run the recipe again to resume"
            ) from None
        except Exception as exc:
            if is_out_of_memory(exc):
                raise OutOfMemory(step, str(exc).splitlines()[0][:200]) from exc
            raise
        return self.finish(step, stopped_early, time.perf_counter() - started)

    def resume_or_start(self) -> int:
        """Load a checkpoint of this configuration (its step), or clear the last run's files."""
        backend = self.backend
        state = self.checkpoint.load_state(self.config_hash) if self.options.resume else None
        if state is not None and state.get("planned_steps", self.steps) != self.steps:
            self.log(
                f"  the checkpoint at step {state['step']} is of a run of "
                f"{state['planned_steps']} steps, this one has {self.steps}: starting over"
            )
            state = None
        state = backend.share_state(state)  # the main process decides for the launch
        backend.barrier()  # every process has read the state before it changes
        if backend.main:
            if state is None:
                self.checkpoint.remove()
                self.metrics_path.unlink(missing_ok=True)
                (self.out / "adapters.safetensors").unlink(missing_ok=True)
            self.out.mkdir(parents=True, exist_ok=True)
        start = 0
        if state is not None:
            start = int(state["step"])
            self.best.update(state["best"])
            self.best["loss"] = math.inf if self.best["loss"] is None else float(self.best["loss"])
            self.window.update(state["window"])
            backend.load_checkpoint(self.checkpoint.dir, state)
            if backend.main:
                truncate_metrics(self.metrics_path, start)
            self.log(f"  resuming from the checkpoint at step {start} of {self.steps}")
        backend.barrier()
        return start

    def batch_rows(self, position: int) -> list[Row]:
        """The rows of micro-batch `position` (0-based over the whole run): the same on resume."""
        epoch, index = divmod(position, self.per_epoch)
        if epoch not in self._order:
            lengths = [len(r) for r in self.rows]
            self._order = {
                epoch: epoch_batches(lengths, self.options.batch_size, self.options.seed, epoch)
            }
        return [self.rows[i] for i in self._order[epoch][index]]

    def check_peak(self, step: int) -> None:
        peak = self.backend.peak_memory_gb()
        if self.memory_budget is None or peak is None or peak * 1e9 <= self.memory_budget:
            return
        raise OutOfMemory(
            step,
            f"peak memory {peak:.1f} GB after step {step} is over the "
            f"{self.memory_budget / 1e9:.1f} GB this device offers (beyond it, it swaps)",
        )

    def learning_rate(self, step: int) -> float:
        o = self.options
        return learning_rate_at(
            step - 1, o.learning_rate, self.steps, o.warmup_fraction, o.min_lr_fraction
        )

    def train_step(self, step: int) -> None:
        tic = time.perf_counter()
        self.backend.start_step(step, self.learning_rate(step))
        loss, tokens = 0.0, 0
        for micro in range(self.accum):
            rows = self.batch_rows((step - 1) * self.accum + micro)
            loss += self.backend.micro_batch(rows, last=micro == self.accum - 1)
            tokens += useful_tokens(rows)
        # counted once the update is done, so an interrupted step leaves no trace in the window
        self.window["loss"] += loss
        self.window["tokens"] += tokens
        self.window["steps"] += 1
        self.window["seconds"] += time.perf_counter() - tic

    # ------------------------------------------------------------ evaluation and files

    def on_eval(self, step: int) -> None:
        backend, best = self.backend, self.best
        loss = backend.evaluate()
        improved = loss < best["loss"]
        if improved:
            best.update(loss=loss, step=step, evals_since=0)
        else:
            best["evals_since"] += 1
        if backend.main and (improved or self.options.keep == "last"):
            backend.save_adapter()
        record: dict[str, Any] = {
            "step": step,
            "epoch": step * self.accum / self.per_epoch,
            "val_loss": loss,
        }
        sample = backend.sample() if backend.main else None
        if sample is not None:
            record["sample"] = sample
        if backend.main:
            append_jsonl(self.metrics_path, record)
            track_record(record, step)
        self.log(
            f"  step {step:>5}/{self.steps}  val loss {loss:.4f}" + (" *best*" if improved else "")
        )
        if sample is not None:
            self.log(f"    sample: {sample[:200]!r}")
        self.save_checkpoint(step)

    def save_checkpoint(self, step: int) -> None:
        if not self.backend.main:
            return
        self.checkpoint.begin()
        files, extra = self.backend.save_checkpoint(self.checkpoint.dir)
        best = {**self.best, "loss": None if math.isinf(self.best["loss"]) else self.best["loss"]}
        state = {**extra, "config": self.config_hash, "step": step, "best": best}
        state["planned_steps"] = self.steps
        self.checkpoint.commit({**state, "window": self.window}, files)

    def report(self, step: int) -> None:
        window = self.window
        loss = window["loss"] / max(1, window["steps"] * self.accum)
        seconds = max(window["seconds"], 1e-9)
        record = {
            "step": step,
            "epoch": step * self.accum / self.per_epoch,
            "train_loss": loss,
            "learning_rate": self.learning_rate(step),
            "tokens_per_second": window["tokens"] / seconds,
            "steps_per_second": window["steps"] / seconds,
        }
        peak = self.backend.peak_memory_gb()
        line = (
            f"  step {step:>5}/{self.steps}  loss {loss:.4f}  lr {record['learning_rate']:.2e}  "
            f"{record['tokens_per_second']:.0f} tok/s"
        )
        if peak is not None:
            record["peak_memory_gb"] = peak
            line += f"  peak {peak:.2f} GB"
        if self.backend.main:
            append_jsonl(self.metrics_path, record)
            track_record(record, step)
        eta = (self.steps - step) / max(record["steps_per_second"], 1e-9)
        self.log(f"{line}  eta {duration(eta)}")
        window.update(loss=0.0, tokens=0, steps=0, seconds=0.0, last_loss=loss)

    def finish(self, step: int, stopped_early: bool, seconds: float) -> TrainResult:
        backend, best = self.backend, self.best
        peak = backend.peak_memory_gb()
        backend.barrier()
        extra = backend.summary()
        if backend.main:
            backend.finish(self.checkpoint.dir)
            self.checkpoint.remove()
            summary = {
                "kept": self.options.keep,
                "best_step": best["step"],
                "best_val_loss": best["loss"],
                "steps": step,
                "planned_steps": self.steps,
                "stopped_early": stopped_early,
                **({"peak_memory_gb": peak} if peak is not None else {}),
                "seconds": seconds,
                **extra,
            }
            atomic_write_json(self.out / "train_summary.json", summary)
        backend.barrier()  # the adapter is complete before any process returns
        return TrainResult(
            adapter_path=self.out,
            steps=step,
            best_step=best["step"],
            best_val_loss=float(best["loss"]),
            final_train_loss=self.window.get("last_loss"),
            peak_memory_gb=peak,
            seconds=seconds,
            extra={
                "metrics_path": str(self.metrics_path),
                "stopped_early": stopped_early,
                "kept": self.options.keep,
                **extra,
            },
        )


def duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"
