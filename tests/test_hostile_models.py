"""Hostile and damaged model files (issue 24): GGUF headers that crashed MLX's reader, Ollama
manifests that pointed outside the store, exports that replaced files or landed in a run's
adapter folder, and a damaged adapter that `ask` used without a word."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import struct
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import TOPICS, write_recipe
from gguf_files import random_model, write_gguf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pdfgen import paper_text, write_paper

from mlxtune.cli import cli
from mlxtune.errors import MlxtuneError

gguf = pytest.importorskip("gguf")


@pytest.fixture(autouse=True)
def _models_home(tmp_path, monkeypatch):
    monkeypatch.setenv("MLXTUNE_HOME", str(tmp_path / "home"))


@pytest.fixture(scope="module")
def valid_gguf(tmp_path_factory, tiny_model) -> Path:
    """A small, valid, one-layer qwen2 GGUF (Q8_0 matrices) written by llama.cpp's writer."""
    vocab = json.loads((tiny_model / "config.json").read_text())["vocab_size"]
    model, config = random_model("qwen2", vocab_size=vocab, num_hidden_layers=1)
    path = tmp_path_factory.mktemp("gguf") / "valid.gguf"
    return write_gguf(path, model, config, tiny_model / "tokenizer.json", qtype="Q8_0")


def field_offsets(path: Path) -> dict[str, int]:
    """Byte offsets of the header fields the corpus edits, found by gguf's own reader."""
    reader = gguf.GGUFReader(str(path))
    tokens = reader.fields["tokenizer.ggml.tokens"]
    tensor = reader.tensors[0].field
    name_length = int(tensor.parts[0][0])
    dims_at = tensor.offset + 8 + name_length
    n_dims = int(struct.unpack_from("<I", path.read_bytes(), dims_at)[0])
    key = len("tokenizer.ggml.tokens")
    return {
        "tensor_count": 8,
        "kv_count": 16,
        "first_key_length": 24,
        "first_value_type": 24 + 8 + len("general.architecture"),
        "token_list_length": tokens.offset + 8 + key + 4 + 4,
        "n_dims": dims_at,
        "dim0": dims_at + 4,
        "type": dims_at + 4 + 8 * n_dims,
        "offset": dims_at + 4 + 8 * n_dims + 4,
        "header_end": reader.tensors[0].data_offset,
    }


def patched(data: bytes, offset: int, fmt: str, value: int) -> bytes:
    out = bytearray(data)
    struct.pack_into(fmt, out, offset, value)
    return bytes(out)


def hostile_corpus(valid: Path) -> dict[str, tuple[bytes, str]]:
    """name -> (file bytes, what the one-line error must say)."""
    data, at = valid.read_bytes(), field_offsets(valid)
    return {
        "tensor-count-3e9": (patched(data, 8, "<Q", 3_000_000_000), "tensor count of 3000000000"),
        "tensor-count-2-63": (patched(data, 8, "<Q", 2**63), "tensor count of 9223372036854775808"),
        "key-length": (patched(data, at["first_key_length"], "<Q", 2**62), "bytes long"),
        "dimension-count": (patched(data, at["n_dims"], "<I", 2**31), "2147483648 dimensions"),
        "no-tensors": (patched(data, 8, "<Q", 0), "holds no tensors"),
        "tensor-type-77": (patched(data, at["type"], "<I", 77), "type 77"),
        "tensor-type-q5k": (patched(data, at["type"], "<I", 13), "stored as Q5_K"),
        "version-999": (patched(data, 4, "<I", 999), "GGUF version 999"),
        "kv-count": (patched(data, 16, "<Q", 2**40), "metadata count of 1099511627776"),
        "array-length": (patched(data, at["token_list_length"], "<Q", 2**60), "claims"),
        "zero-dimension": (patched(data, at["dim0"], "<Q", 0), "zero dimension"),
        "huge-dimension": (patched(data, at["dim0"], "<Q", 2**40), "larger than the file"),
        "offset-past-end": (patched(data, at["offset"], "<Q", 2**40), "extends past the end"),
        "value-type-99": (patched(data, at["first_value_type"], "<I", 99), "value type 99"),
        "cut-in-header": (data[: at["header_end"] // 2], "left in the file"),
    }


def run_import(path: Path, out: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "MLXTUNE_DISABLE_PLUGIN_AUTOLOAD": "1"}
    command = [sys.executable, "-m", "mlxtune", "model", "import", str(path), "-o", str(out)]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)


def test_hostile_gguf_headers_are_one_clear_line_in_a_fresh_process(tmp_path, valid_gguf):
    """Each used to segfault (exit 139), abort, raise TypeError or name architecture 'None'."""
    corpus = hostile_corpus(valid_gguf)
    paths = {}
    for name, (data, _) in corpus.items():
        paths[name] = tmp_path / f"{name}.gguf"
        paths[name].write_bytes(data)
    with ThreadPoolExecutor(4) as pool:
        results = dict(
            zip(
                corpus,
                pool.map(lambda n: run_import(paths[n], tmp_path / f"out-{n}"), corpus),
                strict=True,
            )
        )
    for name, (_, message) in corpus.items():
        result = results[name]
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2, (name, result.returncode, result.stderr[-400:])
        assert len(lines) == 1 and lines[0].startswith("error: "), (name, result.stderr)
        assert str(paths[name]) in lines[0] and message in lines[0], (name, lines[0])
        assert "Traceback" not in result.stdout + result.stderr and "unexpected" not in lines[0]
        assert not (tmp_path / f"out-{name}").exists()


MUTATOR = textwrap.dedent(
    """
    import sys, traceback
    from pathlib import Path
    from mlxtune.errors import MlxtuneError
    from mlxtune.gguf.importing import ImportOptions, import_model
    for index, name in enumerate(sys.argv[2:]):
        try:
            import_model(name, Path(sys.argv[1]) / str(index), ImportOptions(dequantize=True))
            print("ok", name, flush=True)
        except MlxtuneError as exc:
            print("error", name, len(str(exc).splitlines()), flush=True)
        except BaseException:
            print("UNEXPECTED", name, traceback.format_exc().replace(chr(10), " | "), flush=True)
    """
)


def test_random_header_mutations_never_crash_the_process(tmp_path, valid_gguf):
    """A seeded corpus of header edits (extreme counts, lengths and offsets at field
    boundaries, random bytes) through the whole import in one process: never a signal, never
    an exception other than MlxtuneError, and every error one line."""
    data, at = valid_gguf.read_bytes(), field_offsets(valid_gguf)
    rng = random.Random(24)
    extremes = [0, 1, 7, 2**31, 2**32 - 1, 2**40, 2**63, 2**64 - 1]
    fields = [(at[k], "<Q") for k in ("tensor_count", "kv_count", "first_key_length", "dim0")]
    fields += [(at[k], "<Q") for k in ("token_list_length", "offset")]
    fields += [(at[k], "<I") for k in ("n_dims", "type", "first_value_type")]
    files = []
    for index in range(60):
        if index % 2:
            offset, fmt = rng.choice(fields)
            value = rng.choice(extremes) % (2 ** (8 * struct.calcsize(fmt)))
            mutated = patched(data, offset, fmt, value)
        else:
            mutated = bytearray(data)
            for _ in range(rng.randint(1, 4)):
                mutated[rng.randrange(4, at["header_end"])] = rng.randrange(256)
            mutated = bytes(mutated)
        files.append(tmp_path / f"m{index}.gguf")
        files[-1].write_bytes(mutated)
    env = {**os.environ, "MLXTUNE_DISABLE_PLUGIN_AUTOLOAD": "1"}
    result = subprocess.run(
        [sys.executable, "-c", MUTATOR, str(tmp_path / "out"), *map(str, files)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, (result.returncode, result.stdout[-2000:], result.stderr[-2000:])
    lines = result.stdout.splitlines()
    assert len(lines) == len(files)
    assert not [line for line in lines if line.startswith("UNEXPECTED")], result.stdout
    assert all(line.endswith(" 1") for line in lines if line.startswith("error"))
    assert sum(line.startswith("error") for line in lines) >= len(files) // 2


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_header_reader_raises_only_mlxtune_errors(valid_gguf, data):
    """Random bytes after a GGUF preamble, and random edits of a valid header: the parser and
    the model checks return or raise MlxtuneError (one line), nothing else."""
    from mlxtune.gguf.gguf_checks import check_model
    from mlxtune.gguf.gguf_header import parse_header

    original = valid_gguf.read_bytes()
    if data.draw(st.booleans()):
        prefix = data.draw(st.sampled_from([b"GGUF\x03\x00\x00\x00", b"GGUF\x02\x00\x00\x00"]))
        blob = prefix + data.draw(st.binary(max_size=600))
    else:
        edits = data.draw(
            st.lists(
                st.tuples(st.integers(0, 6000), st.binary(min_size=1, max_size=8)),
                min_size=1,
                max_size=4,
            )
        )
        mutable = bytearray(original)
        for offset, new in edits:
            mutable[offset : offset + len(new)] = new
        blob = bytes(mutable)
    try:
        check_model(parse_header(blob, "f.gguf"), "f.gguf")
    except MlxtuneError as exc:
        assert "\n" not in str(exc)


def test_the_type_table_is_llama_cpps():
    from mlxtune.gguf.gguf_header import GGML_TYPES

    for number, (name, block, size) in GGML_TYPES.items():
        kind = gguf.GGMLQuantizationType(number)
        assert kind.name == name and gguf.GGML_QUANT_SIZES[kind] == (block, size)


# ---------------------------------------------------------------- Ollama


def blob(store: Path, data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    (store / "blobs").mkdir(parents=True, exist_ok=True)
    (store / "blobs" / digest.replace(":", "-")).write_bytes(data)
    return digest


def manifest(store: Path, name: str, layers: dict[str, str]) -> None:
    path = store / "manifests" / "registry.ollama.ai" / "library" / name / "latest"
    path.parent.mkdir(parents=True, exist_ok=True)
    media = "application/vnd.ollama.image."
    entries = [{"mediaType": media + kind, "digest": digest} for kind, digest in layers.items()]
    path.write_text(json.dumps({"schemaVersion": 2, "layers": entries}))


def test_ollama_digests_cannot_leave_the_blobs_folder(tmp_path, valid_gguf, monkeypatch):
    store = tmp_path / "store"
    model = blob(store, valid_gguf.read_bytes())
    outside = tmp_path / "outside.json"
    outside.write_text(json.dumps({"temperature": 1.7}))
    manifest(store, "escape", {"model": model, "params": "../../outside.json"})
    manifest(store, "absolute", {"model": str(valid_gguf)})
    monkeypatch.setenv("OLLAMA_MODELS", str(store))
    runner = CliRunner()
    for name, digest in (("escape", "../../outside.json"), ("absolute", str(valid_gguf))):
        out = tmp_path / f"o-{name}"
        result = runner.invoke(cli, ["model", "import", f"{name}:latest", "-o", str(out)])
        assert result.exit_code == 2, result.output
        assert f"layer digest {digest!r} is not 'sha256:' and 64 hex digits" in result.output
        assert not out.exists()


def test_ollama_params_outside_the_ask_bounds_are_dropped_by_name(
    tmp_path, valid_gguf, monkeypatch
):
    store = tmp_path / "store"
    params = {
        "top_p": "not a number",
        "repetition_penalty": -5,
        "repeat_penalty": -5,
        "temperature": 0.7,
        "min_p": float("inf"),
        "top_k": 2.5,
        "stop": ["<|im_end|>"],
    }
    layers = {"model": blob(store, valid_gguf.read_bytes())}
    layers["params"] = blob(store, json.dumps(params).encode())
    manifest(store, "tiny", layers)
    monkeypatch.setenv("OLLAMA_MODELS", str(store))
    result = CliRunner().invoke(cli, ["model", "import", "tiny", "-o", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    generation = json.loads((tmp_path / "o" / "generation_config.json").read_text())
    assert generation["temperature"] == 0.7
    assert not {"top_p", "repetition_penalty", "min_p", "top_k"} & set(generation)
    warning = next(line for line in result.output.splitlines() if "params not carried" in line)
    for dropped in ("top_p='not a number'", "repeat_penalty=", "min_p=", "top_k=", "stop"):
        assert dropped in warning, warning


# ---------------------------------------------------------------- export targets


def test_export_does_not_replace_files_without_force(tmp_path, tiny_model):
    out = tmp_path / "out"
    out.mkdir()
    (out / "model-f16.gguf").write_bytes(b"mine")
    (out / "Modelfile").write_text("FROM mine\n")
    runner = CliRunner()
    args = ["export", "--model", str(tiny_model), "--to", "ollama", "-o", str(out)]
    result = runner.invoke(cli, args)
    assert result.exit_code == 2, result.output
    assert "exist already: pass --force to replace them" in result.output
    assert (out / "model-f16.gguf").read_bytes() == b"mine"
    assert (out / "Modelfile").read_text() == "FROM mine\n"
    assert sorted(p.name for p in out.iterdir()) == ["Modelfile", "model-f16.gguf"]
    result = runner.invoke(cli, [*args, "--force"])
    assert result.exit_code == 0, result.output
    assert (out / "model-f16.gguf").read_bytes()[:4] == b"GGUF"
    assert (out / "Modelfile").read_text().startswith("FROM ./model-f16.gguf")
    (out / "model").mkdir()
    result = runner.invoke(
        cli, ["export", "--model", str(tiny_model), "--to", "mlx", "-o", str(out)]
    )
    assert result.exit_code == 2 and "exists already: pass --force" in result.output


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_model) -> tuple[Path, Path]:
    """A recipe trained for two steps on the tiny model: (recipe file, run folder)."""
    root = tmp_path_factory.mktemp("trained")
    for category, topics in TOPICS.items():
        for n, topic in enumerate(topics):
            write_paper(
                root / "papers" / category / f"p{n}.pdf", topic.title(), paper_text(topic, n)
            )
    recipe = write_recipe(
        root / "r.yaml",
        f"name: r\npapers: {root / 'papers'}\nrun_dir: {root / 'run'}\n"
        f"model: {{path: {tiny_model}}}\nsplit: {{per_category: {{valid: 1, test: 0}}}}\n"
        "train: {use: mlx, iters: 2, batch_size: 1, lora_rank: 4, num_layers: 1,\n"
        "        eval_every: 1.0, max_seq_length: 128}\nask: {max_tokens: 8}\n",
    )
    result = CliRunner().invoke(cli, ["recipe", "run", str(recipe), "--until", "train"])
    assert result.exit_code == 0, result.output
    return recipe, root / "run"


def test_export_never_writes_inside_a_runs_adapter_folder(tmp_path, tiny_model, trained):
    _, run = trained
    runner = CliRunner()
    for target in (run / "adapters", run / "adapters" / "gguf"):
        result = runner.invoke(cli, ["export", "--model", str(tiny_model), "-o", str(target)])
        assert result.exit_code == 2, result.output
        assert "is inside the adapter folder" in result.output
        assert str(run / "export") in result.output
    assert not list((run / "adapters").rglob("*.gguf"))
    assert not (run / "adapters" / "gguf").exists()


# ---------------------------------------------------------------- damaged adapters


def damage(path: Path) -> bytes:
    """Overwrite the tensor data of a safetensors file with 0xFF bytes (NaN); returns the
    original bytes."""
    original = path.read_bytes()
    header = 8 + int.from_bytes(original[:8], "little")
    path.write_bytes(original[:header] + b"\xff" * (len(original) - header))
    return original


def test_ask_refuses_a_damaged_adapter_as_recipe_run_does(tmp_path, tiny_model, trained):
    recipe, run = trained
    weights = run / "adapters" / "adapters.safetensors"
    runner = CliRunner()
    healthy = runner.invoke(cli, ["ask", "What is segmentation?", "--recipe", str(recipe)])
    assert healthy.exit_code == 0, healthy.output
    original = damage(weights)
    try:
        result = runner.invoke(cli, ["ask", "What is segmentation?", "--recipe", str(recipe)])
        assert result.exit_code == 2, result.output
        assert "adapters.safetensors is not the file training wrote" in result.output
        assert str(run / "manifest.json") in result.output
        exported = runner.invoke(
            cli, ["export", "--recipe", str(recipe), "-o", str(tmp_path / "x")]
        )
        assert exported.exit_code == 2 and "not the file training wrote" in exported.output
        assert not (tmp_path / "x").exists()
        # the same damage in a copy outside the run (no manifest): its NaN weights give it away
        copy = tmp_path / "copy"
        shutil.copytree(run / "adapters", copy)
        args = ["ask", "q", "--model", str(tiny_model), "--adapter", str(copy)]
        result = runner.invoke(cli, args)
        assert result.exit_code == 2 and "holds NaN or infinite values" in result.output
        (copy / "adapters.safetensors").write_bytes(original[: len(original) // 2])
        result = runner.invoke(cli, args)
        assert result.exit_code == 2, result.output
        assert "cannot read adapters.safetensors" in result.output
    finally:
        weights.write_bytes(original)
