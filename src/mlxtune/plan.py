"""The planner applied to a recipe: its model's shape, its training settings, this machine."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import device as devices
from .device import DeviceProfile, named_profile
from .recipe import Recipe
from .train.planner import (
    GB,
    Estimate,
    ModelShape,
    Setting,
    Suggestion,
    estimate_generation,
    estimate_training,
    fit,
    load_config,
    quantization_bits,
    setting_from_options,
)


@dataclass
class RecipePlan:
    shape: ModelShape
    setting: Setting
    training: Estimate
    generation: Estimate
    memory: float
    budget: float
    suggestion: Suggestion | None
    quantized_model: bool
    device: DeviceProfile | None = None
    auto_fit: bool = False  # the recipe's `train.auto_fit`: the run applies the suggestion
    trains: bool = True  # False for `train.use: none` (the base model): generation alone counts

    @property
    def fits(self) -> bool:
        """The recipe's settings as written fit the budget."""
        if not self.trains:
            return self.generation.total <= self.budget
        return self.training.total <= self.budget

    @property
    def runs(self) -> bool:
        """It fits as written, or `auto_fit` will apply a setting that does."""
        return self.fits or (self.auto_fit and self.suggestion is not None)

    def to_json(self) -> dict[str, Any]:
        return {
            "model_params": self.shape.params,
            "memory_gb": self.memory / GB,
            "budget_gb": self.budget / GB,
            "training_gb": {k: v / GB for k, v in self.training.parts.items()},
            "training_total_gb": self.training.total / GB,
            "generation_gb": {k: v / GB for k, v in self.generation.parts.items()},
            "generation_total_gb": self.generation.total / GB,
            "fits": self.fits,
            "auto_fit": self.auto_fit,
            "fits_after_auto_fit": self.runs,
            "suggestion": self.suggestion.overrides if self.suggestion else None,
            "suggestion_total_gb": self.suggestion.estimate.total / GB if self.suggestion else None,
            "suggestion_note": self.suggestion.note if self.suggestion else None,
            "device": self.device.kind if self.device else None,
            "compute_dtype": self.device.compute_dtype if self.device else None,
            "processes": self.setting.processes,
            "trains": self.trains,
        }


def shape_of(recipe: Recipe) -> tuple[ModelShape, dict[str, Any]]:
    tiny = recipe.model.tiny
    if tiny is not None:
        config = {
            "hidden_size": tiny.hidden_size,
            "num_hidden_layers": tiny.num_layers,
            "num_attention_heads": tiny.num_heads,
            "num_key_value_heads": tiny.num_kv_heads,
            "intermediate_size": tiny.intermediate_size,
            "vocab_size": tiny.vocab_size,
            "tie_word_embeddings": True,
        }
    elif recipe.model.import_ref:
        config = imported_config(recipe)
    else:
        config = load_config(recipe.model.path or recipe.model.id or "", recipe.model.revision)
    return ModelShape.from_config(config, recipe.model_ref), config


def imported_config(recipe: Recipe) -> dict[str, Any]:
    """A GGUF / Ollama model's config: the imported folder's, or read from the file itself."""
    from .gguf.gguf_import import planned_config
    from .gguf.importing import ImportOptions, locate

    folder = Path(recipe.model_ref)
    if (folder / "config.json").is_file():
        return json.loads((folder / "config.json").read_text())
    options = ImportOptions(recipe.model.dequantize, recipe.model.quantize).resolved()
    return planned_config(
        locate(recipe.model.import_ref or "").gguf,
        dequantize=bool(options.dequantize),
        quantize=options.quantize,
    )


KIND_NAMES = {
    "metal": "a Mac (Metal, unified memory)",
    "cuda": "an NVIDIA GPU (MLX's CUDA backend)",
    "cpu": "the CPU (MLX's CPU backend)",
}


def device_line(profile: DeviceProfile, kind: str | None, memory: str | None) -> str:
    """The plan's first line: which device it planned for and why that one, so that a plan
    made on a Linux machine for a Mac is never read as the Mac's (or the other way round)."""
    what = KIND_NAMES.get(profile.kind, profile.kind)
    if kind:
        source = f"as --device {kind}" + (f" --memory {memory}" if memory else "") + " asks"
    elif memory:
        source = f"this machine's kind of device, with --memory {memory}"
    else:
        source = f"this machine's device, {profile.name}"
    line = f"device   {what}: {source}"
    if not kind and profile.kind != "metal":
        line += "; to plan for a Mac add --device metal"
    return line


def plan_device(memory: float | None = None, kind: str | None = None) -> DeviceProfile:
    """This machine's device, or another one (`--device`, `--memory`) to plan for."""
    here = devices.current_device()
    if memory is None and kind is None:
        return here
    return named_profile(kind or here.kind, memory if memory is not None else here.memory)


def plan_recipe(
    recipe: Recipe,
    registry: Any,
    memory: float | None = None,
    device: str | None = None,
    processes: int = 1,
) -> RecipePlan:
    """The plan of one machine (of one process of an `mlx.launch` of `processes`)."""
    shape, config = shape_of(recipe)
    spec = recipe.component("train")
    trainer = registry.build("trainer", spec)
    profile = plan_device(memory, device)
    setting = setting_from_options(trainer.options, config, profile, processes)
    total, budget = profile.memory, profile.budget
    training = estimate_training(shape, setting)
    generation = estimate_generation(
        shape, setting, context=setting.seq_len + recipe.ask.max_tokens
    )
    trains = recipe.train.use != "none"
    suggestion = None if training.total <= budget or not trains else fit(shape, setting, budget)
    auto_fit = bool(getattr(trainer.options, "auto_fit", False))
    return RecipePlan(
        shape,
        setting,
        training,
        generation,
        total,
        budget,
        suggestion,
        quantization_bits(config) is not None,
        profile,
        auto_fit,
        trains,
    )
