"""The training loss: mean cross-entropy over the learned targets, in two forms with one value.

- `masked_loss` runs the output head on every position and masks the loss, as mlx-lm does. The
  mask enters the compiled step as (start, end) runs (`batching.mask_spans`) and is rebuilt in
  the graph: a dense [batch, tokens] mask passed in kept one more activation alive in the
  backward pass (+5 MB peak on the Qwen2.5-0.5B shape).
- `gathered_loss` runs the head on the learned targets' hidden states only. Qwen's 152k-entry
  vocabulary makes the head and its float32 logits the largest activation of a step, and with
  the prompt masked (the default) and padding, many positions are not learned: their logits are
  never computed, which saves that share of the head's time and of the logits' memory.

A third form, `chunked_loss` (chunked_loss.py), runs the head and the loss over chunks of the
learned targets so the whole logits never exist; it is the default wherever the head splits off
and is frozen. `choose_inputs` picks the inputs per batch: the learned targets' indices for the
chunked form (when there is any), for the gathered form when the model's logits are checked to
be `head(model.model(x))` (`split_head`) and it skips at least a tenth of the positions, else
the mask's runs for the masked form.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .batching import mask_spans

Head = Callable[[Any, Any], Any]
MIN_SAVING = 0.1  # gather only when at least this share of the positions is not learned


def masked_loss(model: Any, tokens: Any, spans: Any) -> tuple[Any, Any]:
    """(mean cross-entropy over the learned targets, their count) for tokens [B, W] and the
    loss mask as runs [B, S, 2]."""
    import mlx.core as mx
    import mlx.nn as nn

    logits = model(tokens[:, :-1])
    steps = mx.arange(tokens.shape[1] - 1)
    inside = (steps >= spans[:, :, 0:1]) & (steps < spans[:, :, 1:2])
    # [B, W-1]: the target is learned (one run per row unless packed: no reduction then)
    mask = inside[:, 0] if spans.shape[1] == 1 else inside.any(axis=1)
    # in float32 whatever the compute dtype: a bfloat16 log-softmax over 152k entries loses
    # the small probabilities the loss is made of (a no-op when the model runs in float32)
    ce = nn.losses.cross_entropy(logits.astype(mx.float32), tokens[:, 1:]) * mask
    n = mask.sum()
    return ce.astype(mx.float32).sum() / mx.maximum(n, 1), n


def gathered_loss(head: Head) -> Callable[[Any, Any, Any], tuple[Any, Any]]:
    """The same loss with the head applied to the learned targets only. `picks` [K] holds their
    flat indices into the [B * (W-1)] targets, padded with -1 (`pick_targets`)."""
    import mlx.core as mx
    import mlx.nn as nn

    def loss(model: Any, tokens: Any, picks: Any) -> tuple[Any, Any]:
        hidden = model.model(tokens[:, :-1])
        flat = hidden.reshape(-1, hidden.shape[-1])
        valid = picks >= 0
        index = mx.maximum(picks, 0)
        logits = head(model, mx.take(flat, index, axis=0))
        targets = mx.take(tokens[:, 1:].reshape(-1), index)
        ce = nn.losses.cross_entropy(logits.astype(mx.float32), targets) * valid
        n = valid.sum()
        return ce.astype(mx.float32).sum() / mx.maximum(n, 1), n

    return loss


def split_head(model: Any) -> Head | None:
    """The output head if the model's logits are `head(model, model.model(x))` (mlx-lm's Qwen,
    Llama and most others: `lm_head`, or the tied embedding), checked on a few tokens; None for
    models that do more (soft-capping, scaling), which keep `masked_loss`."""
    import mlx.core as mx

    inner = getattr(model, "model", None)
    if not callable(inner):
        return None
    if getattr(getattr(model, "args", None), "tie_word_embeddings", False):

        def head(m: Any, h: Any) -> Any:
            return m.model.embed_tokens.as_linear(h)

    elif hasattr(model, "lm_head"):

        def head(m: Any, h: Any) -> Any:
            return m.lm_head(h)

    else:
        return None
    training = model.training
    model.eval()
    try:
        probe = mx.array([[1, 2, 3, 4, 5, 6, 7, 8]])
        full, split = model(probe), head(model, inner(probe))
        same = full.shape == split.shape and mx.allclose(full, split, rtol=1e-4, atol=1e-4).item()
    except Exception:  # any model that does not decompose this way
        same = False
    finally:
        model.train(training)
    return head if same else None


def pick_targets(mask: np.ndarray, min_saving: float = MIN_SAVING) -> np.ndarray | None:
    """Flat indices of the learned targets, padded with -1 to a multiple of half a row (few
    distinct shapes to compile); None when there is nothing to learn, or when `min_saving` > 0
    and that would skip under that share of the positions."""
    positions = mask.size
    picks = np.flatnonzero(mask.reshape(-1)).astype(np.int32)
    unit = max(1, -(-mask.shape[1] // 2))
    size = -(-len(picks) // unit) * unit
    if not len(picks) or (min_saving > 0 and size > (1 - min_saving) * positions):
        return None
    return np.concatenate([picks, np.full(size - len(picks), -1, dtype=np.int32)])


def choose_inputs(mask: np.ndarray, form: str) -> tuple[str, np.ndarray]:
    """(form, picks) for the "chunked" or "gathered" form, or ("masked", spans), for one batch's
    loss mask: the chunked form takes any batch with a learned target, the gathered one only
    those where it skips `MIN_SAVING` of the positions."""
    if form in ("chunked", "gathered"):
        picks = pick_targets(mask, 0.0 if form == "chunked" else MIN_SAVING)
        if picks is not None:
            return form, picks
    return "masked", mask_spans(mask)


def unlikelihood_loss(alpha: float) -> Callable[[Any, Any, Any], tuple[Any, Any]]:
    """Cross-entropy plus token-level unlikelihood (Welleck et al., 2019, "Neural Text Generation
    with Unlikelihood Training"): at each learned target, every different token that already
    occurred among the earlier learned targets of its row is a negative candidate, and
    `-log(1 - p(candidate))` is added, weighted by `alpha`. It teaches the model that what it
    already said is unlikely to come next: the repetition loops are what it unlearns, with no
    extra data and no generation during training.

    Only the candidates' logits are gathered ([B, T, T], not a second [B, T, V]); the
    cross-entropy part and the returned count are `masked_loss`'s.
    """
    import mlx.core as mx
    import mlx.nn as nn

    def loss(model: Any, tokens: Any, spans: Any) -> tuple[Any, Any]:
        logits = model(tokens[:, :-1]).astype(mx.float32)
        targets = tokens[:, 1:]
        steps = mx.arange(targets.shape[1])
        inside = (steps >= spans[:, :, 0:1]) & (steps < spans[:, :, 1:2])
        mask = inside[:, 0] if spans.shape[1] == 1 else inside.any(axis=1)
        n = mask.sum()
        ce = (nn.losses.cross_entropy(logits, targets) * mask).sum()
        # candidates[b, t, s]: the target at s < t, learned, its first occurrence in the row,
        # and not the target at t itself
        earlier = steps[None, :] < steps[:, None]  # [t, s]
        same = targets[:, :, None] == targets[:, None, :]  # [b, t, s]
        seen_before = (same & earlier[None] & mask[:, None, :]).any(axis=2)  # [b, s]
        first = mask & ~seen_before
        candidate = earlier[None] & first[:, None, :] & mask[:, :, None] & ~same
        index = mx.broadcast_to(targets[:, None, :], candidate.shape)
        chosen = mx.take_along_axis(logits, index, axis=2)  # [b, t, s]
        p = mx.exp(chosen - mx.logsumexp(logits, axis=-1, keepdims=True))
        ul = (-mx.log(mx.maximum(1 - p, 1e-5)) * candidate).sum()
        return (ce + alpha * ul) / mx.maximum(n, 1), n

    return loss
