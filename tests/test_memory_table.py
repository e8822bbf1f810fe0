"""docs/memory.md's table of the original study's models is what scripts/memory_table.py prints
today, and that script reads the planner the way `auto_fit` and `mlxtune plan` do: a change to
the planner or to a trainer default that moves a figure fails here until the page is regenerated
(`python scripts/memory_table.py`)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load_script():
    spec = importlib.util.spec_from_file_location("memory_table", ROOT / "scripts/memory_table.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def table_in_docs() -> list[str]:
    lines = (ROOT / "docs/memory.md").read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| model | weights | peak"))
    end = start
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    return lines[start:end]


def test_the_docs_table_is_what_the_script_prints():
    assert table_in_docs() == load_script().table(), (
        "docs/memory.md's table differs from the planner's: paste `python scripts/memory_table.py`"
    )


def test_the_script_plans_what_mlxtune_plan_plans_for_the_default_recipe():
    """The 4-bit 1.5B row is the default recipe on a Mac: the same setting `plan` and auto-fit
    build from the trainer's options (the chunked loss included), so the same estimate."""
    from mlxtune.device import named_profile
    from mlxtune.train.mlx_trainer import MlxTrainer
    from mlxtune.train.planner import (
        GB,
        ModelShape,
        bundled_config,
        estimate_training,
        setting_from_options,
    )

    script = load_script()
    config = bundled_config("Qwen2.5-1.5B-Instruct-4bit")
    options = MlxTrainer.Options(batch_size=4, max_seq_length=1024, num_layers=16, lora_rank=8)
    setting = setting_from_options(options, config, named_profile("metal", 32 * 2**30))
    assert setting.chunked_loss  # the mlx trainer's default, which the old table ignored
    need = estimate_training(ModelShape.from_config(config), setting).total / GB
    row = next(line for line in script.table() if line.startswith("| Qwen2.5-1.5B 4-bit"))
    assert f"| {need:.1f} GB |" in row
