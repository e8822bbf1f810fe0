"""Print docs/memory.md's table: the original study's models on 16, 32 and 64 GB Macs.

The settings are the mlx trainer's own (its Options with the recipe defaults: batch 4 x 1024,
LoRA rank 8 on 16 layers, the chunked loss), read by the planner the way `auto_fit` and
`mlxtune plan` read them (`train.planner.setting_from_options`), so the table changes when the
planner or a default does; tests/test_memory_table.py checks docs/memory.md against it.

python scripts/memory_table.py
"""

from __future__ import annotations

from mlxtune.device import named_profile
from mlxtune.train.mlx_trainer import MlxTrainer
from mlxtune.train.planner import (
    GB,
    ModelShape,
    bundled_config,
    estimate_training,
    fit,
    setting_from_options,
)

MODELS = ["Qwen2.5-1.5B", "Qwen2.5-3B", "Qwen2.5-7B", "Qwen2.5-14B", "QwQ-32B"]
MEMORY = [16, 32, 64]
OPTIONS = MlxTrainer.Options(batch_size=4, max_seq_length=1024, num_layers=16, lora_rank=8)


def cell(shape: ModelShape, config: dict, memory: int) -> str:
    device = named_profile("metal", memory * 2**30)  # the budget: Metal's working set
    setting = setting_from_options(OPTIONS, config, device)
    if estimate_training(shape, setting).total <= device.budget:
        return "fits"
    suggestion = fit(shape, setting, device.budget)
    if suggestion is None:
        return "no"
    change = ", ".join(f"{k.split('.')[1]}={v}" for k, v in suggestion.overrides.items())
    return f"with {change} ({suggestion.estimate.total / GB:.1f} GB)"


def table() -> list[str]:
    lines = [
        "| model | weights | peak training estimate | "
        + " | ".join(f"{m} GB Mac" for m in MEMORY)
        + " |",
        "|---|---|---|" + "---|" * len(MEMORY),
    ]
    for name in MODELS:
        for label, ref in (("bf16", name), ("4-bit", f"{name}-4bit")):
            config = bundled_config(ref)
            assert config is not None, ref
            shape = ModelShape.from_config(config)
            device = named_profile("metal", MEMORY[0] * 2**30)  # the estimate is the same on each
            need = estimate_training(shape, setting_from_options(OPTIONS, config, device)).total
            cells = [cell(shape, config, memory) for memory in MEMORY]
            lines.append(
                f"| {name} {label} | {shape.params / 1e9:.1f}B | {need / GB:.1f} GB | "
                + " | ".join(cells)
                + " |"
            )
    return lines


def main() -> None:
    print("\n".join(table()))


if __name__ == "__main__":
    main()
