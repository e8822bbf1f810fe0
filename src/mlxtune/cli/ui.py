"""`mlxtune ui`: the review desk in the browser (mlxtune.ui), on loopback by default."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import click

from .root import cli, recipe_ref


@cli.command()
@click.argument("run_dir", nargs=-1, type=click.Path(file_okay=False))
@click.option(
    "--recipe",
    "recipes",
    multiple=True,
    metavar="FILE|NAME",
    callback=lambda ctx, param, value: tuple(recipe_ref(ctx, param, v) for v in value),
    help="Show this recipe's run directory (repeatable); chat uses the recipe.",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", default=8765, show_default=True, type=click.IntRange(0, 65535), help="0: any free."
)
@click.option(
    "--allow-remote",
    is_flag=True,
    help="Listen on a --host other than loopback (anyone who reaches it reads your papers).",
)
@click.pass_context
def ui(ctx, run_dir, recipes, host, port, allow_remote) -> None:
    """A local web app over the run directories RUN_DIR: Runs, Papers, Pairs (accept /
    reject / edit, by keyboard), Compare and Chat. With no RUN_DIR and no --recipe: every
    runs/*/ here.

    Decisions go to RUN_DIR/reviews.jsonl; `mlxtune recipe run` applies them (curate)."""
    from ..errors import MlxtuneError
    from ..serve.access import check_host, is_loopback
    from ..ui import require_ui

    require_ui()
    check_host(host)
    if not is_loopback(host) and not allow_remote:
        raise MlxtuneError(
            f"--host {host} makes your papers and reviews reachable from other machines: "
            "give --allow-remote if that is what you want"
        )
    import uvicorn

    from ..recipe import load_recipe
    from ..ui import open_runs
    from ..ui.app import make_app

    loaded = [load_recipe(r, (), ctx.obj["plugins_dirs"], check_paths=False)[0] for r in recipes]
    folders = list(run_dir)
    if not folders and not loaded:
        folders = [str(p.parent) for p in sorted(Path("runs").glob("*/manifest.json"))]
        if not folders:
            raise MlxtuneError(
                "no run directories here (runs/*/manifest.json): give RUN_DIR or --recipe R"
            )
    runs = open_runs(folders, loaded)
    app = make_app(runs, loopback_only=is_loopback(host), plugins_dirs=ctx.obj["plugins_dirs"])
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        raise MlxtuneError(
            f"cannot listen on {host}:{port}: {exc.strerror} (try --port 0)"
        ) from None
    shown = f"[{host}]" if ":" in host else host
    names = ", ".join(run.slug for run in runs)
    if not is_loopback(host):
        click.secho(f"warning: listening on {host}: reachable from other machines", fg="yellow")
    click.echo(f"mlxtune ui at http://{shown}:{sock.getsockname()[1]}/ ({names}; Ctrl-C stops)")
    sys.stdout.flush()
    config = uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=2)
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
