"""From tokenized examples to training batches: truncation, packing, loss masks, data order.

Our own (rather than mlx-lm's `iterate_batches`) for three reasons:
- a per-token loss mask, which packing needs (several prompts to mask in one row) and which is
  exact: mlx-lm 0.32's (offset, length) mask also counts one padding target past each sequence;
- packing: examples (each ending with EOS) concatenated into `max_seq_length` rows, as the
  original study did to fit its data;
- a data order that is a pure function of (seed, epoch), so a resumed run sees the very batches
  the interrupted one would have.
Batches are padded to a multiple of 32 tokens (+1 for the shift), as mlx-lm does, so the compiled
step sees few distinct shapes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

PAD_MULTIPLE = 32


@dataclass
class Row:
    """One training row: tokens and, per token, whether predicting it counts in the loss."""

    tokens: list[int]
    weights: list[bool]

    def __len__(self) -> int:
        return len(self.tokens)


def make_rows(
    examples: Sequence[tuple[list[int], int]], max_seq_length: int
) -> tuple[list[Row], int]:
    """One row per example (tokens after `prompt_len` are learned); returns (rows, truncated)."""
    rows, truncated = [], 0
    for tokens, prompt_len in examples:
        if len(tokens) > max_seq_length:
            truncated += 1
            tokens = tokens[:max_seq_length]
        weights = [i >= max(prompt_len, 1) for i in range(len(tokens))]
        rows.append(Row(list(tokens), weights))
    return rows, truncated


def pack_rows(rows: Sequence[Row], max_seq_length: int) -> list[Row]:
    """Concatenate rows (each already ending with EOS) greedily into rows of at most
    `max_seq_length` tokens, in the given order. Each example keeps its own loss weights, so a
    packed row masks every prompt in it."""
    packed: list[Row] = []
    current = Row([], [])
    for row in rows:
        if current.tokens and len(current) + len(row) > max_seq_length:
            packed.append(current)
            current = Row([], [])
        current.tokens.extend(row.tokens)
        current.weights.extend(row.weights)
    if current.tokens:
        packed.append(current)
    return packed


def epoch_batches(
    lengths: Sequence[int], batch_size: int, seed: int, epoch: int
) -> list[list[int]]:
    """Batches of row indices for one epoch: rows of similar length together (less padding),
    batch order shuffled by (seed, epoch); rows that do not fill a last batch wait a turn."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    rng = np.random.default_rng([seed, epoch])
    # rotate which rows fall off the end, so no example is always left out
    shift = int(rng.integers(len(order))) if len(order) % batch_size else 0
    order = order[shift:] + order[:shift]
    batches = [order[i : i + batch_size] for i in range(0, len(order) - batch_size + 1, batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def batch_arrays(
    rows: Sequence[Row], pad_id: int = 0, max_width: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(tokens [B, W], loss mask for the targets [B, W-1]): W-1 rounded up to a multiple of 32
    (fewer shapes to compile), but never wider than `max_width` (max_seq_length) when the rows
    fit it."""
    longest = max(len(r) for r in rows)
    width = 1 + PAD_MULTIPLE * ((longest - 1 + PAD_MULTIPLE - 1) // PAD_MULTIPLE)
    if max_width is not None:
        width = min(width, max_width)
    width = max(width, longest)
    tokens = np.full((len(rows), width), pad_id, dtype=np.int32)
    mask = np.zeros((len(rows), width - 1), dtype=np.bool_)
    for i, row in enumerate(rows):
        tokens[i, : len(row)] = row.tokens
        # target j is token j + 1
        mask[i, : len(row) - 1] = row.weights[1:]
    return tokens, mask


def useful_tokens(rows: Sequence[Row]) -> int:
    return sum(len(r) for r in rows)


def mask_spans(mask: np.ndarray) -> np.ndarray:
    """The loss mask as [B, S, 2] half-open (start, end) runs of learned targets: S is 1 when
    every row has one run (one example per row), else a multiple of 4 (fewer shapes to compile
    for packed rows); unused runs are (0, 0).

    The MLX step rebuilds the mask from these inside its compiled graph (`losses.masked_loss`
    says why). One run per example, several in a packed row.
    """
    edges = np.diff(mask.astype(np.int8), axis=1, prepend=0, append=0)
    runs = [
        list(zip(np.flatnonzero(row == 1), np.flatnonzero(row == -1), strict=True)) for row in edges
    ]
    count = max(1, max(len(r) for r in runs))
    width = 1 if count == 1 else -(-count // 4) * 4
    spans = np.zeros((len(runs), width, 2), dtype=np.int32)
    for i, row in enumerate(runs):
        if row:
            spans[i, : len(row)] = row
    return spans
