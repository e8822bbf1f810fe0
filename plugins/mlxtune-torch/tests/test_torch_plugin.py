"""The torch trainer and backend on a tiny model, on CPU: training, parity with mlx, adapter
conversion both ways, discovery and errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from mlxtune.cli import cli
from mlxtune.errors import MlxtuneError

pytest.importorskip("mlxtune_torch", reason="pip install torch==2.13.0 -e plugins/mlxtune-torch")

pytest_plugins = ["torch_support"]  # the fixtures

from torch_support import train_mlx, train_torch, write_papers  # noqa: E402


@pytest.mark.slow
def test_torch_trains_lowers_val_loss_and_keeps_the_best(tiny_model, data_dir, tmp_path):
    result, metrics = train_torch(tiny_model, data_dir, tmp_path / "a")
    evals = [m for m in metrics if "val_loss" in m]
    assert result.best_val_loss < evals[0]["val_loss"]
    assert result.best_step == min(evals, key=lambda m: m["val_loss"])["step"]
    train = [m["train_loss"] for m in metrics if "train_loss" in m]
    assert train[-1] < train[0]
    out = tmp_path / "a"
    assert (out / "peft" / "adapter_model.safetensors").is_file()
    config = json.loads((out / "adapter_config.json").read_text())  # mlx-lm format too
    assert config["lora_parameters"]["scale"] == pytest.approx(2.0)
    assert json.loads((out / "peft" / "adapter_config.json").read_text())["lora_alpha"] == 16
    assert not (out / "checkpoint").exists()


@pytest.mark.slow
def test_same_weights_same_initial_validation_loss_in_mlx_and_torch(tiny_model, data_dir, tmp_path):
    _, mlx_metrics = train_mlx(tiny_model, data_dir, tmp_path / "m", iters=1, eval_every=1.0)
    _, torch_metrics = train_torch(tiny_model, data_dir, tmp_path / "t", iters=1, eval_every=1.0)
    mlx_loss = next(m["val_loss"] for m in mlx_metrics if m["step"] == 0)
    torch_loss = next(m["val_loss"] for m in torch_metrics if m["step"] == 0)
    assert torch_loss == pytest.approx(mlx_loss, rel=1e-3)


def logits_mlx(model: Path, adapter: Path, tokens: list[int]) -> np.ndarray:
    import mlx.core as mx

    from mlxtune.models.loading import load_model

    net, _ = load_model(str(model), adapter=adapter)
    return np.array(net(mx.array([tokens]))[0].astype(mx.float32))


def logits_torch(model: Path, adapter: Path, tokens: list[int]) -> np.ndarray:
    import torch
    from mlxtune_torch.backend import TorchBackend

    backend = TorchBackend()
    backend.load(str(model), adapter)
    with torch.no_grad():
        return backend.model(input_ids=torch.tensor([tokens])).logits[0].float().numpy()


@pytest.mark.slow
def test_adapter_conversion_round_trips_and_crosses_frameworks(tiny_model, data_dir, tmp_path):
    from mlx_lm.tokenizer_utils import load as load_tokenizer

    tokens = load_tokenizer(tiny_model).encode("Research question: Can batches be small?")
    # an mlx adapter -> PEFT -> mlx: the same logits in mlx; PEFT in torch: the same logits
    train_mlx(tiny_model, data_dir, tmp_path / "mlx", iters=10)
    runner = CliRunner()
    result = runner.invoke(
        cli, ["adapter", "convert", str(tmp_path / "mlx"), str(tmp_path / "peft")]
    )
    assert result.exit_code == 0 and "peft adapter written" in result.output, result.output
    result = runner.invoke(
        cli, ["adapter", "convert", str(tmp_path / "peft"), str(tmp_path / "back")]
    )
    assert result.exit_code == 0, result.output
    original = logits_mlx(tiny_model, tmp_path / "mlx", tokens)
    assert np.allclose(logits_mlx(tiny_model, tmp_path / "back", tokens), original, atol=1e-5)
    assert np.allclose(logits_torch(tiny_model, tmp_path / "peft", tokens), original, atol=1e-3)

    # a PEFT adapter trained by torch, loaded in mlx (through its mlx-format export)
    train_torch(tiny_model, data_dir, tmp_path / "t", iters=10)
    in_torch = logits_torch(tiny_model, tmp_path / "t" / "peft", tokens)
    assert np.allclose(logits_mlx(tiny_model, tmp_path / "t", tokens), in_torch, atol=1e-3)
    assert not np.allclose(in_torch, original, atol=1e-3)  # a different adapter: a real check


@pytest.mark.slow
def test_recipe_switched_to_torch_and_asked_with_either_backend(tiny_model, tmp_path):
    from mlxtune.formatters.builtin import ApproachFormatter

    write_papers(tmp_path / "papers", {"c": 4})
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        f"name: r\npapers: papers\nrun_dir: run\nmodel: {{path: '{tiny_model}'}}\n"
        "train: {use: mlx, iters: 6, batch_size: 2, lora_rank: 4, eval_every: 0.5, "
        "quantize_group_size: 32, sample_max_tokens: 0}\nask: {max_tokens: 8}\n"
    )
    result = CliRunner().invoke(cli, ["recipe", "run", str(recipe), "train.use=torch"])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "run" / "adapters" / "train_summary.json").read_text())
    assert summary["device"] == "cpu" and summary["steps"] == 6
    question = ApproachFormatter().prompt("Is it hard?").prompt
    answers = {}
    for backend in ("torch", "mlx"):
        result = CliRunner().invoke(
            cli, ["ask", question, "--recipe", str(recipe), "--backend", backend, "--json"]
        )
        assert result.exit_code == 0, result.output
        answers[backend] = json.loads(
            next(line for line in result.stdout.splitlines() if line.startswith("{"))
        )
    # the torch-trained adapter, asked greedily through either framework: the same answer,
    # ended for the same reason
    assert answers["torch"]["answer"] == answers["mlx"]["answer"]
    assert answers["torch"]["finish_reason"] == answers["mlx"]["finish_reason"]
    assert answers["mlx"]["finish_reason"] in ("stop", "length")
    served = serve_answer(recipe, question, backend="torch")
    assert served["choices"][0]["message"]["content"] == answers["torch"]["answer"]


def serve_answer(recipe, question: str, backend: str) -> dict:
    """`mlxtune serve --recipe R --backend B` in its own process (the torch plugin found
    through its entry point), answering one chat request; a request over the context is a 400
    (the context comes from the transformers config)."""
    import os
    import re
    import subprocess
    import sys
    import urllib.error
    import urllib.request
    from pathlib import Path

    command = [str(Path(sys.executable).with_name("mlxtune")), "serve", "--recipe", str(recipe)]
    process = subprocess.Popen(
        [*command, "--backend", backend, "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "MLXTUNE_DISABLE_PLUGIN_AUTOLOAD"},
    )
    try:
        line = process.stdout.readline()
        base = re.search(r"at (http://\S+/v1)", line)
        assert base, line + process.stderr.read()

        def post(body: dict) -> tuple[int, dict]:
            request = urllib.request.Request(
                f"{base.group(1)}/chat/completions",
                json.dumps(body).encode(),
                {"Content-Type": "application/json"},
            )
            try:
                with urllib.request.urlopen(request, timeout=120) as response:
                    return response.status, json.loads(response.read())
            except urllib.error.HTTPError as exc:
                return exc.code, json.loads(exc.read())

        messages = [{"role": "user", "content": question}]
        status, too_long = post({"messages": messages, "max_tokens": 10**6})
        assert status == 400 and "context" in too_long["error"]["message"], too_long
        status, reply = post({"messages": messages, "response_format": {"type": "json_object"}})
        assert status == 400 and "response_format" in reply["error"]["message"]
        status, reply = post({"messages": messages})
        assert status == 200, reply
        return reply
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.mark.slow
def test_plugins_lists_torch_and_quantize_off_cuda_is_a_clear_error(tiny_model, data_dir, tmp_path):
    result = CliRunner().invoke(cli, ["plugins"])
    assert "torch" in result.output and "mlxtune-torch" in result.output
    with pytest.raises(MlxtuneError, match="needs bitsandbytes on a CUDA GPU"):
        train_torch(tiny_model, data_dir, tmp_path / "q", quantize=4)
