"""The one resumable training loop every trainer runs, over a small per-framework interface.

What a fine-tuning run needs besides the gradient step is the same on every framework: the data
order (`epoch_batches`, a function of seed and epoch), evaluation at a share of the steps, the
best (or last) adapter kept, patience, the loss window and its metrics, a sample answer at each
evaluation, a checkpoint at each evaluation and on Ctrl-C, and resuming from it with the same data
order and randomness. It lives here once. A trainer supplies a `TrainingBackend` (backend.py: its
model, its optimizer, its files) and calls `TrainingLoop(...).run()`; the mlx trainer, the torch
plugin and a test trainer in the suite all do. See docs/plugins.md, "Writing a trainer".

After each update the loop owes that step its due actions (a report, an evaluation); a
checkpoint records which are still pending, so a run interrupted between an update and its
evaluation evaluates that step when it resumes, as an unbroken run does. A non-finite loss or
gradient stops the run before anything is saved after it; a damaged checkpoint is set aside.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..components import TrainResult
from ..errors import MlxtuneError
from ..records import append_jsonl, atomic_write_json
from ..track import track_record
from .backend import TrainingBackend
from .batching import Row, epoch_batches, useful_tokens
from .checkpoint import Checkpoint, CheckpointDamaged, truncate_metrics
from .failures import NonFinite, OutOfMemory, diverged_message, is_out_of_memory, one_line
from .options import SharedTrainOptions, planned_steps
from .schedule import learning_rate_at

__all__ = [
    "NonFinite",
    "OutOfMemory",
    "TrainingBackend",
    "TrainingLoop",
    "is_out_of_memory",
    "planned_steps",
]

WATCHED_STEPS = 3  # steps whose peak memory is checked against the device's budget


def fresh_speed() -> dict[str, Any]:
    return {"tokens": 0, "steps": 0, "seconds": 0.0}


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
        # bytes the device offers (mlxtune.device): the first steps' peak is checked against it,
        # so a run that would swap (Metal) or fail later stops early with the auto-fit error
        self.memory_budget: float | None = None
        self.best: dict[str, Any] = {"loss": math.inf, "step": None, "evals_since": 0}
        self.window: dict[str, Any] = {"loss": 0.0, "tokens": 0, "steps": 0, "seconds": 0.0}
        self.speed = fresh_speed()  # this process's steps since the last report (tok/s, eta)
        # the last applied update, and its due actions not done yet ("report", "eval")
        self.done, self.pending = 0, ["eval"]
        self.resumed_at = 0
        self.saved_at: int | None = None  # the step of the checkpoint on disk
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
        step, stopped_early = start, False
        try:
            stopped_early = self.after_step(start)  # fresh: the evaluation before any step
            while not stopped_early and step < self.steps:
                step += 1
                self.train_step(step)
                if step <= start + WATCHED_STEPS:
                    self.check_peak(step)
                stopped_early = self.after_step(step)
        except KeyboardInterrupt:
            self.save_checkpoint(self.done)  # not the step in progress: its update was not applied
            raise MlxtuneError(
                f"training interrupted at step {step} of {self.steps}; checkpoint saved after "
                f"step {self.done}: run the recipe again to resume"
            ) from None
        except NonFinite as bad:
            raise MlxtuneError(self.diverged(step, bad.what)) from None
        except Exception as exc:
            if is_out_of_memory(exc):
                raise OutOfMemory(step, str(exc).splitlines()[0][:200]) from exc
            raise
        return self.finish(self.done, stopped_early, time.perf_counter() - started)

    def due(self, step: int) -> list[str]:
        """What a run does after update `step` (0: before the first), in this order."""
        actions = []
        if step and (step % self.options.steps_per_report == 0 or step == self.steps):
            actions.append("report")
        if step % self.eval_steps == 0 or step == self.steps:
            actions.append("eval")
        return actions

    def after_step(self, step: int) -> bool:
        """Do what is pending for `step`; True when patience ends the run there."""
        if "report" in self.pending:
            self.report(step)
        if "eval" in self.pending:
            self.on_eval(step)
        patience = self.options.patience
        if "eval" in self.due(step) and patience and self.best["evals_since"] >= patience:
            self.log(
                f"  early stop: no improvement in {patience} evaluations "
                f"(best {self.best['loss']:.4f} at step {self.best['step']})"
            )
            return True
        return False

    def diverged(self, step: int, what: str) -> str:
        rate = self.learning_rate(step) if step else 0.0
        return diverged_message(what, step, self.steps, rate, self.options, self.saved_at)

    def resume_or_start(self) -> int:
        """Load a checkpoint of this configuration (its step), or clear the last run's files."""
        backend = self.backend
        state = self.read_checkpoint() if self.options.resume and backend.main else None
        state = backend.share_state(state)  # the main process decides for the launch
        backend.barrier()  # every process has read the state before it changes
        if backend.main:
            if state is None:
                self.checkpoint.remove()
                self.metrics_path.unlink(missing_ok=True)
                (self.out / "adapters.safetensors").unlink(missing_ok=True)
            self.out.mkdir(parents=True, exist_ok=True)
        start, pending = 0, ["eval"]
        if state is not None:
            start = int(state["step"])
            pending = state.get("pending")
            if pending is None:  # a checkpoint from before pending actions were recorded
                pending = ["eval"] if start == 0 else []
            self.best.update(state["best"])
            self.best["loss"] = math.inf if self.best["loss"] is None else float(self.best["loss"])
            self.window.update(state["window"])
            self.restore(state)
            if backend.main:
                truncate_metrics(self.metrics_path, start, tuple(pending))
            words = " and ".join("evaluation" if a == "eval" else a for a in pending)
            again = f" (its {words} was cut short: done now)" if start and pending else ""
            self.log(f"  resuming from the checkpoint at step {start} of {self.steps}{again}")
            self.saved_at = start
        self.done, self.pending, self.resumed_at = start, list(pending), start
        backend.barrier()
        return start

    def read_checkpoint(self) -> dict[str, Any] | None:
        """This configuration's checkpoint if it can be trusted; a damaged one is set aside."""
        try:
            state = self.checkpoint.read(self.config_hash)
            if state is not None and state["planned_steps"] != self.steps:
                self.log(
                    f"  the checkpoint at step {state['step']} is of a run of "
                    f"{state['planned_steps']} steps, this one has {self.steps}: starting over"
                )
                return None
            if state is not None:
                try:
                    self.backend.verify_checkpoint(self.checkpoint.dir, state)
                except Exception as exc:  # whatever the framework's reader raises
                    raise CheckpointDamaged(self.checkpoint.dir, one_line(exc)) from None
            return state
        except CheckpointDamaged as damage:
            aside = self.checkpoint.set_aside()
            self.log(
                f"  damaged checkpoint, not resumed: {damage}; moved to {aside}, "
                "training starts over"
            )
            return None

    def restore(self, state: dict[str, Any]) -> None:
        try:
            self.backend.load_checkpoint(self.checkpoint.dir, state)
        except Exception as exc:
            where = self.checkpoint.set_aside() if self.backend.main else self.checkpoint.dir
            raise MlxtuneError(
                f"the checkpoint after step {state['step']} cannot be restored ({one_line(exc)}); "
                f"moved to {where}: run again to start over"
            ) from None

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
        if not math.isfinite(loss):
            raise NonFinite(f"training loss ({loss})")
        seconds, w = time.perf_counter() - tic, self.window
        window = {
            **w,
            "loss": w["loss"] + loss,
            "tokens": w["tokens"] + tokens,
            "steps": w["steps"] + 1,
            "seconds": w["seconds"] + seconds,
        }
        pending = self.due(step)
        # one statement: a Ctrl-C before it leaves no trace of the step, after it all of it
        self.done, self.pending, self.window = step, pending, window
        s = self.speed
        self.speed = {
            "tokens": s["tokens"] + tokens,
            "steps": s["steps"] + 1,
            "seconds": s["seconds"] + seconds,
        }

    # ------------------------------------------------------------ evaluation and files

    def on_eval(self, step: int) -> None:
        backend = self.backend
        loss = backend.evaluate()
        if not math.isfinite(loss):
            raise NonFinite(f"validation loss ({loss})")
        best = dict(self.best)
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
        rest = [a for a in self.pending if a != "eval"]
        self.best, self.pending = best, rest  # the evaluation is done: one statement
        self.save_checkpoint(step)

    def save_checkpoint(self, step: int) -> None:
        if not self.backend.main:
            self.saved_at = step
            return
        self.checkpoint.begin()
        files, extra = self.backend.save_checkpoint(self.checkpoint.dir)
        best = {**self.best, "loss": None if math.isinf(self.best["loss"]) else self.best["loss"]}
        state = {**extra, "config": self.config_hash, "step": step, "best": best}
        state.update(planned_steps=self.steps, window=self.window, pending=list(self.pending))
        self.checkpoint.commit(state, files)
        self.saved_at = step

    def report(self, step: int) -> None:
        window = self.window
        loss = window["loss"] / max(1, window["steps"] * self.accum)
        # speed from this process's steps; a report replayed on resume has none: its own steps'
        speed = self.speed if self.speed["steps"] else window
        seconds = max(speed["seconds"], 1e-9)
        record = {
            "step": step,
            "epoch": step * self.accum / self.per_epoch,
            "train_loss": loss,
            "learning_rate": self.learning_rate(step),
            "tokens_per_second": speed["tokens"] / seconds,
            "steps_per_second": speed["steps"] / seconds,
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
        fresh = {"loss": 0.0, "tokens": 0, "steps": 0, "seconds": 0.0, "last_loss": loss}
        rest = [a for a in self.pending if a != "report"]
        self.window, self.pending = fresh, rest  # the report is done: one statement
        self.speed = fresh_speed()

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
                "resumed_at": self.resumed_at,
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
                "resumed_at": self.resumed_at,
                **extra,
            },
        )


def duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"
