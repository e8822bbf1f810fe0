"""An OpenAI request body, checked and turned into what the worker runs.

Sampling values are checked by the recipe's `ask:` rules (mlxtune.sampling), strictly typed as
JSON: "5", 2.7 or true are not a `max_tokens`. What OpenAI's API has and we do not do is a 400
that says so, never a silent 200: OpenAI itself refuses arguments it does not know.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..asking import conversation_prompt
from ..components import Formatter, Sampling
from ..errors import MlxtuneError
from ..records import Example
from ..sampling import NAMES, checked

MAX_CHOICES = 8
MAX_STOPS = 4
# accepted and ignored: they change nothing about the answer
IGNORED = {"user", "metadata", "store", "service_tier", "parallel_tool_calls", "stream_options"}
# OpenAI's arguments that we refuse unless they ask for the default
UNSUPPORTED_UNLESS = {
    "logit_bias": lambda v: not v,
    "tools": lambda v: not v,
    "functions": lambda v: not v,
    "tool_choice": lambda v: v in (None, "none"),
    "function_call": lambda v: v in (None, "none"),
    "logprobs": lambda v: v in (None, False),
    "top_logprobs": lambda v: v in (None, 0),
    "echo": lambda v: v in (None, False),
    "best_of": lambda v: v in (None, 1),
    "suffix": lambda v: v in (None, ""),
    "modalities": lambda v: v in (None, ["text"]),
}
CHAT_ROLES = {"system", "developer", "user", "assistant"}


class BadRequest(Exception):
    """Answered with this HTTP status and message in OpenAI's error shape."""

    def __init__(self, message: str, status: int = 400, code: str | None = None):
        super().__init__(message)
        self.status, self.code = status, code


@dataclass
class Request:
    prompt: Example
    sampling: Sampling
    stream: bool = False
    stops: tuple[str, ...] = ()
    n: int = 1
    json_schema: dict[str, Any] | None = None
    include_usage: bool = False


def parse(
    body: Any,
    *,
    chat: bool,
    formatter: Formatter,
    defaults: Sampling,
    served: str,
    json_schemas: bool,
) -> Request:
    """The request in `body`, or a BadRequest naming the field and what to send instead."""
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    known = {"model", "stream", "stop", "n", "response_format", "max_completion_tokens"}
    known |= set(NAMES) | IGNORED | set(UNSUPPORTED_UNLESS)
    known.add("messages" if chat else "prompt")
    unknown = sorted(set(body) - known)
    if unknown:
        raise BadRequest(f"unrecognized request argument: {', '.join(unknown)}")
    for key, fine in UNSUPPORTED_UNLESS.items():
        if key in body and not fine(body[key]):
            raise BadRequest(f"'{key}' is not supported by mlxtune serve")
    model = body.get("model")
    if model is not None and model != served:
        raise BadRequest(
            f"the model '{model}' is not served here (this server serves '{served}')",
            404,
            "model_not_found",
        )
    prompt = _chat_prompt(body, formatter) if chat else _completion_prompt(body, formatter)
    return Request(
        prompt=prompt,
        sampling=_sampling(body, defaults),
        stream=_flag(body, "stream"),
        stops=_stops(body.get("stop")),
        n=_choices(body.get("n")),
        json_schema=_schema(body.get("response_format"), json_schemas),
        include_usage=_include_usage(body.get("stream_options")),
    )


def _text(value: Any, where: str, *, empty: bool = False) -> str:
    """A string a tokenizer can take: no lone surrogates (JSON allows "\\ud800")."""
    if not isinstance(value, str) or (not empty and not value.strip()):
        raise BadRequest(f"{where} must be a non-empty string")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise BadRequest(f"{where} is not valid Unicode (a lone surrogate)") from None
    return value


def _content(message: dict[str, Any], where: str, *, empty: bool) -> str:
    """A message's text: a string, or OpenAI's list of text parts."""
    content = message.get("content")
    if isinstance(content, list):
        parts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text":
                raise BadRequest(f"{where}.content: only text parts are supported")
            parts.append(_text(part.get("text"), f"{where}.content[].text", empty=True))
        content = "".join(parts)
    return _text(content, f"{where}.content", empty=empty)


def _chat_prompt(body: dict[str, Any], formatter: Formatter) -> Example:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("'messages' must be a non-empty list")
    turns: list[tuple[str, str]] = []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict) or message.get("role") not in CHAT_ROLES:
            raise BadRequest(f"{where} must be an object with a role of {sorted(CHAT_ROLES)}")
        last = i == len(messages) - 1
        if message["role"] in ("system", "developer"):
            _content(message, where, empty=True)  # the formatter's prompt is the instruction
            continue
        turns.append((message["role"], _content(message, where, empty=not last)))
    if not turns or turns[-1][0] != "user" or messages[-1].get("role") != "user":
        raise BadRequest("the last message must be the user's question")
    history = [
        (turns[i][1], turns[i + 1][1])
        for i in range(0, len(turns) - 1, 2)
        if turns[i][0] == "user" and turns[i + 1][0] == "assistant"
    ]
    return conversation_prompt(formatter, history, turns[-1][1])


def _completion_prompt(body: dict[str, Any], formatter: Formatter) -> Example:
    question = body.get("prompt")
    if isinstance(question, list) and len(question) == 1:
        question = question[0]
    question = _text(question, "'prompt' (the research question; one string)")
    return formatter.prompt(question)


def _sampling(body: dict[str, Any], defaults: Sampling) -> Sampling:
    values = {name: body[name] for name in NAMES if body.get(name) is not None}
    if body.get("max_completion_tokens") is not None:
        values["max_tokens"] = body["max_completion_tokens"]
    try:
        return checked(values, defaults, strict=True)
    except MlxtuneError as exc:
        raise BadRequest(str(exc)) from None


def _flag(body: dict[str, Any], key: str) -> bool:
    value = body.get(key)
    if value is not None and not isinstance(value, bool):
        raise BadRequest(f"'{key}' must be true or false")
    return bool(value)


def _stops(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    stops = [value] if isinstance(value, str) else value
    if not isinstance(stops, list) or not 1 <= len(stops) <= MAX_STOPS:
        raise BadRequest(f"'stop' must be a string or a list of 1 to {MAX_STOPS} strings")
    return tuple(_text(s, "'stop' entries") for s in stops)


def _choices(value: Any) -> int:
    if value is None:
        return 1
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_CHOICES:
        raise BadRequest(f"'n' must be an integer from 1 to {MAX_CHOICES}")
    return value


def _schema(value: Any, supported: bool) -> dict[str, Any] | None:
    """`response_format`: text, json_object (any object) or json_schema (that schema)."""
    if value is None:
        return None
    kind = value.get("type") if isinstance(value, dict) else None
    if kind == "text":
        return None
    if kind not in ("json_object", "json_schema"):
        raise BadRequest("'response_format.type' must be text, json_object or json_schema")
    if not supported:
        raise BadRequest("this server's backend cannot enforce 'response_format'")
    if kind == "json_object":
        return {"type": "object"}
    spec = value.get("json_schema")
    schema = spec.get("schema") if isinstance(spec, dict) else None
    if not isinstance(schema, dict):
        raise BadRequest("'response_format.json_schema.schema' must be a JSON schema object")
    problem = _schema_problem(schema)
    if problem:
        raise BadRequest(f"'response_format.json_schema.schema' cannot be enforced: {problem}")
    return schema


def _schema_problem(schema: dict[str, Any]) -> str | None:
    """What llguidance finds wrong with a schema (checked here, before the request queues)."""
    import json

    import llguidance

    try:
        grammar = llguidance.LLMatcher.grammar_from_json_schema(json.dumps(schema))
        return llguidance.LLMatcher.validate_grammar(grammar) or None
    except (ValueError, TypeError, RuntimeError) as exc:
        return str(exc)


def _include_usage(value: Any) -> bool:
    if value is None:
        return False
    if not isinstance(value, dict):
        raise BadRequest("'stream_options' must be an object")
    return bool(value.get("include_usage"))
