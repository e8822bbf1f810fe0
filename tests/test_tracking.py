"""Experiment tracking (mlxtune.track), offline and for real: a recipe run sends its losses,
learning rate, speed, memory, samples and resolved recipe to TensorBoard, MLflow and W&B, each
read back with its own reader; a tracker that fails is one warning, never a failed run."""

from __future__ import annotations

import glob
import importlib
import os
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import write_recipe

from mlxtune.cli import cli
from mlxtune.records import read_jsonl

pytestmark = pytest.mark.slow

RECIPE = """\
name: tracked
papers: papers
run_dir: run
model:
  tiny: {{hidden_size: 64, num_layers: 2, vocab_size: 600}}
split: {{per_category: {{valid: 1, test: 0}}}}
train: {{use: mlx, iters: 6, batch_size: 2, learning_rate: 3.0e-3, eval_every: 0.5,
        steps_per_report: 3, sample_max_tokens: 6}}
track: {track}
"""


def need(module: str):
    """The tracker's library; a skip without it, unless CI installed it (then it must run)."""
    if os.environ.get("MLXTUNE_REQUIRE_TRACKERS"):
        return importlib.import_module(module)
    return pytest.importorskip(module)


def run_recipe(tmp_path, track: str):
    recipe = write_recipe(tmp_path / "r.yaml", RECIPE.format(track=track))
    result = CliRunner().invoke(cli, ["recipe", "run", str(recipe), "--until", "train"])
    return result.exit_code, result.output


def test_tensorboard_mlflow_and_wandb_get_the_run(tmp_path, papers_dir, monkeypatch):
    for module in ("tensorboard", "mlflow", "wandb"):
        need(module)
    from mlflow import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.util import tensor_util

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 asks for a database
    monkeypatch.setenv("WANDB_SILENT", "true")
    store = f"file:{tmp_path / 'mlruns'}"
    track = (
        f"[tensorboard, {{use: mlflow, tracking_uri: '{store}', experiment: tests}}, "
        "{use: wandb, mode: offline, project: tests}]"
    )
    code, out = run_recipe(tmp_path, track)
    assert code == 0, out
    assert "warning" not in out.lower(), out
    metrics = list(read_jsonl(tmp_path / "run" / "adapters" / "metrics.jsonl"))
    reports = [m for m in metrics if "train_loss" in m]
    evals = [m for m in metrics if "val_loss" in m]
    assert [m["step"] for m in reports] == [3, 6] and [m["step"] for m in evals] == [0, 3, 6]

    # TensorBoard, through its own event reader
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    loss = events.Scalars("train/loss")
    assert [e.step for e in loss] == [3, 6]
    assert [e.value for e in loss] == pytest.approx([m["train_loss"] for m in reports])
    for tag in ("train/learning_rate", "train/tokens_per_second", "train/peak_memory_gb"):
        assert len(events.Scalars(tag)) == 2, tag
    val = events.Scalars("eval/loss")
    assert [e.value for e in val] == pytest.approx([m["val_loss"] for m in evals])
    samples = [tensor_util.make_ndarray(e.tensor_proto) for e in events.Tensors("eval/sample")]
    assert [s.item().decode() for s in samples] == [m["sample"] for m in evals]
    recipe_text = tensor_util.make_ndarray(events.Tensors("recipe")[0].tensor_proto)
    assert '"name": "tracked"' in recipe_text.item().decode()

    # MLflow, through its client on the file store
    client = MlflowClient(tracking_uri=store)
    experiment = client.get_experiment_by_name("tests")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.run_name == "tracked" and run.info.status == "FINISHED"
    history = client.get_metric_history(run.info.run_id, "train/loss")
    assert [h.step for h in history] == [m["step"] for m in reports]
    assert [h.value for h in history] == pytest.approx([m["train_loss"] for m in reports])
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"recipe.json", "eval"} <= artifacts
    recipe = client.download_artifacts(run.info.run_id, "recipe.json", str(tmp_path))
    assert '"tracked"' in Path(recipe).read_text()

    # W&B, offline: its run folder, whose record file holds the logged keys and values
    (record_file,) = glob.glob(str(tmp_path / "run" / "wandb" / "offline-run-*" / "run-*.wandb"))
    raw = Path(record_file).read_bytes()
    assert b"train/loss" in raw and b"eval/sample" in raw and b"tracked" in raw
    assert repr(reports[-1]["train_loss"]).encode() in raw


def test_a_failing_tracker_is_one_warning_and_the_run_goes_on(tmp_path, papers_dir, monkeypatch):
    """A server that is down, and a tracker whose library is missing."""
    import sys

    need("mlflow")
    monkeypatch.setitem(sys.modules, "tensorboard.summary.writer.event_file_writer", None)
    down = "{use: mlflow, tracking_uri: 'http://127.0.0.1:9', experiment: x}"
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    code, out = run_recipe(tmp_path, f"[tensorboard, {down}]")
    assert code == 0, out
    assert (tmp_path / "run" / "adapters" / "adapters.safetensors").is_file()
    text = " ".join(out.split())
    assert text.count("warning: tracker") == 2, out
    assert "tracker 'tensorboard' failed to start (ImportError" in text
    assert "pip install 'mlxtune[tensorboard]'" in text
    assert "tracker 'mlflow' failed to start" in text


def test_an_unknown_tracker_is_a_recipe_error(tmp_path, papers_dir):
    code, out = run_recipe(tmp_path, "[tensorbored]")
    assert code != 0
    assert "track.0.use: unknown tracker 'tensorbored' (did you mean 'tensorboard'?)" in " ".join(
        out.split()
    )
