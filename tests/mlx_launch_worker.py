"""One process of `tests/test_mlx_launch.py`: trains with the mlx trainer, as `mlx.launch` runs
it on every rank (or alone, for the one-process reference).

    python tests/mlx_launch_worker.py MODEL DATA OUT OPTIONS_JSON
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from mlxtune.train.mlx_trainer import MlxTrainer


def main() -> None:
    model, data, out, options = sys.argv[1:5]
    trainer = MlxTrainer(MlxTrainer.Options(**json.loads(options)))
    result = trainer.train(model, Path(data), Path(out), log=print)
    print(f"done: {result.steps} steps, best val loss {result.best_val_loss:.6f}")


if __name__ == "__main__":
    main()
