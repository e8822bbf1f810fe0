from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from pdfgen import paper_text, write_paper  # noqa: E402

TOPICS = {
    "vision": ["image segmentation", "object detection", "depth estimation"],
    "language": ["machine translation", "speech recognition", "text summarization"],
}


@pytest.fixture(autouse=True)
def _isolated_plugins(monkeypatch):
    """No third-party plugins from the environment; a fresh registry per test."""
    from mlxtune import plugins

    monkeypatch.setenv("MLXTUNE_DISABLE_PLUGIN_AUTOLOAD", "1")
    plugins._CACHE.clear()
    yield
    plugins._CACHE.clear()


@pytest.fixture
def papers_dir(tmp_path) -> Path:
    """Two categories with three real text PDFs each."""
    root = tmp_path / "papers"
    for category, topics in TOPICS.items():
        for n, topic in enumerate(topics):
            title = f"A Contrastive Approach to {topic.title()}"
            write_paper(root / category / f"paper{n}.pdf", title, paper_text(topic, n))
    return root


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    from mlxtune.models.tiny import build_tiny_model

    texts = [
        " ".join(paper_text(t, n).values()) for ts in TOPICS.values() for n, t in enumerate(ts)
    ]
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model", texts=texts, vocab_size=600)


def write_recipe(path: Path, text: str) -> Path:
    path.write_text(text)
    return path
