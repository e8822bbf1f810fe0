"""PDF extraction with pypdf, recording why a file gave no text instead of stopping the run."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import ClassVar

from pydantic import Field

from ..components import ComponentOptions, Extractor
from ..hookspecs import hookimpl
from ..records import Document, sha256_bytes
from .clean import clean_pages, split_sections, strip_references


class PypdfExtractor(Extractor):
    name = "pypdf"
    description = "PDF text through pypdf; cleans and splits into sections"
    suffixes: ClassVar[tuple[str, ...]] = (".pdf",)

    class Options(ComponentOptions):
        max_pages: int = Field(60, ge=1, description="read at most this many pages per paper")
        min_chars: int = Field(200, ge=0, description="less text than this: image-only/scanned")
        password: str = Field("", description="tried after the empty password on encrypted files")

    def extract(self, path: Path, category: str) -> Document:
        data = path.read_bytes()
        doc = Document(id=sha256_bytes(data), path=str(path), category=category)
        if not data:
            return _failed(doc, "empty file (0 bytes)")
        if not data.lstrip()[:5].startswith(b"%PDF-"):
            return _failed(doc, "not a PDF (no %PDF- header)")
        if b"%%EOF" not in data[-2048:]:
            return _failed(doc, "truncated PDF (no %%EOF marker at the end); re-download it")
        try:
            pages, meta_title = self._read_pages(path)
        except _Unreadable as exc:
            return _failed(doc, str(exc))
        except Exception as exc:  # pypdf raises many types on damaged files
            return _failed(doc, f"corrupt PDF ({type(exc).__name__}: {exc})")
        doc.pages = len(pages)
        text = strip_references(clean_pages(pages))
        if len(text) < self.options.min_chars:
            return _failed(doc, f"no text layer (image-only or scanned; {len(text)} characters)")
        doc.title, doc.sections = split_sections(text, meta_title)
        doc.text = text
        return doc

    def _read_pages(self, path: Path) -> tuple[list[str], str]:
        from pypdf import PdfReader

        logging.getLogger("pypdf").setLevel(logging.ERROR)
        reader = PdfReader(str(path), strict=False)
        if reader.is_encrypted:
            opened = False
            for password in dict.fromkeys(["", self.options.password]):
                try:
                    opened = bool(reader.decrypt(password))
                except Exception as exc:
                    raise _Unreadable(f"encrypted PDF that cannot be opened ({exc})") from exc
                if opened:
                    break
            if not opened:
                raise _Unreadable("encrypted PDF (password required; set extract.password)")
        pages = [page.extract_text() or "" for page in reader.pages[: self.options.max_pages]]
        try:
            title = ((reader.metadata or {}).get("/Title") or "").strip()
        except Exception:  # damaged metadata must not lose the text
            title = ""
        return pages, title if 10 <= len(title) <= 300 else ""


class _Unreadable(Exception):
    pass


def _failed(doc: Document, reason: str) -> Document:
    doc.status, doc.reason = "failed", reason
    return doc


@hookimpl
def register_extractors(register):
    register(PypdfExtractor)
