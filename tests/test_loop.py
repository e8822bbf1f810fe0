"""The shared training loop (mlxtune.train.loop) driven by a trainer written for this test alone:
a byte-bigram model in numpy that implements only the `TrainingBackend` interface. Whatever it
gets (best keeping, metrics, patience, resuming after Ctrl-C) a third-party trainer gets too."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from mlxtune.errors import MlxtuneError
from mlxtune.records import read_jsonl
from mlxtune.train.batching import Row, make_rows
from mlxtune.train.loop import TrainingBackend, TrainingLoop
from mlxtune.train.options import SharedTrainOptions

TRAIN = [
    "the cat sat on the mat and the cat ate the rat",
    "a dog and a cat met on the mat at the end of the day",
    "the rat ran at the cat and the dog sat on the log",
    "on the mat the cat sat; on the log the dog sat",
    "the end of the day came and the cat sat at the door",
    "a rat and a cat and a dog ate at the mat",
]
VALID = ["the dog sat on the mat and the rat ran", "a cat ate at the end of the log"]


def byte_rows(texts: list[str]) -> list[Row]:
    return make_rows([(list(t.encode()), 0) for t in texts], 256)[0]


class BigramSteps(TrainingBackend):
    """Next-byte logits W[prev] trained by plain SGD on the mean per-token cross-entropy."""

    def __init__(self, valid: list[Row], out: Path, fail_at: int | None = None):
        self.w = np.zeros((256, 256))
        self.grad = np.zeros_like(self.w)
        self.valid, self.out, self.fail_at = valid, out, fail_at
        self.rate, self.steps_started, self.updates = 0.0, [], 0

    @staticmethod
    def pairs(rows: list[Row]) -> tuple[np.ndarray, np.ndarray]:
        prev = [t for r in rows for t, w in zip(r.tokens[:-1], r.weights[1:], strict=True) if w]
        nxt = [t for r in rows for t, w in zip(r.tokens[1:], r.weights[1:], strict=True) if w]
        return np.array(prev), np.array(nxt)

    def loss_and_grad(self, rows: list[Row]) -> tuple[float, np.ndarray]:
        prev, nxt = self.pairs(rows)
        logits = self.w[prev]
        logits = logits - logits.max(axis=1, keepdims=True)
        probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        loss = -np.log(probs[np.arange(len(nxt)), nxt]).mean()
        probs[np.arange(len(nxt)), nxt] -= 1
        grad = np.zeros_like(self.w)
        np.add.at(grad, prev, probs / len(nxt))
        return float(loss), grad

    def start_step(self, step: int, learning_rate: float) -> None:
        self.steps_started.append(step)
        self.rate, self.grad = learning_rate, np.zeros_like(self.w)

    def micro_batch(self, rows: list[Row], last: bool) -> float:
        if self.steps_started[-1] == self.fail_at:
            raise KeyboardInterrupt
        loss, grad = self.loss_and_grad(rows)
        self.grad += grad
        if last:
            self.w -= self.rate * self.grad
            self.updates += 1
        return loss

    def evaluate(self) -> float:
        return self.loss_and_grad(self.valid)[0]

    def save_adapter(self) -> None:
        save_file({"w": self.w}, str(self.out / "adapters.safetensors"))

    def save_checkpoint(self, directory: Path) -> tuple[list[str], dict[str, Any]]:
        save_file({"w": self.w}, str(directory / "w.safetensors"))
        return ["w.safetensors"], {"updates": self.updates}

    def load_checkpoint(self, directory: Path, state: dict[str, Any]) -> None:
        self.w = load_file(str(directory / "w.safetensors"))["w"]
        self.updates = state["updates"]


def options(**overrides: Any) -> SharedTrainOptions:
    settings = dict(iters=24, batch_size=2, learning_rate=2.0, eval_every=0.25, steps_per_report=4)
    return SharedTrainOptions(**{**settings, **overrides})


def run(out: Path, fail_at: int | None = None, **overrides: Any) -> tuple[Any, BigramSteps, list]:
    backend = BigramSteps(byte_rows(VALID), out, fail_at)
    lines: list[str] = []
    loop = TrainingLoop(backend, options(**overrides), byte_rows(TRAIN), out, "cfg", lines.append)
    return loop.run(), backend, lines


def test_the_loop_trains_keeps_the_best_and_records_metrics(tmp_path):
    result, backend, _ = run(tmp_path / "out")
    metrics = list(read_jsonl(tmp_path / "out" / "metrics.jsonl"))
    evals = [m for m in metrics if "val_loss" in m]
    assert [m["step"] for m in evals] == [0, 6, 12, 18, 24]
    assert evals[-1]["val_loss"] < evals[0]["val_loss"] - 1.0  # it learns the bigrams
    best = min(evals, key=lambda m: m["val_loss"])
    assert (result.best_step, result.best_val_loss) == (best["step"], best["val_loss"])
    kept = BigramSteps(byte_rows(VALID), tmp_path)
    kept.w = load_file(str(tmp_path / "out" / "adapters.safetensors"))["w"]
    assert kept.evaluate() == pytest.approx(best["val_loss"], rel=1e-12)
    reports = [m for m in metrics if "train_loss" in m]
    assert [m["step"] for m in reports] == [4, 8, 12, 16, 20, 24]
    summary = json.loads((tmp_path / "out" / "train_summary.json").read_text())
    assert summary["steps"] == 24 and summary["best_step"] == best["step"]
    assert not (tmp_path / "out" / "checkpoint").exists() and backend.updates == 24


def test_ctrl_c_then_resume_repeats_no_update_and_ends_where_an_unbroken_run_does(tmp_path):
    _, unbroken, _ = run(tmp_path / "unbroken")
    with pytest.raises(MlxtuneError, match="interrupted at step 15 .* after step 14"):
        run(tmp_path / "out", fail_at=15)
    state = json.loads((tmp_path / "out" / "checkpoint" / "state.json").read_text())
    assert state["step"] == 14 and state["updates"] == 14
    _, resumed, lines = run(tmp_path / "out")
    assert "resuming from the checkpoint at step 14 of 24" in "\n".join(lines)
    assert resumed.steps_started == list(range(15, 25))  # only the later steps ran again
    np.testing.assert_array_equal(resumed.w, unbroken.w)
    steps = [m["step"] for m in read_jsonl(tmp_path / "out" / "metrics.jsonl") if "val_loss" in m]
    assert steps == [0, 6, 12, 18, 24]  # nothing recorded twice


def test_a_checkpoint_of_another_configuration_is_not_resumed(tmp_path):
    with pytest.raises(MlxtuneError):
        run(tmp_path / "out", fail_at=15)
    backend = BigramSteps(byte_rows(VALID), tmp_path / "out")
    loop = TrainingLoop(backend, options(), byte_rows(TRAIN), tmp_path / "out", "other")
    loop.run()
    assert backend.steps_started == list(range(1, 25))


def test_patience_stops_early_and_keep_last_keeps_the_last(tmp_path):
    # a rate this high overshoots: validation loss stops improving and patience ends the run
    result, backend, lines = run(tmp_path / "out", learning_rate=400.0, patience=1, keep="last")
    assert result.extra["stopped_early"] and result.steps < 24
    assert any("early stop" in line for line in lines)
    kept = load_file(str(tmp_path / "out" / "adapters.safetensors"))["w"]
    np.testing.assert_array_equal(kept, backend.w)
    assert result.best_step != result.steps  # the last is not the best, and it was kept


def test_accumulation_applies_one_update_per_step_at_mlx_lms_schedule(tmp_path):
    from mlx_lm.tuner.utils import build_schedule

    rates: list[float] = []

    class Recording(BigramSteps):
        def start_step(self, step: int, learning_rate: float) -> None:
            rates.append(learning_rate)
            super().start_step(step, learning_rate)

    out = tmp_path / "out"
    backend = Recording(byte_rows(VALID), out)
    settings = options(grad_accumulation_steps=3, iters=20, warmup_fraction=0.1)
    result = TrainingLoop(backend, settings, byte_rows(TRAIN), out, "cfg").run()
    assert backend.updates == 20 and result.steps == 20
    schedule = build_schedule(
        {"name": "cosine_decay", "arguments": [2.0, 18, 0.2], "warmup": 2}
    )  # what the mlx trainer hands MLX's optimizer for the same options
    assert rates == pytest.approx([schedule(i).item() for i in range(20)], rel=1e-6)
    reports = [m for m in read_jsonl(out / "metrics.jsonl") if "train_loss" in m]
    assert [m["learning_rate"] for m in reports] == pytest.approx(
        [rates[s - 1] for s in (4, 8, 12, 16, 20)]
    )
    assert reports[-1]["epoch"] == pytest.approx(20 * 3 / 3)  # 3 batches of 2 rows per epoch
