"""The repairs view's diff (mlxtune/ui/repairs.py) on a real PDF that the pypdf extractor reads:
a word hyphenated across a line break is shown joined, with its two raw halves, and a word with an
unmapped ligature glyph repaired; running headers, page numbers and the reference list are shown
struck through; only the start of a long paper is compared; and the app's view re-reads the PDF
only while its bytes are still the recorded paper."""

from __future__ import annotations

import json
import re
from html import unescape

import pytest
from pdfgen import write_raw_pages
from ui_support import make_run

from mlxtune.extract.pypdf_extractor import PypdfExtractor

pytest.importorskip("markupsafe")  # the [ui] extra's (through Jinja2)
from mlxtune.ui.repairs import diff_repairs, paper_repairs, read_raw_pages

HEADER = b"Journal of Testing Studies, Vol. 7"
PAGES = 4


def page_lines(n: int) -> list[bytes]:
    return [
        HEADER,
        b"Section %d opens here with a sentence about parsers." % n,
        b"We describe the construc-",
        b"tion of a parser that reads documents and repairs them.",
        b"The method is e\x0ecient, as the old fonts deliver it.",  # OT1's ffi ligature code
        b"More ordinary sentences follow on page %d of this paper." % n,
        b"%d" % n,
    ]


@pytest.fixture(scope="module")
def paper(tmp_path_factory):
    pages = [page_lines(n) for n in range(1, PAGES + 1)]
    pages[-1][-1:-1] = [b"References", b"[1] A. Author. Old work. 2001.", b"[2] B. Author. 1999."]
    path = write_raw_pages(tmp_path_factory.mktemp("repairs") / "paper.pdf", pages)
    doc = PypdfExtractor().extract(path, "tests")
    assert doc.status == "ok" and "construction" in doc.text and "Journal" not in doc.text
    return path, doc


def visible(html: str, drop: str) -> str:
    """The text a reader sees once `drop` (the struck or the marked parts' raw form) is gone."""
    html = re.sub(drop, " ", html, flags=re.S)
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", html)).split())


def test_the_hyphen_join_and_the_removed_lines_are_marked(paper):
    path, doc = paper
    found = paper_repairs(path, doc.text, doc.pages)
    html = str(found.html)
    assert html.count("<mark class='repair' title='construc- tion'>construction</mark>") == PAGES
    assert html.count("<mark class='repair' title='e\u240ecient,'>efficient,</mark>") == PAGES
    struck = re.findall(r"<del>(.*?)</del>", html, flags=re.S)
    assert sum(HEADER.decode() in s for s in struck) == PAGES  # every running header
    assert sum(s.strip() in {"1", "2", "3"} for s in struck) == 3  # and the page numbers
    assert "References\n[1] A. Author. Old work. 2001." in struck[-1]
    assert html.count("<span class='page-break'>") == PAGES - 1
    # the cleaned text is all there, in order, once the struck raw text is taken away
    assert visible(html, r"<del>.*?</del>|<span class='page-break'>.*?</span>") == " ".join(
        doc.text.split()
    )
    # 4 headers, 4 page numbers, the references heading and its 2 entries
    assert (found.repaired, found.removed_lines, found.limited) == (2 * PAGES, 2 * PAGES + 3, False)


def test_only_the_first_pages_are_compared_and_the_rest_is_not_called_removed(paper):
    path, doc = paper
    pages = read_raw_pages(path, max_pages=2)
    assert len(pages) == 2
    found = diff_repairs(pages, doc.text, doc.pages)
    html = str(found.html)
    assert found.limited and (found.pages_read, found.pages_total) == (2, PAGES)
    assert "Section 2 opens" in html and "Section 3" not in html  # nothing past page 2
    assert (found.repaired, found.removed_lines) == (4, 3)  # 2 headers and page 1's number


def test_the_apps_view_reads_only_the_recorded_pdf(paper, tmp_path):
    pytest.importorskip("starlette")
    from starlette.testclient import TestClient

    from mlxtune.ui import open_runs
    from mlxtune.ui.app import make_app

    path, doc = paper
    pdf = tmp_path / "paper.pdf"
    pdf.write_bytes(path.read_bytes())  # a copy: this test changes it
    run = make_run(tmp_path / "runs" / "pdf", papers=2, skipped_every=0)
    docs = [json.loads(line) for line in (run / "documents.jsonl").read_text().splitlines()]
    docs[0].update(id=doc.id, path=str(pdf), text=doc.text, pages=doc.pages)
    (run / "documents.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    c = TestClient(make_app(open_runs([str(run)]), "token"), base_url="http://127.0.0.1:8765")
    page = c.get(f"/run/pdf/papers/{doc.id}").text
    assert f'hx-get="/run/pdf/papers/{doc.id}/repairs"' in page and "toggle once" in page
    view = c.get(f"/run/pdf/papers/{doc.id}/repairs")
    assert view.status_code == 200
    assert f"<del>{HEADER.decode()}</del>" in view.text
    assert "title='construc- tion'>construction</mark>" in view.text
    assert f'"repaired">{2 * PAGES}</b> words joined or repaired' in view.text
    assert f'"removed-lines">{2 * PAGES + 3}</b> lines removed' in view.text
    assert c.get(f"/run/pdf/papers/{docs[1]['id']}/repairs").status_code == 404  # no such file
    with open(pdf, "ab") as fh:  # the file changed since extraction: not read again
        fh.write(b"%% appended\n")
    refused = c.get(f"/run/pdf/papers/{doc.id}/repairs")
    assert refused.status_code == 404 and "the file has changed" in refused.text
    assert "construc" not in refused.text
