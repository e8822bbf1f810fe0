"""Data parallel under `mlx.launch` (train/mlx_distributed.py), for real: two processes on
loopback with MLX's ring backend end with the same losses and the same adapter as one process
with the same global batch."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_training import make_data

from mlxtune.records import read_jsonl

WORKER = Path(__file__).with_name("mlx_launch_worker.py")
OPTIONS = {
    "iters": 4,
    "batch_size": 4,
    "learning_rate": 5e-3,
    "lora_rank": 4,
    "lora_scale": 2.0,
    "num_layers": -1,
    "eval_every": 0.5,
    "steps_per_report": 1,
    "sample_max_tokens": 0,
}


def free_port_pair() -> int:
    """A port whose successor is free too (the ring backend takes one port per rank)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        try:
            with socket.socket() as s:
                s.bind(("127.0.0.1", port + 1))
            return port
        except OSError:
            continue
    raise RuntimeError("no two free ports in a row")


def launch(command: list[str], timeout: float = 600, check: bool = True) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE")}
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    assert done.returncode == 0 or not check, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def two_ranks(*args: str, check: bool = True) -> str:
    """The worker under `mlx.launch -n 2 --backend ring` on loopback."""
    launcher = Path(sys.executable).with_name("mlx.launch")
    ring = ["-n", "2", "--backend", "ring", "-p", str(free_port_pair())]
    command = [str(launcher), *ring, "--python", sys.executable, str(WORKER), *args]
    return launch(command, check=check)


def assert_same_training(one: Path, two: Path) -> None:
    """The same metrics (losses to 1e-5) and adapter: each array within 1e-4 of its norm, and no
    coordinate further than 1% of one step (the learning rate). Adam moves every coordinate by
    about the learning rate whatever its gradient's size, so the last-bit differences of summing
    the gradients on two ranks move a weight by a fraction of a step, not of the weight: 8.7e-7
    here, 4.9e-6 on another x86 machine, against 5e-5 allowed (a bound of 1e-5 of each array's
    largest value, 1.5e-6, failed there)."""
    (metrics_one, weights_one), (metrics_two, weights_two) = trained(one), trained(two)
    assert [m["step"] for m in metrics_one] == [m["step"] for m in metrics_two]
    for a, b in zip(metrics_one, metrics_two, strict=True):
        for key in ("train_loss", "val_loss"):
            if key in a:
                assert b[key] == pytest.approx(a[key], rel=1e-5), (key, a["step"])
    losses = [m["train_loss"] for m in metrics_one if "train_loss" in m]
    assert len(set(losses)) == len(losses)  # it trained: every step's loss differs
    assert set(weights_one) == set(weights_two) and weights_one
    step = OPTIONS["learning_rate"]
    for name, want in weights_one.items():
        difference = weights_two[name] - want
        assert np.linalg.norm(difference) <= 1e-4 * np.linalg.norm(want), name
        assert np.abs(difference).max() <= 1e-2 * step, name


def trained(out: Path) -> tuple[list[dict], dict]:
    import mlx.core as mx

    metrics = list(read_jsonl(out / "metrics.jsonl"))
    weights = {k: np.array(v) for k, v in mx.load(str(out / "adapters.safetensors")).items()}
    return metrics, weights


@pytest.mark.slow
@pytest.mark.parametrize(("accumulation", "optimizer"), [(1, "adamw"), (2, "sgd")])
def test_two_ranks_train_as_one_process_with_the_same_global_batch(
    tiny_model, tmp_path, accumulation, optimizer
):
    """Rows of different lengths, so the ranks learn different token counts (their mean
    gradients are weighted by them). With accumulation, one row per rank and micro-batch, and
    SGD: Adam divides by the root of tiny second moments, which turns the last-bit differences
    of padded vs unpadded matmuls into 2e-5 of a weight on some coordinates."""
    data = make_data(tmp_path, n_train=10, n_valid=5)
    options = {**OPTIONS, "grad_accumulation_steps": accumulation, "optimizer": optimizer}
    if accumulation > 1:
        options["batch_size"] = 2
    args = [str(tiny_model), str(data)]
    launch([sys.executable, str(WORKER), *args, str(tmp_path / "one"), json.dumps(options)])
    out = two_ranks(*args, str(tmp_path / "two"), json.dumps(options))
    assert "x 2 processes" in out  # the ranks really formed a group of two
    assert_same_training(tmp_path / "one", tmp_path / "two")
    assert not any((tmp_path / "two-rank1").iterdir())  # rank 1 wrote nothing
    summary = json.loads((tmp_path / "two" / "train_summary.json").read_text())
    assert summary["processes"] == 2


@pytest.mark.slow
def test_a_launch_resumes_from_rank_0s_checkpoint_alone(tiny_model, tmp_path):
    """Ctrl-C at step 3 on both ranks, then the launch again: rank 0 resumes from its checkpoint
    (after step 2) and sends the state, adapter and optimizer to rank 1, whose own folder (another
    Mac's disk) has none; the run ends as an unbroken one-process run."""
    data = make_data(tmp_path, n_train=10, n_valid=5)
    options = json.dumps({**OPTIONS, "iters": 6, "eval_every": 0.34})  # evaluations at 2, 4, 6
    args = [str(tiny_model), str(data)]
    launch([sys.executable, str(WORKER), *args, str(tmp_path / "one"), options])
    # (mlx.launch exits 0 whatever its ranks do: the workers print what stopped them)
    out = two_ranks(*args, str(tmp_path / "two"), options, "3", check=False)
    assert (
        out.count("stopped: training interrupted at step 3 of 6; checkpoint saved after step 2")
        == 2
    )
    assert (tmp_path / "two" / "checkpoint" / "state.json").is_file()
    assert not (tmp_path / "two-rank1" / "checkpoint").exists()
    out = two_ranks(*args, str(tmp_path / "two"), options)
    assert "resuming from the checkpoint at step 2 of 6" in out
    assert_same_training(tmp_path / "one", tmp_path / "two")


@pytest.mark.slow
def test_a_recipe_trains_under_mlx_launch(tmp_path, papers_dir):
    """The pipeline in a launch: the data prepared in one process, then `mlx.launch -n 2`
    trains (rank 0 alone writes and reports) and leaves the later stages for one process."""
    from click.testing import CliRunner
    from conftest import write_recipe

    from mlxtune.cli import cli

    recipe = write_recipe(
        tmp_path / "r.yaml",
        "name: launched\npapers: papers\nrun_dir: run\n"
        "model: {tiny: {hidden_size: 64, num_layers: 2, vocab_size: 600}}\n"
        "split: {per_category: {valid: 1, test: 0}}\n"
        "train: {use: mlx, iters: 6, batch_size: 2, eval_every: 0.5, sample_max_tokens: 0}\n",
    )
    prepared = CliRunner().invoke(cli, ["recipe", "run", str(recipe), "--until", "model"])
    assert prepared.exit_code == 0, prepared.output
    launcher = Path(sys.executable).with_name("mlx.launch")
    command = ["-n", "2", "--backend", "ring", "-p", str(free_port_pair()), "--"]
    out = launch(
        [str(launcher), *command, sys.executable, "-m", "mlxtune", "recipe", "run"] + [str(recipe)]
    )
    assert out.count("training 6 steps x 2 processes") == 1, out  # rank 1 is quiet
    assert "ask       not run in a launch of 2 processes" in out
    run = tmp_path / "run"
    assert (run / "adapters" / "adapters.safetensors").is_file()
    assert json.loads((run / "adapters" / "train_summary.json").read_text())["processes"] == 2
    manifest = json.loads((run / "manifest.json").read_text())
    assert "train" in manifest["stages"] and "ask" not in manifest["stages"]
