"""The `mlxtune` command line: thin, it parses, calls the API and prints.

Nothing heavy is imported at start-up (no mlx, no mlx_lm), so `mlxtune --help` is instant.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from . import __version__
from .errors import MlxtuneError
from .stages import STAGE_NAMES


class Group(click.Group):
    """Turns user-facing errors into one message and a non-zero exit, never a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except MlxtuneError as exc:
            click.secho(f"error: {exc}", fg="red", err=True)
            ctx.exit(exc.exit_code)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except KeyboardInterrupt:
            click.secho("interrupted", fg="yellow", err=True)
            ctx.exit(130)
        except Exception as exc:
            if os.environ.get("MLXTUNE_DEBUG"):
                raise
            click.secho(
                f"error: unexpected {type(exc).__name__}: {exc} "
                "(set MLXTUNE_DEBUG=1 for the traceback)",
                fg="red",
                err=True,
            )
            ctx.exit(1)


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mlxtune")
@click.option(
    "--plugins-dir",
    "plugins_dirs",
    multiple=True,
    type=click.Path(file_okay=False),
    help="Load plugin modules (*.py) from this folder (repeatable).",
)
@click.pass_context
def cli(ctx: click.Context, plugins_dirs: tuple[str, ...]) -> None:
    """Turn a folder of research papers into a fine-tuned local LLM.

    \b
    Quick start (offline, tiny model):
      mlxtune recipe run recipes/quickstart.yaml
      mlxtune ask "How can we segment cells?" --recipe recipes/quickstart.yaml
    """
    ctx.obj = {"plugins_dirs": plugins_dirs}


# ---------------------------------------------------------------- recipe


@cli.group()
def recipe() -> None:
    """Run, validate or show a YAML recipe. Overrides: KEY.SUB=VALUE after the path."""


def _load(ctx: click.Context, path: str, overrides: tuple[str, ...], check_paths: bool = True):
    from .recipe import load_recipe

    return load_recipe(path, overrides, ctx.obj["plugins_dirs"], check_paths=check_paths)


@recipe.command("run")
@click.argument("path", type=click.Path(dir_okay=False))
@click.argument("overrides", nargs=-1)
@click.option("--only", type=click.Choice(STAGE_NAMES), help="Run just this stage.")
@click.option("--until", type=click.Choice(STAGE_NAMES), help="Stop after this stage.")
@click.option(
    "--force",
    multiple=True,
    type=click.Choice(STAGE_NAMES),
    help="Redo this stage even if up to date (repeatable).",
)
@click.pass_context
def recipe_run(ctx, path, overrides, only, until, force) -> None:
    """Run the recipe's stages, skipping those already up to date."""
    from .pipeline import launch_rank, run_recipe

    loaded, registry = _load(ctx, path, overrides)
    run = run_recipe(loaded, registry, only=only, until=until, force=tuple(force))
    adapters = run.file("adapters")
    if adapters.is_dir() and launch_rank()[0] == 0:
        click.echo(f"\nadapter: {adapters}")
        click.echo(f'ask it:  mlxtune ask "YOUR QUESTION" --recipe {path}')


@recipe.command("validate")
@click.argument("path", type=click.Path(dir_okay=False))
@click.argument("overrides", nargs=-1)
@click.pass_context
def recipe_validate(ctx, path, overrides) -> None:
    """Check a recipe (every problem at once) without running anything."""
    loaded, _ = _load(ctx, path, overrides)
    click.echo(f"{path}: ok (run directory {loaded.run_path})")


@recipe.command("show")
@click.argument("path", type=click.Path(dir_okay=False))
@click.argument("overrides", nargs=-1)
@click.pass_context
def recipe_show(ctx, path, overrides) -> None:
    """Print the fully resolved recipe (after extends and overrides) as YAML."""
    import yaml

    loaded, _ = _load(ctx, path, overrides, check_paths=False)
    click.echo(yaml.safe_dump(loaded.model_dump(mode="json"), sort_keys=False), nl=False)


# the generation flags of `ask` and `chat`: each defaults to the recipe's `ask:` section (or,
# without --recipe, to the built-in default in brackets); a flag given replaces it
SAMPLING_FLAGS = [
    ("--max-tokens", click.IntRange(1), "Longest answer [recipe, else 256]."),
    ("--temperature", click.FloatRange(0), "0: greedy [recipe, else 0]."),
    ("--top-p", click.FloatRange(0, 1), "Nucleus sampling [recipe, else 1]."),
    ("--min-p", click.FloatRange(0, 1), "Min-p sampling [recipe, else 0]."),
    ("--repetition-penalty", click.FloatRange(0, min_open=True), "[recipe, else none]"),
    ("--frequency-penalty", click.FloatRange(0), "Minus this times a token's count so far."),
    ("--presence-penalty", click.FloatRange(0), "Minus this once a token was used."),
    ("--no-repeat-ngram", click.IntRange(0), "Never repeat an n-gram of this size."),
    ("--dry-multiplier", click.FloatRange(0), "DRY anti-repetition strength (0: off)."),
    ("--stop-loops", click.IntRange(0), "End when the last N tokens occurred twice before."),
    ("--seed", int, "Sampling seed [recipe, else 0]."),
]


def sampling_options(function):
    for flag, kind, text in reversed(SAMPLING_FLAGS):
        function = click.option(flag, type=kind, default=None, help=text)(function)
    return function


def _sampling(session, flags: dict):
    """The session's sampling (the recipe's) with the flags that were given."""
    from dataclasses import replace

    names = [flag.lstrip("-").replace("-", "_") for flag, _, _ in SAMPLING_FLAGS]
    given = {name: flags.pop(name) for name in names}
    return replace(session.sampling, **{k: v for k, v in given.items() if v is not None})


def _ended(finish: str | None, sampling) -> None:
    if finish == "length":
        click.secho(f"[stopped at max_tokens {sampling.max_tokens}]", fg="yellow", err=True)
    elif finish == "loop":
        click.secho(
            f"[ended: the last {sampling.stop_loops} tokens had occurred twice before]",
            fg="yellow",
            err=True,
        )


# ---------------------------------------------------------------- ask


@cli.command()
@click.argument("question")
@click.option(
    "--recipe",
    "recipe_path",
    type=click.Path(dir_okay=False),
    help="Use this recipe's model, trained adapter and formatter.",
)
@click.option("--model", help="Hub id or local model folder (instead of --recipe).")
@click.option("--adapter", type=click.Path(file_okay=False), help="Adapter folder (mlx-lm format).")
@click.option("--format", "formatter", help="Formatter that builds the prompt (default: recipe's).")
@click.option("--backend", help="Generation backend (default: recipe's, else mlx).")
@sampling_options
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of streaming.")
@click.option("--stats", is_flag=True, help="Also report tokens/s and peak memory.")
@click.pass_context
def ask(ctx, question, recipe_path, model, adapter, formatter, backend, as_json, stats, **flags):
    """Answer QUESTION with the tuned model, streaming; stops at end-of-sequence.

    With --recipe, the recipe's `ask:` section gives the generation settings; flags override."""
    from .asking import open_session

    session = open_session(
        recipe=recipe_path,
        model=model,
        adapter=adapter,
        formatter=formatter,
        backend=backend,
        plugins_dirs=ctx.obj["plugins_dirs"],
    )
    sampling = _sampling(session, flags)
    if as_json:
        reply = session.answer(question, sampling)
        record = {"question": question, "answer": reply.text, "finish_reason": reply.finish_reason}
        if stats:
            record["stats"] = reply.stats
        click.echo(json.dumps(record))
        return
    reply = session.answer(question, sampling, on_text=lambda t: click.echo(t, nl=False))
    click.echo()
    if stats and reply.stats:
        n = reply.stats
        click.secho(
            f"[prompt {n['prompt_tokens']} tokens at {n['prompt_tps']:.1f} tok/s, generation "
            f"{n['generation_tokens']} tokens at {n['generation_tps']:.1f} tok/s, peak memory "
            f"{n['peak_memory_gb']:.2f} GB]",
            err=True,
        )
    _ended(reply.finish_reason, sampling)


# ---------------------------------------------------------------- chat


@cli.command()
@click.option(
    "--recipe",
    "recipe_path",
    type=click.Path(dir_okay=False),
    help="Use this recipe's model, trained adapter and formatter.",
)
@click.option("--model", help="Hub id or local model folder (instead of --recipe).")
@click.option("--adapter", type=click.Path(file_okay=False), help="Adapter folder.")
@click.option("--format", "formatter", help="Formatter that builds the prompt.")
@sampling_options
@click.pass_context
def chat(ctx, recipe_path, model, adapter, formatter, **flags) -> None:
    """Interactive: ask questions in turn; the conversation is kept. `/reset` forgets it,
    `/quit` (or Ctrl-D) ends. With --recipe, its `ask:` section gives the generation settings."""
    from .asking import open_session

    session = open_session(
        recipe=recipe_path,
        model=model,
        adapter=adapter,
        formatter=formatter,
        plugins_dirs=ctx.obj["plugins_dirs"],
    )
    sampling = _sampling(session, flags)
    click.echo("mlxtune chat: /reset forgets the conversation, /quit ends")
    while True:
        try:
            question = click.prompt("you", prompt_suffix="> ", default="", show_default=False)
        except (EOFError, click.Abort):
            click.echo()
            return
        question = question.strip()
        if question in ("/quit", "/exit"):
            return
        if question == "/reset":
            session.history.clear()
            click.echo("(conversation cleared)")
            continue
        if not question:
            continue
        click.echo("model> ", nl=False)
        reply = session.answer(
            question, sampling, lambda t: click.echo(t, nl=False), remember=True
        )
        click.echo()
        _ended(reply.finish_reason, sampling)


# ---------------------------------------------------------------- compare


@cli.command()
@click.argument("targets", nargs=-1, required=True)
@click.option(
    "--out",
    "-o",
    type=click.Path(file_okay=False),
    help="Report folder (default: runs/compare beside the first run).",
)
@click.option(
    "--questions",
    type=click.Path(dir_okay=False),
    help="Your own questions (YAML), merged with those built from the splits.",
)
@click.option("--max-tokens", type=click.IntRange(1), help="Override the answer length.")
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override applied to every recipe, e.g. --set train.iters=50.",
)
@click.pass_context
def compare(ctx, targets, out, questions, max_tokens, overrides) -> None:
    """Train (if needed) and evaluate several recipes or run directories on the same questions.

    \b
    mlxtune compare recipes/base.yaml recipes/approach.yaml recipes/qa.yaml
    Writes report.md, report.html, report.json and loss_curves.png, and MODEL_CARD.md beside
    each adapter.
    """
    from rich.console import Console

    from .evaluate.compare import compare as run_compare

    paths = run_compare(
        list(targets),
        out=out,
        questions_file=questions,
        overrides=overrides,
        plugins_dirs=ctx.obj["plugins_dirs"],
        max_tokens=max_tokens,
        console=Console(),
    )
    for kind, path in paths.items():
        click.echo(f"{kind:>16}: {path}")


# ---------------------------------------------------------------- plan, doctor


@cli.command()
@click.argument("path", type=click.Path(dir_okay=False))
@click.argument("overrides", nargs=-1)
@click.option("--memory", help="Memory to plan for, e.g. 32GB (default: this machine's).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def plan(ctx, path, overrides, memory, as_json) -> None:
    """Estimate peak memory of training and generation for a recipe, and what fits.

    Reads only the model's config.json (from its folder or the hub, no weights).
    """
    from .models.plan_recipe import plan_recipe
    from .models.planner import GB, human, parse_memory

    recipe, registry = _load(ctx, path, overrides, check_paths=False)
    try:
        budget = parse_memory(memory) if memory else None
    except ValueError:
        raise MlxtuneError(f"--memory {memory!r}: expected a size like 32GB") from None
    result = plan_recipe(recipe, registry, budget)
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2))
        return
    s, shape = result.setting, result.shape
    quant = f"{s.bits}-bit" if s.bits else f"{8 * s.dtype_bytes}-bit floats"
    click.echo(
        f"model    {recipe.model_ref}: {shape.params / 1e9:.2f}B parameters, {shape.layers} "
        f"layers, hidden {shape.hidden}, vocab {shape.vocab}; weights {quant}"
    )
    click.echo(
        f"memory   {human(result.memory)}, of which {human(result.budget)} usable for training"
    )
    click.echo(
        f"training batch {s.batch_size} x {s.seq_len} tokens, {s.fine_tune_type} rank "
        f"{s.lora_rank} on {s.num_layers if s.num_layers >= 0 else 'all'} layers, "
        f"{s.optimizer}{', grad checkpointing' if s.grad_checkpoint else ''}: "
        f"{result.training.describe()}"
    )
    click.echo(f"generate {result.generation.describe()}")
    if result.fits:
        click.secho(
            f"fits: {result.training.total / GB:.1f} of {result.budget / GB:.1f} GB", fg="green"
        )
        return
    click.secho(
        f"does not fit: {result.training.total / GB:.1f} GB > {result.budget / GB:.1f} GB usable",
        fg="red",
    )
    if result.suggestion is None:
        click.echo("nothing in reach fits: choose a smaller model (model.id)")
        ctx.exit(1)
    suggestion = result.suggestion
    pasted = " ".join(
        f"{k}={str(v).lower() if isinstance(v, bool) else v}"
        for k, v in suggestion.overrides.items()
    )
    click.echo(f"fits with ({suggestion.note}): {suggestion.estimate.describe()}")
    click.echo(f"  mlxtune recipe run {path} {pasted}")
    click.echo("  (or set train.auto_fit: true and let the run choose)")
    ctx.exit(1)


@cli.command()
@click.option("--json", "as_json", is_flag=True)
def doctor(as_json) -> None:
    """Check this machine before a long run: MLX device, BLAS, memory, hub, plugins, disk."""
    from dataclasses import asdict

    from .doctor import main_report, run_checks

    checks = run_checks()
    if as_json:
        click.echo(json.dumps([asdict(c) for c in checks], indent=2))
    else:
        click.echo(main_report(checks))


# ---------------------------------------------------------------- fuse


@cli.command()
@click.option(
    "--recipe",
    "recipe_path",
    type=click.Path(dir_okay=False),
    help="Fuse this recipe's model and trained adapter.",
)
@click.option("--model", help="Hub id or local model folder (instead of --recipe).")
@click.option("--adapter", type=click.Path(file_okay=False), help="Adapter folder.")
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
    from .adapters.fuse import fuse as fuse_model

    trust_remote_code, revision = False, None
    if recipe_path:
        recipe, _ = _load(ctx, recipe_path, (), check_paths=False)
        model = model or recipe.model_ref
        adapter = adapter or str(recipe.run_path / "adapters")
        trust_remote_code, revision = recipe.model.trust_remote_code, recipe.model.revision
    if not model or not adapter:
        raise MlxtuneError("fuse needs --recipe, or both --model and --adapter")
    path = fuse_model(
        model,
        Path(adapter),
        Path(output),
        dequantize=dequantize,
        trust_remote_code=trust_remote_code,
        revision=revision,
    )
    click.echo(f"fused model written to {path}")


@cli.command()
@click.option("--recipe", "recipe_path", type=click.Path(dir_okay=False), help="A trained recipe.")
@click.option("--model", help="Base model (instead of --recipe): hub id, folder or GGUF.")
@click.option("--adapter", type=click.Path(file_okay=False), help="Adapter folder to fuse.")
@click.option("--format", "formatter", help="Formatter whose prompt Ollama's TEMPLATE repeats.")
@click.option("--to", "target", type=click.Choice(["gguf", "ollama", "mlx"]), default="gguf")
@click.option("--quant", type=click.Choice(["f16", "q8_0", "q4_0"]), default="f16")
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False))
@click.pass_context
def export(ctx, recipe_path, model, adapter, formatter, target, quant, output) -> None:
    """Export the tuned model: a GGUF file (llama.cpp, LM Studio), an Ollama folder (GGUF and
    a Modelfile whose TEMPLATE is the formatter's prompt), or a fused MLX folder."""
    from .models.exporting import export_model

    written = export_model(
        Path(output),
        to=target,
        quant=quant,
        recipe=recipe_path,
        model=model,
        adapter=adapter,
        formatter=formatter,
        plugins_dirs=ctx.obj["plugins_dirs"],
        log=lambda m: click.echo(m, err=True),
    )
    for path in written:
        click.echo(str(path))


@cli.command()
@click.option("--recipe", "recipe_path", type=click.Path(dir_okay=False), help="A trained recipe.")
@click.option("--model", help="Hub id or local model folder (instead of --recipe).")
@click.option("--adapter", type=click.Path(file_okay=False), help="Adapter folder.")
@click.option("--format", "formatter", help="Formatter that builds the prompt.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535))
@click.pass_context
def serve(ctx, recipe_path, model, adapter, formatter, host, port) -> None:
    """An OpenAI-compatible API for the tuned model: /v1/chat/completions, /v1/completions
    (streaming or not) and /v1/models, answering through the recipe's formatter as `ask` does."""
    from .asking import open_session
    from .serving import make_server

    session = open_session(
        recipe=recipe_path,
        model=model,
        adapter=adapter,
        formatter=formatter,
        plugins_dirs=ctx.obj["plugins_dirs"],
    )
    name = Path(recipe_path).stem if recipe_path else Path(model or "model").name
    server = make_server(session, name, host, port)
    if host not in ("127.0.0.1", "localhost", "::1"):
        click.secho(f"warning: listening on {host}: reachable from other machines", fg="yellow")
    address = f"http://{host}:{server.server_address[1]}/v1"
    click.echo(f"serving {name} at {address} (Ctrl-C stops)")
    try:
        server.serve_forever()
    finally:
        server.server_close()


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
    """Convert a LoRA adapter between mlx-lm's format and PEFT's (either direction)."""
    from .adapters.convert import convert

    target = convert(Path(source), Path(destination), to, base_model)
    click.echo(f"{target} adapter written to {destination}")


# ---------------------------------------------------------------- plugins


@cli.command()
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def plugins(ctx, as_json) -> None:
    """List every component: name, kind and where it came from."""
    from .plugins import get_registry

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
@click.option("--hidden-size", default=64, show_default=True)
@click.option("--layers", default=2, show_default=True)
@click.option("--vocab-size", default=1024, show_default=True)
@click.option("--seed", default=0, show_default=True)
def model_tiny(directory, text_files, hidden_size, layers, vocab_size, seed) -> None:
    """Write a tiny random-weight Qwen2-shaped model (offline tests and quick-starts)."""
    from .models.tiny import build_tiny_model

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
    from .models.importing import OLLAMA_PREFIX, PACKAGE_PREFIX, ImportOptions, import_model

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


def main(argv: list[str] | None = None) -> None:
    """Console entry point: adds plugin commands (register_commands hook), then runs."""
    if not os.environ.get("MLXTUNE_DISABLE_PLUGIN_AUTOLOAD"):
        try:
            from .plugins import get_plugin_manager

            get_plugin_manager().hook.register_commands(cli=cli)
        except MlxtuneError as exc:
            click.secho(f"error: {exc}", fg="red", err=True)
            sys.exit(exc.exit_code)
    cli.main(args=argv, prog_name="mlxtune")


if __name__ == "__main__":
    main()
