"""The failure this project exists to fix was endless repetition. A tiny model trained on three
pairs must give each approach back exactly from its prompt, and then stop at EOS."""

from __future__ import annotations

import pytest

from mlxtune.components import Sampling
from mlxtune.formatters.builtin import ApproachFormatter
from mlxtune.records import Pair, write_jsonl

pytestmark = pytest.mark.slow

PAIRS = [
    Pair("a", "c", "Why do deep nets forget context?", "Add gated memory cells to the network."),
    Pair("b", "c", "How can cells be segmented?", "Predict boundaries with a weighted loss."),
    Pair("d", "c", "Can batches be small?", "Normalize over groups of channels instead."),
]


def test_three_pairs_are_memorized_and_generation_stops(tmp_path, tiny_model):
    from mlxtune.backends.mlx_backend import MlxBackend
    from mlxtune.train.mlx_trainer import MlxTrainer

    formatter = ApproachFormatter()
    rows = [e.to_json() for p in PAIRS for e in formatter.examples(p)]
    write_jsonl(tmp_path / "data" / "train.jsonl", rows)
    write_jsonl(tmp_path / "data" / "valid.jsonl", rows)
    options = MlxTrainer.Options(
        iters=120,
        batch_size=3,
        learning_rate=3e-3,
        lora_rank=16,
        lora_scale=2.0,
        num_layers=-1,
        eval_every=0.25,
    )
    result = MlxTrainer(options).train(
        str(tiny_model), tmp_path / "data", tmp_path / "adapters", log=lambda _: None
    )
    assert result.best_val_loss < 0.5, result.best_val_loss

    backend = MlxBackend()
    backend.load(str(tiny_model), tmp_path / "adapters")
    for pair in PAIRS:
        answer = "".join(backend.generate(formatter.prompt(pair.question), Sampling(max_tokens=40)))
        assert answer.strip() == pair.approach
        assert backend.finish_reason == "stop"
