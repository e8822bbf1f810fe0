"""A real OpenAI-compatible HTTP server on 127.0.0.1 for summarizer tests.

It answers `/v1/chat/completions` with a JSON pair made from the paper's title, and misbehaves on
request: a script maps a substring of the prompt (a paper's title) to the replies to give, in
order, before behaving normally: "500", "429", "401", "slow", "malformed", "drop", "prose",
"vague" (a pair that parses but that the rules curator rejects).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeLLMServer:
    def __init__(self, delay: float = 0.0):
        self.delay = delay  # seconds before every reply
        self.script: dict[str, list[str]] = defaultdict(list)
        self.always: dict[str, str] = {}
        self.requests: list[dict] = []
        self.refuse_formats: set[str] = set()  # response_format types answered with HTTP 400
        # the curate judge's prompts: a substring -> the score to reply (else a reply without one)
        self.judge_scores: dict[str, int] = {}
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length))
                server.handle(self, body)

        self.httpd = _QuietServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> FakeLLMServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def count(self, needle: str, kind: str | None = None) -> int:
        return sum(
            needle in r["prompt"] and (kind is None or r["kind"] == kind) for r in self.requests
        )

    def handle(self, handler: BaseHTTPRequestHandler, body: dict) -> None:
        prompt = body["messages"][-1]["content"]
        kind = (
            "repair"
            if "could not be read as JSON" in prompt
            else "chunk"
            if "Write short notes" in prompt
            else "judge"
            if "Rate how faithfully" in prompt
            else "pair"
        )
        with self.lock:
            self.requests.append(
                {
                    "kind": kind,
                    "prompt": prompt,
                    "model": body.get("model"),
                    "authorization": handler.headers.get("Authorization"),
                    "response_format": (body.get("response_format") or {}).get("type"),
                    "frequency_penalty": body.get("frequency_penalty"),
                }
            )
            refused = (body.get("response_format") or {}).get("type") in self.refuse_formats
            action = "ok"
            for needle, queue in self.script.items():
                if needle in prompt and queue:
                    action = queue.pop(0)
                    break
            else:
                action = next((a for n, a in self.always.items() if n in prompt), "ok")
        if self.delay:
            time.sleep(self.delay)
        title = _title(prompt)
        if refused:
            message = {"error": {"message": "response_format is not supported by this server"}}
            _send(handler, 400, json.dumps(message).encode())
            return
        if action == "drop":
            handler.close_connection = True
            handler.connection.shutdown(2)  # no status line at all
            return
        if action == "slow":
            time.sleep(2.0)
            action = "ok"
        if action in ("500", "429", "401", "404"):
            payload = json.dumps({"error": {"message": f"scripted {action}"}}).encode()
            handler.send_response(int(action))
            if action == "429":
                handler.send_header("Retry-After", "0")
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(payload)))
            handler.end_headers()
            handler.wfile.write(payload)
            return
        if action == "malformed":
            payload = b'{"choices": [{"message": '  # cut off mid-JSON
        else:
            if kind == "chunk":
                content = f"Notes: this part of {title} describes a method."
            elif kind == "judge":
                score = next((n for k, n in self.judge_scores.items() if k in prompt), None)
                content = (
                    json.dumps({"score": score, "reason": "it matches the abstract"})
                    if score is not None
                    else "I cannot tell from the abstract."
                )
            elif action == "prose":
                content = f"The paper {title} is interesting and its method is good."
            elif action == "vague":  # a pair that parses but no curator keeps (a small model's)
                content = json.dumps({"question": "The purpose of this paper", "approach": title})
            else:
                content = (
                    "```json\n"
                    + json.dumps(
                        {
                            "question": f"How can we improve {title}?",
                            "approach": f"Train a model for {title} with a contrastive loss.",
                        }
                    )
                    + "\n```"
                )
            payload = json.dumps(
                {
                    "id": "x",
                    "object": "chat.completion",
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": content}}],
                }
            ).encode()
        _send(handler, 200, payload)


def _send(handler: BaseHTTPRequestHandler, status: int, payload: bytes) -> None:
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(payload)))
    handler.end_headers()
    handler.wfile.write(payload)


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address):  # clients that gave up (timeouts)
        pass


def _title(prompt: str) -> str:
    match = re.search(r'Title: (.+)|research paper "(.+?)"|The paper (.+?) is interesting', prompt)
    if not match:
        return "unknown"
    return next(g for g in match.groups() if g).strip()
