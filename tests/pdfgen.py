"""Real PDFs for tests: text papers, plus encrypted, image-only, truncated and empty files."""

from __future__ import annotations

from pathlib import Path

SECTIONS = ("Abstract", "1 Introduction", "2 Method", "3 Experiments", "4 Conclusion")


def paper_text(topic: str, n: int = 0) -> dict[str, str]:
    return {
        "Abstract": f"Learning {topic} remains a difficult problem for deep networks. "
        f"We propose a simple method number {n} for {topic}.",
        "1 Introduction": f"Prior work on {topic} suffers from noisy labels and small datasets.",
        "2 Method": f"We train a convolutional network for {topic} with a contrastive loss. "
        f"The encoder has {n + 2} layers and the decoder predicts {topic} maps.",
        "3 Experiments": f"On two benchmarks the method improves {topic} accuracy "
        f"by {n + 1} points.",
        "4 Conclusion": f"A contrastive loss is a strong baseline for {topic}.",
        "References": "[1] A. Author. Old work. 2001.\n[2] B. Author. Older work. 1999.",
    }


def write_paper(
    path: Path, title: str, sections: dict[str, str], *, pages: int = 1, metadata: bool = True
) -> Path:
    from fpdf import FPDF

    pdf = FPDF()
    if metadata:
        pdf.set_title(title)
    pdf.set_font("Helvetica", size=11)
    items = list(sections.items())
    per_page = max(1, -(-len(items) // pages))
    for page in range(pages):
        pdf.add_page()
        if page == 0:
            pdf.multi_cell(0, 6, title, new_x="LMARGIN", new_y="NEXT")
        for heading, body in items[page * per_page : (page + 1) * per_page]:
            pdf.multi_cell(0, 6, heading, new_x="LMARGIN", new_y="NEXT")
            pdf.multi_cell(0, 6, body, new_x="LMARGIN", new_y="NEXT")
    path.parent.mkdir(parents=True, exist_ok=True)
    pdf.output(str(path))
    return path


def write_typeset_paper(
    path: Path,
    title: str,
    authors: str,
    sections: dict[str, str],
    *,
    metadata_title: str | None = None,
    stamp: str | None = None,
) -> Path:
    """A paper laid out like a real one: an 18 pt title (wrapping onto two lines), an 11 pt
    author line and body, optionally an arXiv-style stamp set sideways in a 20 pt font."""
    from fpdf import FPDF

    pdf = FPDF()
    if metadata_title is not None:
        pdf.set_title(metadata_title)
    pdf.add_page()
    if stamp:
        pdf.set_font("Helvetica", size=20)
        with pdf.rotation(90, x=12, y=200):
            pdf.text(12, 200, stamp)
    pdf.set_font("Helvetica", size=18)
    pdf.multi_cell(120, 9, title, new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", size=11)
    pdf.multi_cell(0, 6, authors, new_x="LMARGIN", new_y="NEXT")
    for heading, body in sections.items():
        pdf.multi_cell(0, 6, heading, new_x="LMARGIN", new_y="NEXT")
        pdf.multi_cell(0, 6, body, new_x="LMARGIN", new_y="NEXT")
    path.parent.mkdir(parents=True, exist_ok=True)
    pdf.output(str(path))
    return path


def write_encrypted(path: Path, source: Path, user_password: str) -> Path:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(str(source)))
    writer.encrypt(user_password=user_password, owner_password="owner", algorithm="AES-128")
    with open(path, "wb") as fh:
        writer.write(fh)
    return path


def write_image_only(path: Path) -> Path:
    """A 'scanned' page: one raster image, no text layer."""
    from fpdf import FPDF
    from PIL import Image, ImageDraw

    image = Image.new("L", (400, 300), 255)
    ImageDraw.Draw(image).text((20, 20), "Scanned page: text is pixels here", fill=0)
    pdf = FPDF()
    pdf.add_page()
    pdf.image(image, x=10, y=10, w=180)
    path.parent.mkdir(parents=True, exist_ok=True)
    pdf.output(str(path))
    return path


def write_truncated(path: Path, source: Path) -> Path:
    data = source.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def write_raw_pages(path: Path, pages: list[list[bytes]], *, size: int = 11) -> Path:
    """A PDF whose text is exactly these bytes, line by line, in a standard font with no
    character map: how real PDFs deliver glyph codes (ligatures as 0x00, old TeX's OT1 codes)
    that extraction then has to repair. fpdf2 would sanitize them, so the file is written here."""

    def escape(line: bytes) -> bytes:
        return line.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)")

    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b""]  # pages filled in below
    font = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"
    objects.append(font)
    kids = []
    for lines in pages:
        ops = [b"BT /F1 %d Tf 14 TL 72 760 Td" % size]
        ops += [b"(" + escape(line) + b") Tj T*" for line in lines]
        stream = b"\n".join([*ops, b"ET"])
        objects.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
        content = len(objects)
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents %d 0 R "
            b"/Resources << /Font << /F1 3 0 R >> >> >>" % content
        )
        kids.append(len(objects))
    objects[1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (
        b" ".join(b"%d 0 R" % k for k in kids),
        len(kids),
    )
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(out))
    return path
