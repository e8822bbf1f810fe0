"""What `summarize: {use: auto}` chooses on a 16 GB and a 64 GB Mac, for each recipe's model.

    python bench/summarize_auto_plan.py                      # recipes/*.yaml, recipes/real/*.yaml
    python bench/summarize_auto_plan.py my.yaml --memory 24GB --memory 128GB
    python bench/summarize_auto_plan.py --model mlx-community/Qwen2.5-32B-Instruct-4bit

The memory planner's estimate of summarizing with the recipe's model (weights, the KV cache of a
batch of `batch_size` prompts and replies, logits), held against Metal's working set of each Mac,
as `auto` does on the machine itself. It assumes the model is downloaded (auto never downloads;
without the model it chooses the heuristic); configs come from the hub cache or mlxtune's bundled
copies (Qwen2.5 family), or the GGUF file. Runs offline in a second; no model is loaded.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mlxtune.device import named_profile
from mlxtune.plan import shape_of
from mlxtune.recipe import load_recipe
from mlxtune.summarize.auto import choose, generation_bytes
from mlxtune.train.planner import human, parse_memory

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipes", type=Path, nargs="*")
    parser.add_argument("--memory", action="append", help="a Mac's memory (default 16GB, 64GB)")
    parser.add_argument(
        "--model", action="append", default=[], help="also this model (summarize.model)"
    )
    args = parser.parse_args()
    paths = args.recipes or sorted(ROOT.glob("recipes/*.yaml")) + sorted(
        ROOT.glob("recipes/real/*.yaml")
    )
    macs = [named_profile("metal", parse_memory(m)) for m in args.memory or ("16GB", "64GB")]
    seen: set[str] = set()
    runs = [(path, []) for path in paths]
    runs += [(ROOT / "recipes" / "common.yaml", [f"model.id={m}"]) for m in args.model]
    for path, overrides in runs:
        recipe, registry = load_recipe(path, overrides, check_paths=False)
        spec = recipe.component("summarize")
        options = registry.get("summarizer", "auto").Options(
            **{k: v for k, v in spec.items() if k != "use" and k in _auto_keys(registry)}
        )
        if recipe.model.tiny is not None:
            print(
                f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}: heuristic "
                "(model.tiny: a random-weight model)"
            )
            continue
        model = options.model or recipe.model.import_ref or recipe.model.id or recipe.model.path
        key = f"{model}|{options.batch_size}"
        if key in seen:
            continue
        seen.add(key)
        _, config = shape_of(recipe)
        row = []
        for mac in macs:
            choice = choose(options, model, None, config, mac)
            batch = getattr(choice.summarizer.options, "batch_size", options.batch_size)
            needs = generation_bytes(config, options, mac.dtype_bytes, batch)
            row.append(
                f"{mac.memory / 1e9:.0f} GB Mac ({human(mac.budget)} working set): "
                f"{choice.summarizer.name} (batch {batch}: {human(needs)})"
            )
        print(f"{model} (batch {options.batch_size}): " + "; ".join(row))


def _auto_keys(registry) -> set[str]:
    return set(registry.get("summarizer", "auto").Options.model_fields)


if __name__ == "__main__":
    main()
