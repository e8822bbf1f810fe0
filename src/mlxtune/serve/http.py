"""The HTTP side of `mlxtune serve`: limits and access checks before anything is parsed, the
OpenAI routes, and replies (JSON or server-sent events). Generation happens in the worker.

Checked before a body is read: the route and method (404/405), the API key (401), the Host and
Origin headers (403: a web page must not reach a server on loopback, whether by a cross-site POST
or DNS rebinding), and the body's declared size (413). Reading is bounded by a timeout (408).
Every unexpected exception is logged and answered with a 500; only a client that left is quiet.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import socket
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from ..components import Sampling
from ..errors import MlxtuneError
from .access import check_access, is_loopback, read_json_body
from .requests import BadRequest, Request, parse
from .stops import StopMatcher
from .worker import GenerationWorker, Job

log = logging.getLogger("mlxtune.serve")

ROUTES = {
    "/v1/models": "GET",
    "/v1/chat/completions": "POST",
    "/v1/completions": "POST",
}
GONE = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default listen backlog is 5: a burst of clients overflowed it and the
    # kernel reset connections while the accept thread waited for the GIL (seen in CI, 50 clients).
    request_queue_size = 1024

    def __init__(
        self,
        address: tuple[str, int],
        worker: GenerationWorker,
        name: str,
        *,
        api_key: str | None = None,
        max_body: int = 4 * 2**20,
        timeout: float = 30.0,
        context: int | None = None,
    ):
        self.worker, self.model_name = worker, name
        self.api_key, self.max_body, self.read_timeout = api_key, max_body, timeout
        session = worker.session
        assert session is not None and session.formatter is not None
        self.session, self.formatter = session, session.formatter
        self.context = context or session.backend.context_length()
        self.loopback_only = is_loopback(address[0])
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Whatever escaped a handler: logged, unless the client simply went away."""
        import sys

        error = sys.exc_info()[1]
        if isinstance(error, GONE + (TimeoutError,)):
            return
        log.error("unexpected %s: %s", type(error).__name__, error, exc_info=_debug())


def _debug() -> bool:
    return bool(os.environ.get("MLXTUNE_DEBUG"))


def make_server(
    worker: GenerationWorker, name: str, host: str, port: int, **options: Any
) -> Server:
    """Bind the server; a port in use, an unknown host or an address this machine does not
    have is one clear error each."""
    try:
        return Server((host, port), worker, name, **options)
    except socket.gaierror:
        raise MlxtuneError(
            f"cannot listen on {host}: no such host name or address (try 127.0.0.1)"
        ) from None
    except OSError as exc:
        import errno

        if exc.errno == errno.EADDRINUSE:
            raise MlxtuneError(
                f"cannot listen on {host}:{port}: the port is in use; choose another with --port"
            ) from None
        if exc.errno == errno.EADDRNOTAVAIL:
            raise MlxtuneError(
                f"cannot listen on {host}: not an address of this machine (try 127.0.0.1)"
            ) from None
        raise MlxtuneError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


class Handler(BaseHTTPRequestHandler):
    server: Server
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        self.timeout = self.server.read_timeout  # a stalled body or idle connection ends
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    # ------------------------------------------------------------ routing

    def do_GET(self) -> None:
        self.route("GET")

    def do_POST(self) -> None:
        self.route("POST")

    def do_PUT(self) -> None:
        self.route("PUT")

    def do_DELETE(self) -> None:
        self.route("DELETE")

    def do_OPTIONS(self) -> None:
        self.route("OPTIONS")

    def route(self, method: str) -> None:
        path = urlsplit(self.path).path.rstrip("/")
        try:
            allowed = ROUTES.get(path)
            if allowed is None:
                raise BadRequest(f"no such endpoint: {path}", 404, "not_found")
            self.check_access()
            if method != allowed:
                raise BadRequest(f"{path} takes {allowed}, not {method}", 405)
            if method == "GET":
                return self.models()
            body = self.read_body()
            self.complete(body, chat=path.endswith("chat/completions"))
        except BadRequest as exc:
            self.fail(exc.status, str(exc), exc.code, allow=ROUTES.get(path))
        except GONE:
            self.close_connection = True
        except TimeoutError:
            self.fail(408, f"the request body did not arrive within {self.server.read_timeout} s")
        except Exception as exc:  # noqa: BLE001 - never a silent close
            log.error("unexpected %s: %s", type(exc).__name__, exc, exc_info=_debug())
            self.fail(500, f"internal error ({type(exc).__name__}); see the server's log")

    def check_access(self) -> None:
        server = self.server
        check_access(self.headers, server.api_key, server.loopback_only)

    def read_body(self) -> Any:
        try:
            return read_json_body(self.headers, self.rfile, self.server.max_body)
        except BadRequest as exc:
            if exc.status in (413, 400):
                self.close_connection = True  # an unread body must not be taken for a request
            raise

    # ------------------------------------------------------------ answers

    def models(self) -> None:
        self.reply(
            200,
            {
                "object": "list",
                "data": [
                    {
                        "id": self.server.model_name,
                        "object": "model",
                        "created": 0,
                        "owned_by": "mlxtune",
                    }
                ],
            },
        )

    def complete(self, body: Any, chat: bool) -> None:
        server = self.server
        request = parse(
            body,
            chat=chat,
            formatter=server.formatter,
            defaults=server.session.sampling,
            served=server.model_name,
            json_schemas=server.session.backend.supports_json_schema,
        )
        self.check_length(request)
        if request.stream:
            self.stream(request, chat)
        else:
            self.answer(request, chat)

    def check_length(self, request: Request) -> None:
        if not self.server.context:
            return
        used = self.server.session.backend.count_tokens(request.prompt)
        if used is not None and used + request.sampling.max_tokens > self.server.context:
            raise BadRequest(
                f"the prompt ({used} tokens) and max_tokens ({request.sampling.max_tokens}) "
                f"exceed the model's context of {self.server.context} tokens"
            )

    def jobs(self, request: Request) -> list[tuple[Job, StopMatcher]]:
        """One job per choice; choice i samples with seed + i (greedy ones are equal)."""
        from dataclasses import replace

        runs = []
        for i in range(request.n):
            sampling: Sampling = replace(request.sampling, seed=request.sampling.seed + i)
            job = Job(request.prompt, sampling, request.json_schema)
            runs.append((self.server.worker.submit(job), StopMatcher(list(request.stops))))
        return runs

    def answer(self, request: Request, chat: bool) -> None:
        choices, prompt_tokens, completion_tokens = [], 0, 0
        runs = self.jobs(request)
        try:
            for index, (job, stops) in enumerate(runs):
                text = _collect(job, stops)
                assert job.finished is not None
                reason = _reason(job.finished.reason, stops.stopped)
                choice: dict[str, Any] = {"index": index, "finish_reason": reason}
                choice.update(
                    {"message": {"role": "assistant", "content": text}}
                    if chat
                    else {"text": text, "logprobs": None}
                )
                choices.append(choice)
                prompt_tokens = int(job.finished.stats.get("prompt_tokens", 0))
                completion_tokens += int(job.finished.stats.get("generation_tokens", 0))
        finally:
            for job, _ in runs:
                job.cancel()
        self.reply(
            200,
            {
                **self.envelope(chat),
                "choices": choices,
                "usage": _usage(prompt_tokens, completion_tokens),
            },
        )

    def stream(self, request: Request, chat: bool) -> None:
        runs = self.jobs(request)
        try:
            # the first piece before the status line: a backend that fails at once is a 500
            first = runs[0][0].pieces()
            head = list(itertools.islice(first, 1))
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            envelope = self.envelope(chat, chunk=True)
            prompt_tokens = completion_tokens = 0
            for index, (job, stops) in enumerate(runs):
                if chat:
                    self.event(envelope, index, {"role": "assistant", "content": ""}, None, chat)
                try:
                    for piece in itertools.chain(head, first) if index == 0 else job.pieces():
                        text = stops.feed(piece)
                        if text:
                            self.event(envelope, index, text, None, chat)
                        if stops.stopped:
                            job.cancel()
                    if tail := stops.flush():
                        self.event(envelope, index, tail, None, chat)
                except Exception as exc:  # noqa: BLE001 - the status line has gone already
                    if isinstance(exc, GONE):
                        raise
                    log.error("unexpected %s: %s", type(exc).__name__, exc, exc_info=_debug())
                    self.write_event({"error": _error(500, f"internal error ({exc})")})
                    return
                assert job.finished is not None
                reason = _reason(job.finished.reason, stops.stopped)
                self.event(envelope, index, "", reason, chat)
                prompt_tokens = int(job.finished.stats.get("prompt_tokens", 0))
                completion_tokens += int(job.finished.stats.get("generation_tokens", 0))
            if request.include_usage:
                usage = _usage(prompt_tokens, completion_tokens)
                self.write_event({**envelope, "choices": [], "usage": usage})
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
        finally:
            for job, _ in runs:
                job.cancel()  # a client that left frees the model for the next request

    def envelope(self, chat: bool, chunk: bool = False) -> dict[str, Any]:
        kind = "chat.completion" if chat else "text_completion"
        return {
            "id": f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex[:24]}",
            "object": kind + (".chunk" if chunk and chat else ""),
            "created": int(time.time()),
            "model": self.server.model_name,
        }

    def event(self, envelope: dict, index: int, text: Any, reason: str | None, chat: bool) -> None:
        choice: dict[str, Any] = {"index": index, "finish_reason": reason}
        if chat:
            choice["delta"] = (
                text if isinstance(text, dict) else ({"content": text} if text else {})
            )
        else:
            choice.update(text=text, logprobs=None)
        self.write_event({**envelope, "choices": [choice]})

    def write_event(self, payload: dict[str, Any]) -> None:
        self.wfile.write(b"data: " + json.dumps(payload).encode() + b"\n\n")
        self.wfile.flush()

    def reply(self, status: int, payload: dict[str, Any], allow: str | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if allow is not None and status == 405:
            self.send_header("Allow", allow)
        if status == 401:
            self.send_header("WWW-Authenticate", "Bearer")
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def fail(
        self, status: int, message: str, code: str | None = None, allow: str | None = None
    ) -> None:
        try:
            self.reply(status, {"error": _error(status, message, code)}, allow)
        except GONE:
            self.close_connection = True


def _collect(job: Job, stops: StopMatcher) -> str:
    parts = []
    for piece in job.pieces():
        parts.append(stops.feed(piece))
        if stops.stopped:
            job.cancel()
    parts.append(stops.flush())
    return "".join(parts)


def _reason(finish: str, stopped: bool) -> str:
    """OpenAI knows "stop" and "length"; an answer the loop detector ended stopped early."""
    return "length" if finish == "length" and not stopped else "stop"


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def _error(status: int, message: str, code: str | None = None) -> dict[str, Any]:
    kinds = {
        401: "authentication_error",
        403: "permission_error",
        404: "not_found_error",
        500: "server_error",
    }
    return {
        "message": message,
        "type": kinds.get(status, "invalid_request_error"),
        "param": None,
        "code": code,
    }
