"""Reading a model's reply as a [question, approach] pair, tolerantly: reasoning blocks, code
fences, prose around the JSON, single quotes, trailing commas, one level of nesting, other key
spellings, or plain "Question: ... Approach: ..." lines."""

from __future__ import annotations

import ast
import json
import re

_THINK = re.compile(r"<think>.*?</think>", re.S)


def strip_thinking(text: str) -> str:
    """Drop reasoning models' <think>...</think>; an unclosed one means no answer was given."""
    text = _THINK.sub("", text)
    if "</think>" in text:  # the opening tag was part of the prompt (Qwen3's template)
        text = text.rsplit("</think>", 1)[1]
    if "<think>" in text:
        text = text.split("<think>", 1)[0]
    return text.strip()


QUESTION_KEYS = (
    "question",
    "research_question",
    "research question",
    "researchquestion",
    "problem",
)
APPROACH_KEYS = ("approach", "method", "methodology", "proposed_approach", "solution")


def parse_pair(reply: str) -> tuple[str, str]:
    """(question, approach) from a model's reply; tolerant of fences, prose around the JSON,
    single quotes, trailing commas and key spellings. Raises ValueError when it cannot."""
    text = strip_thinking(reply)
    text = re.sub(r"```(?:json|JSON)?", "", text)
    obj = _first_object(text)
    if obj is None:
        return _labelled_lines(text)
    inner = [v for v in obj.values() if isinstance(v, dict)]
    if len(obj) == 1 and len(inner) == 1:  # one level of nesting: {"data": {"question": ...}}
        obj = inner[0]
    found = {_norm_key(k): v for k, v in obj.items()}
    question = next((found[k] for k in map(_norm_key, QUESTION_KEYS) if k in found), None)
    approach = next((found[k] for k in map(_norm_key, APPROACH_KEYS) if k in found), None)
    question, approach = _as_text(question), _as_text(approach)
    if not question or not approach:
        raise ValueError(f"JSON without both question and approach (keys: {sorted(obj)})")
    return question, approach


def _first_object(text: str) -> dict | None:
    start = text.find("{")
    while start != -1:
        end = text.rfind("}")
        while end > start:
            candidate = text[start : end + 1]
            for attempt in (candidate, re.sub(r",\s*([}\]])", r"\1", candidate)):
                value = _load(attempt)
                if isinstance(value, dict):
                    return value
            end = text.rfind("}", start, end)
        start = text.find("{", start + 1)
    return None


def _load(candidate: str) -> object:
    try:
        return json.loads(candidate, strict=False)
    except ValueError:
        pass
    try:  # single-quoted Python-style dicts; literal_eval evaluates no code
        return ast.literal_eval(candidate)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None


def _labelled_lines(text: str) -> tuple[str, str]:
    """Fallback for replies like 'Research question: ...\nApproach: ...'."""
    match = re.search(
        r"(?:research\s+)?question\s*[:\-]\s*(?P<q>.+?)\s*(?:\n|^)\s*(?:\*\*)?approach(?:\*\*)?"
        r"\s*[:\-]\s*(?P<a>.+)",
        text,
        re.I | re.S,
    )
    if not match:
        raise ValueError("reply is not JSON and has no 'question:'/'approach:' lines")
    return _as_text(match.group("q")), _as_text(match.group("a"))


def _norm_key(key: object) -> str:
    return re.sub(r"[^a-z]", "", str(key).lower())


def _as_text(value: object) -> str:
    if isinstance(value, list):
        value = " ".join(str(v) for v in value)
    if not isinstance(value, str):
        return ""
    return re.sub(r"\s+", " ", value.strip(" *\"'\n")).strip()
