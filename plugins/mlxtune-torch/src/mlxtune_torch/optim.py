"""MLX's Adam and AdamW as a torch optimizer, so the torch trainer takes the mlx trainer's steps.

MLX's Adam has no bias correction by default (`bias_correction=False`, as mlx-lm trains): the
first updates are `lr * m / (sqrt(v) + eps)` with `m` and `v` still near zero, about three times
larger than torch's bias-corrected Adam takes. With torch's own AdamW the same recipe learned far
slower under the torch trainer. Weight decay is decoupled, applied to the parameter before the
update, as both MLX's and torch's AdamW do. torch is imported when the optimizer is made, not
with the module: plugins load whenever `mlxtune` starts, and `mlxtune --help` must stay instant.
"""

from __future__ import annotations

from functools import cache
from typing import Any


def MlxAdam(  # noqa: N802 (called like the class it builds)
    params: Any,
    lr: float = 1e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
) -> Any:
    defaults = {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay}
    return optimizer_class()(params, defaults)


@cache
def optimizer_class() -> type:
    """The torch optimizer, defined on first use."""
    import torch

    class _MlxAdam(torch.optim.Optimizer):
        @torch.no_grad()
        def step(self, closure: Any = None) -> Any:
            loss = closure() if closure is not None else None
            for group in self.param_groups:
                beta1, beta2 = group["betas"]
                for param in group["params"]:
                    if param.grad is None:
                        continue
                    grad = param.grad
                    state = self.state[param]
                    if not state:
                        state["m"] = torch.zeros_like(param)
                        state["v"] = torch.zeros_like(param)
                    m, v = state["m"], state["v"]
                    if group["weight_decay"]:
                        param.mul_(1 - group["lr"] * group["weight_decay"])
                    m.mul_(beta1).add_(grad, alpha=1 - beta1)
                    v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                    param.addcdiv_(m, v.sqrt().add_(group["eps"]), value=-group["lr"])
            return loss

    return _MlxAdam
