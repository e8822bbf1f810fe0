"""A recipe's retrieval, ready to use: the indexed passages of its run's papers, the passages
for each question, and the prompt with them in it."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..components import Passage, Retriever
from ..records import Example, load_documents
from .passages import chunk_documents

HEADER = "Passages from the papers:"
LEAD_IN = "Using these passages where they help, answer:"


@dataclass
class Retrieval:
    retriever: Retriever
    top_k: int
    passages: int  # how many the index holds

    def for_question(self, question: str, own_paper: str | None = None) -> list[Passage]:
        """The top passages for `question`; none from `own_paper` (a held-out question's own
        paper: quoting it would hand the model the reference answer)."""
        exclude = frozenset([own_paper]) if own_paper else frozenset()
        return self.retriever.search(question, self.top_k, exclude)


def build_retrieval(spec: dict[str, Any], registry: Any, documents_path: Path) -> Retrieval:
    """The retriever the `retrieve:` section names, indexed on the run's documents.jsonl."""
    retriever = registry.build("retriever", spec)
    assert isinstance(retriever, Retriever)
    passages = chunk_documents(load_documents(documents_path), retriever.options.chunk_words)
    retriever.index(passages)
    return Retrieval(retriever, retriever.options.top_k, len(passages))


def context_block(passages: list[Passage]) -> str:
    lines = [HEADER]
    for number, passage in enumerate(passages, 1):
        title = passage.title or "untitled"
        lines.append(f"[{number}] {title}: {passage.text}")
    return "\n".join(lines)


def with_passages(prompt: Example, passages: list[Passage]) -> Example:
    """The formatter's prompt with the passages before the question: in the last user message
    of a chat prompt, before the text of a completion prompt. No passages: the prompt as is."""
    if not passages:
        return prompt
    block = context_block(passages)
    if prompt.messages is not None:
        messages = [dict(m) for m in prompt.messages]
        last = max(i for i, m in enumerate(messages) if m["role"] == "user")
        messages[last]["content"] = f"{block}\n\n{LEAD_IN}\n{messages[last]['content']}"
        return Example(messages=messages)
    return Example(prompt=f"{block}\n\n{prompt.prompt or ''}")


def passage_record(passage: Passage) -> dict[str, Any]:
    """What the report shows of a passage an answer was given."""
    return asdict(passage)
