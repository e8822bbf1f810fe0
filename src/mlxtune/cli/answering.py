"""`mlxtune ask`, `chat` and `serve`: answering with a (tuned) model; flags override the
recipe's `ask:` section."""

from __future__ import annotations

import json
import sys
import typing
from pathlib import Path
from typing import Any

import click

from .root import cli, model_options


def _click_type(kind: Any) -> Any:
    """A click type with the option's bounds, from its annotation (mlxtune.sampling)."""
    import annotated_types as at

    inner, info = typing.get_args(kind)[0], kind.__metadata__[0]
    bounds: dict[str, Any] = {}
    for item in info.metadata:
        if isinstance(item, at.Ge):
            bounds["min"] = item.ge
        elif isinstance(item, at.Gt):
            bounds.update(min=item.gt, min_open=True)
        elif isinstance(item, at.Le):
            bounds["max"] = item.le
    if inner is int:
        return click.IntRange(bounds.get("min"), bounds.get("max"))
    return click.FloatRange(**bounds)


def sampling_options(function):
    """One flag per sampling option (`--max-tokens`, `--temperature`, ...), each defaulting to
    the recipe's `ask:` value, else the built-in default; bounds and help from the option."""
    from dataclasses import fields

    from ..components import Sampling
    from ..sampling import field_types

    defaults = {f.name: f.default for f in fields(Sampling)}
    for name, kind in reversed(list(field_types().items())):
        text = f"{kind.__metadata__[0].description} [recipe, else {defaults[name]}]"
        flag = "--" + name.replace("_", "-")
        function = click.option(flag, type=_click_type(kind), default=None, help=text)(function)
    return function


def _sampling(session, flags: dict):
    """The session's sampling (the recipe's) with the flags that were given."""
    from ..sampling import NAMES, with_overrides

    return with_overrides(session.sampling, {name: flags.pop(name) for name in NAMES})


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
        if session.retrieval is not None:
            from ..retrieve.context import passage_record

            record["passages"] = [passage_record(p) for p in session.passages]
        if stats:
            record["stats"] = reply.stats
        click.echo(json.dumps(record))
        return
    reply = session.answer(question, sampling, on_text=lambda t: click.echo(t, nl=False))
    click.echo()
    _said_passages(session)
    if stats and reply.stats:
        n = reply.stats
        click.secho(
            f"[prompt {n['prompt_tokens']} tokens at {n['prompt_tps']:.1f} tok/s, generation "
            f"{n['generation_tokens']} tokens at {n['generation_tps']:.1f} tok/s, peak memory "
            f"{n['peak_memory_gb']:.2f} GB]",
            err=True,
        )
    _ended(reply.finish_reason, sampling)


def _said_passages(session) -> None:
    """With retrieval, which passages the answer was given (on stderr: stdout is the answer)."""
    for number, passage in enumerate(session.passages, 1):
        click.secho(f"[{number}] {passage.title or 'untitled'}", err=True, dim=True)


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
        _said_passages(session)
        _ended(reply.finish_reason, sampling)


@cli.command()
@model_options("A trained recipe.")
@click.option("--format", "formatter", help="Formatter that builds the prompt.")
@click.option("--backend", help="Generation backend (default: recipe's, else mlx).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", default=8080, show_default=True, type=click.IntRange(0, 65535), help="0: any free."
)
@click.option(
    "--api-key",
    envvar="MLXTUNE_API_KEY",
    help="Require 'Authorization: Bearer KEY' (or set MLXTUNE_API_KEY); needed off loopback.",
)
@click.option(
    "--max-body",
    default=4.0,
    show_default=True,
    type=click.FloatRange(0.001),
    help="Largest request body in MB (refused with 413 before it is read).",
)
@click.option(
    "--timeout",
    default=30.0,
    show_default=True,
    type=click.FloatRange(1),
    help="Seconds a client may take to send its request (408 after).",
)
@click.pass_context
def serve(
    ctx, recipe_path, model, adapter, formatter, backend, host, port, api_key, max_body, timeout
) -> None:
    """An OpenAI-compatible API for the tuned model: /v1/chat/completions, /v1/completions
    (streaming or not) and /v1/models, answering through the recipe's formatter as `ask` does.

    Listens on loopback by default, where requests from web pages are refused; another
    --host needs an API key."""
    import logging

    from ..asking import open_session
    from ..errors import MlxtuneError
    from ..serve import GenerationWorker, make_server
    from ..serve.access import check_host, is_loopback

    check_host(host)
    if not is_loopback(host) and not api_key:
        raise MlxtuneError(
            f"--host {host} makes the model reachable from other machines: give --api-key "
            "(or set MLXTUNE_API_KEY) so that only your clients can use it"
        )
    logging.basicConfig(format="mlxtune serve: %(message)s", level=logging.WARNING)
    worker = GenerationWorker(
        lambda: open_session(
            recipe=recipe_path,
            model=model,
            adapter=adapter,
            formatter=formatter,
            backend=backend,
            plugins_dirs=ctx.obj["plugins_dirs"],
        )
    )
    worker.start()  # the model loads in the thread that will run it
    name = Path(recipe_path).stem if recipe_path else Path(model or "model").name
    server = make_server(
        worker, name, host, port, api_key=api_key, max_body=int(max_body * 2**20), timeout=timeout
    )
    if not is_loopback(host):
        click.secho(f"warning: listening on {host}: reachable from other machines", fg="yellow")
    shown = f"[{host}]" if ":" in host else host
    address = f"http://{shown}:{server.server_address[1]}/v1"
    key = " (API key required)" if api_key else ""
    click.echo(f"serving {name} at {address}{key} (Ctrl-C stops)", nl=True)
    sys.stdout.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        click.echo("stopped")
    finally:
        server.server_close()
        worker.stop()
