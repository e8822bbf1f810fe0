"""MODEL_CARD.md beside an adapter: what it is, what it was trained on (down to each paper), how,
and how it scored. Written by `mlxtune compare` from the run's own files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from ..recipe import Recipe
from ..records import atomic_write_text, load_documents, load_pairs
from .report import COLUMNS, fmt


def provenance(recipe: Recipe, pairs: list, documents: dict, splits: dict) -> list[str]:
    """The card's data section: every pair with its split, paper, file and summarizer."""
    lines = ["", "## Data provenance", ""]
    lines.append(
        f"{len(pairs)} [research question, approach] pairs (as curated) from the papers in "
        f"`{recipe.papers}`, "
        "one per paper:"
    )
    lines += ["", "| split | category | paper | file | summarizer |", "|---|---|---|---|---|"]
    for pair in sorted(pairs, key=lambda p: (p.split, p.category, p.title)):
        doc = documents.get(pair.document_id)
        path = Path(doc.path).name if doc else "?"
        how = pair.summarizer + (
            f" ({pair.model}, prompt {pair.prompt_hash})" if pair.model else ""
        )
        title = (pair.title or "(untitled)").replace("|", "/")
        lines.append(
            f"| {splits.get(pair.document_id, pair.split)} | {pair.category} | "
            f"{title} | `{path}` | {how} |"
        )
    return lines


def write_model_card(recipe: Recipe, row: dict[str, Any], evaluation: Any) -> Path | None:
    run = recipe.run_path
    adapter = run / "adapters"
    if not adapter.is_dir():
        return None
    splits = json.loads((run / "splits.json").read_text())["splits"]
    documents = {d.id: d for d in load_documents(run / "documents.jsonl")}
    curated = run / "curated.jsonl"  # what was trained on (runs made before curation: all pairs)
    pairs = load_pairs(curated if curated.is_file() else run / "pairs.jsonl")
    summary = evaluation.training.get("summary", {})
    config = json.loads((adapter / "adapter_config.json").read_text())
    lines = [
        f"# {recipe.name}",
        "",
        recipe.description or "A LoRA adapter trained by mlxtune to propose research approaches.",
        "",
        "## Model",
        f"- base model: `{recipe.model_ref}`"
        + (f" (revision {recipe.model.revision})" if recipe.model.revision else ""),
        f"- fine-tuning: {config.get('fine_tune_type')}, rank {config['lora_parameters']['rank']}, "
        f"scale {config['lora_parameters']['scale']}, {config.get('num_layers')} layers"
        + (
            f", base quantized to {config['base_quantization']['bits']} bits (QLoRA)"
            if config.get("base_quantization")
            else ""
        ),
        f"- prompt format: `{evaluation.formatter}` (see docs/formatters.md)",
        f"- training: {summary.get('steps')} steps, best validation loss "
        f"{fmt(summary.get('best_val_loss'), '{:.4f}')} at step {summary.get('best_step')}, "
        f"kept: {summary.get('kept', 'best')}",
        "- files: `adapters.safetensors` + `adapter_config.json` (mlx-lm format): "
        f"`mlx_lm.generate --model {recipe.model_ref} --adapter-path {adapter}`",
        "",
        "## Evaluation",
        "",
        "| metric | value |",
        "|---|---|",
    ]
    lines += [f"| {title} | {fmt(row.get(key), pattern)} |" for title, key, pattern in COLUMNS]
    lines += provenance(recipe, pairs, documents, splits)
    lines += [
        "",
        "## Recipe",
        "",
        "```yaml",
        yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False).rstrip(),
        "```",
        "",
    ]
    path = adapter / "MODEL_CARD.md"
    atomic_write_text(path, "\n".join(lines))
    return path
