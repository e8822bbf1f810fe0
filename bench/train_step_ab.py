"""The training step alone: mlxtune's loss (`masked_loss`) vs mlx-lm's (`default_loss`), in one
process, on one model, their steps interleaved.

    python bench/train_step_ab.py                     # Qwen2.5-0.5B shape, batch 2 x 128
    python bench/train_step_ab.py --shape small --steps 40

`train_vs_mlx_lm.py` compares whole runs in separate processes; on a shared machine their speed
drifts by a few percent from one run to the next (mlx_lm lora's own median moved from 0.254 to
0.246 steps/s within one benchmark). Here both steps are compiled the way mlx-lm compiles its own
(model, optimizer and random state as inputs and outputs; Adam, constant learning rate), share
the model and alternate step by step, each going first in turn, so drift hits both alike. The
first two steps of each (compilation) are dropped; the medians count. Target: ratio >= 1.0.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
from common import build


def main() -> None:
    import mlx.core as mx
    import mlx.nn as nn
    import mlx.optimizers as optim
    from mlx_lm import load
    from mlx_lm.tuner.trainer import default_loss
    from mlx_lm.tuner.utils import linear_to_lora_layers

    from mlxtune.train.batching import mask_spans
    from mlxtune.train.mlx_trainer import masked_loss

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="Qwen2.5-0.5B")
    parser.add_argument("--steps", type=int, default=16, help="timed steps of each")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--workdir", default=None)
    a = parser.parse_args()
    root = Path(a.workdir or tempfile.mkdtemp(prefix="bench-step-"))
    model, _ = load(str(build(root, a.shape)))
    model.freeze()
    lora = {"rank": 8, "scale": 20.0, "dropout": 0.0}
    linear_to_lora_layers(model, min(16, len(model.layers)), lora)
    optimizer = optim.Adam(learning_rate=1e-5)
    state = [model.state, optimizer.state, mx.random.state]

    def compiled(loss):
        value_and_grad = nn.value_and_grad(model, loss)

        @partial(mx.compile, inputs=state, outputs=state)
        def step(tokens, mask):
            (value, n), grad = value_and_grad(model, tokens, mask)
            optimizer.update(model, grad)
            return value, n

        return step

    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 1000, size=(a.batch, a.seq)).astype(np.int32)
    learned = np.ones((a.batch, a.seq - 1), dtype=bool)  # every target learned, as in both
    inputs = {
        "mlx_lm default_loss": (compiled(default_loss), mx.array([[1, a.seq - 1]] * a.batch)),
        "mlxtune masked_loss": (compiled(masked_loss), mx.array(mask_spans(learned))),
    }
    times: dict[str, list[float]] = {name: [] for name in inputs}
    names = list(inputs)
    for i in range(a.steps + 2):
        for name in names if i % 2 == 0 else names[::-1]:
            step, mask = inputs[name]
            tic = time.perf_counter()
            value, n = step(mx.array(tokens), mask)
            mx.eval(state, value, n)
            times[name].append(time.perf_counter() - tic)
    medians = {name: statistics.median(t[2:]) for name, t in times.items()}
    print(
        f"training step, {a.shape} shape, batch {a.batch} x {a.seq} tokens, LoRA rank 8, "
        f"{a.steps} interleaved steps of each"
    )
    print("| loss | median step (s) | tokens/s |")
    print("|---|---|---|")
    for name, seconds in medians.items():
        print(f"| {name} | {seconds:.4f} | {a.batch * a.seq / seconds:.1f} |")
    ratio = medians["mlx_lm default_loss"] / medians["mlxtune masked_loss"]
    print(f"ratio step tokens/s (mlxtune / mlx_lm, one process): {ratio:.3f}x (target >= 1.0)")


if __name__ == "__main__":
    main()
