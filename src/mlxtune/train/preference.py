"""DPO and ORPO losses on MLX: per-sequence log-probabilities of the answers, then the objective.

A batch of B pairs is 2B rows, the chosen answers first; each row's loss mask covers its answer
only. `sequence_logps` sums the answer tokens' log-probabilities per row in one of two forms with
one value, like the SFT loss (losses.py, chunked_loss.py):
- "masked": the head on every position (any model; full fine-tuning);
- "chunked": the head over chunks of the learned targets only, where the head splits off and is
  frozen (LoRA, QLoRA), so the whole [tokens, vocab] logits never exist. Each token's gradient
  with respect to its hidden state is computed in the forward pass while its chunk's logits
  exist, and the backward pass scales it by that token's cotangent (its row's weight in the
  objective): the same trick as `chunked_loss.fused_cross_entropy`, per token instead of summed.

The objectives (Rafailov et al. 2023, "Direct Preference Optimization"; Hong et al. 2024,
"ORPO: Monolithic Preference Optimization without Reference Model"):
- DPO: -log sigmoid(beta * ((pi_c - ref_c) - (pi_r - ref_r))), the reference log-probabilities
  computed once before training (preference_run.py) and passed in, so no second model exists;
- ORPO: the chosen answers' cross-entropy plus lambda * -log sigmoid(log odds(chosen) - log
  odds(rejected)), odds from the length-normalised probability; no reference model.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .batching import batch_arrays
from .chunked_loss import picked_states
from .losses import pick_targets


def token_logps_fused(head: Callable[[Any], Any], chunk: int) -> Callable:
    """f(hidden [K, D], targets [K]) -> (log p(target) [K], d log p / d hidden [K, D]),
    differentiable in hidden through the second output (callers ignore it)."""
    import mlx.core as mx

    @mx.custom_function
    def logps(hidden: Any, targets: Any) -> tuple[Any, Any]:
        values: list[Any] = []
        grads: list[Any] = []
        for start in range(0, hidden.shape[0], chunk):
            h = hidden[start : start + chunk]
            if values:  # in order: this chunk starts once the previous one is finished
                h = mx.depends(h, values[-1])
            t = targets[start : start + chunk, None]
            logits = head(h).astype(mx.float32)
            norm = mx.logsumexp(logits, axis=-1, keepdims=True)
            value = (mx.take_along_axis(logits, t, axis=-1) - norm)[:, 0]
            hit = mx.arange(logits.shape[-1])[None, :] == t
            d_logits = (hit - mx.exp(logits - norm)).astype(h.dtype)  # d log p / d logits
            # the head's vjp of a [chunk, V] cotangent is row by row: one call for the chunk
            _, (d_hidden,) = mx.vjp(head, [h], [d_logits])
            values.append(mx.depends(value, d_hidden))
            grads.append(d_hidden)
        return mx.concatenate(values), mx.concatenate(grads, axis=0)

    @logps.vjp
    def logps_vjp(primals: Any, cotangents: Any, outputs: Any) -> tuple[Any, Any]:
        _, targets = primals
        scale = cotangents[0].astype(outputs[1].dtype)[:, None]
        return scale * outputs[1], mx.zeros_like(targets)

    return logps


def token_logps_chunks(head: Callable[[Any], Any], chunk: int, hidden: Any, targets: Any) -> Any:
    """The same log-probabilities without gradients (evaluation, the reference pass)."""
    import mlx.core as mx

    values: list[Any] = []
    for start in range(0, hidden.shape[0], chunk):
        h = hidden[start : start + chunk]
        if values:
            h = mx.depends(h, values[-1])
        logits = head(h).astype(mx.float32)
        t = targets[start : start + chunk, None]
        values.append(
            (mx.take_along_axis(logits, t, axis=-1) - mx.logsumexp(logits, -1, keepdims=True))[:, 0]
        )
    return mx.concatenate(values)


def sequence_logps(form: str, head: Any = None, chunk: int = 0, train: bool = True) -> Callable:
    """f(model, tokens [R, W], targets) -> (summed answer log-probabilities [R], answer token
    counts [R]). targets: the float mask [R, W-1] ("masked"), or the learned targets' flat
    indices padded with -1 ("chunked", `losses.pick_targets`)."""
    import mlx.core as mx
    import mlx.nn as nn

    def masked(model: Any, tokens: Any, mask: Any) -> tuple[Any, Any]:
        logits = model(tokens[:, :-1]).astype(mx.float32)
        logp = -nn.losses.cross_entropy(logits, tokens[:, 1:]) * mask
        return logp.sum(axis=1), mask.sum(axis=1)

    def chunked(model: Any, tokens: Any, picks: Any) -> tuple[Any, Any]:
        picked, targets, valid, index = picked_states(model, tokens, picks)

        def apply_head(h: Any) -> Any:
            return head(model, h)

        if train:
            logp, _ = token_logps_fused(apply_head, chunk)(picked, targets)
        else:
            logp = token_logps_chunks(apply_head, chunk, picked, targets)
        # each pick's row, as a [K, R] one-hot (R is the batch's few rows): a sum per row
        rows = index // (tokens.shape[1] - 1)
        owner = (rows[:, None] == mx.arange(tokens.shape[0])[None, :]) & valid[:, None]
        owner = owner.astype(mx.float32)
        return (logp[:, None] * owner).sum(axis=0), owner.sum(axis=0)

    return masked if form == "masked" else chunked


def dpo_objective(beta: float, nll: float = 0.0) -> Callable[[Any, Any, Any], Any]:
    """f(logps [2B], counts [2B], reference [B, 2]) -> the mean DPO loss over the B pairs, plus
    `nll` x the chosen answers' cross-entropy per token (RPO) when `nll` > 0."""
    import mlx.core as mx

    def objective(logps: Any, counts: Any, reference: Any) -> Any:
        half = logps.shape[0] // 2
        chosen, rejected = logps[:half] - reference[:, 0], logps[half:] - reference[:, 1]
        loss = mx.logaddexp(0.0, -beta * (chosen - rejected)).mean()  # -log sigmoid(x)
        if nll:
            loss = loss - nll * logps[:half].sum() / mx.maximum(counts[:half].sum(), 1)
        return loss

    return objective


def log_odds(mean_logp: Any) -> Any:
    """log(p / (1 - p)) of p = exp(mean_logp) < 1, computed where p is near 1 too."""
    import mlx.core as mx

    safe = mx.minimum(mean_logp, -1e-6)
    return safe - mx.log(-mx.expm1(safe))


def orpo_objective(weight: float) -> Callable[[Any, Any, Any], Any]:
    """f(logps [2B], counts [2B], reference: unused) -> chosen cross-entropy per token plus
    `weight` x the mean odds-ratio term."""
    import mlx.core as mx

    def objective(logps: Any, counts: Any, reference: Any) -> Any:
        half = logps.shape[0] // 2
        counts = mx.maximum(counts, 1)
        mean = logps / counts
        nll = -logps[:half].sum() / counts[:half].sum()
        ratio = log_odds(mean[:half]) - log_odds(mean[half:])
        return nll + weight * mx.logaddexp(0.0, -ratio).mean()

    return objective


def preference_loss(
    logps_fn: Callable, objective: Callable
) -> Callable[[Any, Any, Any], tuple[Any, Any]]:
    """The loss `MlxSteps.make_step` differentiates: f(model, tokens, (targets, reference)) ->
    (loss, number of pairs)."""
    import mlx.core as mx

    def loss(model: Any, tokens: Any, inputs: Any) -> tuple[Any, Any]:
        targets, reference = inputs
        logps, counts = logps_fn(model, tokens, targets)
        return objective(logps, counts, reference), mx.array(reference.shape[0])

    return loss


def pair_batch(pairs: list[Any], form: str, max_width: int) -> tuple[str, Any, Any, Any]:
    """(form, tokens, targets, reference [B, 2]) of a batch of `PairRow`s as MLX arrays, the
    chosen rows first. The chunked form falls back to the masked one for a batch with no
    learned target; a missing reference is zeros (ORPO ignores it)."""
    import mlx.core as mx

    rows = [p.chosen for p in pairs] + [p.rejected for p in pairs]
    tokens, mask = batch_arrays(rows, max_width=max_width)
    picks = pick_targets(mask, 0.0) if form == "chunked" else None
    if picks is not None:
        targets = mx.array(picks)
    else:
        form, targets = "masked", mx.array(mask.astype(np.float32))
    reference = np.array([p.reference or (0.0, 0.0) for p in pairs], dtype=np.float32)
    return form, mx.array(tokens), targets, mx.array(reference)
