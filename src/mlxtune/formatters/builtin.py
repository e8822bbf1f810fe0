"""The built-in formatters. Each documents its exact text shape; examples end with EOS.

The EOS token itself is appended by the trainer after tokenizing (`text` examples) or by the
tokenizer's chat template (`messages` examples), so the text here never hard-codes a token.
"""

from __future__ import annotations

from pydantic import Field

from ..components import ComponentOptions, Formatter
from ..hookspecs import hookimpl
from ..records import Example, Pair


class ApproachFormatter(Formatter):
    """Loss on the approach only: the question is the (masked) prompt.

    Shape::

        Research question: {question}
        Approach: {approach}<EOS>
    """

    name = "approach"
    description = "question as prompt, loss on the approach"

    class Options(ComponentOptions):
        question_label: str = "Research question:"
        approach_label: str = "Approach:"

    def prompt(self, question: str) -> Example:
        o = self.options
        return Example(prompt=f"{o.question_label} {question.strip()}\n{o.approach_label}")

    def examples(self, pair: Pair) -> list[Example]:
        prompt = self.prompt(pair.question).prompt or ""
        return [Example(text=f"{prompt} {pair.approach.strip()}", prompt=prompt)]


class ChatFormatter(Formatter):
    """The tokenizer's chat template: system (optional), user question, assistant approach.

    Stored as `{"messages": [...]}` (mlx-lm's chat format); the template adds the end-of-turn token.
    """

    name = "chat"
    description = "tokenizer chat template (system, user question, assistant approach)"

    class Options(ComponentOptions):
        system: str = Field(
            "You are a research assistant. Given a research question, propose an approach.",
            description="system prompt; empty for none",
        )

    def prompt(self, question: str) -> Example:
        messages = [{"role": "user", "content": question.strip()}]
        if self.options.system:
            messages.insert(0, {"role": "system", "content": self.options.system})
        return Example(messages=messages)

    def examples(self, pair: Pair) -> list[Example]:
        messages = list(self.prompt(pair.question).messages or [])
        messages.append({"role": "assistant", "content": pair.approach.strip()})
        return [Example(messages=messages)]


@hookimpl
def register_formatters(register):
    register(ApproachFormatter)
    register(ChatFormatter)
