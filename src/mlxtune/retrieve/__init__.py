"""Retrieval as a variant: the run's own papers, cut into passages, searched per question, the
best passages put into the prompt (a recipe's `retrieve:` section, used by `mlxtune compare`)."""

from .context import Retrieval, build_retrieval, with_passages
from .passages import chunk_documents

__all__ = ["Retrieval", "build_retrieval", "chunk_documents", "with_passages"]
