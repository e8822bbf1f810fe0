"""Cross-entropy over chunks of tokens, so the full [tokens, vocab] logits never exist.

Qwen's 152k-entry vocabulary makes the output head's float32 logits the largest tensor of a
LoRA step: at batch 4 x 1024 one copy is 2.5 GB, and autodiff keeps the logits, their softmax
and their gradient alive together. Here the head and the loss run over chunks of `chunk` tokens,
and each chunk's gradient with respect to the hidden states is computed in the forward pass,
while its logits exist (Liger's fused linear cross-entropy does the same on CUDA): the backward
pass then only scales the stored [tokens, hidden] gradient, so nothing is recomputed (Apple's
Cut Cross-Entropy recomputes instead) and a step does the same arithmetic as before.

Two things keep the chunks from being alive at once in MLX's lazy graph: each chunk's loss
`mx.depends` on its own gradient (computing the loss finishes the chunk), and each chunk's
input depends on the previous chunk's loss (the chunks run in order). What remains in flight is
the few chunks MLX's scheduler runs ahead, so the memory is set by `CHUNK_BYTES`.

The head's own weights get no gradient: the form is used only where the head is frozen (LoRA,
QLoRA); a trainable head (full fine-tuning) keeps `gathered_loss` or `masked_loss`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

CHUNK_BYTES = 2**27  # float32 logits of one chunk: 128 MB, 128 tokens of Qwen's vocabulary


def chunk_tokens(vocab: int) -> int:
    """Tokens per chunk: the largest power of two whose float32 logits fit in `CHUNK_BYTES`
    (16 to 4096): big enough to keep the head's matmul efficient."""
    fit = max(1, CHUNK_BYTES // (4 * vocab))
    return min(4096, max(16, 1 << (fit.bit_length() - 1)))


def head_is_frozen(model: Any) -> bool:
    """True when the output head (`lm_head`, or the tied embedding) has no trainable weights."""
    from mlx.utils import tree_flatten

    inner = getattr(model, "model", None)
    if getattr(getattr(model, "args", None), "tie_word_embeddings", False):
        module = getattr(inner, "embed_tokens", None)
    else:
        module = getattr(model, "lm_head", None)
    return module is not None and not tree_flatten(module.trainable_parameters())


def fused_cross_entropy(head: Callable[[Any], Any], chunk: int) -> Callable:
    """f(hidden [N, D], targets [N], weights [N]) -> (sum of weighted cross-entropies, its
    gradient with respect to hidden): differentiable in hidden, the gradient coming from the
    second output, which callers ignore."""
    import mlx.core as mx

    @mx.custom_function
    def cross_entropy(hidden: Any, targets: Any, weights: Any) -> tuple[Any, Any]:
        losses: list[Any] = []
        grads: list[Any] = []
        for start in range(0, hidden.shape[0], chunk):
            h = hidden[start : start + chunk]
            if losses:  # in order: this chunk starts once the previous one is finished
                h = mx.depends(h, losses[-1])
            t, w = targets[start : start + chunk, None], weights[start : start + chunk, None]
            logits = head(h).astype(mx.float32)
            norm = mx.logsumexp(logits, axis=-1, keepdims=True)
            loss = ((norm - mx.take_along_axis(logits, t, axis=-1)) * w).sum()
            # d loss / d logits = (softmax - one hot) * weight, then back through the head
            hit = mx.arange(logits.shape[-1])[None, :] == t
            d_logits = ((mx.exp(logits - norm) - hit) * w).astype(h.dtype)
            _, (d_hidden,) = mx.vjp(head, [h], [d_logits])
            losses.append(mx.depends(loss, d_hidden))
            grads.append(d_hidden)
        return mx.stack(losses).sum(), mx.concatenate(grads, axis=0)

    @cross_entropy.vjp
    def cross_entropy_vjp(primals: Any, cotangents: Any, outputs: Any) -> tuple[Any, Any, Any]:
        _, targets, weights = primals
        scale = cotangents[0].astype(outputs[1].dtype)
        return scale * outputs[1], mx.zeros_like(targets), mx.zeros_like(weights)

    return cross_entropy


def chunked_cross_entropy(
    head: Callable[[Any], Any], chunk: int, hidden: Any, targets: Any, weights: Any
) -> Any:
    """The same sum without gradients (evaluation): one chunk's logits at a time."""
    import mlx.core as mx

    total = None
    for start in range(0, hidden.shape[0], chunk):
        h = hidden[start : start + chunk]
        if total is not None:
            h = mx.depends(h, total)
        logits = head(h).astype(mx.float32)
        t = targets[start : start + chunk, None]
        ce = mx.logsumexp(logits, axis=-1, keepdims=True) - mx.take_along_axis(logits, t, axis=-1)
        part = (ce[:, 0] * weights[start : start + chunk]).sum()
        total = part if total is None else total + part
    return total if total is not None else mx.array(0.0)


def picked_states(model: Any, tokens: Any, picks: Any) -> tuple[Any, Any, Any, Any]:
    """The hidden states at the learned targets' positions, those targets, which picks are
    real (not -1 padding) and the picks' flat indices: what a chunked head runs over."""
    import mlx.core as mx

    hidden = model.model(tokens[:, :-1])
    flat = hidden.reshape(-1, hidden.shape[-1])
    valid = picks >= 0
    index = mx.maximum(picks, 0)
    picked = mx.take(flat, index, axis=0)
    targets = mx.take(tokens[:, 1:].reshape(-1), index)
    return picked, targets, valid, index


def chunked_loss(head: Any, chunk: int, train: bool = True) -> Callable[[Any, Any, Any], Any]:
    """`gathered_loss` with the head and the cross-entropy over chunks of the learned targets:
    same inputs (`picks`), same value. `train=False` skips the gradients (evaluation)."""
    import mlx.core as mx

    def loss(model: Any, tokens: Any, picks: Any) -> tuple[Any, Any]:
        picked, targets, valid, _ = picked_states(model, tokens, picks)
        weights = valid.astype(mx.float32)

        def apply_head(h: Any) -> Any:
            return head(model, h)

        if train:
            total, _ = fused_cross_entropy(apply_head, chunk)(picked, targets, weights)
        else:
            total = chunked_cross_entropy(apply_head, chunk, picked, targets, weights)
        n = valid.sum()
        return total / mx.maximum(n, 1), n

    return loss
