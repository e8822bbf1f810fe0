"""Summarize through any OpenAI-compatible `/v1/chat/completions` server.

Ollama, vLLM, llama.cpp's server, LM Studio and `mlx_lm.server` all speak this protocol, so this
is how a user scales summarizing past one machine: point `base_url` at a vLLM cluster and raise
`concurrency`. Standard library HTTP (no SDK): one POST per prompt, `concurrency` in flight.

Failures are sorted by what helps: 429, 5xx, timeouts and dropped connections are retried with
exponential backoff (honouring Retry-After); when retries run out the paper is a *transient*
failure (not cached, redone next run). 401/403/404/400 mean every request will fail the same way
(bad key, wrong model name): the stage stops at once with the server's message.
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from http.client import HTTPException
from typing import Any

from pydantic import Field

from ..errors import MlxtuneError
from ..hookspecs import hookimpl
from .llm import PAIR_SCHEMA, Completion, LLMOptions, LLMSummarizer, Messages, TransientError

RETRYABLE_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}
# what servers enforce of a JSON schema varies (OpenAI's strict mode rejects length bounds):
# the servers get the pair's fields without them
SERVER_SCHEMA = {
    "type": "object",
    "properties": {k: {"type": "string"} for k in PAIR_SCHEMA["properties"]},
    "required": PAIR_SCHEMA["required"],
    "additionalProperties": False,
}
WEAKER = {"json_schema": "json_object", "json_object": "none"}
STRENGTH = ["json_schema", "json_object", "none"]
# per server: the response_format a server refused last, shared by every summarizer instance
REFUSED: dict[str, str] = {}


def response_format(kind: str) -> dict[str, Any] | None:
    """The OpenAI `response_format` for `structured` (vLLM, llama.cpp's server, Ollama's /v1 and
    OpenAI accept json_schema; mlx_lm.server ignores the field)."""
    if kind == "json_schema":
        return {
            "type": "json_schema",
            "json_schema": {"name": "research_pair", "schema": SERVER_SCHEMA, "strict": True},
        }
    if kind == "json_object":
        return {"type": "json_object"}
    return None


class OpenAISummarizer(LLMSummarizer):
    name = "openai"
    description = "any OpenAI-compatible server: Ollama, vLLM, llama.cpp, LM Studio, mlx_lm.server"

    class Options(LLMOptions):
        model: str = Field(description="the model name the server knows, e.g. qwen2.5:32b")
        base_url: str = Field(
            "http://127.0.0.1:11434/v1", description="server URL up to /v1 (default: Ollama)"
        )
        api_key_env: str | None = Field(
            None, description="environment variable holding the API key (never logged or stored)"
        )
        concurrency: int = Field(4, ge=1, description="requests in flight at once")
        timeout: float = Field(300, gt=0, description="seconds to wait for one reply")
        max_retries: int = Field(4, ge=0, description="retries after 429/5xx/timeouts")
        backoff: float = Field(1.0, ge=0, description="first retry delay in seconds, doubling")
        json_mode: bool = Field(
            False, description="deprecated: structured=json_object says the same"
        )
        extra_body: dict[str, Any] = Field(
            default_factory=dict, description="merged into each request, e.g. Ollama options"
        )

    def group_size(self) -> int:
        return self.options.concurrency * 4

    def output_options(self) -> tuple[str, ...]:
        # base_url is left out on purpose: moving from a laptop to a cluster serving the same
        # model keeps the cache
        return (*super().output_options(), "json_mode", "extra_body")

    def structured_kind(self) -> str:
        """What to send: the recipe's choice, weakened past what this server refused."""
        kind = self.options.structured
        if self.options.json_mode and kind == "none":
            kind = "json_object"
        refused = REFUSED.get(self.options.base_url)
        if refused is not None and STRENGTH.index(kind) <= STRENGTH.index(refused):
            kind = WEAKER[refused]
        return kind

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        env = self.options.api_key_env
        if env:
            key = os.environ.get(env)
            if not key:
                raise MlxtuneError(
                    f"summarize.api_key_env: environment variable {env} is not set "
                    f"(export {env}=... with your API key)"
                )
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def complete(self, conversations: Sequence[Messages]) -> list[Completion]:
        return self._complete_all(conversations, structured=False)

    def complete_pairs(
        self, conversations: Sequence[Messages], *, retry: bool = False
    ) -> list[Completion]:
        return self._complete_all(conversations, structured=True)

    def _complete_all(
        self, conversations: Sequence[Messages], structured: bool
    ) -> list[Completion]:
        if not conversations:
            return []
        headers = self._headers()
        with ThreadPoolExecutor(self.options.concurrency) as pool:
            return list(pool.map(lambda c: self._request(c, headers, structured), conversations))

    def _request(
        self, messages: Messages, headers: dict[str, str], structured: bool = False
    ) -> Completion:
        kind = self.structured_kind() if structured else "none"
        while True:
            try:
                return self._post(messages, headers, kind)
            except SchemaRefused as refused:
                known = REFUSED.get(self.options.base_url)
                if known is None or STRENGTH.index(kind) > STRENGTH.index(known):
                    REFUSED[self.options.base_url] = kind  # only ever weakened, said once
                    sys.stderr.write(
                        f"  summarizer server {self.options.base_url} refused response_format "
                        f"{kind} ({refused}); using {WEAKER[kind]} from now on\n"
                    )
                kind = self.structured_kind()

    def _post(self, messages: Messages, headers: dict[str, str], kind: str) -> Completion:
        options = self.options
        body: dict[str, Any] = {
            "model": options.model,
            "messages": messages,
            "max_tokens": options.max_tokens,
            "temperature": options.temperature,
            "stream": False,
        }
        if options.frequency_penalty:
            body["frequency_penalty"] = options.frequency_penalty
        fmt = response_format(kind)
        if fmt is not None:
            body["response_format"] = fmt
        body.update(options.extra_body)
        url = options.base_url.rstrip("/") + "/chat/completions"
        data = json.dumps(body).encode()
        problem, retry_after = "no attempt", None
        for attempt in range(options.max_retries + 1):
            if attempt:
                time.sleep(self._delay(attempt, retry_after))
            request = urllib.request.Request(url, data=data, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=options.timeout) as response:
                    payload = response.read()
            except urllib.error.HTTPError as exc:
                detail = _error_detail(exc)
                if exc.code in (400, 422) and fmt is not None:  # the schema, most likely
                    raise SchemaRefused(f"HTTP {exc.code}: {detail}") from None
                if exc.code not in RETRYABLE_STATUS:
                    raise MlxtuneError(
                        f"summarizer server {options.base_url} answered HTTP {exc.code}: "
                        f"{detail} (check summarize.model / base_url / api_key_env)"
                    ) from None
                problem = f"HTTP {exc.code}: {detail}"
                retry_after = exc.headers.get("Retry-After") if exc.headers else None
                continue
            except (urllib.error.URLError, TimeoutError, HTTPException, OSError) as exc:
                reason = getattr(exc, "reason", exc)
                problem = f"{type(reason).__name__}: {reason}".rstrip(": ")
                retry_after = None
                continue
            try:
                return _reply_text(payload)
            except ValueError as exc:
                problem, retry_after = f"malformed response ({exc})", None
        return TransientError(
            f"server {options.base_url} failed {options.max_retries + 1} times; last: {problem}"
        )

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        if retry_after:
            try:
                return min(60.0, float(retry_after))
            except ValueError:
                pass
        base = self.options.backoff * 2 ** (attempt - 1)
        return min(60.0, base * (0.5 + random.random()))  # jitter spreads out a thundering herd


class SchemaRefused(Exception):
    """The server answered 400/422 to a request that carried a response_format."""


def _reply_text(payload: bytes) -> str:
    try:
        data = json.loads(payload)
        content = data["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise ValueError(f"{type(exc).__name__}; body starts {payload[:80]!r}") from None
    if not isinstance(content, str):
        raise ValueError("choices[0].message.content is not text")
    return content


def _error_detail(exc: urllib.error.HTTPError) -> str:
    try:
        body = exc.read()[:300].decode("utf-8", "replace")
    except Exception:
        body = ""
    try:
        message = json.loads(body)["error"]
        return str(message.get("message", message) if isinstance(message, dict) else message)
    except Exception:
        return body.strip() or exc.reason or "no detail"


@hookimpl
def register_summarizers(register):
    register(OpenAISummarizer)
