from __future__ import annotations

from pdfgen import (
    paper_text,
    write_encrypted,
    write_image_only,
    write_paper,
    write_truncated,
    write_typeset_paper,
)

from mlxtune.extract.clean import clean_pages, split_sections, strip_references
from mlxtune.extract.pypdf_extractor import PypdfExtractor
from mlxtune.extract.text_extractor import TextExtractor


def test_text_pdf_gives_title_sections_and_no_references(tmp_path):
    pdf = write_paper(tmp_path / "p.pdf", "Contrastive Depth Estimation", paper_text("depth", 1))
    doc = PypdfExtractor().extract(pdf, "vision")
    assert doc.ok, doc.reason
    assert doc.title == "Contrastive Depth Estimation"
    assert doc.category == "vision" and len(doc.id) == 64
    assert {"abstract", "introduction", "method", "experiments", "conclusion"} <= set(doc.sections)
    assert "contrastive loss" in doc.sections["method"]
    assert "Old work" not in doc.text and "references" not in doc.sections


def test_encrypted_with_empty_password_is_opened(tmp_path):
    plain = write_paper(tmp_path / "p.pdf", "Open Sesame Paper Title", paper_text("keys"))
    enc = write_encrypted(tmp_path / "e.pdf", plain, user_password="")
    doc = PypdfExtractor().extract(enc, "c")
    assert doc.ok and "contrastive" in doc.text


def test_bad_pdfs_are_recorded_with_their_own_reason(tmp_path):
    plain = write_paper(tmp_path / "p.pdf", "A Perfectly Fine Paper", paper_text("x"))
    cases = {
        "encrypted": write_encrypted(tmp_path / "e.pdf", plain, user_password="secret"),
        "no text layer": write_image_only(tmp_path / "scan.pdf"),
        "truncated": write_truncated(tmp_path / "t.pdf", plain),
        "empty file": tmp_path / "zero.pdf",
        "not a PDF": tmp_path / "html.pdf",
    }
    (tmp_path / "zero.pdf").write_bytes(b"")
    (tmp_path / "html.pdf").write_bytes(b"<html>404 not found</html>")
    for expected, path in cases.items():
        doc = PypdfExtractor().extract(path, "c")
        assert doc.status in ("failed", "skipped") and doc.problem, path
        assert expected in doc.reason, (path, doc.reason)


def test_encrypted_with_password_from_environment(tmp_path, monkeypatch):
    plain = write_paper(tmp_path / "p.pdf", "A Perfectly Fine Paper", paper_text("x"))
    enc = write_encrypted(tmp_path / "e.pdf", plain, user_password="secret")
    extractor = PypdfExtractor(PypdfExtractor.Options(password_env="PAPERS_PASSWORD"))
    assert extractor.extract(enc, "c").problem == "encrypted"
    monkeypatch.setenv("PAPERS_PASSWORD", "secret")
    assert extractor.extract(enc, "c").ok


def test_cleaning_ligatures_hyphens_decoration_and_running_headers():
    pages = [
        f"Journal of Examples 2026\nOn page {n} the ﬁrst eﬀect is a hyphen-\nated word.\n"
        f"Some **Bold** text {n}.\n******\n{n}\n"
        for n in range(1, 4)
    ]
    text = clean_pages(pages)
    assert "first effect" in text and "hyphenated" in text
    assert "*" not in text and "Bold text" in text
    assert "Journal of Examples" not in text
    assert not any(line.strip().isdigit() for line in text.splitlines())


def test_markdown_paper_through_text_extractor(tmp_path):
    md = tmp_path / "paper.md"
    md.write_text(
        "# Sparse Attention for Long Documents\n\n## Abstract\nLong inputs are a problem.\n\n"
        "## 2 Method\nWe use *sparse* attention with **local windows**.\n\n## References\n[1] x\n"
    )
    doc = TextExtractor().extract(md, "nlp")
    assert doc.ok and doc.title == "Sparse Attention for Long Documents"
    assert doc.sections["method"] == "We use sparse attention with local windows."
    assert "[1] x" not in doc.text


def test_split_sections_and_strip_references():
    text = "My Title\nAbstract\nWe study x.\n1 Introduction\nIntro.\nReferences\n[1] a"
    title, sections = split_sections(strip_references(text))
    assert title == "My Title"
    assert sections == {"abstract": "We study x.", "introduction": "Intro."}


def test_heuristic_summarizer_is_deterministic_and_uses_the_method(tmp_path):
    from mlxtune.summarize.heuristic import HeuristicSummarizer

    pdf = write_paper(tmp_path / "p.pdf", "Contrastive Depth Estimation", paper_text("depth", 1))
    doc = PypdfExtractor().extract(pdf, "vision")
    first = HeuristicSummarizer().summarize_one(doc)
    assert first == HeuristicSummarizer().summarize_one(doc)
    assert "learning depth remains a difficult problem" in first.question.lower()
    assert first.question.endswith("?")
    # the contribution, then the method section's idea (issue 26)
    assert first.approach.startswith("We propose a simple method number 1 for depth.")
    assert "We train a convolutional network for depth" in first.approach
    assert first.document_id == doc.id and first.summarizer == "heuristic"


def test_old_tex_slash_glyphs_are_removed_only_where_pervasive():
    tex = "Long Short/-Term Memory /(LSTM/, Hochreiter /& Schmidhuber/, /1/9/9/7/)/. " * 30
    assert "(LSTM, Hochreiter & Schmidhuber, 1997)." in clean_pages([tex])
    normal = "We halve the rate (1/2) of the input/output layer, see Fig. 1/3. " * 30
    cleaned = clean_pages([normal])
    assert "(1/2)" in cleaned and "input/output" in cleaned and "Fig. 1/3." in cleaned


def test_title_is_the_largest_upright_text_when_metadata_has_none(tmp_path):
    title = "Gated Memory Cells for Learning Long Time Lags in Recurrent Networks"
    for name, metadata in (("none.pdf", None), ("junk.pdf", "Microsoft Word - draft3.docx")):
        pdf = write_typeset_paper(
            tmp_path / name,
            title,
            "Ada Author, Bob Builder",
            paper_text("memory"),
            metadata_title=metadata,
            stamp="arXiv:1999.01234v2 [cs.LG] 1 Jan 1999",
        )
        doc = PypdfExtractor().extract(pdf, "c")
        assert doc.ok, doc.reason
        assert doc.title == title, name  # not the sideways stamp, not the authors
        assert "contrastive loss" in doc.sections["method"]
    # a usable metadata title wins; one font size throughout falls back to the first lines
    pdf = write_typeset_paper(
        tmp_path / "meta.pdf", title, "Ada Author", paper_text("x"), metadata_title="Real Title"
    )
    assert PypdfExtractor().extract(pdf, "c").title == "Real Title"
    plain = write_paper(tmp_path / "plain.pdf", title, paper_text("depth"), metadata=False)
    assert PypdfExtractor().extract(plain, "c").title == title
