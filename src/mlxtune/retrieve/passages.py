"""Papers cut into passages of whole words: what a retriever indexes and a prompt quotes."""

from __future__ import annotations

from collections.abc import Iterable

from ..components import Passage
from ..records import Document


def chunk_document(document: Document, words_per_passage: int) -> list[Passage]:
    """Consecutive runs of `words_per_passage` words; a short tail joins the passage before it,
    so no passage is a stray line of a reference list."""
    words = document.text.split()
    starts = list(range(0, len(words), words_per_passage))
    if len(starts) > 1 and len(words) - starts[-1] < words_per_passage // 4:
        starts.pop()
    passages = []
    for i, start in enumerate(starts):
        end = starts[i + 1] if i + 1 < len(starts) else len(words)
        text = " ".join(words[start:end])
        passages.append(Passage(document.id, document.title, document.category, text, start))
    return passages


def chunk_documents(documents: Iterable[Document], words_per_passage: int) -> list[Passage]:
    """Every extracted paper's passages (papers that failed to extract have none), each paper
    once even where two files hold the same bytes."""
    seen: set[str] = set()
    passages: list[Passage] = []
    for document in documents:
        if document.ok and document.id not in seen:
            seen.add(document.id)
            passages += chunk_document(document, words_per_passage)
    return passages
