"""`mlxtune export`: GGUF written with llama.cpp's `gguf` package and read back by the importer
(logits), by `gguf.GGUFReader` (names, shapes, keys), and the Ollama Modelfile's template."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import write_recipe
from gguf_files import random_model, write_gguf

from mlxtune.cli import cli
from mlxtune.gguf.importing import ImportOptions, import_model

gguf = pytest.importorskip("gguf")

TEXT = "Deep networks are hard to train because activations drift, 2026."


@pytest.fixture(autouse=True)
def _models_home(tmp_path, monkeypatch):
    monkeypatch.setenv("MLXTUNE_HOME", str(tmp_path / "home"))


def logits_of(folder: Path, text: str = TEXT) -> np.ndarray:
    import mlx.core as mx
    from mlx_lm import load

    model, tokenizer = load(str(folder))
    return np.array(model(mx.array([tokenizer.encode(text)])).astype(mx.float32))


def llama_folder(tmp_path: Path, tiny_model: Path) -> Path:
    """An HF-layout llama folder: a GGUF written from a random llama model, imported."""
    vocab = json.loads((tiny_model / "config.json").read_text())["vocab_size"]
    model, config = random_model("llama", vocab_size=vocab, attention_bias=False)
    path = write_gguf(tmp_path / "llama.gguf", model, config, tiny_model / "tokenizer.json")
    return import_model(str(path), tmp_path / "llama", ImportOptions(dequantize=True))


@pytest.mark.parametrize("arch", ["qwen2", "llama"])
@pytest.mark.parametrize("quant,tolerance", [("f16", 2e-3), ("q8_0", 0.03)])
def test_export_then_import_gives_the_same_logits(tmp_path, tiny_model, arch, quant, tolerance):
    folder = tiny_model if arch == "qwen2" else llama_folder(tmp_path, tiny_model)
    result = CliRunner().invoke(
        cli, ["export", "--model", str(folder), "--quant", quant, "-o", str(tmp_path / "out")]
    )
    assert result.exit_code == 0, result.output
    exported = tmp_path / "out" / f"model-{quant}.gguf"
    back = import_model(str(exported), tmp_path / "back", ImportOptions(dequantize=False))
    want, got = logits_of(folder), logits_of(back)
    # mean error over the logits' spread: float16 rounding, or Q8_0's own error
    assert np.abs(want - got).mean() / want.std() < tolerance


def test_gguf_reader_sees_llama_cpp_names_shapes_and_keys(tmp_path, tiny_model):
    from mlxtune.gguf.gguf_export import export_gguf

    path = export_gguf(tiny_model, tmp_path / "m.gguf", "q8_0")
    reader = gguf.GGUFReader(str(path))
    config = json.loads((tiny_model / "config.json").read_text())
    layers = config["num_hidden_layers"]
    expected = set()
    for tensor in gguf.MODEL_TENSORS[gguf.MODEL_ARCH.QWEN2]:
        name = gguf.TENSOR_NAMES[tensor]
        expected |= {name.format(bid=i) for i in range(layers)} if "{bid}" in name else {name}
    names = {t.name.rsplit(".", 1)[0] for t in reader.tensors}
    assert names <= expected, names - expected
    for required in ("token_embd", "output_norm", "blk.0.attn_q", "blk.1.ffn_down"):
        assert required in names
    assert "output" not in names  # tied embeddings: llama.cpp ties when it is absent
    shapes = {t.name: [int(x) for x in t.shape] for t in reader.tensors}
    assert shapes["token_embd.weight"] == [config["hidden_size"], config["vocab_size"]]
    keys = set(reader.fields)
    for key in (
        "general.architecture",
        "qwen2.block_count",
        "qwen2.embedding_length",
        "qwen2.attention.head_count_kv",
        "qwen2.rope.freq_base",
        "tokenizer.ggml.model",
        "tokenizer.ggml.pre",
        "tokenizer.ggml.tokens",
        "tokenizer.ggml.merges",
        "tokenizer.ggml.token_type",
        "tokenizer.ggml.eos_token_id",
        "tokenizer.chat_template",
    ):
        assert key in keys, key
    types = {t.name: t.tensor_type for t in reader.tensors}
    assert types["blk.0.attn_q.weight"] == gguf.GGMLQuantizationType.Q8_0
    assert types["blk.0.attn_norm.weight"] == gguf.GGMLQuantizationType.F32


def test_ollama_export_template_is_the_formatters_prompt(tmp_path, tiny_model, papers_dir):
    from transformers import AutoTokenizer

    from mlxtune.formatters.builtin import ApproachFormatter, ChatFormatter
    from mlxtune.gguf.gguf_export import prompt_template

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model))
    question = "How can cells be segmented?"
    approach = prompt_template(ApproachFormatter(), tokenizer)
    assert (
        approach.replace("{{ .Prompt }}", question) == ApproachFormatter().prompt(question).prompt
    )
    chat = prompt_template(ChatFormatter(), tokenizer)
    messages = ChatFormatter().prompt(question).messages
    rendered = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert chat.replace("{{ .Prompt }}", question) == rendered

    recipe = write_recipe(
        tmp_path / "r.yaml",
        f"name: r\npapers: {papers_dir}\nrun_dir: {tmp_path / 'run'}\n"
        f"model: {{path: {tiny_model}}}\ntrain: {{use: none}}\nformat: {{use: chat}}\n"
        "ask: {max_tokens: 90, repetition_penalty: 1.1}\n",
    )
    result = CliRunner().invoke(
        cli, ["export", "--recipe", str(recipe), "--to", "ollama", "-o", str(tmp_path / "o")]
    )
    assert result.exit_code == 0, result.output
    text = (tmp_path / "o" / "Modelfile").read_text()
    assert text.startswith("FROM ./r-f16.gguf\n")
    assert f'TEMPLATE """{chat}"""' in text
    assert 'PARAMETER stop "<|im_end|>"' in text
    assert "PARAMETER repeat_penalty 1.1" in text and "PARAMETER num_predict 90" in text
    assert "ollama create r -f" in result.output


def test_export_bad_input_is_one_message(tmp_path, tiny_model, papers_dir):
    runner = CliRunner()
    recipe = write_recipe(
        tmp_path / "r.yaml",
        f"name: r\npapers: {papers_dir}\nrun_dir: {tmp_path / 'run'}\n"
        f"model: {{path: {tiny_model}}}\n",
    )
    cases = [
        (["--recipe", str(recipe)], "no trained adapter in"),
        (["--model", str(tiny_model), "--quant", "q3_k"], "Invalid value for '--quant'"),
    ]
    for args, message in cases:
        result = runner.invoke(cli, ["export", *args, "-o", str(tmp_path / "o")])
        assert result.exit_code == 2 and message in result.output, result.output
    config = json.loads((tiny_model / "config.json").read_text())
    other = tmp_path / "gemma"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({**config, "model_type": "gemma"}))
    result = runner.invoke(cli, ["export", "--model", str(other), "-o", str(tmp_path / "o")])
    assert result.exit_code == 2 and "cannot export architecture 'gemma'" in result.output
    assert not list((tmp_path / "o").glob("*.gguf"))
