"""The recipe's side of `summarize: {use: auto}` (mlxtune.summarize.auto decides): which model,
whether it is on this machine without a download, its config, this device."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import MlxtuneError
from ..recipe import Recipe
from ..summarize.auto import AutoOptions, Choice, choose

Local = tuple[str | None, str | None, dict[str, Any] | None]  # (model, why not usable, config)


def resolve_auto(recipe: Recipe, options: AutoOptions, device: Any = None) -> Choice:
    """The summarizer `auto` stands for on this machine (or on `device`, a DeviceProfile)."""
    if device is None:
        from ..device import current_device

        device = current_device()
    model, missing, config = local_model(recipe, options)
    return choose(options, model, missing, config, device)


def local_model(recipe: Recipe, options: AutoOptions) -> Local:
    """The model to summarize with, if this machine has it (nothing is downloaded)."""
    if options.model:
        return local_ref(options.model, options.revision)
    if recipe.model.tiny is not None:
        return None, "the recipe's model is a tiny random-weight model (model.tiny)", None
    if recipe.model.import_ref:
        folder = Path(recipe.model_ref)
        if (folder / "config.json").is_file():  # imported already, with the recipe's options
            return str(folder), None, json.loads((folder / "config.json").read_text())
        return local_ref(recipe.model.import_ref, None)
    return local_ref(recipe.model.path or recipe.model.id or "", recipe.model.revision)


def local_ref(ref: str, revision: str | None) -> Local:
    """(ref, None, config) for a local folder, a GGUF file or Ollama model to import, or a hub
    id in the Hugging Face cache; (ref, why not, None) otherwise."""
    from ..gguf.importing import is_import_ref

    if not ref:
        return None, "the recipe names no model", None
    if is_import_ref(ref):
        from ..gguf.gguf_import import planned_config
        from ..gguf.importing import ImportOptions, locate

        try:
            found = locate(ref)
        except MlxtuneError as exc:
            return ref, f"{ref} is not on this machine ({exc})", None
        resolved = ImportOptions().resolved()
        config = planned_config(
            found.gguf, dequantize=bool(resolved.dequantize), quantize=resolved.quantize
        )
        return ref, None, config
    path = Path(ref).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            return ref, f"{path} is not a model folder (no config.json)", None
        return ref, None, json.loads((path / "config.json").read_text())
    if ref.count("/") != 1 or ref.startswith((".", "/", "~")):
        return ref, f"{ref} is neither a local folder nor a hub id", None
    return ref, *hub_cached(ref, revision)


def hub_cached(ref: str, revision: str | None) -> tuple[str | None, dict[str, Any] | None]:
    """(None, config) when the hub's cache holds the model's files; (why not, None) else."""
    from huggingface_hub import snapshot_download

    from ..models.resolve import MODEL_PATTERNS

    try:
        folder = Path(
            snapshot_download(
                ref, revision=revision, allow_patterns=MODEL_PATTERNS, local_files_only=True
            )
        )
    except Exception as exc:  # LocalEntryNotFoundError and kin: not downloaded
        return f"{ref} is not downloaded ({type(exc).__name__}; auto never downloads)", None
    if not (folder / "config.json").is_file() or not any(folder.glob("*.safetensors")):
        return f"{ref} is only partly downloaded (no config.json or weights)", None
    return None, json.loads((folder / "config.json").read_text())
