"""Packing: useful (non-padding) tokens/s with `packing: true` vs one example per row.

    python bench/packing.py                    # a small random model, examples of 20-400 words
    python bench/packing.py --shape Qwen2.5-0.5B --iters 10

Same model, data and steps; the trainer reports tokens/s counting only real tokens. Without
packing a batch is padded to its longest example; with it, rows are filled to max_seq_length.
The padding share of each setting is computed from the very batches the trainer builds: the
trainer groups examples of similar length into a batch (as mlx-lm does), so there is little
padding for packing to remove, while a packed row's attention spans max_seq_length tokens.
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
    padding[packing] = padding_share(model, data, a, packing)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if "tokens_per_second" in r][-1]["tokens_per_second"]


padding: dict[bool, float] = {}


def padding_share(model: Path, data: Path, a: argparse.Namespace, packing: bool) -> float:
    """Share of the tokens in the first epoch's batches that are padding."""
    from mlx_lm.tokenizer_utils import load as load_tokenizer

    from mlxtune.train.batching import batch_arrays, epoch_batches, make_rows, pack_rows
    from mlxtune.train.data import load_examples, tokenize

    tokenized = tokenize(load_tokenizer(model), load_examples(data / "train.jsonl"), False)
    rows, _ = make_rows(tokenized, a.seq)
    rows = pack_rows(rows, a.seq) if packing else rows
    batches = epoch_batches([len(r) for r in rows], a.batch, 0, 0)
    real = total = 0
    for batch in batches:
        tokens, _ = batch_arrays([rows[i] for i in batch], max_width=a.seq)
        real += sum(len(rows[i]) for i in batch)
        total += tokens.size
    return 1 - real / total


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
    print("| setting | useful tokens/s | padding |")
    print("|---|---|---|")
    print(f"| one example per row | {plain:.0f} | {padding[False]:.1%} |")
    print(f"| packing: true | {packed:.0f} | {padding[True]:.1%} |")
    print(f"ratio useful tokens/s (packing / per-example): {packed / plain:.2f}x")


if __name__ == "__main__":
    main()
