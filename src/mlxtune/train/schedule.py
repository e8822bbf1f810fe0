"""The learning rate of each optimizer update, as one function every trainer shares.

The mlx trainer hands MLX's optimizers mlx-lm's schedule (`mlx_lm.tuner.utils.build_schedule`:
a linear warmup from 0 joined to a cosine decay to `min_lr_fraction`). MLX evaluates it at the
optimizer's update count *before* the update, and the join starts the cosine one update after the
warmup ends, so with 20 updates and 5% warmup the updates get 0, lr, lr, 0.994 lr, ... This
function is that schedule in plain Python, so a trainer on another framework (mlxtune-torch)
applies exactly the same rates; a test checks it against mlx-lm's own at every update.
"""

from __future__ import annotations

import math


def learning_rate_at(
    update: int, learning_rate: float, steps: int, warmup_fraction: float, min_lr_fraction: float
) -> float:
    """The rate of update number `update` (0 for the first) of a run of `steps` updates."""
    warmup = int(warmup_fraction * steps)
    decay_steps = max(1, steps - warmup)
    end = learning_rate * min_lr_fraction

    def cosine(s: int) -> float:
        s = min(s, decay_steps)
        return end + 0.5 * (1.0 + math.cos(math.pi / decay_steps * s)) * (learning_rate - end)

    if not warmup:
        return cosine(update)
    if update < warmup + 1:
        return min(update, warmup) * learning_rate / warmup
    return cosine(update - warmup - 1)
