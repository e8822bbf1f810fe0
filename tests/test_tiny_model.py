from __future__ import annotations

import json

from click.testing import CliRunner

from mlxtune.cli import cli


def test_model_tiny_command_writes_a_model_mlx_lm_loads(tmp_path):
    text = tmp_path / "corpus.txt"
    text.write_text("Segmentation networks predict a label for every pixel. " * 20)
    out = tmp_path / "tiny"
    result = CliRunner().invoke(cli, ["model", "tiny", str(out), "--text", str(text)])
    assert result.exit_code == 0, result.output

    from mlx_lm import load

    model, tokenizer = load(str(out))
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "qwen2"
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert tokenizer.eos_token_id == im_end and im_end in tokenizer.eos_token_ids
    rendered = tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], add_generation_prompt=True, tokenize=False
    )
    assert rendered == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    ids = tokenizer.encode("Segmentation networks")
    assert tokenizer.decode(ids) == "Segmentation networks"
    assert len(model.layers) == 2


def test_same_seed_same_weights(tmp_path):
    from mlxtune.models.tiny import build_tiny_model

    a = build_tiny_model(tmp_path / "a", seed=3)
    b = build_tiny_model(tmp_path / "b", seed=3)
    assert (a / "model.safetensors").read_bytes() == (b / "model.safetensors").read_bytes()
    c = build_tiny_model(tmp_path / "c", seed=4)
    assert (c / "model.safetensors").read_bytes() != (a / "model.safetensors").read_bytes()
