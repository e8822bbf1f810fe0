"""An example mlxtune formatter plugin: the approach as numbered steps."""

from __future__ import annotations

import re

from mlxtune.api import ComponentOptions, Example, Formatter, Pair, hookimpl

MLXTUNE_API = 1  # the mlxtune.api version this plugin is written for


class BulletsFormatter(Formatter):
    """`Research question: {q}\\nSteps:` then one numbered line per sentence of the approach."""

    name = "bullets"
    description = "approach as numbered steps (example third-party plugin)"

    class Options(ComponentOptions):
        max_steps: int = 8

    def prompt(self, question: str) -> Example:
        return Example(prompt=f"Research question: {question.strip()}\nSteps:")

    def examples(self, pair: Pair) -> list[Example]:
        sentences = [s for s in re.split(r"(?<=[.!?])\s+", pair.approach.strip()) if s]
        steps = "".join(f"\n{n}. {s}" for n, s in enumerate(sentences[: self.options.max_steps], 1))
        prompt = self.prompt(pair.question).prompt or ""
        return [Example(text=prompt + steps, prompt=prompt)]


@hookimpl
def register_formatters(register):
    register(BulletsFormatter)
