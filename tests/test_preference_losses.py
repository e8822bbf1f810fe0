"""The DPO, DPO + NLL (RPO) and ORPO losses and their gradients, masked and chunked, against
torch autograd in float64 on a small model (issue 30)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from mlxtune.train.batching import Row

NLL = 0.7  # rpo: DPO plus this x the chosen answers' cross-entropy (train.preference_nll)


class Toy:
    """A two-layer model in MLX and the same in torch: embedding, tanh(linear), frozen head."""

    V, D = 13, 6

    def __init__(self) -> None:
        rng = np.random.default_rng(3)
        self.weights = {
            "embed": rng.normal(0, 1, (self.V, self.D)).astype(np.float32),
            "proj": rng.normal(0, 0.5, (self.D, self.D)).astype(np.float32),
            "head": rng.normal(0, 1, (self.V, self.D)).astype(np.float32),
        }

    def mlx(self) -> Any:
        import mlx.core as mx
        import mlx.nn as nn

        w = self.weights

        class Inner(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.embed_tokens = nn.Embedding(Toy.V, Toy.D)
                self.proj = nn.Linear(Toy.D, Toy.D, bias=False)
                self.embed_tokens.weight = mx.array(w["embed"])
                self.proj.weight = mx.array(w["proj"])

            def __call__(self, x: Any) -> Any:
                return mx.tanh(self.proj(self.embed_tokens(x)))

        class Net(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.model = Inner()
                self.lm_head = nn.Linear(Toy.D, Toy.V, bias=False)
                self.lm_head.weight = mx.array(w["head"])
                self.lm_head.freeze()

            def __call__(self, x: Any) -> Any:
                return self.lm_head(self.model(x))

        return Net()

    def torch_loss(self, tokens: np.ndarray, mask: np.ndarray, reference, objective, beta):
        import torch

        params = {
            k: torch.tensor(v, dtype=torch.float64, requires_grad=k != "head")
            for k, v in self.weights.items()
        }
        t = torch.tensor(tokens, dtype=torch.long)
        hidden = torch.tanh(params["embed"][t[:, :-1]] @ params["proj"].T)
        logp = torch.log_softmax(hidden @ params["head"].T, dim=-1)
        picked = logp.gather(-1, t[:, 1:, None])[..., 0] * torch.tensor(mask, dtype=torch.float64)
        sums, counts = picked.sum(1), torch.tensor(mask.sum(1), dtype=torch.float64)
        half = len(sums) // 2
        if objective in ("dpo", "rpo"):
            ref = torch.tensor(reference, dtype=torch.float64)
            x = beta * ((sums[:half] - ref[:, 0]) - (sums[half:] - ref[:, 1]))
            loss = -torch.nn.functional.logsigmoid(x).mean()
            if objective == "rpo":  # plus NLL x the chosen answers' cross-entropy per token
                loss = loss - NLL * sums[:half].sum() / counts[:half].sum()
        else:
            mean = sums / counts
            odds = mean - torch.log(-torch.expm1(mean))
            nll = -sums[:half].sum() / counts[:half].sum()
            loss = nll - beta * torch.nn.functional.logsigmoid(odds[:half] - odds[half:]).mean()
        loss.backward()
        grads = {
            "model.embed_tokens.weight": params["embed"].grad,
            "model.proj.weight": params["proj"].grad,
        }
        return float(loss.detach()), {k: g.numpy() for k, g in grads.items()}


@pytest.mark.parametrize("objective", ["dpo", "rpo", "orpo"])
@pytest.mark.parametrize("form", ["masked", "chunked"])
def test_loss_and_gradients_match_torch(objective, form):
    import mlx.core as mx
    import mlx.nn as nn
    from mlx.utils import tree_flatten

    from mlxtune.train.preference import (
        dpo_objective,
        orpo_objective,
        pair_batch,
        preference_loss,
        sequence_logps,
    )
    from mlxtune.train.preference_data import PairRow

    rng = np.random.default_rng(0)

    def row(prompt: int, answer: int) -> Row:
        tokens = rng.integers(1, Toy.V, prompt + answer).tolist()
        return Row(tokens, [i >= prompt for i in range(prompt + answer)])

    pairs = [
        PairRow(row(3, 5), row(4, 2), (-9.0, -4.0)),
        PairRow(row(2, 7), row(2, 6), (-14.0, -12.5)),
        PairRow(row(5, 3), row(3, 8), (-6.0, -17.0)),
    ]
    toy = Toy()
    net = toy.mlx()
    kind, tokens, targets, reference = pair_batch(pairs, form, 64)
    assert kind == form
    head = lambda m, h: m.lm_head(h)  # noqa: E731
    # a chunk of 4 targets: the batch's answers span several chunks
    logps = sequence_logps(form, head, 4)
    beta = 0.5
    fn = {
        "dpo": dpo_objective(beta),
        "rpo": dpo_objective(beta, NLL),
        "orpo": orpo_objective(beta),
    }[objective]
    loss, grads = nn.value_and_grad(net, preference_loss(logps, fn))(
        net, tokens, (targets, reference)
    )
    value = loss[0].item()
    mlx_grads = {k: np.array(v) for k, v in tree_flatten(grads)}
    assert set(mlx_grads) == {"model.embed_tokens.weight", "model.proj.weight"}  # head frozen

    full = [p.chosen for p in pairs] + [p.rejected for p in pairs]
    from mlxtune.train.batching import batch_arrays

    np_tokens, np_mask = batch_arrays(full, max_width=64)
    ref = np.array([p.reference for p in pairs])
    expected, torch_grads = toy.torch_loss(np_tokens, np_mask, ref, objective, beta)
    assert value == pytest.approx(expected, rel=1e-5)
    for name, g in torch_grads.items():
        np.testing.assert_allclose(mlx_grads[name], g, rtol=1e-4, atol=1e-6)
    assert np.abs(torch_grads["model.proj.weight"]).max() > 1e-3  # a gradient to compare
    mx.eval(loss)
