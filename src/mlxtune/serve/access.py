"""What a request must pass before its body is parsed: the API key, the Host and Origin
headers of a loopback server (no web page, no rebound DNS name), and a bounded body."""

from __future__ import annotations

import hmac
import json
import socket
from typing import Any, BinaryIO
from urllib.parse import urlsplit

from ..errors import MlxtuneError
from .requests import BadRequest

LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}


def is_loopback(host: str) -> bool:
    return host in LOOPBACK_NAMES or host.startswith("127.")


def check_host(host: str) -> None:
    """A host to listen on must resolve: said before the model loads, not after."""
    try:
        socket.getaddrinfo(host, None)
    except (socket.gaierror, UnicodeError):
        raise MlxtuneError(
            f"cannot listen on {host}: no such host name or address (try 127.0.0.1)"
        ) from None


def check_access(headers: Any, api_key: str | None, loopback_only: bool) -> None:
    """401 without the key; on loopback, 403 for a foreign Host (DNS rebinding) or a web
    page's Origin (a cross-site POST, even a `text/plain` one that needs no preflight)."""
    if api_key is not None:
        given = headers.get("Authorization", "")
        token = given[7:] if given.startswith("Bearer ") else ""
        if not hmac.compare_digest(token.encode(), api_key.encode()):
            raise BadRequest(
                "missing or wrong API key: send 'Authorization: Bearer <key>'",
                401,
                "invalid_api_key",
            )
    if not loopback_only:
        return
    host = _hostname(headers.get("Host", ""))
    if host is None or not is_loopback(host):
        raise BadRequest(f"Host '{headers.get('Host', '')}' is not this loopback server's", 403)
    origin = headers.get("Origin")
    if origin is not None and not is_loopback(urlsplit(origin).hostname or ""):
        raise BadRequest(f"requests from web pages ({origin}) are refused", 403)


def read_json_body(headers: Any, stream: BinaryIO, max_body: int) -> Any:
    """The JSON body, read only after its declared size passed the limit."""
    if "chunked" in headers.get("Transfer-Encoding", "").lower():
        raise BadRequest("send the body with a Content-Length (chunked is not read)", 411)
    raw = headers.get("Content-Length")
    try:
        length = int(raw) if raw is not None else -1
    except ValueError:
        length = -1
    if length < 0:
        raise BadRequest("a POST needs a valid Content-Length header", 411)
    if length > max_body:
        raise BadRequest(
            f"the body is {length} bytes; this server takes at most {max_body} (--max-body)", 413
        )
    data = stream.read(length)
    if len(data) < length:
        raise BadRequest("the body ended before its Content-Length")
    try:
        return json.loads(data)
    except RecursionError:
        raise BadRequest("the JSON body is nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}") from None


def _hostname(header: str) -> str | None:
    """The host of a Host header ("127.0.0.1:8080", "[::1]:8080", "localhost")."""
    try:
        return urlsplit(f"//{header}").hostname
    except ValueError:
        return None
