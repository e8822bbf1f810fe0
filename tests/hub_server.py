"""A loopback stand-in for the Hugging Face Hub's HTTP API: records every call huggingface_hub
makes (method, path, JSON or NDJSON body) and answers the few that an upload needs, so that
`mlxtune push` is tested offline, through huggingface_hub's own client."""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class HubHandler(BaseHTTPRequestHandler):
    server: HubServer  # type: ignore[assignment]

    def log_message(self, *args: Any) -> None:  # quiet
        return None

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _reply(self, status: int, value: Any) -> None:
        data = json.dumps(value).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802
        self.server.calls.append({"method": "GET", "path": self.path})
        self._reply(404, {"error": "not found"})

    def do_POST(self) -> None:  # noqa: N802
        raw = self._body()
        call: dict[str, Any] = {"method": "POST", "path": self.path,
                                "auth": self.headers.get("Authorization")}  # fmt: skip
        self.server.calls.append(call)
        if self.path == "/api/validate-yaml":
            call["json"] = json.loads(raw)
            return self._reply(200, {})
        if self.path == "/api/repos/create":
            call["json"] = json.loads(raw)
            name = call["json"]["name"]
            org = call["json"].get("organization")
            repo = f"{org}/{name}" if org else name
            return self._reply(200, {"url": f"{self.server.url}/{repo}", "name": repo})
        if "/preupload/" in self.path:
            call["json"] = json.loads(raw)
            files = [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                     for f in call["json"]["files"]]  # fmt: skip
            return self._reply(200, {"files": files})
        if "/commit/" in self.path:
            lines = [json.loads(line) for line in raw.decode().splitlines() if line.strip()]
            call["ndjson"] = lines
            for line in lines:
                if line.get("key") == "file":
                    value = line["value"]
                    self.server.files[value["path"]] = base64.b64decode(value["content"])
            repo = self.path.split("/api/models/")[1].split("/commit/")[0]
            return self._reply(200, {"commitUrl": f"{self.server.url}/{repo}/commit/{'a' * 40}",
                                     "commitOid": "a" * 40})  # fmt: skip
        self._reply(404, {"error": f"unexpected {self.path}"})


class HubServer(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), HubHandler)
        self.calls: list[dict[str, Any]] = []
        self.files: dict[str, bytes] = {}
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)

    def __enter__(self) -> HubServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.shutdown()
        self.server_close()
