"""Shared by the benchmarks: random-weight models with real shapes, datasets, subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from mlxtune.models.tiny import build_tiny_model
from mlxtune.records import write_jsonl

CONFIGS = Path(__file__).resolve().parents[1] / "src" / "mlxtune" / "train" / "configs"
WORDS = [
    "model",
    "data",
    "training",
    "loss",
    "layer",
    "network",
    "attention",
    "gradient",
    "token",
    "batch",
    "memory",
    "sequence",
    "approach",
    "question",
    "paper",
    "result",
    "method",
    "encoder",
    "decoder",
    "dataset",
    "benchmark",
]
SMALL = {
    "hidden_size": 256,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "intermediate_size": 768,
    "vocab_size": 2000,
    "tie_word_embeddings": True,
}


def shape(name: str) -> dict:
    return SMALL if name == "small" else json.loads((CONFIGS / f"{name}.json").read_text())


def build(root: Path, name: str) -> Path:
    """A random-weight model with `name`'s shape (cached under `root`)."""
    path = root / f"model-{name}"
    if not (path / "model.safetensors").is_file():
        build_tiny_model(
            path, texts=[" ".join(WORDS)] * 4, vocab_size=1024, shape_config=shape(name)
        )
    return path


def text_of(n_words: int, seed: int) -> str:
    return " ".join(WORDS[(seed * 7 + i * 3) % len(WORDS)] for i in range(n_words))


def dataset(root: Path, lengths: list[int], name: str = "data") -> Path:
    """{"text"} rows of the given word counts (train), and four for validation."""
    rows = [{"text": text_of(n, i)} for i, n in enumerate(lengths)]
    write_jsonl(root / name / "train.jsonl", rows)
    write_jsonl(root / name / "valid.jsonl", rows[:4])
    return root / name


def run(command: list[str], env: dict | None = None) -> str:
    result = subprocess.run(
        command, capture_output=True, text=True, env={**os.environ, **(env or {})}
    )
    if result.returncode:
        sys.stderr.write(result.stdout + result.stderr)
        raise SystemExit(f"failed: {' '.join(command)}")
    return result.stdout + result.stderr
