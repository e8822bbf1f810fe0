"""Training options no run can use are refused when the recipe loads, naming the key (issue 24),
and a run of the most steps validation allows really trains."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from test_training import make_data
from test_training_faults import mlx_train

from mlxtune.errors import MlxtuneError, RecipeError

QUICKSTART = Path(__file__).parent.parent / "recipes" / "quickstart.yaml"


@pytest.mark.parametrize(
    "override",
    [
        "train.learning_rate=.inf",
        "train.learning_rate=.nan",
        "train.learning_rate=2.0",
        "train.iters=1000000000000000000000000000000",
        "train.iters=2147483648",
        "train.epochs=.inf",
        "train.weight_decay=.inf",
        "train.warmup_fraction=.nan",
        "train.lora_scale=.inf",
        "train.lora_dropout=.nan",
        "train.unlikelihood=.inf",
        "train.seed=-1",
        "train.seed=18446744073709551616",
        "train.quantize_group_size=0",
    ],
)
def test_options_no_run_can_use_are_refused_naming_the_key(override):
    from mlxtune.recipe import load_recipe

    with pytest.raises(RecipeError) as info:
        load_recipe(QUICKSTART, [override])
    key = override.split("=")[0]
    assert f"{key}:" in str(info.value), str(info.value)


@pytest.mark.slow
def test_a_run_of_the_most_steps_validation_allows_trains(tmp_path, tiny_model, monkeypatch):
    import mlx.core as mx

    from mlxtune.train.loop import TrainingLoop, planned_steps
    from mlxtune.train.mlx_trainer import MlxRun, MlxTrainer
    from mlxtune.train.options import MAX_STEPS

    data = make_data(tmp_path)
    real, started = TrainingLoop.train_step, []

    def two_steps(self: TrainingLoop, step: int) -> None:
        started.append(step)
        if step == 3:
            raise KeyboardInterrupt
        real(self, step)

    with monkeypatch.context() as patch:
        patch.setattr(TrainingLoop, "train_step", two_steps)
        with pytest.raises(MlxtuneError, match=f"interrupted at step 3 of {MAX_STEPS}"):
            mlx_train(tiny_model, data, tmp_path / "out", iters=MAX_STEPS, eval_every=0.5)
    assert started == [1, 2, 3]
    # its schedule gives a finite rate up to the last step
    options = MlxTrainer.Options(iters=MAX_STEPS, warmup_fraction=0.0)
    optimizer = MlxRun(options, "m", tmp_path, tmp_path, False, print).make_optimizer(MAX_STEPS)
    weights = {"w": mx.zeros(3)}
    optimizer.init(weights)
    optimizer.state["step"] = mx.array(MAX_STEPS - 1, dtype=mx.uint64)
    optimizer.apply_gradients({"w": mx.ones(3)}, weights)
    assert math.isfinite(optimizer.learning_rate.item())
    with pytest.raises(MlxtuneError, match=r"train.epochs=1e\+12 .* lower train.epochs"):
        planned_steps(MlxTrainer.Options(epochs=1e12), 100)
