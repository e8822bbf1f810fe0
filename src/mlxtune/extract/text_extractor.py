"""Plain-text and markdown papers (already text: only cleaning and sections)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from ..components import Extractor
from ..hookspecs import hookimpl
from ..records import Document, sha256_bytes
from .clean import clean_pages, split_sections, strip_references


class TextExtractor(Extractor):
    name = "text"
    description = "plain text and markdown files"
    suffixes: ClassVar[tuple[str, ...]] = (".txt", ".md", ".markdown")

    def extract(self, path: Path, category: str) -> Document:
        data = path.read_bytes()
        doc = Document(id=sha256_bytes(data), path=str(path), category=category)
        try:
            raw = data.decode("utf-8")
        except UnicodeDecodeError:
            raw = data.decode("latin-1")
        text = strip_references(clean_pages([raw]))
        if not text:
            doc.id = sha256_bytes(b"empty file: " + str(path).encode())  # empties differ by name
            doc.status, doc.problem, doc.reason = "skipped", "empty", "empty text file"
            return doc
        doc.title, doc.sections = split_sections(text)
        doc.text, doc.pages = text, 1
        return doc


@hookimpl
def register_extractors(register):
    register(TextExtractor)
