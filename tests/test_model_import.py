"""GGUF and Ollama import on small GGUF files written by llama.cpp's own `gguf` package."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import write_recipe
from gguf_files import random_model, write_gguf

from mlxtune.cli import cli
from mlxtune.errors import MlxtuneError
from mlxtune.gguf.importing import ImportOptions, import_model

pytest.importorskip("gguf")

TEXTS = [
    "Deep networks are hard to train because activations drift.",
    "  spaces,\ttabs and 12345 digits; <|im_start|>user\nhi<|im_end|>\n",
    "Ünïcödé, émoji 🙂 and 日本語.",
]
TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@pytest.fixture(autouse=True)
def _models_home(tmp_path, monkeypatch):
    monkeypatch.setenv("MLXTUNE_HOME", str(tmp_path / "home"))


def make_gguf(tmp_path: Path, tiny_model: Path, arch: str, qtype: str = "F32", **kw):
    vocab = json.loads((tiny_model / "config.json").read_text())["vocab_size"]
    model, config = random_model(arch, vocab_size=vocab, **kw)
    path = tmp_path / f"{arch}-{qtype}.gguf"
    write_gguf(
        path, model, config, tiny_model / "tokenizer.json", qtype=qtype, chat_template=TEMPLATE
    )
    return path, model


def logits(model, tokens):
    import mlx.core as mx

    return np.array(model(mx.array([tokens])).astype(mx.float32))


# tolerance on the largest logit difference, relative to the logits' spread: float32 is exact
# up to rounding; Q8_0 and Q4_0 are the quantization's own error (kept or dequantized alike)
TOLERANCE = {"F32": 1e-5, "F16": 2e-3, "Q8_0": 0.03, "Q4_0": 0.25}


@pytest.mark.parametrize(
    "arch,qtype",
    [("llama", "F32"), ("qwen2", "F32"), ("qwen3", "F32"), ("llama", "Q8_0"), ("qwen2", "Q4_0")],
)
@pytest.mark.parametrize("dequantize", [True, False])
def test_imported_model_has_the_original_logits(tmp_path, tiny_model, arch, qtype, dequantize):
    from mlx_lm import load

    kw = {"attention_bias": False} if arch == "llama" else {}
    path, original = make_gguf(tmp_path, tiny_model, arch, qtype, **kw)
    folder = import_model(str(path), tmp_path / "out", ImportOptions(dequantize=dequantize))
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == arch
    assert ("quantization" in config) == (qtype in ("Q8_0", "Q4_0") and not dequantize)
    model, tokenizer = load(str(folder))
    tokens = tokenizer.encode(TEXTS[0])
    want, got = logits(original, tokens), logits(model, tokens)
    error = np.abs(want - got).max() / want.std()
    assert error < TOLERANCE[qtype], error


def test_tokenizer_encodes_like_the_original_and_keeps_the_chat_template(tmp_path, tiny_model):
    from mlx_lm import load
    from tokenizers import Tokenizer

    # llama: transformers gives a qwen2 model's tokenizer Qwen's own regex whatever the file says
    path, _ = make_gguf(tmp_path, tiny_model, "llama", attention_bias=False)
    folder = import_model(str(path), tmp_path / "out")
    _, tokenizer = load(str(folder))
    original = Tokenizer.from_file(str(tiny_model / "tokenizer.json"))
    for text in TEXTS:
        assert tokenizer.encode(text) == original.encode(text).ids
        assert tokenizer.decode(tokenizer.encode(text)) == text
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], add_generation_prompt=True, tokenize=False
    )
    assert prompt == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    assert tokenizer.eos_token == "<|im_end|>"
    assert json.loads((folder / "generation_config.json").read_text())["eos_token_id"] == [
        tokenizer.convert_tokens_to_ids("<|im_end|>")
    ]


def test_import_is_cached_and_redone_when_the_file_changes(tmp_path, tiny_model):
    path, _ = make_gguf(tmp_path, tiny_model, "qwen2")
    lines: list[str] = []
    first = import_model(str(path), options=ImportOptions(dequantize=True), log=lines.append)
    assert first.parent == tmp_path / "home" / "models"
    again = import_model(str(path), options=ImportOptions(dequantize=True), log=lines.append)
    assert again == first and "already imported" in lines[-1]
    make_gguf(tmp_path, tiny_model, "qwen2", num_hidden_layers=3)  # same path, new bytes
    changed = import_model(str(path), options=ImportOptions(dequantize=True))
    assert changed != first
    assert json.loads((changed / "config.json").read_text())["num_hidden_layers"] == 3


def ollama_store(root: Path, gguf: Path, name: str, tag: str, params: dict | None = None):
    """Lay out an Ollama store (manifest + content-addressed blobs) around a GGUF file."""
    blobs = root / "blobs"
    blobs.mkdir(parents=True, exist_ok=True)

    def blob(data_path: Path) -> str:
        digest = "sha256:" + hashlib.sha256(data_path.read_bytes()).hexdigest()
        target = blobs / digest.replace(":", "-")
        if not target.exists():
            target.symlink_to(data_path.resolve())
        return digest

    layers = [{"mediaType": "application/vnd.ollama.image.model", "digest": blob(gguf)}]
    if params is not None:
        params_file = root / "params.json"
        params_file.write_text(json.dumps(params))
        layers.append(
            {"mediaType": "application/vnd.ollama.image.params", "digest": blob(params_file)}
        )
    manifest = root / "manifests" / "registry.ollama.ai" / "library" / name / tag
    manifest.parent.mkdir(parents=True, exist_ok=True)
    manifest.write_text(json.dumps({"schemaVersion": 2, "layers": layers}))
    return root


def test_ollama_model_imports_by_name_with_its_parameters(tmp_path, tiny_model, monkeypatch):
    path, original = make_gguf(tmp_path, tiny_model, "qwen2")
    store = ollama_store(
        tmp_path / "ollama", path, "tinyqwen", "0.1b", {"temperature": 0.6, "repeat_penalty": 1.2}
    )
    monkeypatch.setenv("OLLAMA_MODELS", str(store))
    result = CliRunner().invoke(
        cli, ["model", "import", "tinyqwen:0.1b", "-o", str(tmp_path / "o")]
    )
    assert result.exit_code == 0, result.output
    generation = json.loads((tmp_path / "o" / "generation_config.json").read_text())
    assert generation["temperature"] == 0.6 and generation["repetition_penalty"] == 1.2
    from mlx_lm import load

    model, tokenizer = load(str(tmp_path / "o"))
    tokens = tokenizer.encode(TEXTS[0])
    assert np.abs(logits(model, tokens) - logits(original, tokens)).max() < 1e-4


def test_bad_sources_fail_with_one_message_and_leave_nothing(tmp_path, tiny_model, monkeypatch):
    path, _ = make_gguf(tmp_path, tiny_model, "qwen2")
    not_gguf = tmp_path / "notes.gguf"
    not_gguf.write_text("just text")
    truncated = tmp_path / "cut.gguf"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    vocab = json.loads((tiny_model / "config.json").read_text())["vocab_size"]
    model, config = random_model("qwen2", vocab_size=vocab)
    other = write_gguf(
        tmp_path / "gemma.gguf", model, config, tiny_model / "tokenizer.json", arch_name="gemma"
    )
    monkeypatch.setenv("OLLAMA_MODELS", str(ollama_store(tmp_path / "store", path, "a", "1b")))
    cases = {
        str(not_gguf): "is not a GGUF file",
        str(truncated): "extends past the end of the file",
        str(other): "architecture 'gemma' is not supported; supported: llama, qwen2, qwen3",
        "missing:7b": "Ollama model 'missing:7b' is not in",
        str(tmp_path / "nowhere.gguf"): "GGUF file not found",
    }
    runner = CliRunner()
    for source, message in cases.items():
        out = tmp_path / "out"
        result = runner.invoke(cli, ["model", "import", source, "-o", str(out)])
        assert result.exit_code == 2, (source, result.output)
        assert message in result.output, result.output
        assert "Traceback" not in result.output
        assert not out.exists() and not (tmp_path / "out.partial").exists()
    listing = runner.invoke(cli, ["model", "import", "missing:7b", "-o", str(tmp_path / "x")])
    assert "available: a:1b" in listing.output
    monkeypatch.setenv("OLLAMA_MODELS", str(tmp_path / "no-store"))
    result = runner.invoke(cli, ["model", "import", "a:1b"])
    assert result.exit_code == 2 and "Ollama store not found" in result.output


def test_recipe_model_gguf_is_imported_by_the_model_stage(tmp_path, tiny_model, papers_dir):
    from mlxtune.pipeline import run_recipe
    from mlxtune.recipe import load_recipe

    path, _ = make_gguf(tmp_path, tiny_model, "qwen2")
    recipe_path = write_recipe(
        tmp_path / "r.yaml",
        f"name: imp\npapers: {papers_dir}\nrun_dir: {tmp_path / 'run'}\n"
        f"model: {{gguf: {path.name}, dequantize: true}}\n",
    )
    recipe, registry = load_recipe(recipe_path)
    run = run_recipe(recipe, registry, until="model")
    summary = run.manifest["stages"]["model"]["summary"]
    assert summary.startswith("imported") and "qwen2" in summary
    folder = Path(recipe.model_ref)
    assert (
        folder / "model.safetensors"
    ).is_file() and folder.parent == tmp_path / "home" / "models"
    from mlxtune.errors import StageError

    other = load_recipe(recipe_path, ["model.dequantize=false"])[0]  # another import folder
    with pytest.raises(StageError, match="is not imported yet: run the model stage first"):
        run_recipe(other, registry, only="train")
    again = run_recipe(recipe, registry, until="model")
    assert (
        again.manifest["stages"]["model"]["finished"] == run.manifest["stages"]["model"]["finished"]
    )


def test_recipe_reports_a_missing_gguf_with_its_other_problems(tmp_path):
    from mlxtune.errors import RecipeError
    from mlxtune.recipe import load_recipe

    recipe_path = write_recipe(
        tmp_path / "r.yaml",
        "name: imp\npapers: nowhere\nmodel: {gguf: missing.gguf}\nask: {max_tokens: lots}\n",
    )
    with pytest.raises(RecipeError) as info:
        load_recipe(recipe_path)
    text = str(info.value)
    assert "model.gguf: GGUF file not found" in text and "ask.max_tokens" in text
    both = write_recipe(
        tmp_path / "b.yaml", "name: b\npapers: .\nmodel: {id: a/b, ollama: 'qwen2.5:0.5b'}\n"
    )
    with pytest.raises(MlxtuneError, match="set only one of model.id, model.ollama"):
        load_recipe(both)


def test_import_into_a_foreign_folder_is_refused(tmp_path, tiny_model):
    path, _ = make_gguf(tmp_path, tiny_model, "qwen2")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(MlxtuneError, match="is not an mlxtune import"):
        import_model(str(path), tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    shutil.rmtree(tmp_path / "mine")


def test_float16_file_is_requantized_on_request(tmp_path, tiny_model):
    from mlx_lm import load

    path, original = make_gguf(tmp_path, tiny_model, "qwen2", "F16")
    lines: list[str] = []
    folder = import_model(str(path), tmp_path / "q8", ImportOptions(quantize=8), log=lines.append)
    assert "stored float16 (not stored in a quantization MLX keeps" in lines[-1]
    config = json.loads((folder / "config.json").read_text())
    assert config["quantization"] == {"group_size": 64, "bits": 8}
    model, tokenizer = load(str(folder))
    tokens = tokenizer.encode(TEXTS[0])
    want = logits(original, tokens)
    # 8-bit's own error on random unit-scale weights: mean 0.015 of the logits' spread
    assert np.abs(want - logits(model, tokens)).mean() / want.std() < 0.05


def test_qwen2_pre_tokenizer_is_the_one_transformers_gives_qwen2(tmp_path, tiny_model):
    """transformers' Qwen2Tokenizer brings Qwen's own regex; ours comes from the file's
    `tokenizer.ggml.pre: qwen2`: they must split text alike."""
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    vocab = json.loads((tiny_model / "config.json").read_text())["vocab_size"]
    model, config = random_model("qwen2", vocab_size=vocab)
    path = write_gguf(
        tmp_path / "q.gguf", model, config, tiny_model / "tokenizer.json", pre="qwen2"
    )
    folder = import_model(str(path), tmp_path / "out")
    ours = Tokenizer.from_file(str(folder / "tokenizer.json"))
    reference = AutoTokenizer.from_pretrained(str(folder))
    assert type(reference).__name__ == "Qwen2Tokenizer"
    for text in TEXTS:
        assert ours.encode(text).ids == reference.encode(text)
    assert ours.encode("2026").tokens == ["2", "0", "2", "6"]  # digits one by one


def test_plan_reads_a_gguf_recipe_without_importing_it(tmp_path, tiny_model, papers_dir):
    from mlxtune.plan import shape_of
    from mlxtune.recipe import load_recipe

    path, _ = make_gguf(tmp_path, tiny_model, "llama", "Q8_0", attention_bias=False)
    recipe_path = write_recipe(
        tmp_path / "r.yaml",
        f"name: p\npapers: {papers_dir}\nmodel: {{gguf: {path.name}, dequantize: false}}\n",
    )
    recipe, _ = load_recipe(recipe_path)
    shape, config = shape_of(recipe)
    assert not (tmp_path / "home").exists()  # nothing imported
    assert shape.layers == 2 and config["quantization"]["bits"] == 8
    folder = import_model(str(path), options=ImportOptions(dequantize=False))
    written = json.loads((folder / "config.json").read_text())
    assert {k: written[k] for k in config} == config
