"""Which multi-process launch this process is part of, and its place in it.

Read by the pipeline (only the train stage runs in a launch; only rank 0 writes), the trainers
and the memory planner (each process plans its own share of a batch).
"""

from __future__ import annotations

import os

from .mlx_distributed import in_mlx_launch, launch_group


def launch_rank() -> tuple[int, int]:
    """(rank, world size) of a multi-process launch (`mlx.launch` through MLX's distributed
    group; `accelerate launch` and `torchrun` set RANK and WORLD_SIZE), else (0, 1)."""
    if launch_kind() == "mlx":
        group = launch_group()
        return (group.rank(), group.size()) if group is not None else (0, 1)
    try:
        return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 0, 1


def launch_kind() -> str | None:
    """Which launch this process is in: "mlx" (`mlx.launch`), "torch" (`accelerate launch`,
    `torchrun`), or None."""
    if in_mlx_launch():
        return "mlx"
    return "torch" if os.environ.get("WORLD_SIZE", "1") not in ("", "1") else None
