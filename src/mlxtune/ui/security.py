"""What every request to `mlxtune ui` must pass, as for `serve` (mlxtune/serve/access.py):
a loopback server answers only its own Host names (no rebound DNS name reads your papers), a
write (POST) must come from this app's own pages (its Origin) and carry the token those pages
hold, and files are served only from inside the run directories given."""

from __future__ import annotations

import hmac
import secrets
from pathlib import Path
from urllib.parse import urlsplit

from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from ..serve.access import check_access
from ..serve.requests import BadRequest

TOKEN_HEADER = "x-csrf-token"
MAX_BODY = 64 * 1024  # a review or a chat question; anything bigger is refused (413)

SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"SAMEORIGIN"),
]
PAGE_CSP = (
    b"default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    b"img-src 'self' data:; frame-src 'self'; frame-ancestors 'self'; form-action 'self'"
)


def new_token() -> str:
    """A per-process secret: a page of this server holds it, no other site can read it."""
    return secrets.token_urlsafe(24)


class Guard:
    """ASGI middleware: the Host/Origin checks and the token on every POST."""

    def __init__(self, app: ASGIApp, token: str, loopback_only: bool):
        self.app, self.token, self.loopback_only = app, token, loopback_only

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        problem = self.refusal(scope["method"], _Headers(headers))
        if problem is not None:
            status, message = problem
            await PlainTextResponse(message, status)(scope, receive, send)
            return

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                names = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in SECURITY_HEADERS if k not in names]
                if b"content-security-policy" not in names:
                    extra.append((b"content-security-policy", PAGE_CSP))
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_headers)

    def refusal(self, method: str, headers: _Headers) -> tuple[int, str] | None:
        """(status, reason) of a request that must not reach a page, else None."""
        try:
            check_access(headers, None, self.loopback_only)
        except BadRequest as exc:
            return exc.status, str(exc)
        if method in ("GET", "HEAD"):
            return None
        if method != "POST":
            return 405, f"{method} is not answered here"
        origin = headers.get("Origin")
        own = headers.get("Host", "")
        if origin is not None and (urlsplit(origin).netloc != own or origin == "null"):
            return 403, f"a write from another site ({origin}) is refused"
        if headers.get("Sec-Fetch-Site") not in (None, "same-origin"):
            return 403, "a write from another site is refused (Sec-Fetch-Site)"
        given = headers.get(TOKEN_HEADER, "")
        if not given or not hmac.compare_digest(given.encode(), self.token.encode()):
            return 403, "missing or stale form token: reload the page and try again"
        length = headers.get("Content-Length")
        if length is not None and length.isdigit() and int(length) > MAX_BODY:
            return 413, f"the body is over {MAX_BODY} bytes"
        return None


class _Headers:
    """Case-insensitive header lookup, as serve's checks read them."""

    def __init__(self, items: dict[str, str]):
        self.items = items

    def get(self, name: str, default: str | None = None) -> str | None:
        return self.items.get(name.lower(), default)


def inside(root: Path, rel: str) -> Path | None:
    """`root/rel` if it is a file inside `root` once every `..` and link is resolved, else None."""
    if not rel or "\x00" in rel or Path(rel).is_absolute():
        return None
    base = root.resolve()
    try:
        target = (base / rel).resolve()
    except (OSError, RuntimeError):
        return None
    if not target.is_relative_to(base) or not target.is_file():
        return None
    return target
