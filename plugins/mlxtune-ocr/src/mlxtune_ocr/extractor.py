"""The `ocr` extractor: pypdf first, Tesseract for what pypdf cannot read.

A paper goes through mlxtune's own `pypdf` extractor; when that finds no text layer (a scan:
`image-only`) or text that does not read as words (a font without a character map:
`unreadable-text`), its pages are rendered with PDFium (pypdfium2) and read by Tesseract
(pytesseract), then cleaned, checked and split into sections exactly as pypdf's text is.

Why these: Tesseract is the maintained open OCR engine every distribution packages (Debian's
`tesseract-ocr`, Homebrew's `tesseract`); pytesseract is a thin, stable wrapper around its
program; pypdfium2 ships PDFium in its wheel, so rendering needs no system library (pdf2image
needs poppler, ocrmypdf also ghostscript and writes a new PDF we do not need).
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field

from mlxtune.api import (
    Document,
    PypdfExtractor,
    clean_pages,
    hookimpl,
    readability,
    split_sections,
    strip_references,
)

MLXTUNE_API = 1  # the mlxtune.api version this plugin is written for

READ_AGAIN = ("image-only", "unreadable-text")


class OcrExtractor(PypdfExtractor):
    name = "ocr"
    description = "pypdf, then Tesseract OCR for scanned or garbled PDFs (plugin mlxtune-ocr)"
    suffixes: ClassVar[tuple[str, ...]] = (".pdf",)
    version: ClassVar[str] = "1"

    class Options(PypdfExtractor.Options):
        language: str = Field("eng", description="Tesseract language(s), e.g. eng or eng+deu")
        dpi: int = Field(200, ge=72, le=600, description="page rendering resolution")
        always: bool = Field(False, description="OCR every paper, not only unreadable ones")

    def extract(self, path: Path, category: str) -> Document:
        doc = super().extract(path, category)
        if not self.options.always and (doc.ok or doc.problem not in READ_AGAIN):
            return doc
        try:
            pages = self.read_images(path)
        except OcrUnavailable as exc:
            doc.reason += f"; OCR not possible: {exc}"
            return doc
        text = strip_references(clean_pages(pages))
        quality = readability(text)
        fresh = Document(id=doc.id, path=str(path), category=category, pages=len(pages))
        fresh.readability = quality.score
        if len(text) < self.options.min_chars or quality.score < self.options.min_readability:
            fresh.status, fresh.problem = "skipped", "unreadable-scan"
            fresh.reason = (
                f"OCR gave no readable text ({len(text)} characters, {quality.describe()})"
            )
            return fresh
        fresh.title, fresh.sections = split_sections(text)
        fresh.text = text
        return fresh

    def read_images(self, path: Path) -> list[str]:
        """Each page rendered at `dpi` and read by Tesseract."""
        try:
            import pypdfium2 as pdfium
            import pytesseract
        except ImportError as exc:
            raise OcrUnavailable(f"{exc.name} is not installed (pip install mlxtune-ocr)") from None
        try:
            pytesseract.get_tesseract_version()
        except (pytesseract.TesseractNotFoundError, OSError):
            raise OcrUnavailable(
                "the tesseract program is not installed (apt-get install tesseract-ocr, or "
                "brew install tesseract)"
            ) from None
        pdf = pdfium.PdfDocument(str(path))
        try:
            pages = []
            for index in range(min(len(pdf), self.options.max_pages)):
                image = pdf[index].render(scale=self.options.dpi / 72).to_pil()
                pages.append(pytesseract.image_to_string(image, lang=self.options.language))
            return pages
        finally:
            pdf.close()


class OcrUnavailable(Exception):
    pass


@hookimpl
def register_extractors(register):
    register(OcrExtractor)
