"""Faults a training run must survive or report (issue 24): a damaged checkpoint, an evaluation
cut short by Ctrl-C, numbers that stop being finite (options no run can use:
test_training_limits.py). Real files, real
MLX training on the tiny model, the real CLI; the shared loop also under test_loop's trainer."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import write_recipe
from safetensors.numpy import load_file, save_file
from test_loop import TRAIN, VALID, BigramSteps, byte_rows
from test_loop import run as bigram_run
from test_training import make_data, unrelated_validation

from mlxtune.cli import cli
from mlxtune.errors import MlxtuneError
from mlxtune.records import read_jsonl

# ---------------------------------------------------------------- helpers


def aside(out: Path) -> list[Path]:
    """The damaged checkpoints set aside beside the output folder."""
    return sorted(out.parent.glob("checkpoint.damaged-*"))


def garble(path: Path) -> None:
    """Overwrite bytes in the middle of the tensor data, keeping the file's size and header."""
    data = bytearray(path.read_bytes())
    middle = len(data) * 3 // 4
    data[middle : middle + 64] = bytes(range(7, 7 + 64))
    path.write_bytes(bytes(data))


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def edit_state(key: str, value: Any) -> Any:
    def edit(checkpoint: Path) -> None:
        state = json.loads((checkpoint / "state.json").read_text())
        state[key] = value
        (checkpoint / "state.json").write_text(json.dumps(state))

    return edit


def text_state(text: str) -> Any:
    return lambda checkpoint: (checkpoint / "state.json").write_text(text)


def evals(out: Path) -> list[tuple[int, float]]:
    return [
        (m["step"], m["val_loss"]) for m in read_jsonl(out / "metrics.jsonl") if "val_loss" in m
    ]


# ---------------------------------------------------------------- checkpoint damage (shared loop)

STATE_DAMAGE = {
    "state holds []": (text_state("[]"), "state.json"),
    "state not JSON": (text_state('{"step": 1'), "state.json"),
    "step -5": (edit_state("step", -5), "state.json"),
    "step 'x'": (edit_state("step", "x"), "state.json"),
    "step 999": (edit_state("step", 999), "state.json"),
    "step true": (edit_state("step", True), "state.json"),
    "best NaN": (edit_state("best", {"loss": math.nan, "step": 0, "evals_since": 0}), "state.json"),
    "weights truncated": (lambda c: truncate(c / "w.safetensors"), "w.safetensors"),
    "weights garbled": (lambda c: garble(c / "w.safetensors"), "w.safetensors"),
    "weights missing": (lambda c: (c / "w.safetensors").unlink(), "w.safetensors"),
}


@pytest.mark.parametrize("damage", list(STATE_DAMAGE), ids=list(STATE_DAMAGE))
def test_a_damaged_checkpoint_is_set_aside_named_and_the_run_starts_over(tmp_path, damage):
    edit, named = STATE_DAMAGE[damage]
    _, unbroken, _ = bigram_run(tmp_path / "unbroken")
    out = tmp_path / "run" / "out"
    with pytest.raises(MlxtuneError, match="interrupted at step 15"):
        bigram_run(out, fail_at=15)
    edit(out / "checkpoint")
    damaged_bytes = {p.name: p.read_bytes() for p in (out / "checkpoint").iterdir()}

    result, again, lines = bigram_run(out)
    reports = [line for line in lines if "damaged checkpoint" in line]
    assert len(reports) == 1 and named in reports[0] and "starts over" in reports[0], lines
    assert again.steps_started == list(range(1, 25))  # from scratch, not from the damage
    np.testing.assert_array_equal(again.w, unbroken.w)
    assert result.steps == 24 and evals(out) == evals(tmp_path / "unbroken")
    # set aside, not deleted: the damaged files as they were, beside the output folder
    (moved,) = aside(out)
    assert {p.name: p.read_bytes() for p in moved.iterdir()} == damaged_bytes
    assert not (out / "checkpoint").exists()


def test_a_checkpoint_records_each_files_sha256(tmp_path):
    import hashlib

    out = tmp_path / "out"
    with pytest.raises(MlxtuneError):
        bigram_run(out, fail_at=9)
    state = json.loads((out / "checkpoint" / "state.json").read_text())
    digest = hashlib.sha256((out / "checkpoint" / "w.safetensors").read_bytes()).hexdigest()
    assert state["files"] == {"w.safetensors": digest}


# ---------------------------------------------------------------- checkpoint damage (mlx)

MLX = dict(
    iters=8,
    batch_size=2,
    learning_rate=5e-3,
    lora_rank=4,
    lora_scale=2.0,
    num_layers=-1,
    eval_every=0.5,
    steps_per_report=2,
    sample_max_tokens=0,
)


def mlx_train(model: Path, data: Path, out: Path, lines: list | None = None, **options: Any):
    from mlxtune.train.mlx_trainer import MlxTrainer

    log = lines.append if lines is not None else (lambda _: None)
    return MlxTrainer(MlxTrainer.Options(**{**MLX, **options})).train(
        str(model), data, out, log=log
    )


def interrupt_evaluation(monkeypatch, call: int) -> None:
    """Ctrl-C arrives during the `call`-th evaluation (1: the one before the first step)."""
    from mlxtune.train.mlx_steps import MlxSteps

    real, calls = MlxSteps.evaluate, []

    def evaluate(self):
        calls.append(1)
        if len(calls) == call:
            raise KeyboardInterrupt
        return real(self)

    monkeypatch.setattr(MlxSteps, "evaluate", evaluate)


def wrong_shape(checkpoint: Path) -> None:
    """A well-formed file of other shapes, its sha256 recorded: only loading can tell."""
    import hashlib

    arrays = load_file(checkpoint / "last.safetensors")
    save_file({k: np.zeros((3, 5), v.dtype) for k, v in arrays.items()}, checkpoint / "x")
    (checkpoint / "x").replace(checkpoint / "last.safetensors")
    state = json.loads((checkpoint / "state.json").read_text())
    data = (checkpoint / "last.safetensors").read_bytes()
    state["files"]["last.safetensors"] = hashlib.sha256(data).hexdigest()
    (checkpoint / "state.json").write_text(json.dumps(state))


MLX_DAMAGE = {
    "adapter truncated": (lambda c: truncate(c / "last.safetensors"), "last.safetensors"),
    "optimizer truncated": (lambda c: truncate(c / "optimizer.safetensors"), "optimizer"),
    "adapter garbled": (lambda c: garble(c / "last.safetensors"), "last.safetensors"),
    "adapter of other shapes": (wrong_shape, "last.safetensors"),
}


@pytest.fixture(scope="module")
def reference(tiny_model, tmp_path_factory) -> tuple[Path, Path]:
    """The data and an unbroken run of `MLX` on it."""
    root = tmp_path_factory.mktemp("reference")
    data = make_data(root)
    mlx_train(tiny_model, data, root / "unbroken")
    return data, root / "unbroken"


@pytest.mark.slow
@pytest.mark.parametrize("damage", list(MLX_DAMAGE), ids=list(MLX_DAMAGE))
def test_mlx_damaged_tensors_are_never_resumed(
    tmp_path, tiny_model, reference, monkeypatch, damage
):
    edit, named = MLX_DAMAGE[damage]
    data, unbroken = reference
    out = tmp_path / "out"
    with monkeypatch.context() as patch:
        interrupt_evaluation(patch, 2)  # during the evaluation at step 4: checkpoint of step 4
        with pytest.raises(MlxtuneError, match="interrupted at step 4"):
            mlx_train(tiny_model, data, out)
    edit(out / "checkpoint")
    lines: list[str] = []
    result = mlx_train(tiny_model, data, out, lines)
    reports = [line for line in lines if "damaged checkpoint" in line]
    assert len(reports) == 1 and named in reports[0], lines
    assert not any("resuming" in line for line in lines)
    assert result.steps == 8 and len(aside(out)) == 1
    # started over: the same numbers as the unbroken run, and a finite adapter
    assert [s for s, _ in evals(out)] == [s for s, _ in evals(unbroken)]
    assert [v for _, v in evals(out)] == pytest.approx([v for _, v in evals(unbroken)], rel=1e-5)
    kept = load_file(out / "adapters.safetensors")
    assert all(np.isfinite(v).all() for v in kept.values())


# ---------------------------------------------------------------- the interrupted evaluation


@pytest.mark.slow
def test_ctrl_c_during_an_evaluation_then_resume_keeps_what_an_unbroken_run_keeps(
    tmp_path, tiny_model, monkeypatch
):
    # validation unlike training: its loss is lowest at step 3 and turns up after it
    data = unrelated_validation(tmp_path)
    options = dict(iters=12, learning_rate=1e-2, eval_every=0.25, sample_max_tokens=4)
    unbroken = mlx_train(tiny_model, data, tmp_path / "unbroken", **options)
    assert unbroken.best_step == 3  # what makes the test able to fail

    out = tmp_path / "out"
    with monkeypatch.context() as patch:
        interrupt_evaluation(patch, 2)  # evaluations at 0, 3: Ctrl-C during step 3's
        with pytest.raises(MlxtuneError, match="interrupted at step 3 .* after step 3"):
            mlx_train(tiny_model, data, out, **options)
    lines: list[str] = []
    resumed = mlx_train(tiny_model, data, out, lines, **options)
    assert any("resuming from the checkpoint at step 3 of 12" in line for line in lines)
    assert (resumed.best_step, resumed.best_val_loss) == (3, unbroken.best_val_loss)
    expected = list(read_jsonl(tmp_path / "unbroken" / "metrics.jsonl"))
    got = list(read_jsonl(out / "metrics.jsonl"))
    assert [(m["step"], "val_loss" in m) for m in got] == [
        (m["step"], "val_loss" in m) for m in expected
    ]
    for a, b in zip(expected, got, strict=True):
        for key in ("train_loss", "val_loss", "learning_rate"):
            assert b.get(key) == (pytest.approx(a[key], rel=1e-5) if key in a else None), key
        assert b.get("sample") == a.get("sample")
    kept, reference = (load_file(d / "adapters.safetensors") for d in (out, tmp_path / "unbroken"))
    assert all(np.allclose(kept[k], reference[k], atol=1e-6) for k in reference)
    assert resumed.extra["resumed_at"] == 3 and resumed.steps == 12


class SlowThenInterrupted(BigramSteps):
    """Slow steps (a busy machine), Ctrl-C as step `fail_at` starts; or fast steps, and
    Ctrl-C inside the report of step `report_at` (peak memory is asked there)."""

    def __init__(self, *args: Any, slow: float = 0.0, report_at: int | None = None, **kw: Any):
        super().__init__(*args, **kw)
        self.slow, self.report_at = slow, report_at

    def micro_batch(self, rows: list, last: bool) -> float:
        time.sleep(self.slow)
        return super().micro_batch(rows, last)

    def peak_memory_gb(self) -> float | None:
        if self.report_at is not None and self.steps_started[-1:] == [self.report_at]:
            raise KeyboardInterrupt
        return None


def loop_run(out: Path, lines: list | None = None, **backend_options: Any):
    from test_loop import options

    from mlxtune.train.loop import TrainingLoop

    backend = SlowThenInterrupted(byte_rows(VALID), out, **backend_options)
    log = lines.append if lines is not None else (lambda _: None)
    return TrainingLoop(backend, options(), byte_rows(TRAIN), out, "cfg", log).run(), backend


def test_ctrl_c_inside_a_report_then_resume_records_it_once(tmp_path):
    bigram_run(tmp_path / "unbroken")
    out = tmp_path / "out"
    with pytest.raises(MlxtuneError, match="interrupted at step 8 .* after step 8"):
        loop_run(out, report_at=8)
    loop_run(out)
    expected = list(read_jsonl(tmp_path / "unbroken" / "metrics.jsonl"))
    got = list(read_jsonl(out / "metrics.jsonl"))
    assert [m["step"] for m in got] == [m["step"] for m in expected]
    for a, b in zip(expected, got, strict=True):
        key = "train_loss" if "train_loss" in a else "val_loss"
        assert b[key] == pytest.approx(a[key], rel=1e-12), a["step"]


def test_progress_after_a_resume_counts_this_process_steps_only(tmp_path):
    out = tmp_path / "out"
    # steps 5 and 6 take 0.15 s each, then Ctrl-C: the loss window holds them at the checkpoint
    with pytest.raises(MlxtuneError, match="after step 6"):
        loop_run(out, slow=0.15, fail_at=7)
    lines: list[str] = []
    result, _ = loop_run(out, lines)
    report = next(m for m in read_jsonl(out / "metrics.jsonl") if m.get("step") == 8)
    # steps 7 and 8 of this process are fast (a millisecond); mixed with 5 and 6 it reads < 14
    assert report["steps_per_second"] > 20, report
    line = next(line for line in lines if "step     8/24  loss" in line)
    assert "eta 0m00s" in line, line
    # the loss is still the mean over steps 5..8, as an unbroken run reports it
    bigram_run(tmp_path / "unbroken")
    expected = next(
        m for m in read_jsonl(tmp_path / "unbroken" / "metrics.jsonl") if m["step"] == 8
    )
    assert report["train_loss"] == pytest.approx(expected["train_loss"], rel=1e-12)
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["resumed_at"] == 6 and result.extra["resumed_at"] == 6


# ---------------------------------------------------------------- non-finite training


@pytest.mark.slow
def test_a_run_whose_numbers_turn_nan_stops_and_keeps_the_last_finite_checkpoint(
    tmp_path, tiny_model, reference
):
    from mlxtune.train.mlx_trainer import MlxTrainer

    data, _ = reference
    # what validation now refuses, forced past it: the runtime guard must hold on its own
    options = MlxTrainer.Options(**MLX).model_copy(update={"learning_rate": math.inf})
    out = tmp_path / "out"
    with pytest.raises(MlxtuneError) as info:
        MlxTrainer(options).train(str(tiny_model), data, out, log=lambda _: None)
    message = str(info.value)
    assert "diverged at step 2 of 8" in message and "not finite" in message
    assert "train.learning_rate" in message and "step 0 (the last finite one)" in message
    assert "\n" not in message
    state = json.loads((out / "checkpoint" / "state.json").read_text())
    assert state["step"] == 0
    weights = load_file(out / "checkpoint" / "last.safetensors")
    moments = load_file(out / "checkpoint" / "optimizer.safetensors")
    moments.pop("learning_rate")  # the forced rate itself
    assert all(np.isfinite(v).all() for v in [*weights.values(), *moments.values()])
    assert not (out / "train_summary.json").exists()
    assert all(math.isfinite(m.get("train_loss", 0.0)) for m in read_jsonl(out / "metrics.jsonl"))


RECIPE = """\
name: faults
papers: papers
run_dir: run
model:
  tiny: {{hidden_size: 64, num_layers: 2, vocab_size: 600}}
split: {{per_category: {{valid: 1, test: 0}}}}
train: {{use: mlx, iters: 8, batch_size: 2, learning_rate: 3.0e-3, lora_rank: 8,
        lora_scale: 2.0, num_layers: -1, eval_every: 0.25, sample_max_tokens: 0}}
ask: {{max_tokens: 8}}
"""


def cli_run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, " ".join(result.output.split())


@pytest.mark.slow
def test_recipe_run_fails_on_nan_training_and_writes_no_adapter(tmp_path, papers_dir):
    # valid options that overflow float16 on the tiny model: the gradient turns non-finite
    recipe = write_recipe(tmp_path / "r.yaml", RECIPE.format())
    overrides = ["train.dtype=float16", "train.learning_rate=1.0", "train.lora_scale=1000"]
    code, out = cli_run("recipe", "run", str(recipe), *overrides)
    assert code == 2, out
    assert "training diverged at step" in out and "lower train.learning_rate" in out, out
    assert "✓ train" not in out and "Traceback" not in out
    assert not (tmp_path / "run" / "adapters").exists()
    assert not (tmp_path / "run" / "answers.jsonl").exists()


@pytest.mark.slow
def test_recipe_run_resumes_an_interrupted_evaluation_and_force_train_gets_past_damage(
    tmp_path, papers_dir, monkeypatch
):
    recipe = write_recipe(tmp_path / "r.yaml", RECIPE.format())
    partial = tmp_path / "run" / "adapters.partial"
    with monkeypatch.context() as patch:
        interrupt_evaluation(patch, 3)  # evaluations at 0, 2, 4: Ctrl-C during step 4's
        code, out = cli_run("recipe", "run", str(recipe))
    assert code == 2 and "interrupted at step 4" in out, out
    code, out = cli_run("recipe", "run", str(recipe))
    assert code == 0, out
    assert "4 steps (resumed at step 4; 8 in all)" in out, out  # this process's steps
    steps = [s for s, _ in evals(tmp_path / "run" / "adapters")]
    assert steps == [0, 2, 4, 6, 8]

    # a truncated adapter in the checkpoint of a forced re-run: reported, set aside, trained
    with monkeypatch.context() as patch:
        interrupt_evaluation(patch, 3)
        code, out = cli_run("recipe", "run", str(recipe), "--force", "train")
    assert code == 2 and (partial / "checkpoint" / "state.json").is_file()
    truncate(partial / "checkpoint" / "last.safetensors")
    code, out = cli_run("recipe", "run", str(recipe), "--force", "train")
    assert code == 0, out
    assert "damaged checkpoint" in out and "last.safetensors" in out and "✓ train" in out
    assert "8 steps in" in out
    (moved,) = sorted((tmp_path / "run").glob("checkpoint.damaged-*"))
    assert (moved / "last.safetensors").is_file()
    assert not list((tmp_path / "run" / "adapters").glob("checkpoint*"))
