"""The built-in retriever: BM25 (Okapi) over the passages, through the `bm25s` library."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from pydantic import Field

from ..components import Passage, Retriever
from ..hookspecs import hookimpl


class BM25Retriever(Retriever):
    """Word-overlap ranking with BM25's saturation (k1) and length normalization (b): no model
    to download, deterministic, and strong on the technical terms research questions use."""

    name = "bm25"
    description = "BM25 over the run's paper passages (bm25s)"

    class Options(Retriever.Options):
        k1: float = Field(1.5, gt=0, le=10, description="BM25 term-frequency saturation")
        b: float = Field(0.75, ge=0, le=1, description="BM25 length normalization")

    def index(self, passages: Sequence[Passage]) -> None:
        import bm25s

        self.passages = list(passages)
        self.bm25 = bm25s.BM25(k1=self.options.k1, b=self.options.b)
        if self.passages:
            self.bm25.index(_tokens([p.text for p in self.passages]), show_progress=False)

    def search(self, query: str, k: int, exclude: frozenset[str] = frozenset()) -> list[Passage]:
        import numpy as np

        allowed = np.array([p.document_id not in exclude for p in self.passages], dtype=float)
        k = min(k, int(allowed.sum()))
        tokens = _tokens([query])
        if k == 0 or not tokens[0]:
            return []
        found = self.bm25.retrieve(tokens, k=k, weight_mask=allowed, show_progress=False)
        best = []
        for index, score in zip(found.documents[0], found.scores[0], strict=True):
            # a passage sharing no word with the question scores 0: none is better than noise
            if score > 0 and allowed[index]:
                best.append(replace(self.passages[int(index)], score=float(score)))
        return best


def _tokens(texts: list[str]) -> list[list[str]]:
    """Lower-cased words without English stop words, as strings: queries and passages share
    one vocabulary only when both are given as words, not as per-call token ids."""
    import bm25s

    return bm25s.tokenize(texts, stopwords="en", return_ids=False, show_progress=False)


@hookimpl
def register_retrievers(register):
    register(BM25Retriever)
