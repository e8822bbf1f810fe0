"""Packing: useful (non-padding) tokens/s with `packing: true` vs one example per row.

    python bench/packing.py                    # a small random model, examples of 20-400 words
    python bench/packing.py --shape Qwen2.5-0.5B --iters 10

Same model, data and steps; the trainer reports tokens/s counting only real tokens. Without
packing a batch is padded to its longest example; with it, rows are filled to max_seq_length.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
from pathlib import Path

from common import build, dataset

from mlxtune.train.mlx_trainer import MlxTrainer


def useful_tokens_per_second(
    model: Path, data: Path, out: Path, packing: bool, a: argparse.Namespace
) -> float:
    options = MlxTrainer.Options(
        iters=a.iters,
        batch_size=a.batch,
        max_seq_length=a.seq,
        lora_rank=8,
        num_layers=-1,
        eval_every=1.0,
        val_batches=1,
        sample_max_tokens=0,
        steps_per_report=a.iters // 2,
        packing=packing,
        mask_prompt=False,
    )
    MlxTrainer(options).train(str(model), data, out, log=lambda _: None)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if "tokens_per_second" in r][-1]["tokens_per_second"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="small")
    parser.add_argument("--iters", type=int, default=30)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq", type=int, default=512)
    parser.add_argument("--workdir", default=None)
    a = parser.parse_args()
    root = Path(a.workdir or tempfile.mkdtemp(prefix="bench-pack-"))
    model = build(root, a.shape)
    rng = random.Random(0)
    data = dataset(root, [rng.randint(20, 400) for _ in range(400)])
    plain = useful_tokens_per_second(model, data, root / "plain", False, a)
    packed = useful_tokens_per_second(model, data, root / "packed", True, a)
    print(
        f"packing, {a.shape} shape, batch {a.batch}, max_seq_length {a.seq}, "
        "examples of 20-400 words"
    )
    print("| setting | useful tokens/s |")
    print("|---|---|")
    print(f"| one example per row | {plain:.0f} |")
    print(f"| packing: true | {packed:.0f} |")
    print(f"ratio useful tokens/s (packing / per-example): {packed / plain:.2f}x")


if __name__ == "__main__":
    main()
