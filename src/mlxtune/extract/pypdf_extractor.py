"""PDF extraction with pypdf, recording why a file gave no text instead of stopping the run."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import ClassVar

from pydantic import Field

from ..components import Extractor
from ..hookspecs import hookimpl
from ..records import Document, sha256_bytes
from .clean import clean_pages, has_slash_glyphs, split_sections, strip_references
from .quality import readability
from .repair import Vocabulary, drop_arxiv_stamps, join_split_words
from .title import FontRuns, clean_title, plausible_title, usable_metadata_title


class PypdfExtractor(Extractor):
    name = "pypdf"
    description = "PDF text through pypdf; cleans and splits into sections"
    suffixes: ClassVar[tuple[str, ...]] = (".pdf",)
    # 2: titles from the first page's largest font; 3: glyph, accent, hyphen, stamp, header and
    # word-split repairs (repair.py) and the readability check (quality.py); 4: line-break
    # hyphens joined with a word list (issue 26); 5: kerned and letter-spaced words, symbol-font
    # page numbers and ligature slashes, prefixes written closed (spacing.py, issue 26);
    # 6: an arXiv stamp on a line of its own no longer joins the words around it
    version: ClassVar[str] = "6"

    class Options(Extractor.Options):
        max_pages: int = Field(60, ge=1, description="read at most this many pages per paper")
        min_chars: int = Field(200, ge=0, description="less text than this: image-only/scanned")
        min_readability: float = Field(
            0.5,
            ge=0,
            le=1,
            description="skip text that scores below this as readable (font-encoding garbage; "
            "extract/quality.py); 0 keeps every text",
        )
        password_env: str | None = Field(
            None,
            description="environment variable holding a password to try after the empty one "
            "(a secret never goes in the recipe)",
        )

    def extract(self, path: Path, category: str) -> Document:
        data = path.read_bytes()
        doc = Document(id=sha256_bytes(data), path=str(path), category=category)
        if not data:  # every empty file has the same bytes: its name tells them apart
            doc.id = sha256_bytes(b"empty file: " + str(path).encode())
            return _skipped(doc, "empty", "empty file (0 bytes)")
        if not data.lstrip()[:5].startswith(b"%PDF-"):
            return _skipped(doc, "not-pdf", "not a PDF (no %PDF- header)")
        if b"%%EOF" not in data[-2048:]:
            reason = "truncated PDF (no %%EOF marker at the end); re-download it"
            return _failed(doc, "truncated", reason)
        try:
            pages, title = self._read_pages(path)
        except _Encrypted as exc:
            return _skipped(doc, "encrypted", str(exc))
        except Exception as exc:  # pypdf raises many types on damaged files
            return _failed(doc, "corrupt", f"corrupt PDF ({type(exc).__name__}: {exc})")
        doc.pages = len(pages)
        text = strip_references(clean_pages(pages))
        if len(text) < self.options.min_chars:
            return _skipped(
                doc, "image-only", f"no text layer (image-only or scanned; {len(text)} characters)"
            )
        quality = readability(text)
        doc.readability = quality.score
        if quality.score < self.options.min_readability:
            return _skipped(
                doc,
                "unreadable-text",
                f"the text does not read as words, {quality.describe()}: a font without a "
                f"character map; below extract.min_readability={self.options.min_readability} "
                "(0 keeps it; an OCR extractor reads such papers from their images)",
            )
        title = clean_title(join_split_words(drop_arxiv_stamps(title), Vocabulary(text)))
        doc.title, doc.sections = split_sections(text, title)
        doc.text = text
        return doc

    def _read_pages(self, path: Path) -> tuple[list[str], str]:
        """(page texts, title): the metadata title if it looks like one, else the first page's
        largest text (title.py), else "" (split_sections then guesses from the first lines)."""
        from pypdf import PdfReader

        logging.getLogger("pypdf").setLevel(logging.ERROR)
        reader = PdfReader(str(path), strict=False)
        if reader.is_encrypted:
            opened = False
            env = self.options.password_env
            for password in dict.fromkeys(["", os.environ.get(env, "") if env else ""]):
                try:
                    opened = bool(reader.decrypt(password))
                except Exception as exc:
                    raise _Encrypted(f"encrypted PDF that cannot be opened ({exc})") from exc
                if opened:
                    break
            if not opened:
                raise _Encrypted(
                    "encrypted PDF (password required: put it in an environment variable and "
                    "set extract.password_env)"
                )
        fonts = FontRuns()
        pages = [
            page.extract_text(visitor_text=fonts.visit if index == 0 else None) or ""
            for index, page in enumerate(reader.pages[: self.options.max_pages])
        ]
        try:
            title = usable_metadata_title(str((reader.metadata or {}).get("/Title") or ""))
        except Exception:  # damaged metadata must not lose the text
            title = ""
        if not title:
            title = clean_title(fonts.title(), has_slash_glyphs("\n".join(pages)))
        return pages, title if plausible_title(title) else ""


class _Encrypted(Exception):
    pass


def _failed(doc: Document, problem: str, reason: str) -> Document:
    doc.status, doc.problem, doc.reason = "failed", problem, reason
    return doc


def _skipped(doc: Document, problem: str, reason: str) -> Document:
    doc.status, doc.problem, doc.reason = "skipped", problem, reason
    return doc


@hookimpl
def register_extractors(register):
    register(PypdfExtractor)
