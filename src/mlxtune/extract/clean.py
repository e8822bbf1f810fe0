"""Cleaning and section detection for text extracted from papers.

Extracted PDF text carries artefacts that a model will happily learn: ligature glyphs, words
hyphenated across lines, running headers and page numbers, decorative `*`/`#` runs, and long
reference lists. The old model learned to emit rows of `*`; so they go here, before summarizing.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter

SECTION_NAMES = {
    "abstract": ("abstract",),
    "introduction": ("introduction", "motivation", "background"),
    "related": ("related work", "related works", "prior work", "previous work", "related research"),
    "method": (
        "method",
        "methods",
        "methodology",
        "approach",
        "our approach",
        "proposed method",
        "model",
        "the model",
        "architecture",
        "algorithm",
    ),
    "experiments": ("experiments", "experimental results", "results", "evaluation", "experiment"),
    "conclusion": ("conclusion", "conclusions", "discussion", "summary", "concluding remarks"),
    "references": ("references", "bibliography", "literature cited"),
}
_HEADING = re.compile(
    r"^\s*(?:(?:\d+|[IVX]+)(?:\.\d+)*\.?\s+)?(?P<name>[A-Za-z][A-Za-z ]{2,40}?)\s*:?\s*$"
)
_DECORATION = re.compile(
    r"(?m)^[ \t]*[*#=_~\-]{3,}[ \t]*$|[*#]{2,}|(?<!\w)[*_]{1,2}(?=\w)|(?<=\w)[*_]{1,2}(?!\w)"
)
# "3 Deformable Convolution", "II. PROPOSED NETWORK": a top-level numbered heading
_NUMBERED_HEADING = re.compile(r"^\s*(?:\d{1,2}|[IVX]{1,4})\.?\s+[A-Z][A-Za-z][A-Za-z :-]{2,60}$")
_PAGE_NUMBER = re.compile(r"^\s*(?:page\s+)?\d{1,4}(?:\s*(?:/|of)\s*\d{1,4})?\s*$", re.I)


def clean_pages(pages: list[str]) -> str:
    """Join page texts into clean running text."""
    pages = [unicodedata.normalize("NFKC", page) for page in pages]
    pages = _drop_running_lines(pages)
    text = "\n".join(pages)
    text = _drop_slash_glyphs(text)
    text = re.sub(r"(\w)-\n\s*([a-z])", r"\1\2", text)  # de-hyphenate across line breaks
    text = _DECORATION.sub("", text)
    text = re.sub(r"^\s*#{1,6}\s+", "", text, flags=re.M)  # markdown heading marks
    text = re.sub(r"[ \t\u00a0]+", " ", text)
    text = re.sub(r" *\n *", "\n", text)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip()


_SLASH_BEFORE_PUNCT = re.compile(r"/[(),.:;\-@&]")
_SLASH_GLYPH = re.compile(r"/(?=[^\sA-Za-z])")


def has_slash_glyphs(text: str) -> bool:
    """Old TeX PDFs (Type 3 fonts) extract punctuation and digits as "/(", "/1/9/9/9".

    Only a document full of the pattern counts, so that "1/2" in a normal paper stays.
    """
    return len(_SLASH_BEFORE_PUNCT.findall(text)) > max(20, len(text) / 500)


def _drop_slash_glyphs(text: str) -> str:
    return _SLASH_GLYPH.sub("", text) if has_slash_glyphs(text) else text


def _drop_running_lines(pages: list[str]) -> list[str]:
    """Remove page numbers and lines repeated at the top/bottom of most pages."""
    if len(pages) < 2:
        return [_strip_page_numbers(p) for p in pages]
    edges: Counter[str] = Counter()
    for page in pages:
        lines = [line.strip() for line in page.splitlines() if line.strip()]
        edges.update(set(lines[:2] + lines[-2:]))
    running = {line for line, n in edges.items() if n >= max(2, (len(pages) + 1) // 2)}
    cleaned = []
    for page in pages:
        kept = [line for line in page.splitlines() if line.strip() not in running]
        cleaned.append(_strip_page_numbers("\n".join(kept)))
    return cleaned


def _strip_page_numbers(page: str) -> str:
    return "\n".join(line for line in page.splitlines() if not _PAGE_NUMBER.match(line))


def heading_kind(line: str) -> str | None:
    """The section a heading line opens ('method', ...), or None if it is not a heading."""
    match = _HEADING.match(line)
    if not match:
        return None
    name = match.group("name").strip().lower()
    for kind, names in SECTION_NAMES.items():
        if name in names:
            return kind
    return None


def guess_title(lines: list[str]) -> tuple[str, int]:
    """(title, number of lines it spans): the first line, plus a wrapped second line."""
    lines = [line.strip() for line in lines]
    if not lines:
        return "", 0
    title, used = lines[0], 1
    if (
        len(lines) > 1
        and len(title) >= 30
        and lines[1]
        and len(lines[1]) <= 60
        and not re.search(r"[,@\d]", lines[1])
        and heading_kind(lines[1]) is None
        and not lines[1].lower().startswith("abstract")
    ):
        title, used = f"{title} {lines[1]}", 2
    return title, used


def split_sections(text: str, title: str = "") -> tuple[str, dict[str, str]]:
    """Return (title, sections) with the references section removed from the sections.

    `title` (e.g. from the PDF's metadata) wins over the guess from the first lines.
    """
    lines = [line for line in text.splitlines() if line.strip()]
    guessed, used = guess_title(lines)
    if title and lines and lines[0].strip() and title.lower().startswith(lines[0].strip().lower()):
        used = 2 if len(lines) > 1 and title.lower().endswith(lines[1].strip().lower()) else 1
    title = title or guessed
    sections: dict[str, list[str]] = {}
    current = "front"
    for line in lines[used:]:
        kind = heading_kind(line)
        if (
            kind is None
            and line.strip().lower().startswith("abstract")
            and "abstract" not in sections
        ):
            kind, line = "abstract", line.strip()[len("abstract") :].lstrip(" .:-—")
            sections.setdefault(kind, [])
            current = kind
            if line:
                sections[kind].append(line)
            continue
        if kind is None and _opens_unnamed_method(line, sections):
            kind = "method"
        if kind is not None and kind not in sections:
            current = kind
            sections[current] = []
            continue
        sections.setdefault(current, []).append(line)
    sections.pop("references", None)
    joined = {k: _join_lines(v) for k, v in sections.items()}
    return title, {k: v for k, v in joined.items() if v}


def _opens_unnamed_method(line: str, sections: dict[str, list[str]]) -> bool:
    """Papers often title their method section by its content ("3 Deformable Convolution"):
    the first numbered heading after the introduction that is not a known section is taken to be
    the method."""
    return (
        "introduction" in sections
        and not {"method", "experiments", "conclusion"} & set(sections)
        and len(line.split()) <= 8
        and bool(_NUMBERED_HEADING.match(line))
    )


def strip_references(text: str) -> str:
    """Drop everything from the last 'References' heading on."""
    lines = text.splitlines()
    for index in range(len(lines) - 1, -1, -1):
        if heading_kind(lines[index]) == "references":
            return "\n".join(lines[:index]).rstrip()
    return text


def _join_lines(lines: list[str]) -> str:
    """Re-flow wrapped lines into paragraphs (blank lines stay paragraph breaks)."""
    text = "\n".join(lines).strip()
    paragraphs = [re.sub(r"\s*\n\s*", " ", p).strip() for p in re.split(r"\n\s*\n", text)]
    return "\n\n".join(p for p in paragraphs if p)
