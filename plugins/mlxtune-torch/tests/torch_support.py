"""Fixtures and helpers of the torch plugin's tests, loaded by its test modules through
`pytest_plugins` (not a conftest.py: pytest imports every conftest as the module `conftest`, and
the core tests import helpers from theirs)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlxtune.records import read_jsonl

TEXTS = [
    "Research question: How can cells be segmented?\nApproach: Predict boundaries with a "
    "weighted loss and a U-shaped network.",
    "Research question: Why do deep nets forget context?\nApproach: Add gated memory cells.",
    "Research question: Can batches be small?\nApproach: Normalize over groups of channels.",
    "Research question: How to translate long sentences?\nApproach: Attend over all encoder "
    "states with a learned alignment.",
]


@pytest.fixture(autouse=True)
def _plugins_enabled(monkeypatch):
    """This package is found through its entry point: autoload must be on."""
    from mlxtune import plugins

    monkeypatch.delenv("MLXTUNE_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    plugins._CACHE.clear()
    yield
    plugins._CACHE.clear()


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    from mlxtune.models.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model", texts=TEXTS, vocab_size=500)


@pytest.fixture
def data_dir(tmp_path) -> Path:
    from mlxtune.formatters.builtin import ApproachFormatter
    from mlxtune.records import Pair, write_jsonl

    pairs = []
    for i, text in enumerate(TEXTS * 2):
        question, approach = text.split("\nApproach: ")
        pairs.append(
            Pair(f"d{i}", "c", question.removeprefix("Research question: ") + f" ({i})", approach)
        )
    formatter = ApproachFormatter()
    rows = [e.to_json() for p in pairs for e in formatter.examples(p)]
    write_jsonl(tmp_path / "data" / "train.jsonl", rows[:6])
    write_jsonl(tmp_path / "data" / "valid.jsonl", rows[6:])
    return tmp_path / "data"


COMMON = dict(
    batch_size=2,
    learning_rate=5e-3,
    lora_rank=8,
    lora_scale=2.0,
    num_layers=-1,
    steps_per_report=5,
    seed=0,
)


def train_torch(model: Path, data: Path, out: Path, **options):
    from mlxtune_torch.trainer import TorchTrainer

    settings = {**COMMON, "iters": 30, "eval_every": 0.2, **options}
    result = TorchTrainer(TorchTrainer.Options(**settings)).train(
        str(model), data, out, log=lambda _: None
    )
    return result, list(read_jsonl(out / "metrics.jsonl"))


def train_mlx(model: Path, data: Path, out: Path, **options):
    from mlxtune.train.mlx_trainer import MlxTrainer

    settings = {**COMMON, "iters": 30, "eval_every": 0.2, "sample_max_tokens": 0, **options}
    result = MlxTrainer(MlxTrainer.Options(**settings)).train(
        str(model), data, out, log=lambda _: None
    )
    return result, list(read_jsonl(out / "metrics.jsonl"))


def write_papers(root: Path, categories: dict[str, int]) -> None:
    """Markdown papers (the text extractor's), `n` per category."""
    for category, n in categories.items():
        (root / category).mkdir(parents=True)
        for i in range(n):
            (root / category / f"p{i}.md").write_text(
                f"# Paper {i} on {category.title()} Topic Number {i}\n\n## Abstract\n"
                f"It is a hard problem to do {category} {i}.\n\n## Method\nWe train a "
                f"network with a contrastive loss for {category} task {i}.\n"
            )
