"""The `ocr` extractor reads scanned pages with Tesseract: a page built as an image here, and the
scanned paper of ../shared/corpus (the issue that asked for OCR allows this test to read it)."""

from __future__ import annotations

import os
import shutil
import textwrap
from pathlib import Path

import pytest
from mlxtune_ocr.extractor import OcrExtractor

from mlxtune.extract.pypdf_extractor import PypdfExtractor

# .ci/run installs tesseract and sets MLXTUNE_REQUIRE_TESSERACT: there the OCR tests must run
needs_tesseract = pytest.mark.skipif(
    shutil.which("tesseract") is None and not os.environ.get("MLXTUNE_REQUIRE_TESSERACT"),
    reason="tesseract is not installed (apt-get install tesseract-ocr)",
)
PARAGRAPHS = [
    "Cell Segmentation from Few Images",
    "Abstract",
    "Segmenting cells in microscope images is a difficult problem because touching cells "
    "look like one object. We propose a convolutional network with a contracting and an "
    "expanding path that is trained end to end from very few annotated images.",
    "1 Introduction",
    "Deep networks need many labelled examples, and in biomedical imaging annotations are "
    "expensive. Our approach uses strong data augmentation with elastic deformations so that "
    "the network learns invariance to the shapes it will see.",
]


def scanned_pdf(path: Path) -> Path:
    """A page that is only an image of typeset text, as a scanner makes it."""
    from fpdf import FPDF
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=34)
    image = Image.new("L", (1700, 2200), 255)
    draw, y = ImageDraw.Draw(image), 120
    for paragraph in PARAGRAPHS:
        for line in textwrap.wrap(paragraph, 70):
            draw.text((120, y), line, fill=0, font=font)
            y += 48
        y += 30
    pdf = FPDF()
    pdf.add_page()
    pdf.image(image, x=0, y=0, w=210)
    pdf.output(str(path))
    return path


@needs_tesseract
def test_a_scanned_page_is_read_by_ocr_where_pypdf_finds_no_text(tmp_path):
    pdf = scanned_pdf(tmp_path / "scan.pdf")
    plain = PypdfExtractor().extract(pdf, "bio")
    assert (plain.status, plain.problem) == ("skipped", "image-only")
    doc = OcrExtractor().extract(pdf, "bio")
    assert doc.ok and doc.id == plain.id and doc.readability >= 0.8
    words = doc.text.lower()
    for word in ("segmenting", "convolutional", "contracting", "augmentation", "elastic"):
        assert word in words
    assert "touching cells" in doc.sections.get("abstract", "")


def test_without_tesseract_the_paper_keeps_pypdfs_verdict_and_says_why(tmp_path, monkeypatch):
    import pytesseract

    def missing():
        raise pytesseract.TesseractNotFoundError()

    monkeypatch.setattr(pytesseract, "get_tesseract_version", missing)
    doc = OcrExtractor().extract(scanned_pdf(tmp_path / "scan.pdf"), "bio")
    assert (doc.status, doc.problem) == ("skipped", "image-only")
    assert "OCR not possible: the tesseract program is not installed" in doc.reason


@needs_tesseract
def test_the_scanned_paper_of_the_shared_corpus_becomes_text():
    corpus = Path(__file__).resolve().parents[4] / "shared" / "corpus"
    scans = [p for p in sorted(corpus.rglob("*.pdf")) if not PypdfExtractor().extract(p, "c").ok]
    if not scans:
        pytest.skip("../shared/corpus (with its scanned paper) is not beside the project")
    extractor = OcrExtractor(OcrExtractor.Options(max_pages=6, dpi=150))  # past its cover, contents
    for scan in scans:
        doc = extractor.extract(scan, "c")
        assert doc.ok and doc.readability >= 0.7 and len(doc.text) > 1500, doc.reason
