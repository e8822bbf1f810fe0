"""One process of `tests/test_mlx_launch.py`: trains with the mlx trainer, as `mlx.launch` runs
it on every rank (or alone, for the one-process reference).

    python tests/mlx_launch_worker.py MODEL DATA OUT OPTIONS_JSON [STOP_AT_STEP]

Ranks after the first write into OUT-rankN (as on another machine's disk: they never see rank
0's checkpoint). With STOP_AT_STEP, Ctrl-C arrives as that step starts, on every rank.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from mlxtune.errors import MlxtuneError
from mlxtune.train.loop import TrainingLoop
from mlxtune.train.mlx_trainer import MlxTrainer


def main() -> None:
    model, data, out, options = sys.argv[1:5]
    rank = int(os.environ.get("MLX_RANK", "0"))
    if len(sys.argv) > 5:
        stop_at, train_step = int(sys.argv[5]), TrainingLoop.train_step

        def interrupted(self: TrainingLoop, step: int) -> None:
            if step == stop_at:
                raise KeyboardInterrupt
            train_step(self, step)

        TrainingLoop.train_step = interrupted  # type: ignore[method-assign]
    trainer = MlxTrainer(MlxTrainer.Options(**json.loads(options)))
    folder = Path(out) if rank == 0 else Path(f"{out}-rank{rank}")
    try:
        result = trainer.train(model, Path(data), folder, log=print)
    except MlxtuneError as exc:
        print(f"stopped: {exc}")
        sys.exit(3)
    print(f"done: {result.steps} steps, best val loss {result.best_val_loss:.6f}")


if __name__ == "__main__":
    main()
