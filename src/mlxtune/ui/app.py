"""The routes of `mlxtune ui`: Runs, Papers, Pairs (review), Compare and Chat over the run
directories given. Pages are server-rendered (Jinja2); htmx swaps a reviewed pair's card and
polls a running training; chat answers stream as server-sent events."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ..reviews import ReviewError
from ..sampling import NAMES, with_overrides
from .chat import Chats, run_recipe, sampling_of, stream
from .repairs import MAX_CHARS, MAX_PAGES, paper_repairs
from .runs import PAGE, RunDir
from .security import MAX_BODY, Guard, inside, new_token
from .views import loss_svg, pair_view

HERE = Path(__file__).parent
CHANGED_PDF = "no PDF recorded for this paper, or the file has changed since it was extracted"
REPORT_FILES = {"report.html", "report.md", "report.json", "loss_curves.png"}


class UiApp:
    """The app's state: the runs, the token its pages carry, the chat workers."""

    def __init__(self, runs: list[RunDir], token: str, plugins_dirs: tuple[str, ...] = ()):
        self.runs = {run.slug: run for run in runs}
        self.token = token
        self.chats = Chats(plugins_dirs)
        self.env = Environment(
            loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True)
        )
        self.env.globals.update(token=token, runs=runs, loss_svg=loss_svg)

    def render(self, template: str, **context: Any) -> HTMLResponse:
        return HTMLResponse(self.env.get_template(template).render(**context))

    def run(self, request: Request) -> RunDir:
        run = self.runs.get(request.path_params["run"])
        if run is None:
            raise HTTPException(404, "no such run")
        return run


def make_app(
    runs: list[RunDir],
    token: str | None = None,
    *,
    loopback_only: bool = True,
    plugins_dirs: tuple[str, ...] = (),
) -> Any:
    """The ASGI app (Guard around Starlette) for these runs."""
    ui = UiApp(runs, token or new_token(), plugins_dirs)

    # the pages read files: plain functions, which Starlette runs in its thread pool, so that a
    # first index build of a large run does not hold up a streaming chat answer
    def home(request: Request) -> Response:
        return ui.render("runs.html", page="runs")

    def status(request: Request) -> Response:
        """One run's section of the Runs page, polled (every 2 s while it trains)."""
        return ui.render("_run.html", run=ui.run(request))

    def papers(request: Request) -> Response:
        run = ui.run(request)
        q = request.query_params
        category, status = q.get("category", ""), q.get("status", "")
        entries = run.filter_documents(category, status)
        pager = _pager(request, len(entries))
        shown = entries[pager["start"] : pager["start"] + PAGE]
        return ui.render(
            "papers.html",
            page="papers",
            run=run,
            docs=[e.fields for e in shown],
            pager=pager,
            category=category,
            status=status,
            categories=run.categories(),
            statuses=sorted({e.fields["status"] for e in run.documents.entries()}),
        )

    def paper(request: Request) -> Response:
        run = ui.run(request)
        doc = run.document(request.path_params["doc"])
        if doc is None:
            raise HTTPException(404, "no such paper in this run")
        pdf = str(doc.get("path", "")).lower().endswith(".pdf")
        return ui.render("paper.html", page="papers", run=run, doc=doc, pdf=pdf)

    def paper_pdf(request: Request) -> Response:
        run = ui.run(request)
        path = run.recorded_pdf(request.path_params["doc"])
        if path is None:
            raise HTTPException(404, CHANGED_PDF)
        return FileResponse(
            path, media_type="application/pdf", headers={"Content-Disposition": "inline"}
        )

    def repairs(request: Request) -> Response:
        """What cleaning changed in a paper (loaded when its page's toggle opens): the PDF is
        re-read only while its bytes are still the recorded paper, as for serving it."""
        run = ui.run(request)
        doc_id = request.path_params["doc"]
        doc = run.document(doc_id)
        if doc is None:
            raise HTTPException(404, "no such paper in this run")
        path = run.recorded_pdf(doc_id)
        if path is None:
            raise HTTPException(404, CHANGED_PDF)
        if not doc.get("text"):
            raise HTTPException(404, "no extracted text to compare (the paper was not read)")
        try:
            found = paper_repairs(path, str(doc["text"]), doc.get("pages"))
        except Exception as exc:  # noqa: BLE001 - pypdf raises many types; said in the page
            reason = f"the PDF cannot be read again ({type(exc).__name__}: {exc})"[:300]
            raise HTTPException(422, reason) from None
        if run.recorded_pdf(doc_id) is None:  # replaced while it was being read
            raise HTTPException(404, CHANGED_PDF)
        limits = {"max_pages": MAX_PAGES, "max_chars": MAX_CHARS}
        return ui.render("_repairs.html", repairs=found, **limits)

    def pairs(request: Request) -> Response:
        run = ui.run(request)
        q = request.query_params
        filters = {k: q.get(k, "") for k in ("category", "verdict", "review")}
        entries = run.filter_pairs(**filters)
        pager = _pager(request, len(entries))
        shown = entries[pager["start"] : pager["start"] + PAGE]
        cards = _cards(run, shown)
        return ui.render(
            "pairs.html",
            page="pairs",
            run=run,
            cards=cards,
            pager=pager,
            filters=filters,
            categories=run.categories(),
        )

    async def review(request: Request) -> Response:
        run = ui.run(request)
        form = await _form(request)
        key = request.path_params["key"]
        texts = {k: form.get(k, "") for k in ("question", "approach", "note")}
        try:
            run.review(key, form.get("verdict", ""), **texts)
        except KeyError:
            raise HTTPException(404, "no such pair in this run") from None
        except ReviewError as exc:
            return Response(str(exc), 400, media_type="text/plain")
        entry = run.pair_entry(key)
        assert entry is not None
        return ui.render("_pair.html", run=run, card=_cards(run, [entry])[0])

    def compare(request: Request) -> Response:
        run = ui.run(request)
        reports = run.compare_reports()
        return ui.render("compare.html", page="compare", run=run, reports=reports)

    def compare_file(request: Request) -> Response:
        run = ui.run(request)
        reports = run.compare_reports()
        number, name = request.path_params["n"], request.path_params["file"]
        if number >= len(reports) or name not in REPORT_FILES:
            raise HTTPException(404, "no such report file")
        path = inside(reports[number], name)
        if path is None:
            raise HTTPException(404, "no such report file")
        # the report's own script (its toggles) runs in a sandbox: no access to this app
        return FileResponse(path, headers={"Content-Security-Policy": "sandbox allow-scripts"})

    def run_file(request: Request) -> Response:
        run = ui.run(request)
        path = inside(run.root, request.path_params["path"])
        if path is None:
            raise HTTPException(404, "no such file in this run directory")
        return FileResponse(path, headers={"Content-Security-Policy": "sandbox"})

    def chat_page(request: Request) -> Response:
        run = ui.run(request)
        try:
            recipe = run_recipe(run.root, run.manifest(), run.recipe)
            sampling, problem = sampling_of(recipe), ""
        except Exception as exc:  # noqa: BLE001 - said in the page
            sampling, problem = None, str(exc)
        trained = (run.root / "adapters" / "adapters.safetensors").is_file()
        return ui.render(
            "chat.html", page="chat", run=run, sampling=sampling, problem=problem, trained=trained
        )

    async def chat(request: Request) -> Response:
        run = ui.run(request)
        try:
            body = json.loads(await _body(request) or b"{}")
        except ValueError:
            raise HTTPException(400, "the body is not JSON") from None
        question = str(body.get("question", "")).strip() if isinstance(body, dict) else ""
        which = body.get("model", "tuned") if isinstance(body, dict) else ""
        if not question or which not in ("tuned", "base"):
            raise HTTPException(400, "give a question and model: tuned or base")
        try:
            recipe = run_recipe(run.root, run.manifest(), run.recipe)
            overrides = {k: body[k] for k in NAMES if body.get(k) not in (None, "")}
            sampling = with_overrides(sampling_of(recipe), overrides)
        except Exception as exc:  # noqa: BLE001 - a bad setting is the client's 400
            raise HTTPException(400, str(exc)) from None
        events = stream(ui.chats, run.slug, which, recipe, question, sampling)
        return StreamingResponse(
            events, media_type="text/event-stream", headers={"Cache-Control": "no-store"}
        )

    async def not_found(request: Request, exc: HTTPException) -> Response:
        return Response(exc.detail, exc.status_code, media_type="text/plain")

    routes = [
        Route("/", home),
        Route("/run/{run}/status", status),
        Route("/run/{run}/papers", papers),
        Route("/run/{run}/papers/{doc}", paper),
        Route("/run/{run}/papers/{doc}/pdf", paper_pdf),
        Route("/run/{run}/papers/{doc}/repairs", repairs),
        Route("/run/{run}/pairs", pairs),
        Route("/run/{run}/pairs/{key}/review", review, methods=["POST"]),
        Route("/run/{run}/compare", compare),
        Route("/run/{run}/compare/{n:int}/{file}", compare_file),
        Route("/run/{run}/files/{path:path}", run_file),
        Route("/run/{run}/chat", chat_page),
        Route("/run/{run}/chat", chat, methods=["POST"]),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        yield
        ui.chats.stop()  # the generation threads end with the server

    app = Starlette(routes=routes, exception_handlers={HTTPException: not_found}, lifespan=lifespan)
    app.state.ui = ui
    return Guard(app, ui.token, loopback_only)


def _cards(run: RunDir, entries: list) -> list[dict[str, Any]]:
    """The cards of these pairs: each pair with its paper's passage, verdicts and review."""
    rows = run.pairs.rows(entries)
    rejected, reviews = run.curator(), run.reviews()
    docs: dict[str, dict[str, Any] | None] = {}
    cards = []
    for entry, pair in zip(entries, rows, strict=True):
        doc_id = entry.fields["document_id"]
        if doc_id not in docs:
            docs[doc_id] = run.document(doc_id)
        key = entry.fields["key"]
        cards.append(
            pair_view(pair, key, docs[doc_id], rejected.get(key), reviews.get(key), run.curated())
        )
    return cards


def _pager(request: Request, total: int) -> dict[str, Any]:
    pages = max(1, -(-total // PAGE))
    try:
        number = min(max(1, int(request.query_params.get("page", "1"))), pages)
    except ValueError:
        number = 1
    params = {k: v for k, v in request.query_params.items() if k != "page" and v}

    def link(n: int) -> str:
        return "?" + urlencode({**params, "page": n})

    return {
        "number": number,
        "pages": pages,
        "total": total,
        "start": (number - 1) * PAGE,
        "prev": link(number - 1) if number > 1 else None,
        "next": link(number + 1) if number < pages else None,
    }


async def _body(request: Request) -> bytes:
    data = b""
    async for chunk in request.stream():
        data += chunk
        if len(data) > MAX_BODY:
            raise HTTPException(413, f"the body is over {MAX_BODY} bytes")
    return data


async def _form(request: Request) -> dict[str, str]:
    raw = (await _body(request)).decode("utf-8", errors="replace")
    return {k: v[-1] for k, v in parse_qs(raw, keep_blank_values=True).items()}
