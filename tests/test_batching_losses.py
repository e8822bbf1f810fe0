"""Token layout and the loss without a trained model: packing, loss masks, gathered targets (same
value and gradients as the masked loss), truncation and the data order."""

from __future__ import annotations

import numpy as np
import pytest

from mlxtune.train.batching import batch_arrays, epoch_batches, make_rows, mask_spans, pack_rows

# ---------------------------------------------------------------- token layout (no model)

EOS = 99


def test_packing_keeps_eos_separators_and_masks_every_prompt():
    examples = [([1, 2, 3, EOS], 2), ([4, 5, EOS], 1), ([6, 7, 8, 9, 10, EOS], 3)]
    rows, truncated = make_rows(examples, max_seq_length=8)
    assert truncated == 0
    packed = pack_rows(rows, max_seq_length=8)
    assert [r.tokens for r in packed] == [[1, 2, 3, EOS, 4, 5, EOS], [6, 7, 8, 9, 10, EOS]]
    # learned: the completion of each example, including its EOS; prompts are masked
    assert packed[0].weights == [False, False, True, True, False, True, True]
    tokens, weights = batch_arrays(packed)
    assert tokens.shape == (2, 33) and weights.shape == (2, 32)
    # target j is token j + 1: [2, 3, EOS, 4, 5, EOS] -> learned [F, T, T, F, T, T]
    assert weights[0, :7].tolist() == [0, 1, 1, 0, 1, 1, 0]
    assert weights[1, :6].tolist() == [0, 0, 1, 1, 1, 0]
    assert tokens[0, 7:].sum() == 0 and weights[:, 7:].sum() == 0  # padding is never learned
    # the compiled step gets the mask as runs: one per example, (0, 0) for none
    spans = mask_spans(weights)
    assert spans.shape == (2, 4, 2)
    assert spans[0].tolist() == [[1, 3], [4, 6], [0, 0], [0, 0]]
    assert spans[1].tolist() == [[2, 5], [0, 0], [0, 0], [0, 0]]
    steps = np.arange(weights.shape[1])
    rebuilt = ((steps >= spans[..., :1]) & (steps < spans[..., 1:])).any(axis=1)
    assert (rebuilt == weights).all()


def test_targets_are_picked_only_where_that_saves_work():
    from mlxtune.train.losses import choose_inputs, pick_targets

    mask = np.zeros((2, 32), dtype=bool)
    mask[0, 10:20] = True
    mask[1, 5:9] = True
    picks = pick_targets(mask)
    assert len(picks) == 16 and len(picks) % 16 == 0  # padded to half a row
    assert picks[:14].tolist() == [*range(10, 20), *range(37, 41)] and (picks[14:] == -1).all()
    assert choose_inputs(mask, "gathered")[0] == "gathered"
    assert choose_inputs(mask, "masked")[0] == "masked"
    full = np.ones((2, 32), dtype=bool)  # nothing to skip: the head runs everywhere
    assert pick_targets(full) is None and choose_inputs(full, "gathered")[0] == "masked"
    # the chunked form takes every batch with something to learn (it saves memory, not work)
    assert choose_inputs(full, "chunked")[0] == "chunked"
    assert choose_inputs(np.ones((2, 5), dtype=bool), "chunked")[1].tolist() == [*range(10), -1, -1]
    nothing = np.zeros((2, 32), dtype=bool)
    assert pick_targets(nothing) is None and choose_inputs(nothing, "chunked")[0] == "masked"


@pytest.mark.slow
@pytest.mark.parametrize("frozen", [True, False], ids=["lora", "unfrozen"])
def test_gathered_loss_has_the_masked_loss_value_and_gradients(tiny_model, frozen):
    """With LoRA's B randomised (at zero, half the gradients would be zero on both sides), and
    with the whole model trainable (the tied embedding then gets gradients through the gathered
    head as well as through the input)."""
    import mlx.core as mx
    import mlx.nn as nn
    from mlx.utils import tree_flatten
    from mlx_lm.tuner.utils import linear_to_lora_layers

    from mlxtune.models.loading import load_model
    from mlxtune.train.losses import gathered_loss, masked_loss, pick_targets, split_head

    net, _ = load_model(str(tiny_model))
    mx.random.seed(0)
    if frozen:
        net.freeze()
        linear_to_lora_layers(net, len(net.layers), {"rank": 4, "scale": 2.0, "dropout": 0.0})
        randomised = [
            (name, 0.1 * mx.random.normal(value.shape))
            for name, value in tree_flatten(net.trainable_parameters())
            if name.endswith("lora_b")
        ]
        assert randomised
        net.load_weights(randomised, strict=False)
    head = split_head(net)
    assert head is not None  # Qwen2-shaped, tied embeddings: logits = head(model.model(x))
    rng = np.random.default_rng(0)
    examples = [(rng.integers(3, 500, size=n).tolist(), p) for n, p in ((40, 12), (25, 20), (9, 3))]
    rows, _ = make_rows(examples, max_seq_length=64)
    tokens, mask = batch_arrays(rows)
    picks = pick_targets(mask)
    assert picks is not None and len(picks) < mask.size / 2  # prompts and padding skipped
    tokens = mx.array(tokens)
    results = []
    for loss, targets in ((masked_loss, mask_spans(mask)), (gathered_loss(head), picks)):
        (value, n), grad = nn.value_and_grad(net, loss)(net, tokens, mx.array(targets))
        results.append((value.item(), n.item(), dict(tree_flatten(grad))))
    (masked, n_masked, g_masked), (gathered, n_gathered, g_gathered) = results
    assert n_masked == n_gathered == int(mask.sum())
    assert gathered == pytest.approx(masked, rel=1e-5)
    assert set(g_masked) == set(g_gathered) and len(g_masked) > 0
    zero = [name for name, value in g_masked.items() if not np.any(np.array(value))]
    assert not zero, zero  # every gradient is compared on non-zero values
    if not frozen:
        assert "model.embed_tokens.weight" in g_masked
    for name, value in g_masked.items():
        want = np.array(value)
        got = np.array(g_gathered[name])
        assert np.allclose(got, want, atol=1e-6 * max(1.0, np.abs(want).max())), name


def test_a_model_that_does_more_than_its_head_keeps_the_masked_loss():
    import mlx.core as mx
    import mlx.nn as nn

    from mlxtune.train.losses import split_head

    class Capped(nn.Module):  # logits soft-capped after the head, as some models do
        def __init__(self):
            super().__init__()
            self.model = nn.Embedding(16, 8)
            self.lm_head = nn.Linear(8, 16)

        def __call__(self, x):
            return 3 * mx.tanh(self.lm_head(self.model(x)) / 3)

    class Plain(Capped):
        def __call__(self, x):
            return self.lm_head(self.model(x))

    assert split_head(Capped()) is None
    assert split_head(Plain()) is not None
    assert split_head(nn.Linear(2, 2)) is None  # no inner model at all


def test_overlong_examples_are_truncated_and_counted():
    rows, truncated = make_rows([(list(range(1, 21)), 2), ([1, 2, EOS], 1)], max_seq_length=8)
    assert truncated == 1 and [len(r) for r in rows] == [8, 3]


def test_data_order_is_a_function_of_seed_and_epoch():
    lengths = [5, 9, 3, 7, 1, 8, 2, 6]
    first = epoch_batches(lengths, 2, seed=0, epoch=0)
    assert first == epoch_batches(lengths, 2, seed=0, epoch=0)
    assert sorted(i for b in first for i in b) == list(range(8))
    assert first != epoch_batches(lengths, 2, seed=0, epoch=1)
    assert all(abs(lengths[a] - lengths[b]) <= 2 for a, b in first)  # similar lengths together
