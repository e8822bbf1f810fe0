"""Print docs/memory.md's table: the original study's models on 16, 32 and 64 GB Macs.

python scripts/memory_table.py
"""

from __future__ import annotations

from mlxtune.models.device import named_profile
from mlxtune.models.planner import (
    GB,
    ModelShape,
    Setting,
    bundled_config,
    estimate_training,
    fit,
)

MODELS = ["Qwen2.5-1.5B", "Qwen2.5-3B", "Qwen2.5-7B", "Qwen2.5-14B", "QwQ-32B"]
MEMORY = [16, 32, 64]


def main() -> None:
    base = Setting(batch_size=4, seq_len=1024, num_layers=16, lora_rank=8, dtype_bytes=2)
    print(
        "| model | weights | peak training estimate | "
        + " | ".join(f"{m} GB Mac" for m in MEMORY)
        + " |"
    )
    print("|---|---|---|" + "---|" * len(MEMORY))
    for name in MODELS:
        shape = ModelShape.from_config(bundled_config(name))
        for bits in (16, 4):
            setting = Setting(**{**base.__dict__, "bits": None if bits == 16 else bits})
            need = estimate_training(shape, setting).total
            cells = []
            for memory in MEMORY:
                budget = named_profile("metal", memory * 2**30).budget  # working set
                if need <= budget:
                    cells.append("fits")
                    continue
                suggestion = fit(shape, setting, budget)
                if suggestion is None:
                    cells.append("no")
                else:
                    change = ", ".join(
                        f"{k.split('.')[1]}={v}" for k, v in suggestion.overrides.items()
                    )
                    cells.append(f"with {change} ({suggestion.estimate.total / GB:.1f} GB)")
            label = "bf16" if bits == 16 else "4-bit"
            print(
                f"| {name} {label} | {shape.params / 1e9:.1f}B | {need / GB:.1f} GB | "
                + " | ".join(cells)
                + " |"
            )


if __name__ == "__main__":
    main()
