"""Optional LLM-as-judge: a second model grades each answer 1-5 (off unless a recipe sets
`evaluate.judge`). Its prompt is a file a user can edit; a reply without a readable score is
kept raw with the score left empty, never guessed."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ..asking import load_session
from ..components import Sampling
from ..errors import MlxtuneError
from ..plugins import Registry
from ..records import Example

DEFAULT_PROMPT = Path(__file__).parent / "judge.md"
# "score: 4", "Score = **4**", JSON's "score": 4: the word, up to eight marks, one digit 1-5
SCORE = re.compile(r"score\W{0,8}([1-5])\b", re.I)


def parse_score(reply: str) -> int | None:
    """A judge's 1-5 score in its reply, or None (never guessed): the one reading that both LLM
    judges use (evaluation's of answers, the `llm` curator's of pairs)."""
    match = SCORE.search(reply)
    return int(match.group(1)) if match else None


class Judge:
    def __init__(self, spec: Any, registry: Registry):
        self.spec = spec
        path = Path(spec.prompt_file) if spec.prompt_file else DEFAULT_PROMPT
        try:
            self.template = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise MlxtuneError(f"evaluate.judge.prompt_file {path}: {exc.strerror}") from None
        self.session = load_session(registry, spec.model, backend=spec.backend)

    def grade(self, answers: list[dict[str, Any]]) -> None:
        """Adds `judge_score` (1-5 or None) to each answer's metrics and the raw reply."""
        sampling = Sampling(max_tokens=self.spec.max_tokens)
        for answer in answers:
            prompt = (
                self.template.replace("{question}", answer["question"])
                .replace("{reference}", answer.get("reference") or "(none)")
                .replace("{answer}", answer["answer"])
            )
            messages = [{"role": "user", "content": prompt}]
            reply = self.session.answer_prompt(Example(messages=messages), sampling).text
            answer["metrics"]["judge_score"] = parse_score(reply)
            answer["judge_reply"] = reply
