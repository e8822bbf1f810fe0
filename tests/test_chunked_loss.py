"""The chunked loss (train/chunked_loss.py): the same value and gradients as the masked loss
over the whole logits, through several chunks, with a tied, an untied and a quantized head,
compiled as the training step compiles it; used only where the head is frozen."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest

from mlxtune.train.batching import batch_arrays, make_rows, mask_spans


def lora_model(path, quantize: bool):
    """The model with LoRA on every layer and B randomised (at zero, half the gradients would be
    zero on both sides); `quantize`: the base (head included) quantized to 4 bits first."""
    import mlx.core as mx
    import mlx.nn as nn
    from mlx.utils import tree_flatten
    from mlx_lm.tuner.utils import linear_to_lora_layers

    from mlxtune.models.loading import load_model

    net, _ = load_model(str(path))
    if quantize:
        nn.quantize(net, group_size=32, bits=4)
    net.freeze()
    mx.random.seed(0)
    linear_to_lora_layers(net, len(net.layers), {"rank": 4, "scale": 2.0, "dropout": 0.0})
    randomised = [
        (name, 0.1 * mx.random.normal(value.shape))
        for name, value in tree_flatten(net.trainable_parameters())
        if name.endswith("lora_b")
    ]
    net.load_weights(randomised, strict=False)
    return net


@pytest.fixture(scope="module")
def untied_model(tmp_path_factory):
    from mlxtune.models.tiny import build_tiny_model

    return build_tiny_model(
        tmp_path_factory.mktemp("untied") / "model",
        vocab_size=600,
        shape_config={"tie_word_embeddings": False},
    )


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["tied", "untied", "quantized"])
def test_chunked_loss_has_the_masked_loss_value_and_gradients(tiny_model, untied_model, kind):
    import mlx.core as mx
    import mlx.nn as nn
    from mlx.utils import tree_flatten

    from mlxtune.train.chunked_loss import chunked_loss, head_is_frozen
    from mlxtune.train.losses import choose_inputs, masked_loss, split_head

    net = lora_model(untied_model if kind == "untied" else tiny_model, kind == "quantized")
    assert hasattr(net, "lm_head") == (kind == "untied")
    if kind == "quantized":
        assert isinstance(net.model.embed_tokens, nn.QuantizedEmbedding)
    head = split_head(net)
    assert head is not None and head_is_frozen(net)
    rng = np.random.default_rng(0)
    examples = [(rng.integers(3, 500, size=n).tolist(), p) for n, p in ((40, 12), (25, 20), (9, 3))]
    rows, _ = make_rows(examples, max_seq_length=64)
    tokens, mask = batch_arrays(rows)
    form, picks = choose_inputs(mask, "chunked")
    assert form == "chunked" and int((picks >= 0).sum()) == int(mask.sum()) == 39
    tokens = mx.array(tokens)

    def value_and_grads(loss, targets, compiled=False):
        fn = nn.value_and_grad(net, loss)
        if compiled:
            step = mx.compile(lambda t, p: fn(net, t, p), inputs=[net.state], outputs=[net.state])
        else:
            step = partial(fn, net)
        (value, n), grad = step(tokens, mx.array(targets))
        return value.item(), n.item(), {k: np.array(v) for k, v in tree_flatten(grad)}

    masked, n_masked, want = value_and_grads(masked_loss, mask_spans(mask))
    zero = [name for name, value in want.items() if not np.any(value)]
    assert want and not zero, zero  # every gradient is compared on non-zero values
    # 8 tokens a chunk: 39 targets in 6 chunks, the last one ragged (picks are padded to 48)
    for compiled in (False, True):
        value, n, got = value_and_grads(chunked_loss(head, 8), picks, compiled)
        assert n == n_masked == 39
        assert value == pytest.approx(masked, rel=1e-5)
        assert set(got) == set(want)
        for name, grad in want.items():
            scale = max(1e-12, float(np.abs(grad).max()))
            assert np.abs(got[name] - grad).max() <= 1e-5 * scale, (name, compiled)
    evaluation, n = chunked_loss(head, 8, train=False)(net, tokens, mx.array(picks))
    assert evaluation.item() == pytest.approx(masked, rel=1e-5) and n.item() == 39


def test_a_trainable_head_is_not_chunked(tiny_model):
    from mlxtune.models.loading import load_model
    from mlxtune.train.chunked_loss import chunk_tokens, head_is_frozen
    from mlxtune.train.mlx_steps import loss_forms

    net, _ = load_model(str(tiny_model))  # every weight trainable: full fine-tuning
    assert not head_is_frozen(net)
    assert loss_forms(net, chunked=True)[0] == "gathered"
    net.freeze()
    assert loss_forms(net, chunked=True)[0] == "chunked"
    assert loss_forms(net, chunked=False)[0] == "gathered"
    # a chunk's float32 logits stay within 128 MB: 128 tokens of Qwen's 151,936-entry vocabulary
    assert chunk_tokens(151_936) == 128 and chunk_tokens(32_000) == 1024
    assert chunk_tokens(600) == 4096 and chunk_tokens(10_000_000) == 16
