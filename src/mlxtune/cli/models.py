"""`mlxtune model tiny|import`, `fuse`, `export`, `adapter convert` and `plugins`."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..errors import MlxtuneError
from .root import MODEL_HELP, cli, model_options, recipe_option

# ---------------------------------------------------------------- model


@cli.group()
def model() -> None:
    """Model utilities."""


@model.command("tiny")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option(
    "--text",
    "text_files",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False),
    help="Train the tokenizer on this text too (repeatable).",
)
@click.option("--hidden-size", default=64, show_default=True, help="Width of the model.")
@click.option("--layers", default=2, show_default=True, help="Number of transformer layers.")
@click.option(
    "--vocab-size", default=1024, show_default=True, help="Size of the BPE tokenizer's vocabulary."
)
@click.option("--seed", default=0, show_default=True, help="Seed of the random weights.")
def model_tiny(directory, text_files, hidden_size, layers, vocab_size, seed) -> None:
    """Write a tiny random-weight Qwen2-shaped model into DIRECTORY (offline tests)."""
    from ..models.tiny import build_tiny_model

    texts = [Path(f).read_text(encoding="utf-8", errors="replace") for f in text_files]
    out = build_tiny_model(
        directory,
        texts=texts,
        hidden_size=hidden_size,
        num_layers=layers,
        vocab_size=vocab_size,
        seed=seed,
    )
    click.echo(f"tiny model written to {out}")


@model.command("import")
@click.argument("source")
@click.option(
    "-o",
    "--output",
    type=click.Path(file_okay=False),
    help="Model folder to write (default: mlxtune's cache, $MLXTUNE_HOME/models).",
)
@click.option(
    "--dequantize/--keep-quantized",
    default=None,
    help="Full-precision weights, or the file's Q4_0/Q4_1/Q8_0 as MLX quantization "
    "(default: dequantize on MLX's CPU backend only).",
)
@click.option("--quantize", type=click.Choice(["4", "8"]), help="Re-quantize to 4 or 8 bits.")
def model_import(source, output, dequantize, quantize) -> None:
    """Import a GGUF file or an Ollama model as an mlx-lm model folder.

    SOURCE is a .gguf file (llama.cpp, LM Studio, Hugging Face) or the name of a model in the
    local Ollama store (qwen2.5:0.5b; the store is $OLLAMA_MODELS or ~/.ollama/models).
    Architectures: llama, qwen2, qwen3. The folder opens with mlx_lm.load, and recipes take it
    as model.path (or name the source directly: model.gguf / model.ollama).
    """
    from ..gguf.importing import OLLAMA_PREFIX, PACKAGE_PREFIX, ImportOptions, import_model

    ref = source
    if not Path(source).expanduser().is_file() and not source.startswith(
        (OLLAMA_PREFIX, PACKAGE_PREFIX)
    ):
        if source.lower().endswith(".gguf"):
            raise MlxtuneError(f"GGUF file not found: {source}")
        ref = OLLAMA_PREFIX + source
    options = ImportOptions(dequantize, int(quantize) if quantize else None)
    folder = import_model(
        ref, Path(output) if output else None, options, log=lambda m: click.echo(m, err=True)
    )
    click.echo(str(folder))


# ---------------------------------------------------------------- fuse


@cli.command()
@model_options("Fuse this recipe's model and trained adapter.")
@click.option(
    "--output",
    "-o",
    type=click.Path(file_okay=False),
    required=True,
    help="New folder for the fused model.",
)
@click.option("--dequantize", is_flag=True, help="Write full-precision weights.")
@click.pass_context
def fuse(ctx, recipe_path, model, adapter, output, dequantize) -> None:
    """Merge an adapter into its base model: a standalone model folder.

    The result loads with `mlx_lm.load` / `mlx_lm.generate --model OUTPUT` and with
    `mlxtune ask --model OUTPUT`.
    """
    from ..adapters.fuse import fuse as fuse_model
    from ..selection import select

    usage = "fuse needs --recipe, or both --model and --adapter"
    chosen = select(
        recipe=recipe_path,
        model=model,
        adapter=adapter,
        plugins_dirs=ctx.obj["plugins_dirs"],
        usage=usage,
    )
    if chosen.adapter is None:  # --model without --adapter, or a recipe with train: none
        raise MlxtuneError(f"{usage} (a recipe with train.use=none has no adapter to fuse)")
    path = fuse_model(
        chosen.model,
        chosen.adapter,
        Path(output),
        dequantize=dequantize,
        trust_remote_code=chosen.trust_remote_code,
        revision=chosen.revision,
    )
    click.echo(f"fused model written to {path}")


@cli.command()
@recipe_option("A trained recipe: its model and adapter.")
@click.option("--model", help=MODEL_HELP.replace("The model, instead", "The base model, instead"))
@click.option("--adapter", type=click.Path(file_okay=False), help="Adapter folder to fuse.")
@click.option("--format", "formatter", help="Formatter whose prompt Ollama's TEMPLATE repeats.")
@click.option(
    "--to",
    "target",
    type=click.Choice(["gguf", "ollama", "mlx"]),
    default="gguf",
    show_default=True,
    help="gguf: one file for llama.cpp and LM Studio; ollama: a folder with the GGUF file and a "
    "Modelfile (`ollama create NAME -f OUTPUT/Modelfile`); mlx: the fused MLX model folder.",
)
@click.option(
    "--quant",
    type=click.Choice(["f16", "q8_0", "q4_0"]),
    default="f16",
    show_default=True,
    help="GGUF weight type: f16 (exact), q8_0 (half the size, near lossless) or q4_0 "
    "(a quarter, some loss).",
)
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(file_okay=False),
    help="Folder to write the export into (created if needed).",
)
@click.option("--force", is_flag=True, help="Replace exported files that exist already.")
@click.pass_context
def export(ctx, recipe_path, model, adapter, formatter, target, quant, output, force) -> None:
    """Export the tuned model: a GGUF file (llama.cpp, LM Studio), an Ollama folder (GGUF and
    a Modelfile whose TEMPLATE is the formatter's prompt), or a fused MLX folder.

    Existing files are not replaced without --force, and OUTPUT may not be inside an adapter
    folder (training replaces a run's adapters/ whole)."""
    from ..exporting import export_model

    written = export_model(
        Path(output),
        to=target,
        quant=quant,
        recipe=recipe_path,
        model=model,
        adapter=adapter,
        formatter=formatter,
        plugins_dirs=ctx.obj["plugins_dirs"],
        force=force,
        log=lambda m: click.echo(m, err=True),
    )
    for path in written:
        click.echo(str(path))


# ---------------------------------------------------------------- adapter


@cli.group()
def adapter() -> None:
    """Work with adapter folders (mlx-lm and PEFT formats)."""


@adapter.command("convert")
@click.argument("source", type=click.Path(exists=True, file_okay=False))
@click.argument("destination", type=click.Path(file_okay=False))
@click.option("--to", type=click.Choice(["mlx", "peft"]), help="Default: the other format.")
@click.option("--base-model", help="Recorded in the PEFT config (default: the adapter's).")
def adapter_convert(source, destination, to, base_model) -> None:
    """Convert the LoRA adapter folder SOURCE into DESTINATION, from mlx-lm's format to PEFT's
    or back."""
    from ..adapters.convert import convert

    target = convert(Path(source), Path(destination), to, base_model)
    click.echo(f"{target} adapter written to {destination}")


# ---------------------------------------------------------------- plugins


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
@click.pass_context
def plugins(ctx, as_json) -> None:
    """List every component: name, kind and where it came from."""
    from ..plugins import get_registry

    registry = get_registry(ctx.obj["plugins_dirs"])
    rows = [
        {"name": name, "kind": kind, "source": entry.source, "description": entry.cls.description}
        for kind, name, entry in registry.entries()
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        click.echo(f"{r['name']:<{width}}  {r['kind']:<10}  {r['source']}")
