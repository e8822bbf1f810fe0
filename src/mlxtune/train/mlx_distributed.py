"""Data parallel over the processes of an `mlx.launch` (two Macs over Thunderbolt or Ethernet,
or several processes on one machine), on MLX's own distributed layer (ring, MPI, JACCL).

Every rank takes its share of each global batch (`rows[rank::size]`); the gradients are
combined so that the update is the one a single process would make on the whole batch: each
rank's mean gradient is weighted by its learned-token count before the sum and the sum divided
by the launch's count (mlx-lm averages the ranks' means, which differs when their counts do).
Evaluation splits the validation batches over the ranks and sums. Rank 0 writes every file,
and on resume reads the checkpoint and sends it to the others (`broadcast_json`,
`broadcast_arrays`), so the other machines need no copy of it.
"""

from __future__ import annotations

import os
from typing import Any

LAUNCH_VARIABLES = (
    "MLX_RANK",
    "MLX_WORLD_SIZE",
    "MLX_HOSTFILE",
    "MLX_JACCL_COORDINATOR",
    "OMPI_COMM_WORLD_SIZE",
)


def in_mlx_launch() -> bool:
    """True inside `mlx.launch` (ring, JACCL and NCCL set MLX_ variables, MPI its own)."""
    return any(os.environ.get(name) for name in LAUNCH_VARIABLES)


def launch_group() -> Any | None:
    """The launch's process group, or None outside a launch of more than one process."""
    if not in_mlx_launch():
        return None
    import mlx.core as mx

    group = mx.distributed.init()
    return group if group.size() > 1 else None


class Ranks:
    """One process's place in the launch, and the collectives the training step needs."""

    def __init__(self, group: Any | None):
        self.group = group
        self.rank = group.rank() if group is not None else 0
        self.size = group.size() if group is not None else 1

    def shard(self, rows: list) -> list:
        """This rank's rows of a global batch (the batch size is at least the launch's size)."""
        return rows[self.rank :: self.size]

    def combine(self, loss: Any, n: Any, grad: Any) -> tuple[Any, Any, Any]:
        """(the launch's mean loss, its learned-token count, its mean gradient) from this rank's
        (mean loss, count, mean gradient); inside the compiled step."""
        if self.group is None:
            return loss, n, grad
        import mlx.core as mx
        from mlx.nn.utils import average_gradients
        from mlx.utils import tree_map

        n = n.astype(mx.float32)
        total = mx.distributed.all_sum(n, group=self.group)
        scale = self.size / mx.maximum(total, 1)
        # average_gradients buckets the leaves into few collectives, then divides by the size
        summed = average_gradients(tree_map(lambda g: g * n.astype(g.dtype), grad), self.group)
        grad = tree_map(lambda g: g * scale.astype(g.dtype), summed)
        loss = mx.distributed.all_sum(loss * n, group=self.group) / mx.maximum(total, 1)
        return loss, total, grad

    def total(self, value: Any) -> Any:
        """The sum of `value` over the launch."""
        if self.group is None:
            return value
        import mlx.core as mx

        return mx.distributed.all_sum(value, group=self.group)

    def largest(self, value: float) -> float:
        """The largest of the ranks' `value`s."""
        if self.group is None:
            return value
        import mlx.core as mx

        return mx.distributed.all_max(mx.array(value), group=self.group).item()

    def broadcast_json(self, value: Any) -> Any:
        """Rank 0's JSON-able `value`, on every rank."""
        if self.group is None:
            return value
        import json

        import mlx.core as mx
        import numpy as np

        data = json.dumps(value).encode() if self.rank == 0 else b""
        size = int(self.total(mx.array(len(data), dtype=mx.int32)).item())
        padded = np.zeros(size, dtype=np.int32)
        padded[: len(data)] = np.frombuffer(data, dtype=np.uint8)
        received = np.array(self.total(mx.array(padded))).astype(np.uint8).tobytes()
        return json.loads(received.decode())

    def broadcast_arrays(self, arrays: dict[str, Any]) -> dict[str, Any]:
        """Rank 0's named arrays on every rank (the others pass {}): names, shapes and dtypes
        first, then each array summed with zeros from the other ranks."""
        if self.group is None:
            return arrays
        import mlx.core as mx

        meta = {k: [list(v.shape), str(v.dtype).rsplit(".", 1)[-1]] for k, v in arrays.items()}
        meta = self.broadcast_json(meta if self.rank == 0 else None)
        out = {}
        for name, (shape, dtype) in sorted(meta.items()):
            mine = arrays[name] if self.rank == 0 else mx.zeros(shape, dtype=getattr(mx, dtype))
            out[name] = self.total(mine)
            mx.eval(out[name])
        return out

    def barrier(self) -> None:
        if self.group is not None:
            import mlx.core as mx

            mx.eval(mx.distributed.all_sum(mx.array(1.0), group=self.group))
