"""`mlxtune ask`, `chat` and `serve`: answering with a (tuned) model; flags override the
recipe's `ask:` section."""

from __future__ import annotations

import json
from pathlib import Path

import click

from .root import cli, model_options

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
@model_options("Use this recipe's model, trained adapter and formatter.")
@click.option("--format", "formatter", help="Formatter that builds the prompt (default: recipe's).")
@click.option("--backend", help="Generation backend (default: recipe's, else mlx).")
@sampling_options
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of streaming.")
@click.option("--stats", is_flag=True, help="Also report tokens/s and peak memory.")
@click.pass_context
def ask(ctx, question, recipe_path, model, adapter, formatter, backend, as_json, stats, **flags):
    """Answer QUESTION with the tuned model, streaming; stops at end-of-sequence.

    With --recipe, the recipe's `ask:` section gives the generation settings; flags override."""
    from ..asking import open_session

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
@model_options("Use this recipe's model, trained adapter and formatter.")
@click.option("--format", "formatter", help="Formatter that builds the prompt.")
@sampling_options
@click.pass_context
def chat(ctx, recipe_path, model, adapter, formatter, **flags) -> None:
    """Interactive: ask questions in turn; the conversation is kept. `/reset` forgets it,
    `/quit` (or Ctrl-D) ends. With --recipe, its `ask:` section gives the generation settings."""
    from ..asking import open_session

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
        reply = session.answer(question, sampling, lambda t: click.echo(t, nl=False), remember=True)
        click.echo()
        _ended(reply.finish_reason, sampling)


@cli.command()
@model_options("A trained recipe.")
@click.option("--format", "formatter", help="Formatter that builds the prompt.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535))
@click.pass_context
def serve(ctx, recipe_path, model, adapter, formatter, host, port) -> None:
    """An OpenAI-compatible API for the tuned model: /v1/chat/completions, /v1/completions
    (streaming or not) and /v1/models, answering through the recipe's formatter as `ask` does."""
    from ..asking import open_session
    from ..serving import make_server

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
