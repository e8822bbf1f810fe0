"""`mlxtune serve`: the tuned model behind an OpenAI-compatible HTTP API on localhost.

`/v1/chat/completions` (the last user message is the research question; earlier user/assistant
turns are the conversation, as `mlxtune chat` keeps it), `/v1/completions` (the prompt is the
question) and `/v1/models`, streaming (server-sent events) or not. Every question goes through
the recipe's formatter, exactly as `mlxtune ask` builds its prompt, so a client gets the answer
`ask` gives; the recipe's `ask:` section gives the sampling defaults and a request's
`max_tokens`, `temperature`, `top_p`, penalties and `seed` override them.

We serve with the standard library rather than wrap `mlx_lm.server`: that server applies the
model's chat template to the client's messages, not the formatter's training prompt, and knows
nothing of adapters trained on a completion-style prompt. One model answers one request at a
time (requests queue on a lock; none is dropped); a client that goes away mid-stream ends its
generation and the next request is served.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .asking import Session, conversation_prompt
from .errors import MlxtuneError

OVERRIDABLE = {
    "max_tokens": int,
    "temperature": float,
    "top_p": float,
    "frequency_penalty": float,
    "presence_penalty": float,
    "seed": int,
}


class BadRequest(Exception):
    """A request the server answers with HTTP 400 and this message."""


class Server(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default listen backlog is 5: a burst of clients overflowed it and the
    # kernel reset connections while the accept thread waited for the GIL (seen in CI, 50 clients).
    request_queue_size = 1024

    def __init__(self, address: tuple[str, int], session: Session, name: str, context: int):
        self.session, self.model_name, self.context = session, name, context
        self.lock = threading.Lock()
        super().__init__(address, Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:  # clients that left
        pass


def make_server(
    session: Session, name: str, host: str, port: int, context: int | None = None
) -> Server:
    """Bind the server (a port in use is one clear error)."""
    try:
        return Server((host, port), session, name, context or context_length(session))
    except OSError as exc:
        raise MlxtuneError(
            f"cannot listen on {host}:{port} ({exc.strerror or exc}): is the port in use? "
            "choose another with --port"
        ) from None


class Handler(BaseHTTPRequestHandler):
    server: Server
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        if self.path.rstrip("/") != "/v1/models":
            return self.error(404, f"no such endpoint: {self.path}")
        self.reply(
            200,
            {
                "object": "list",
                "data": [{"id": self.server.model_name, "object": "model", "owned_by": "mlxtune"}],
            },
        )

    def do_POST(self) -> None:
        path = self.path.rstrip("/")
        if path not in ("/v1/chat/completions", "/v1/completions"):
            return self.error(404, f"no such endpoint: {self.path}")
        try:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            if not isinstance(body, dict):
                raise BadRequest("the request body must be a JSON object")
            chat = path.endswith("chat/completions")
            prompt = self.prompt(body, chat)
            sampling = self.sampling(body)
            self.check_length(prompt, sampling.max_tokens)
        except (ValueError, BadRequest) as exc:
            return self.error(400, str(exc))
        if body.get("stream"):
            self.stream(prompt, sampling, chat)
        else:
            self.answer(prompt, sampling, chat)

    # ------------------------------------------------------------ request reading

    def prompt(self, body: dict[str, Any], chat: bool) -> Any:
        formatter = self.server.session.formatter
        if not chat:
            question = body.get("prompt")
            if isinstance(question, list) and len(question) == 1:
                question = question[0]
            if not isinstance(question, str) or not question.strip():
                raise BadRequest("'prompt' must be a non-empty string (the research question)")
            return formatter.prompt(question)
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise BadRequest("'messages' must be a non-empty list")
        turns = [m for m in messages if isinstance(m, dict) and m.get("role") != "system"]
        if not turns or turns[-1].get("role") != "user":
            raise BadRequest("the last message must be the user's question")
        texts = [_text(m.get("content")) for m in turns]
        history = [
            (texts[i], texts[i + 1])
            for i in range(0, len(turns) - 1, 2)
            if turns[i].get("role") == "user" and turns[i + 1].get("role") == "assistant"
        ]
        return conversation_prompt(formatter, history, texts[-1])

    def sampling(self, body: dict[str, Any]) -> Any:
        values = {}
        for key, kind in OVERRIDABLE.items():
            if body.get(key) is None:
                continue
            try:
                values[key] = kind(body[key])
            except (TypeError, ValueError):
                raise BadRequest(f"'{key}' must be a number") from None
        if "max_tokens" in values and values["max_tokens"] < 1:
            raise BadRequest("'max_tokens' must be at least 1")
        return replace(self.server.session.sampling, **values)

    def check_length(self, prompt: Any, max_tokens: int) -> None:
        from .tokens import encode_prompt

        tokenizer = getattr(self.server.session.backend, "tokenizer", None)
        if tokenizer is None:
            return
        used = len(encode_prompt(tokenizer, prompt))
        if used + max_tokens > self.server.context:
            raise BadRequest(
                f"the prompt ({used} tokens) and max_tokens ({max_tokens}) exceed the model's "
                f"context of {self.server.context} tokens"
            )

    # ------------------------------------------------------------ replies

    def generate(self, prompt: Any, sampling: Any, outcome: dict[str, Any]) -> Iterator[str]:
        """The answer's pieces, one request at a time; `outcome` gets the finish reason and
        the token counts before the next request may start."""
        backend = self.server.session.backend
        with self.server.lock:
            yield from backend.generate(prompt, sampling)
            outcome["finish"] = backend.finish_reason or "stop"
            outcome["stats"] = dict(backend.stats)

    def answer(self, prompt: Any, sampling: Any, chat: bool) -> None:
        outcome: dict[str, Any] = {}
        text = "".join(self.generate(prompt, sampling, outcome))
        choice: dict[str, Any] = {"index": 0, "finish_reason": _openai_reason(outcome["finish"])}
        if chat:
            choice["message"] = {"role": "assistant", "content": text}
        else:
            choice["text"] = text
        stats = outcome["stats"]
        self.reply(
            200,
            {
                **self.envelope(chat),
                "choices": [choice],
                "usage": {
                    "prompt_tokens": stats.get("prompt_tokens", 0),
                    "completion_tokens": stats.get("generation_tokens", 0),
                    "total_tokens": stats.get("prompt_tokens", 0)
                    + stats.get("generation_tokens", 0),
                },
            },
        )

    def stream(self, prompt: Any, sampling: Any, chat: bool) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        envelope = self.envelope(chat, chunk=True)
        outcome: dict[str, Any] = {}
        pieces = self.generate(prompt, sampling, outcome)
        try:
            for piece in pieces:
                delta = {"content": piece} if chat else None
                choice = {"index": 0, "finish_reason": None}
                choice.update({"delta": delta} if chat else {"text": piece})
                self.event({**envelope, "choices": [choice]})
            last = {"index": 0, "finish_reason": _openai_reason(outcome["finish"])}
            last.update({"delta": {}} if chat else {"text": ""})
            self.event({**envelope, "choices": [last]})
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pieces.close()  # the client left: stop generating, free the model for the next

    def envelope(self, chat: bool, chunk: bool = False) -> dict[str, Any]:
        kind = "chat.completion" if chat else "text_completion"
        return {
            "id": f"mlxtune-{uuid.uuid4().hex[:12]}",
            "object": kind + (".chunk" if chunk and chat else ""),
            "created": int(time.time()),
            "model": self.server.model_name,
        }

    def event(self, payload: dict[str, Any]) -> None:
        self.wfile.write(b"data: " + json.dumps(payload).encode() + b"\n\n")
        self.wfile.flush()

    def reply(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def error(self, status: int, message: str) -> None:
        kind = "invalid_request_error" if status == 400 else "not_found_error"
        self.reply(status, {"error": {"message": message, "type": kind}})


def _text(content: Any) -> str:
    """A message's text: a string, or OpenAI's list of content parts."""
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return content if isinstance(content, str) else ""


def _openai_reason(finish: str) -> str:
    """OpenAI knows "stop" and "length"; an answer the loop detector ended stopped early."""
    return "length" if finish == "length" else "stop"


def context_length(session: Session) -> int:
    """The model's context, for the over-the-limit check."""
    args = getattr(getattr(session.backend, "model", None), "args", None)
    return int(getattr(args, "max_position_embeddings", None) or 32768)
