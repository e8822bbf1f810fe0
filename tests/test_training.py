"""The mlx trainer on tiny models, for real: token layout, variants, best-keeping, early stopping,
resume after SIGKILL, fuse, and the bad inputs a user can fix."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import TOPICS
from pdfgen import paper_text

from mlxtune.errors import MlxtuneError
from mlxtune.formatters.builtin import ApproachFormatter
from mlxtune.records import Pair, read_jsonl, write_jsonl
from mlxtune.train.batching import batch_arrays, make_rows

# ---------------------------------------------------------------- training (tiny model)


def pairs(n: int) -> list[Pair]:
    topics = [t for ts in TOPICS.values() for t in ts]
    out = []
    for i in range(n):
        text = paper_text(topics[i % len(topics)], i)
        out.append(
            Pair(
                f"d{i}",
                "c",
                f"How can we improve {topics[i % len(topics)]} ({i})?",
                text["2 Method"],
            )
        )
    return out


def make_data(root: Path, n_train: int = 6, n_valid: int = 3) -> Path:
    formatter = ApproachFormatter()
    items = pairs(n_train + n_valid)
    write_jsonl(
        root / "data" / "train.jsonl",
        [e.to_json() for p in items[:n_train] for e in formatter.examples(p)],
    )
    write_jsonl(
        root / "data" / "valid.jsonl",
        [e.to_json() for p in items[n_train:] for e in formatter.examples(p)],
    )
    return root / "data"


def train(tmp_path, model, name="adapters", **options):
    from mlxtune.train.mlx_trainer import MlxTrainer

    settings = dict(
        iters=30,
        batch_size=2,
        learning_rate=5e-3,
        lora_rank=8,
        lora_scale=2.0,
        num_layers=-1,
        eval_every=0.2,
        steps_per_report=5,
        sample_max_tokens=8,
    )
    settings.update(options)
    trainer = MlxTrainer(MlxTrainer.Options(**settings))
    data = tmp_path / "data" if (tmp_path / "data").is_dir() else make_data(tmp_path)
    result = trainer.train(str(model), data, tmp_path / name, log=lambda _: None)
    metrics = list(read_jsonl(tmp_path / name / "metrics.jsonl"))
    return result, metrics


def losses(metrics, key="train_loss"):
    return [m[key] for m in metrics if key in m]


@pytest.mark.slow
@pytest.mark.parametrize(
    "variant",
    [
        {"fine_tune_type": "lora", "packing": True, "max_seq_length": 256},
        {"fine_tune_type": "dora"},
        {"quantize": 4, "quantize_group_size": 32},
        {"quantize": 8},
        {"fine_tune_type": "full", "learning_rate": 1e-3},
        {"optimizer": "sgd", "grad_accumulation_steps": 2, "learning_rate": 5e-2},
        {"optimizer": "adafactor", "grad_checkpoint": True},
    ],
    ids=lambda v: "-".join(f"{k}={v}" for k, v in v.items()),
)
def test_each_variant_trains_and_its_loss_falls(tmp_path, tiny_model, variant, monkeypatch):
    import mlx_lm.tuner.trainer as tuner
    from safetensors.numpy import load_file

    wrapped = []
    real_checkpoint = tuner.grad_checkpoint
    monkeypatch.setattr(
        tuner, "grad_checkpoint", lambda layer: wrapped.append(layer) or real_checkpoint(layer)
    )
    result, metrics = train(tmp_path, tiny_model, **variant)
    train_losses = losses(metrics)
    assert train_losses[-1] < 0.8 * train_losses[0], train_losses
    assert result.best_val_loss < losses(metrics, "val_loss")[0]
    config = json.loads((tmp_path / "adapters" / "adapter_config.json").read_text())
    # what the variant changed, not only that a loss fell
    kind = variant.get("fine_tune_type", "lora")
    assert config["fine_tune_type"] == kind
    assert config["optimizer"] == variant.get("optimizer", "adamw")
    assert config["grad_accumulation_steps"] == variant.get("grad_accumulation_steps", 1)
    saved = load_file(tmp_path / "adapters" / "adapters.safetensors")
    magnitudes = [k for k in saved if k.endswith(".m")]
    lora = [k for k in saved if k.endswith((".lora_a", ".lora_b"))]
    if kind == "full":  # base weights trained and saved, no adapters
        assert not lora and not magnitudes
        base = load_file(tiny_model / "model.safetensors")
        name = "model.layers.0.self_attn.q_proj.weight"
        assert name in saved and not np.allclose(saved[name], base[name])
    else:
        assert lora and bool(magnitudes) == (kind == "dora")
    assert bool(wrapped) == bool(variant.get("grad_checkpoint"))
    if wrapped:  # the patch of the block class is undone after training
        assert "checkpoint" not in getattr(type(wrapped[0]).__call__, "__qualname__", "")
    if variant.get("quantize"):
        assert config["base_quantization"]["bits"] == variant["quantize"]
        from mlxtune.models.loading import is_quantized, load_model

        model, _ = load_model(str(tiny_model), adapter=tmp_path / "adapters")
        assert is_quantized(model)  # asked as it was trained


def unrelated_validation(tmp_path: Path) -> Path:
    """Validation papers unlike the training ones: memorizing the training set soon makes the
    validation loss turn up, so the best and the last adapter differ."""
    make_data(tmp_path, n_train=4, n_valid=0)
    unrelated = [
        Pair(f"v{i}", "c", f"What is {w}?", f"{w} " * 3 + "lorem ipsum dolor sit amet")
        for i, w in enumerate(["tennis", "baking", "opera"])
    ]
    write_jsonl(
        tmp_path / "data" / "valid.jsonl",
        [e.to_json() for p in unrelated for e in ApproachFormatter().examples(p)],
    )
    return tmp_path / "data"


def validation_loss(model_dir: Path, adapter: Path, data: Path) -> float:
    """The validation loss of a saved adapter, computed afresh."""
    import mlx.core as mx
    import mlx.nn as nn

    from mlxtune.models.loading import load_model
    from mlxtune.train.data import load_examples, tokenize

    model, tokenizer = load_model(str(model_dir), adapter=adapter)
    rows, _ = make_rows(tokenize(tokenizer, load_examples(data / "valid.jsonl"), True), 2048)
    tokens, weights = batch_arrays(rows)
    t, w = mx.array(tokens), mx.array(weights)
    ce = nn.losses.cross_entropy(model(t[:, :-1]), t[:, 1:]) * w
    return (ce.sum() / w.sum()).item()


@pytest.mark.slow
def test_kept_adapter_is_the_argmin_and_patience_stops_early(tmp_path, tiny_model):

    unrelated_validation(tmp_path)
    result, metrics = train(
        tmp_path, tiny_model, iters=200, learning_rate=2e-2, eval_every=0.05, patience=3
    )
    evals = [m for m in metrics if "val_loss" in m]
    assert result.extra["stopped_early"] and result.steps < 200
    best = min(evals, key=lambda m: m["val_loss"])
    assert result.best_step == best["step"]
    assert [m["step"] for m in evals][-4] == best["step"]  # three evaluations without improvement
    assert all(isinstance(m.get("sample"), str) for m in evals)

    # the saved adapter is the one from the best step: re-evaluating it gives the best loss
    found = validation_loss(tiny_model, tmp_path / "adapters", tmp_path / "data")
    assert abs(found - best["val_loss"]) < 1e-4


@pytest.mark.slow
def test_keep_last(tmp_path, tiny_model):
    data = unrelated_validation(tmp_path)
    result, metrics = train(
        tmp_path, tiny_model, keep="last", iters=60, learning_rate=2e-2, eval_every=0.1
    )
    summary = json.loads((tmp_path / "adapters" / "train_summary.json").read_text())
    assert summary["kept"] == "last" and result.steps == 60
    evals = [m for m in metrics if "val_loss" in m]
    # best and last differ here (validation loss turns up), so keeping the last is observable
    assert result.best_step < 60 and evals[-1]["val_loss"] > result.best_val_loss + 0.01
    from safetensors.numpy import load_file

    kept = load_file(tmp_path / "adapters" / "adapters.safetensors")
    last = load_file(tmp_path / "adapters" / "last.safetensors")
    assert all(np.array_equal(kept[k], last[k]) for k in kept)
    found = validation_loss(tiny_model, tmp_path / "adapters", data)
    assert abs(found - evals[-1]["val_loss"]) < 1e-4


RESUME_SCRIPT = """
import sys
from pathlib import Path
from mlxtune.train.mlx_trainer import MlxTrainer
options = MlxTrainer.Options(**{options})
MlxTrainer(options).train(sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), log=lambda _: None)
"""


@pytest.mark.slow
def test_sigkill_then_resume_ends_with_the_same_metrics(tmp_path, tiny_model):
    options = dict(
        iters=300,
        batch_size=2,
        learning_rate=3e-3,
        lora_rank=8,
        lora_scale=2.0,
        num_layers=-1,
        eval_every=0.05,
        steps_per_report=5,
        sample_max_tokens=0,
        lora_dropout=0.1,
    )
    data = make_data(tmp_path, n_train=7)
    # the uninterrupted reference
    train(tmp_path, tiny_model, name="reference", **options)
    reference = list(read_jsonl(tmp_path / "reference" / "metrics.jsonl"))

    out = tmp_path / "resumed"
    script = RESUME_SCRIPT.format(options=repr(options))
    process = subprocess.Popen(
        [sys.executable, "-c", script, str(tiny_model), str(data), str(out)], env=os.environ.copy()
    )
    state = out / "checkpoint" / "state.json"
    deadline = time.monotonic() + 300
    killed_at = None
    while time.monotonic() < deadline and process.poll() is None:
        try:
            step = json.loads(state.read_text())["step"]
        except (OSError, ValueError, KeyError):
            step = 0
        if step >= 45:
            process.send_signal(signal.SIGKILL)
            killed_at = step
            break
        time.sleep(0.005)
    process.wait()
    assert killed_at is not None and killed_at < 300, "the run ended before it could be killed"

    checkpoint_step = json.loads(state.read_text())["step"]
    assert checkpoint_step >= 45
    from mlxtune.train.mlx_trainer import MlxTrainer

    lines: list[str] = []
    MlxTrainer(MlxTrainer.Options(**options)).train(str(tiny_model), data, out, log=lines.append)
    # the resume itself, observed: it starts from the checkpoint, and only later steps run
    assert f"resuming from the checkpoint at step {checkpoint_step} of 300" in "\n".join(lines)
    stepped = [int(m.group(1)) for m in map(re.compile(r"\s+step\s+(\d+)/").match, lines) if m]
    assert stepped and min(stepped) > checkpoint_step, stepped[:3]
    resumed = list(read_jsonl(out / "metrics.jsonl"))
    assert [m["step"] for m in resumed] == [m["step"] for m in reference]
    for a, b in zip(reference, resumed, strict=True):
        for key in ("train_loss", "val_loss", "learning_rate"):
            if key in a:
                assert b[key] == pytest.approx(a[key], rel=1e-4), (a["step"], key)
    assert not (out / "checkpoint").exists()  # finished: only best + last remain


@pytest.mark.slow
def test_fused_model_loads_in_mlx_lm_and_answers_like_the_adapter(tmp_path, tiny_model):
    import mlx.core as mx
    from click.testing import CliRunner
    from mlx_lm import load

    from mlxtune.cli import cli
    from mlxtune.models.loading import load_model

    train(tmp_path, tiny_model, iters=20)
    result = CliRunner().invoke(
        cli,
        [
            "fuse",
            "--model",
            str(tiny_model),
            "--adapter",
            str(tmp_path / "adapters"),
            "-o",
            str(tmp_path / "fused"),
        ],
    )
    assert result.exit_code == 0, result.output
    fused, tokenizer = load(str(tmp_path / "fused"))
    adapted, _ = load_model(str(tiny_model), adapter=tmp_path / "adapters", dtype=None)
    prompt = mx.array([tokenizer.encode("Research question: How can we improve depth?")])
    assert mx.allclose(fused(prompt), adapted(prompt), atol=1e-4).item()
    again = CliRunner().invoke(
        cli,
        [
            "fuse",
            "--model",
            str(tiny_model),
            "--adapter",
            str(tmp_path / "adapters"),
            "-o",
            str(tmp_path / "fused"),
        ],
    )
    assert again.exit_code != 0 and "not empty" in again.output


@pytest.mark.slow
def test_bad_inputs_are_one_clear_message(tmp_path, tiny_model):
    from mlxtune.models.loading import load_model
    from mlxtune.models.tiny import build_tiny_model

    data = make_data(tmp_path, n_train=3, n_valid=1)
    with pytest.raises(MlxtuneError, match=r"only 3 training examples .*\(train.batch_size=3\)"):
        train(tmp_path, tiny_model, batch_size=4)
    (data / "valid.jsonl").write_text("")
    with pytest.raises(MlxtuneError, match="validation split is empty"):
        train(tmp_path, tiny_model)
    make_data(tmp_path)
    train(tmp_path, tiny_model, iters=2)
    other = build_tiny_model(
        tmp_path / "other", texts=["some text"] * 4, hidden_size=32, vocab_size=400
    )
    with pytest.raises(MlxtuneError, match="does not fit model"):
        load_model(str(other), adapter=tmp_path / "adapters")
    config = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**config, "model_type": "no_such_arch"}))
    with pytest.raises(MlxtuneError, match="mlx-lm cannot load"):
        load_model(str(other))


def repeat_mass(model_dir, adapter, data_dir, split="train") -> float:
    """Mean probability a model puts on tokens its answer already used (the current target
    excepted): what the unlikelihood term trains down."""
    import mlx.core as mx
    import numpy as np

    from mlxtune.models.loading import load_model
    from mlxtune.train.data import load_examples, tokenize

    model, tokenizer = load_model(str(model_dir), adapter=adapter)
    masses = []
    for tokens, offset in tokenize(tokenizer, load_examples(data_dir / f"{split}.jsonl"), True):
        probs = np.array(mx.softmax(model(mx.array([tokens[:-1]]))[0].astype(mx.float32), -1))
        for t in range(offset, len(tokens) - 1):
            seen = set(tokens[offset + 1 : t + 1]) - {tokens[t + 1]}
            masses.append(probs[t, sorted(seen)].sum() if seen else 0.0)
    return float(np.mean(masses))


@pytest.mark.slow
def test_unlikelihood_lowers_the_probability_of_repeating(tmp_path, tiny_model):
    plain, plain_metrics = train(tmp_path, tiny_model, name="plain", iters=10, learning_rate=1e-3)
    ul, ul_metrics = train(
        tmp_path, tiny_model, name="ul", iters=10, learning_rate=1e-3, unlikelihood=4.0
    )
    # validation is plain cross-entropy in both: the same number before any step
    assert losses(plain_metrics, "val_loss")[0] == losses(ul_metrics, "val_loss")[0]
    assert ul.best_val_loss < losses(ul_metrics, "val_loss")[0]
    config = json.loads((tmp_path / "ul" / "adapter_config.json").read_text())
    assert config["unlikelihood"] == 4.0
    # measured: 0.867x on the training papers, 0.884x on the validation ones; with the term
    # not applied the two runs are identical (1.0x)
    data = tmp_path / "data"
    for split in ("train", "valid"):
        with_ul = repeat_mass(tiny_model, tmp_path / "ul", data, split)
        assert with_ul < 0.93 * repeat_mass(tiny_model, tmp_path / "plain", data, split)
