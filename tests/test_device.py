"""Device-aware memory, the dtype policy, the wired limit and out-of-memory handling, on devices
simulated from `mx.device_info()` dictionaries (none of them can run here: MLX's CPU backend)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from mlxtune import device as device_module
from mlxtune.device import DeviceProfile, named_profile, profile_from_info

# recorded from real machines (public reports of `mx.device_info()`)
MAC_16GB = {  # Apple M1, macOS 13.7
    "resource_limit": 499000,
    "max_buffer_length": 8589934592,
    "architecture": "applegpu_g13g",
    "memory_size": 17179869184,
    "max_recommended_working_set_size": 11453251584,
    "device_name": "Apple M1",
}
MAC_64GB = {  # Apple M5 Max
    "device_name": "Apple M5 Max",
    "max_recommended_working_set_size": 60129542144,
    "memory_size": 68719476736,
    "architecture": "applegpu_g17s",
    "max_buffer_length": 41747087360,
    "resource_limit": 499000,
}
# MLX's CUDA backend reports these keys (mlx/backend/cuda/device_info.cpp); the sizes are what
# the cards report (24564 MiB, 81559 MiB), with a little already in use
GPU_24GB = {
    "device_name": "NVIDIA GeForce RTX 4090",
    "architecture": "sm_89",
    "total_memory": 24564 * 2**20,
    "free_memory": 24000 * 2**20,
}
GPU_80GB = {
    "device_name": "NVIDIA H100 80GB HBM3",
    "architecture": "sm_90",
    "total_memory": 81559 * 2**20,
    "free_memory": 80000 * 2**20,
}
HOST_128GB = 128e9
QWEN_1_5B = Path(__file__).parent.parent / "src/mlxtune/train/configs/Qwen2.5-1.5B.json"


def test_budgets_come_from_the_device_not_the_operating_system():
    small_mac = profile_from_info("metal", MAC_16GB)
    assert small_mac.budget == 11453251584 and small_mac.compute_dtype == "bfloat16"
    assert small_mac.budget < 0.75 * small_mac.memory  # the old fixed share was too generous
    assert profile_from_info("metal", MAC_64GB).budget == 60129542144
    gpu = profile_from_info("cuda", GPU_24GB, host=HOST_128GB)
    assert gpu.memory == 24564 * 2**20 and gpu.budget < gpu.memory  # the GPU's, not the host's
    assert gpu.compute_dtype == "bfloat16" and gpu.dtype_bytes == 2
    cpu = profile_from_info("cpu", {"device_name": "x86_64"}, host=32e9)
    assert (cpu.budget, cpu.compute_dtype) == (32e9 * 0.9, "float32")
    # planning for another machine: Metal's working set estimated below what the recordings give
    for info in (MAC_16GB, MAC_64GB):
        planned = named_profile("metal", info["memory_size"])
        assert planned.budget <= info["max_recommended_working_set_size"]
        assert planned.budget >= 0.9 * info["max_recommended_working_set_size"] or (
            info is MAC_64GB  # the M5 Max recommends 0.875 of its memory; we plan with 0.75
        )


def simulate(monkeypatch, profile: DeviceProfile) -> None:
    monkeypatch.setattr(device_module, "current_device", lambda: profile)


def qwen_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "qwen-1.5b-shape"
    folder.mkdir()
    shutil.copy(QWEN_1_5B, folder / "config.json")
    return folder


def test_auto_fit_sizes_the_gpu_not_the_hosts_memory(tmp_path, monkeypatch):
    """The default training settings on Qwen2.5-1.5B: kept on an 80 GB GPU, shrunk on a 24 GB GPU
    in a 128 GB server and on a 16 GB Mac (the old code sized this machine's RAM for all three)."""
    from mlxtune.train.autofit import fitted_options
    from mlxtune.train.mlx_trainer import MlxTrainer

    model = str(qwen_folder(tmp_path))
    options = MlxTrainer.Options(auto_fit=True)
    results = {}
    for name, profile in {
        "80GB GPU": profile_from_info("cuda", GPU_80GB, host=HOST_128GB),
        "24GB GPU": profile_from_info("cuda", GPU_24GB, host=HOST_128GB),
        "16GB Mac": profile_from_info("metal", MAC_16GB),
    }.items():
        simulate(monkeypatch, profile)
        lines: list[str] = []
        results[name] = fitted_options(model, options, lines.append)
    assert results["80GB GPU"] == options
    assert results["24GB GPU"] != options and results["16GB Mac"] != options
    assert results["24GB GPU"].grad_checkpoint  # the least lossy change first


def test_plan_reports_the_device_and_plans_bfloat16_on_a_gpu(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from mlxtune.cli import cli

    model = qwen_folder(tmp_path)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"name: r\npapers: {tmp_path}\nmodel: {{path: {model}}}\n")
    simulate(monkeypatch, profile_from_info("cuda", GPU_24GB, host=HOST_128GB))
    data = json.loads(CliRunner().invoke(cli, ["plan", str(recipe), "--json"]).output)
    assert data["device"] == "cuda" and data["compute_dtype"] == "bfloat16"
    assert data["budget_gb"] < 24564 * 2**20 / 1e9 and data["memory_gb"] == 24564 * 2**20 / 1e9
    cpu = json.loads(
        CliRunner().invoke(cli, ["plan", str(recipe), "--json", "--device", "cpu"]).output
    )
    assert cpu["compute_dtype"] == "float32"
    assert cpu["training_total_gb"] > data["training_total_gb"]  # float32 weights, activations
    mac = json.loads(
        CliRunner()
        .invoke(cli, ["plan", str(recipe), "--json", "--device", "metal", "--memory", "16GB"])
        .output
    )
    assert mac["device"] == "metal" and mac["budget_gb"] == pytest.approx(16 * 2 / 3)


def test_full_fine_tuning_is_never_offered_quantization():
    from mlxtune.train.planner import ModelShape, Setting, candidates

    shape_setting = Setting(fine_tune_type="full", batch_size=4, seq_len=2048)
    assert not any("train.quantize" in o for o, _, _ in candidates(shape_setting))
    assert any("train.quantize" in o for o, _, _ in candidates(Setting()))
    assert ModelShape.from_config(json.loads(QWEN_1_5B.read_text())).layers == 28


def test_dtype_policy_bfloat16_on_a_gpu_float32_on_the_cpu():
    from mlxtune.device import resolve_dtype

    assert resolve_dtype("auto", "gpu") == "bfloat16"
    assert resolve_dtype("auto", "cpu") == "float32"
    assert resolve_dtype("float16", "gpu") == "float16" and resolve_dtype(None, "gpu") is None


def test_the_loss_of_a_bfloat16_model_is_computed_in_float32():
    import mlx.core as mx
    import mlx.nn as nn
    import numpy as np

    from mlxtune.train.batching import Row, batch_arrays
    from mlxtune.train.losses import choose_inputs, masked_loss

    class Head(nn.Module):  # logits straight from a bfloat16 table: no other rounding
        def __init__(self):
            super().__init__()
            self.table = (mx.random.normal((64, 50000), key=mx.random.key(0)) * 4).astype(
                mx.bfloat16
            )

        def __call__(self, tokens):
            return self.table[tokens]

    rows = [Row(list(range(1, 17)), [True] * 16)]
    tokens, mask = batch_arrays(rows, max_width=16)
    _, spans = choose_inputs(mask, False)
    loss, n = masked_loss(Head(), mx.array(tokens), mx.array(spans))
    logits = np.array(Head().table.astype(mx.float32))[tokens[0, :-1]]
    targets = tokens[0, 1:]
    shifted = logits - logits.max(axis=1, keepdims=True)
    exact = np.log(np.exp(shifted).sum(axis=1)) - shifted[np.arange(len(targets)), targets]
    exact = exact[mask[0] > 0].mean()
    assert loss.dtype == mx.float32 and int(n) == 15
    assert float(loss) == pytest.approx(exact, rel=1e-5)  # in bfloat16 it is off by ~3e-4


@pytest.mark.slow
def test_bfloat16_training_on_the_cpu_keeps_the_loss_finite_and_learns(tmp_path, tiny_model):
    from test_training import make_data

    from mlxtune.records import read_jsonl
    from mlxtune.train.mlx_trainer import MlxTrainer

    make_data(tmp_path)
    options = MlxTrainer.Options(
        iters=12, batch_size=2, learning_rate=3e-3, lora_scale=2.0, num_layers=-1,
        eval_every=0.5, sample_max_tokens=0, max_seq_length=128, dtype="bfloat16",
    )  # fmt: skip
    result = MlxTrainer(options).train(str(tiny_model), tmp_path / "data", tmp_path / "out")
    metrics = list(read_jsonl(tmp_path / "out" / "metrics.jsonl"))
    losses = [m.get("train_loss", m.get("val_loss")) for m in metrics]
    assert all(math.isfinite(v) for v in losses) and result.steps == 12
    train = [m["train_loss"] for m in metrics if "train_loss" in m]
    assert train[-1] < train[0]


@pytest.mark.slow
def test_training_on_metal_wires_the_working_set_and_restores_it(tmp_path, tiny_model, monkeypatch):
    """mlx-lm's trainer wires Metal's recommended working set; so does ours, and gives the
    previous limit back. (On this CPU the call is recorded instead of made.)"""
    import mlx.core as mx
    from test_training import make_data

    from mlxtune.train import mlx_run, mlx_trainer

    calls: list[int] = []

    def record(limit: int) -> int:
        calls.append(limit)
        return 1234  # the limit before

    profile = profile_from_info("metal", MAC_16GB)
    monkeypatch.setattr(mlx_run, "current_device", lambda: profile)
    monkeypatch.setattr(mx, "set_wired_limit", record)
    make_data(tmp_path)
    options = mlx_trainer.MlxTrainer.Options(
        iters=2, batch_size=2, eval_every=1.0, sample_max_tokens=0, max_seq_length=64,
        dtype="float32",
    )  # fmt: skip
    lines: list[str] = []
    mlx_trainer.MlxTrainer(options).train(
        str(tiny_model), tmp_path / "data", tmp_path / "out", log=lines.append
    )
    assert calls == [11453251584, 1234]
    assert any("wired memory limit 11.5 GB" in line for line in lines)


def test_a_peak_over_the_budget_stops_at_once_with_the_out_of_memory_error(tmp_path):
    from test_loop import TRAIN, VALID, BigramSteps, byte_rows, options

    from mlxtune.train.loop import OutOfMemory, TrainingLoop

    class Swapping(BigramSteps):
        def peak_memory_gb(self) -> float:
            return 12.0  # what a run over a 16 GB Mac's working set would reach

    backend = Swapping(byte_rows(VALID), tmp_path)
    loop = TrainingLoop(backend, options(), byte_rows(TRAIN), tmp_path, "cfg", lambda _: None)
    loop.memory_budget = 11453251584
    with pytest.raises(OutOfMemory, match="peak memory 12.0 GB after step 1 is over the 11.5 GB"):
        loop.run()
    loop = TrainingLoop(Swapping(byte_rows(VALID), tmp_path / "b"), options(), byte_rows(TRAIN),
                        tmp_path / "b", "cfg", lambda _: None)  # fmt: skip
    loop.memory_budget = 13e9
    assert loop.run().steps == 24


def test_an_auto_fit_retry_clears_the_cache_and_keeps_the_checkpoint(tmp_path, monkeypatch):
    from mlxtune.train import mlx_trainer
    from mlxtune.train.autofit import train_fitted
    from mlxtune.train.loop import OutOfMemory

    model = str(qwen_folder(tmp_path))
    simulate(monkeypatch, profile_from_info("cuda", GPU_80GB, host=HOST_128GB))
    tried, cleared = [], []

    def attempt(options):
        tried.append(options)
        if len(tried) == 1:
            raise OutOfMemory(5, "Insufficient Memory")
        return "done"

    options = mlx_trainer.MlxTrainer.Options(auto_fit=True, batch_size=4)
    assert train_fitted(model, options, attempt, lambda _: None, clear=lambda: cleared.append(1))
    assert cleared == [1] and len(tried) == 2
    # the retry's change keeps the run's arithmetic, so its configuration (and checkpoint) holds
    (tmp_path / "data").mkdir()
    for split in ("train", "valid"):
        (tmp_path / "data" / f"{split}.jsonl").write_text('{"text": "x"}\n')

    def config(o):
        return mlx_trainer.MlxRun(o, model, tmp_path / "data", tmp_path, False, print).config_hash()

    assert config(tried[1]) == config(tried[0])
    assert config(options.model_copy(update={"lora_rank": 4})) != config(options)


def test_doctor_names_the_device_its_budget_and_dtype(monkeypatch):
    from mlxtune import doctor

    checks = doctor.device_checks(profile_from_info("cuda", GPU_24GB, host=HOST_128GB))
    detail = {c.name: c.detail for c in checks}
    assert "RTX 4090 (cuda): 25.8 GB GPU memory" in detail["device"]
    assert "host RAM" in detail["device"] and "bfloat16" in detail["dtype"]
    assert "blas" not in detail  # the BLAS check is for MLX's CPU backend
    mac = doctor.device_checks(profile_from_info("metal", MAC_16GB))
    assert "11.5 GB usable" in mac[0].detail and "working set" in mac[0].detail
    monkeypatch.setattr(doctor.platform, "system", lambda: "Darwin")
    monkeypatch.setattr(doctor.platform, "mac_ver", lambda: ("15.3", ("", "", ""), "arm64"))
    monkeypatch.setattr(doctor.platform, "machine", lambda: "arm64")
    assert doctor.mac_check().ok
    monkeypatch.setattr(doctor.platform, "machine", lambda: "x86_64")
    check = doctor.mac_check()
    assert not check.ok and "arm64 Python" in check.advice


@pytest.mark.slow
def test_mlxs_buffer_cache_is_given_back_after_each_stage(tmp_path, papers_dir, monkeypatch):
    import mlx.core as mx
    from conftest import write_recipe

    from mlxtune.pipeline import run_recipe
    from mlxtune.recipe import load_recipe

    recipe = write_recipe(
        tmp_path / "r.yaml",
        f"name: c\npapers: {papers_dir}\nrun_dir: {tmp_path / 'run'}\n"
        "model: {tiny: {hidden_size: 256, num_layers: 2}}\n",
    )
    loaded, registry = load_recipe(recipe)
    held = []
    original = mx.clear_cache

    def clear() -> None:
        held.append(mx.get_cache_memory())
        original()

    monkeypatch.setattr(mx, "clear_cache", clear)
    run_recipe(loaded, registry, until="model")
    assert held and max(held) > 0  # the tiny model's buffers were cached, then given back
    assert mx.get_cache_memory() == 0
