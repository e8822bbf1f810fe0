"""`mlxtune push` (issue 28): the folder a dry run writes (adapter in mlx-lm and PEFT formats,
a card huggingface_hub parses, the report), and a real upload through huggingface_hub to a
loopback server at HF_ENDPOINT that records the calls."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner
from conftest import write_recipe
from hub_server import HubServer

from mlxtune.cli import cli

RECIPE = """\
name: tuned
description: a tiny tuned model for the push test
papers: papers
run_dir: runs/tuned
model: {{path: {model}}}
split: {{per_category: {{valid: 1}}}}
format: {{use: approach}}
train: {{use: mlx, iters: 4, batch_size: 2, lora_rank: 4, num_layers: -1, eval_every: 0.5,
        sample_max_tokens: 0}}
ask: {{max_tokens: 6}}
evaluate: {{recall: 1, heldout: 1, unseen: false}}
"""


@pytest.fixture
def trained(tmp_path, papers_dir, tiny_model):
    recipe = write_recipe(tmp_path / "tuned.yaml", RECIPE.format(model=tiny_model))
    result = CliRunner().invoke(cli, ["compare", str(recipe)])  # trains, reports, writes a card
    assert result.exit_code == 0, result.output
    return recipe


@pytest.mark.slow
def test_push_dry_run_and_upload_to_a_loopback_hub(trained, tmp_path, tiny_model):
    from huggingface_hub import ModelCard

    result = CliRunner().invoke(
        cli,
        ["push", "--recipe", str(trained), "--repo", "me/tuned", "--dry-run",
         "--base-model", "HuggingFaceTB/SmolLM2-135M-Instruct", "--license", "apache-2.0"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    folder = tmp_path / "runs" / "tuned" / "hub"
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    assert files == [
        "README.md", "adapter_config.json", "adapters.safetensors",
        "peft/adapter_config.json", "peft/adapter_model.safetensors",
        "report/loss_curves.png", "report/report.html", "report/report.json", "report/report.md",
    ]  # fmt: skip
    card = ModelCard.load(folder / "README.md")  # huggingface_hub's own parser
    assert card.data.base_model == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert card.data.license == "apache-2.0" and card.data.library_name == "mlx"
    assert "mlxtune" in card.data.tags and "## Evaluation" in card.text
    peft = json.loads((folder / "peft" / "adapter_config.json").read_text())
    assert peft["peft_type"] == "LORA"

    bad = CliRunner().invoke(cli, ["push", "--recipe", str(trained), "--repo", "no-slash"])
    assert bad.exit_code != 0 and "expected user/name" in bad.output

    with HubServer() as hub:
        env = {
            **os.environ,
            "HF_ENDPOINT": hub.url,
            "HF_TOKEN": "hf_loopback",
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "MLXTUNE_DISABLE_PLUGIN_AUTOLOAD": "1",
        }
        env.pop("HF_HUB_OFFLINE", None)
        done = subprocess.run(
            [sys.executable, "-m", "mlxtune", "push", "--recipe", str(trained),
             "--repo", "me/tuned", "--private", "--license", "apache-2.0"],
            capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path,
        )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"pushed: {hub.url}/me/tuned/commit/" in done.stdout
    paths = [c["path"] for c in hub.calls]
    assert paths[0] == "/api/validate-yaml"  # the Hub's check of the card, before any upload
    assert hub.calls[0]["json"]["content"] == (folder / "README.md").read_text()
    create = next(c for c in hub.calls if c["path"] == "/api/repos/create")
    assert create["json"]["visibility"] == "private" and create["auth"] == "Bearer hf_loopback"
    assert any(p.startswith("/api/models/me/tuned/commit/main") for p in paths)
    assert sorted(hub.files) == files  # every file arrived, byte for byte
    for name, data in hub.files.items():
        assert data == (folder / name).read_bytes(), name
