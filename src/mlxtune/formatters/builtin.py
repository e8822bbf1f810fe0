"""The built-in formatters: the original study's prompt variants, each with its exact text shape.

A completion example has `text` (what the model reads) and optionally `prompt` (its leading part,
left out of the loss when `train.mask_prompt` is on); without `prompt` the whole text is learned.
The EOS token is appended by the trainer after tokenizing (`text` examples) or by the tokenizer's
chat template (`messages` examples), so no text here hard-codes a token. Every formatter also
builds the prompt for a new question, which `ask` sends as is: training and asking match.
docs/formatters.md shows each one's output for the same pair; a test keeps the two in sync.
"""

from __future__ import annotations

from pydantic import Field

from ..components import ComponentOptions, Formatter
from ..hookspecs import hookimpl
from ..records import Example, Pair


class LabelOptions(ComponentOptions):
    question_label: str = Field("Research question:", description="line prefix of the question")
    approach_label: str = Field("Approach:", description="line prefix of the approach")


class _Labelled(Formatter):
    """Shared by the completion formatters: `Research question: {q}\\nApproach:` prompts."""

    Options = LabelOptions

    def prompt(self, question: str) -> Example:
        o = self.options
        return Example(prompt=f"{o.question_label} {question.strip()}\n{o.approach_label}")

    def qa_text(self, pair: Pair) -> tuple[str, str]:
        prompt = self.prompt(pair.question).prompt or ""
        return prompt, f"{prompt} {pair.approach.strip()}"


class ApproachFormatter(_Labelled):
    """Approach only in the loss: the question is the (masked) prompt.

    Shape::

        Research question: {question}
        Approach: {approach}<EOS>
    """

    name = "approach"
    description = "question as prompt, loss on the approach only"

    class Options(LabelOptions):
        pass

    def examples(self, pair: Pair) -> list[Example]:
        prompt, text = self.qa_text(pair)
        return [Example(text=text, prompt=prompt)]


class QAFormatter(_Labelled):
    """Question and approach as one text, both in the loss (the model also learns to ask).

    Shape: the same text as `approach`, with no masked prompt.
    """

    name = "qa"
    description = "question + approach as one text, loss on both"

    class Options(LabelOptions):
        pass

    def examples(self, pair: Pair) -> list[Example]:
        _, text = self.qa_text(pair)
        return [Example(text=text)]


class PromptQAFormatter(_Labelled):
    """An instruction, then the question (both masked), then the approach.

    Shape::

        {instruction}

        Research question: {question}
        Approach: {approach}<EOS>
    """

    name = "prompt_qa"
    description = "instruction + question as prompt, loss on the approach"

    class Options(LabelOptions):
        instruction: str = Field(
            "Propose a research approach for the following research question.",
            description="the instruction line that opens every example and prompt",
        )

    def prompt(self, question: str) -> Example:
        inner = super().prompt(question).prompt
        return Example(prompt=f"{self.options.instruction.strip()}\n\n{inner}")

    def examples(self, pair: Pair) -> list[Example]:
        prompt, text = self.qa_text(pair)
        return [Example(text=text, prompt=prompt)]


class QandAFormatter(_Labelled):
    """Question and approach as two separate examples, each learned whole.

    Shape (two examples)::

        Research question: {question}<EOS>
        Approach: {approach}<EOS>

    At `ask` time the prompt is `Research question: {question}\\nApproach:`, as for `qa`.
    """

    name = "q_and_a"
    description = "question and approach as two separate examples"

    class Options(LabelOptions):
        pass

    def examples(self, pair: Pair) -> list[Example]:
        o = self.options
        return [
            Example(text=f"{o.question_label} {pair.question.strip()}"),
            Example(text=f"{o.approach_label} {pair.approach.strip()}"),
        ]


class ChatFormatter(Formatter):
    """The tokenizer's chat template: system (optional), user question, assistant approach.

    Stored as `{"messages": [...]}` (mlx-lm's chat format); the template adds the end-of-turn
    token; the loss is on the assistant turn.
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
    for formatter in (
        PromptQAFormatter,
        QAFormatter,
        ApproachFormatter,
        QandAFormatter,
        ChatFormatter,
    ):
        register(formatter)
