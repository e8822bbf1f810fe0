"""The torch plugin across processes and runs: a two-process launch, the repetition rules and
the schedule it shares with mlx, and resuming after SIGKILL."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from mlxtune.cli import cli
from mlxtune.records import read_jsonl

pytest.importorskip("mlxtune_torch", reason="pip install torch==2.13.0 -e plugins/mlxtune-torch")

pytest_plugins = ["torch_support"]  # the fixtures

from torch_support import COMMON, train_mlx, train_torch, write_papers  # noqa: E402


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_two_process_launch_trains_like_one_process(tiny_model, tmp_path):
    """torchrun (what `accelerate launch` runs) with 2 CPU processes on gloo: the same losses
    as one process, step for step, and the same adapter, written once. SGD, because its step is
    proportional to the gradient (Adam's is not: a halved gradient moved Adam's losses by 3e-7),
    and two micro-batches per step, so the no_sync path of gradient accumulation is covered."""
    write_papers(tmp_path / "papers", {"a": 4, "b": 4})
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        f"name: r\npapers: papers\nrun_dir: run\nmodel: {{path: '{tiny_model}'}}\n"
        "split: {per_category: {valid: 1, test: 0}}\n"
        "train: {use: torch, iters: 6, batch_size: 2, grad_accumulation_steps: 2, "
        "optimizer: sgd, lora_rank: 4, eval_every: 0.5, learning_rate: 0.5, lora_scale: 2.0, "
        "steps_per_report: 2}\n"
    )
    result = CliRunner().invoke(cli, ["recipe", "run", str(recipe), "--until", "model"])
    assert result.exit_code == 0, result.output
    shutil.copytree(tmp_path / "run", tmp_path / "single")
    result = CliRunner().invoke(
        cli, ["recipe", "run", str(recipe), f"run_dir={tmp_path / 'single'}", "--only", "train"]
    )
    assert result.exit_code == 0, result.output

    launch = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nnodes=1",
            "--nproc-per-node=2",
            "--master-addr=127.0.0.1",
            f"--master-port={free_port()}",
            "-m",
            "mlxtune",
            "recipe",
            "run",
            str(recipe),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert launch.returncode == 0, launch.stdout[-3000:] + launch.stderr[-3000:]
    assert launch.stdout.count("ask it:") == 1, launch.stdout  # rank 1 prints nothing
    assert "not run in a launch of 2 processes" in launch.stdout  # ask: left for one process

    summary = json.loads((tmp_path / "run" / "adapters" / "train_summary.json").read_text())
    assert summary["processes"] == 2 and summary["steps"] == 6
    one = list(read_jsonl(tmp_path / "single" / "adapters" / "metrics.jsonl"))
    two = list(read_jsonl(tmp_path / "run" / "adapters" / "metrics.jsonl"))
    assert [sorted(m) for m in one] == [sorted(m) for m in two]
    for a, b in zip(one, two, strict=True):
        for key in ("val_loss", "train_loss"):
            if key in a:
                assert b[key] == pytest.approx(a[key], rel=1e-4), (a, b)
    losses = [m["val_loss"] for m in two if "val_loss" in m]
    assert min(losses[1:]) < losses[0] - 0.05  # it trained
    from safetensors.numpy import load_file

    single = load_file(tmp_path / "single" / "adapters" / "adapters.safetensors")
    double = load_file(tmp_path / "run" / "adapters" / "adapters.safetensors")
    assert set(single) == set(double)
    for name, value in single.items():
        assert np.allclose(double[name], value, rtol=1e-4, atol=1e-6), name
    assert (tmp_path / "run" / "adapters" / "peft" / "adapter_model.safetensors").is_file()
    assert (tmp_path / "run" / "adapters" / "adapters.safetensors").is_file()


@pytest.mark.slow
def test_torch_backend_applies_the_same_repetition_rules_as_mlx(tiny_model):
    """The random tiny model loops under greedy decoding: the loop detector ends the answer
    with finish reason "loop" at the same token as the mlx backend, and the n-gram ban holds."""
    from mlxtune_torch.backend import TorchBackend

    from mlxtune.backends.mlx_backend import MlxBackend
    from mlxtune.components import Sampling
    from mlxtune.evaluate.metrics import ngrams
    from mlxtune.records import Example

    prompt = Example(prompt="Research question: how can we segment cells?\nApproach:")
    torch_backend, mlx_backend = TorchBackend(), MlxBackend()
    torch_backend.load(str(tiny_model))
    mlx_backend.load(str(tiny_model))
    looping = Sampling(max_tokens=120, stop_loops=8)
    torch_text = "".join(torch_backend.generate(prompt, looping))
    mlx_text = "".join(mlx_backend.generate(prompt, looping))
    assert torch_backend.finish_reason == mlx_backend.finish_reason == "loop"
    assert torch_text == mlx_text
    no_repeat = Sampling(max_tokens=60, no_repeat_ngram=3)
    torch_text = "".join(torch_backend.generate(prompt, no_repeat))
    grams = ngrams(torch_backend.answer_tokens, 3)
    assert len(grams) > 30 and len(set(grams)) == len(grams)  # no 3-gram twice
    assert torch_text == "".join(mlx_backend.generate(prompt, no_repeat))


@pytest.mark.slow
def test_torch_and_mlx_trainers_apply_the_same_rates_and_learn_alike(
    tiny_model, data_dir, tmp_path
):
    """The same recipe under either trainer: identical learning-rate columns, and train losses
    that stay together (they differ only by LoRA's random initialisation, which each framework
    draws itself). Before the fix torch ran one or two updates ahead on the schedule and used
    bias-corrected Adam (3x smaller first steps than MLX's): 6.03 against 4.41 at step 20."""
    options = dict(iters=20, eval_every=1.0, steps_per_report=1, learning_rate=3e-3)
    _, mlx_metrics = train_mlx(tiny_model, data_dir, tmp_path / "m", **options)
    _, torch_metrics = train_torch(tiny_model, data_dir, tmp_path / "t", **options)

    def column(metrics, key):
        return [m[key] for m in metrics if key in m and "train_loss" in m]

    assert column(torch_metrics, "learning_rate") == pytest.approx(
        column(mlx_metrics, "learning_rate"), rel=1e-5
    )
    mlx_loss, torch_loss = column(mlx_metrics, "train_loss"), column(torch_metrics, "train_loss")
    print({"mlx": mlx_loss[::4], "torch": torch_loss[::4]})
    # per-step losses are one batch each: compare the means of the second half
    mean = lambda xs: sum(xs[10:]) / len(xs[10:])  # noqa: E731
    assert mean(torch_loss) == pytest.approx(mean(mlx_loss), rel=0.12)


def test_shared_schedule_is_mlx_lm_schedule_update_for_update():
    import mlx.core as mx
    from mlx_lm.tuner.utils import build_schedule

    from mlxtune.train.schedule import learning_rate_at

    for steps, warmup_fraction, floor in [(20, 0.05, 0.1), (100, 0.1, 0.0), (7, 0.0, 0.5)]:
        warmup = int(warmup_fraction * steps)
        schedule = build_schedule(
            {
                "name": "cosine_decay",
                "arguments": [1e-2, max(1, steps - warmup), 1e-2 * floor],
                "warmup": warmup,
            }
        )
        for update in range(steps + 3):
            want = schedule(mx.array(update)).item()
            got = learning_rate_at(update, 1e-2, steps, warmup_fraction, floor)
            assert got == pytest.approx(want, rel=1e-5, abs=1e-9), (steps, update)


TORCH_RESUME_SCRIPT = """
import sys
from pathlib import Path
from mlxtune_torch.trainer import TorchTrainer
options = TorchTrainer.Options(**{options})
TorchTrainer(options).train(sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), log=lambda _: None)
"""


@pytest.mark.slow
def test_torch_sigkill_then_resume_and_the_kept_adapter_is_the_best(tiny_model, data_dir, tmp_path):
    """The plugin's README claims resume: a run killed after a checkpoint resumes from it (only
    later steps run) and ends with the uninterrupted run's metrics. The kept PEFT adapter,
    evaluated afresh, has the best validation loss."""
    import os
    import re
    import signal
    import time

    import torch

    options = {**COMMON, "iters": 40, "eval_every": 0.1, "steps_per_report": 1}
    _, reference = train_torch(tiny_model, data_dir, tmp_path / "reference", **options)
    out = tmp_path / "resumed"
    script = TORCH_RESUME_SCRIPT.format(options=repr(options))
    process = subprocess.Popen(
        [sys.executable, "-c", script, str(tiny_model), str(data_dir), str(out)],
        env=os.environ.copy(),
    )
    state = out / "checkpoint" / "state.json"
    deadline, killed = time.monotonic() + 300, None
    while time.monotonic() < deadline and process.poll() is None:
        try:
            step = json.loads(state.read_text())["step"]
        except (OSError, ValueError, KeyError):
            step = 0
        if step >= 8:
            process.send_signal(signal.SIGKILL)
            killed = step
            break
        time.sleep(0.005)
    process.wait()
    assert killed is not None and killed < 40, "the run ended before it could be killed"
    checkpoint_step = json.loads(state.read_text())["step"]

    from mlxtune_torch.trainer import TorchTrainer

    lines: list[str] = []
    result = TorchTrainer(TorchTrainer.Options(**options)).train(
        str(tiny_model), data_dir, out, log=lines.append
    )
    assert f"resuming from the checkpoint at step {checkpoint_step} of 40" in "\n".join(lines)
    stepped = [int(m.group(1)) for m in map(re.compile(r"\s+step\s+(\d+)/").match, lines) if m]
    assert stepped and min(stepped) > checkpoint_step
    resumed = list(read_jsonl(out / "metrics.jsonl"))
    assert [m["step"] for m in resumed] == [m["step"] for m in reference]
    for a, b in zip(reference, resumed, strict=True):
        for key in ("train_loss", "val_loss", "learning_rate"):
            if key in a:
                assert b[key] == pytest.approx(a[key], rel=1e-4), (a["step"], key)

    # the kept adapter, loaded through PEFT and evaluated again, has the best validation loss
    from mlxtune_torch.backend import TorchBackend

    from mlxtune.records import Example
    from mlxtune.train.data import load_examples

    backend = TorchBackend()
    backend.load(str(tiny_model), out)
    total, count = 0.0, 0
    for example in load_examples(data_dir / "valid.jsonl"):
        prompt = Example(prompt=example.prompt)
        nll, n = backend.score(prompt, example.text[len(example.prompt or "") :])
        total, count = total + nll, count + n
    with torch.no_grad():
        assert total / count == pytest.approx(result.best_val_loss, rel=1e-3)
