"""The model stage: import a GGUF / Ollama model, build the tiny test model, or just name the
hub / local model the recipe uses (it is loaded when training starts)."""

from __future__ import annotations

import shutil
from typing import Any

from ..records import load_pairs, replace_dir
from .base import Run, Stage, hash_if_exists


def fingerprint_model(run: Run) -> dict[str, Any]:
    model = run.recipe.model.model_dump(mode="json")
    if run.recipe.model.tiny is not None:  # its tokenizer is trained on the pairs
        model["pairs"] = hash_if_exists(run.file("pairs.jsonl"))
    if run.recipe.model.import_ref:  # the import folder's name keys the source's identity
        model["imported"] = run.recipe.model_ref
    return model


def stage_model(run: Run) -> str:
    tiny = run.recipe.model.tiny
    if run.recipe.model.import_ref:
        from ..gguf.importing import ImportOptions, import_model

        section = run.recipe.model
        lines: list[str] = []
        import_model(
            section.import_ref,
            options=ImportOptions(section.dequantize, section.quantize),
            log=lines.append,
        )
        return lines[-1]
    if tiny is None:
        return f"uses {run.recipe.model_ref}"
    from ..models.tiny import build_tiny_model

    # the tokenizer learns the pairs' text (not one formatter's), so that the variants of a
    # comparison share the same tiny base model
    texts = [
        f"Research question: {p.question}\nApproach: {p.approach}"
        for p in load_pairs(run.file("pairs.jsonl"))
    ]
    target = run.file("model")
    staging = run.file("model.partial")
    shutil.rmtree(staging, ignore_errors=True)
    build_tiny_model(staging, texts=texts, **tiny.model_dump())
    replace_dir(staging, target)
    return f"built a tiny random-weight Qwen2 model in {target}"


def model_files(run: Run) -> tuple[str, ...]:
    """The tiny model's files; an imported or hub model lives outside the run directory."""
    if run.recipe.model.tiny is None:
        return ()
    return ("model/config.json", "model/model.safetensors", "model/tokenizer.json")


STAGE = Stage("model", stage_model, fingerprint_model, needs=("pairs.jsonl",), writes=model_files)
