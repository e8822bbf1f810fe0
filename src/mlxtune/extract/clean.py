"""Cleaning and section detection for text extracted from papers.

Extracted PDF text carries artefacts that a model will happily learn: ligature glyphs, words
hyphenated across lines, running headers and page numbers, decorative `*`/`#` runs, and long
reference lists. The old model learned to emit rows of `*`; so they go here, before summarizing.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter

from .repair import drop_arxiv_stamps, is_ot1, repair_glyphs, repair_words
from .spacing import drop_ligature_slashes

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
    ot1 = is_ot1("".join(pages))
    pages = [repair_glyphs(unicodedata.normalize("NFKC", page), ot1) for page in pages]
    if has_slash_glyphs("\n".join(pages)):  # before the page numbers: "/4" is a page number
        pages = [_SLASH_GLYPH.sub("", page) for page in pages]
    pages = _drop_running_lines(drop_cover_page(pages))
    text = drop_ligature_slashes(drop_arxiv_stamps("\n".join(pages)))
    # words hyphenated across lines are joined by repair_words, with the paper's vocabulary
    text = _DECORATION.sub("", text)
    text = re.sub(r"^\s*#{1,6}\s+", "", text, flags=re.M)  # markdown heading marks
    text = re.sub(r"[ \t\u00a0]+", " ", text)
    text = re.sub(r" *\n *", "\n", text)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return repair_words(text).strip()


_SLASH_BEFORE_PUNCT = re.compile(r"/[(),.:;\-@&]")
_SLASH_GLYPH = re.compile(r"/(?=[^\sA-Za-z])")


def has_slash_glyphs(text: str) -> bool:
    """Old TeX PDFs (Type 3 fonts) extract punctuation and digits as "/(", "/1/9/9/9".

    Only a document full of the pattern counts, so that "1/2" in a normal paper stays.
    """
    return len(_SLASH_BEFORE_PUNCT.findall(text)) > max(20, len(text) / 500)


_DIGITS = re.compile(r"\d+")
EDGE_LINES = 3  # a running header or footer is among a page's first or last three lines
COVER_MARKS = ("CITATIONS", "READS", "SEE PROFILE")  # a repository's cover page


def drop_cover_page(pages: list[str]) -> list[str]:
    """Repositories (ResearchGate) put a cover page before the paper: drop it."""
    if len(pages) > 1 and all(mark in pages[0] for mark in COVER_MARKS):
        return pages[1:]
    return pages


def _running_key(line: str) -> str:
    """A line as it repeats from page to page: page and volume numbers may change."""
    return _DIGITS.sub("#", " ".join(line.split()).lower())


def _drop_running_lines(pages: list[str]) -> list[str]:
    """Remove page numbers and the running headers and footers: a line at the top or bottom of
    3 or more pages (or of most pages of a short paper), numbers allowed to change."""
    if len(pages) < 2:
        return [_strip_page_numbers(p) for p in pages]
    split = [page.splitlines() for page in pages]
    edges: Counter[str] = Counter()
    for lines in split:
        edges.update({_running_key(lines[i]) for i in _edge_indices(lines)})
    needed = min(3, max(2, (len(pages) + 1) // 2))
    running = {key for key, n in edges.items() if n >= needed and any(c.isalpha() for c in key)}
    cleaned = []
    for lines in split:
        drop = {i for i in _edge_indices(lines) if _running_key(lines[i]) in running}
        kept = [line for i, line in enumerate(lines) if i not in drop]
        cleaned.append(_strip_page_numbers("\n".join(kept)))
    return cleaned


def _edge_indices(lines: list[str]) -> list[int]:
    """The first and last non-empty lines of a page (three each; one on a short page)."""
    filled = [i for i, line in enumerate(lines) if line.strip()]
    k = EDGE_LINES if len(filled) >= 4 * EDGE_LINES else 1
    return filled[:k] + filled[-k:]


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
    """(title, number of lines it spans): the first plausible line (not a stamp, masthead or
    heading), plus a wrapped second line."""
    from .title import plausible_title

    lines = [line.strip() for line in lines]
    skip = next((i for i, line in enumerate(lines[:5]) if plausible_title(line)), 0)
    if not lines:
        return "", 0
    lines = lines[skip:]
    title, used = lines[0], 1 + skip
    if (
        len(lines) > 1
        and len(title) >= 30
        and lines[1]
        and len(lines[1]) <= 60
        and not re.search(r"[,@\d]", lines[1])
        and heading_kind(lines[1]) is None
        and not lines[1].lower().startswith("abstract")
        and plausible_title(lines[1])
    ):
        title, used = f"{title} {lines[1]}", 2 + skip
    return title, used


def split_sections(text: str, title: str = "") -> tuple[str, dict[str, str]]:
    """Return (title, sections) with the references section removed from the sections.

    `title` (e.g. from the PDF's metadata) wins over the guess from the first lines.
    """
    lines = [line for line in text.splitlines() if line.strip()]
    guessed, used = guess_title(lines)
    if title and lines and lines[0].strip() and title.lower().startswith(lines[0].strip().lower()):
        used = 2 if len(lines) > 1 and title.lower().endswith(lines[1].strip().lower()) else 1
    title = complete_title(title or guessed, lines)
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


def complete_title(title: str, lines: list[str]) -> str:
    """A title cut off at a connector ("... ACCURACY WITH") continues on its next line."""
    from .title import ends_cut_off

    if not ends_cut_off(title):
        return title
    tail = " ".join(title.split()[-3:]).lower()
    for index, line in enumerate(lines[:12]):
        if line.strip().lower().endswith(tail) and index + 1 < len(lines):
            following = lines[index + 1].strip()
            if len(following.split()) <= 12 and heading_kind(following) is None:
                return f"{title} {following}"
    return title


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


_CITATION = re.compile(
    r"^\s*(?:\[\d{1,3}\]|\d{1,3}\.\s+[A-Z])"  # "[12] A. Author", "12. Author"
    r"|\b(?:19|20)\d{2}[a-z]?\b.*\b(?:pp?\.|vol\.|proc\w*|journal|conference|arxiv|press|"
    r"transactions|workshop|in advances)"
    r"|\bet al\.?[,.]?\s.*\b(?:19|20)\d{2}\b",
    re.I,
)
REFERENCE_RUN = 12  # lines in a row, most of them citations, that make an unnamed reference list


def strip_references(text: str) -> str:
    """Drop everything from the last 'References' heading on; without one, a trailing run of
    lines that are mostly citations (a reference list whose heading was lost or never set)."""
    lines = text.splitlines()
    for index in range(len(lines) - 1, -1, -1):
        if heading_kind(lines[index]) == "references":
            return "\n".join(lines[:index]).rstrip()
    start = _reference_list_start(lines)
    return "\n".join(lines[:start]).rstrip() if start is not None else text


def _reference_list_start(lines: list[str]) -> int | None:
    """Where a citation list that runs to the end of the text begins (in its last half)."""
    cited = [bool(_CITATION.search(line)) for line in lines]
    if len(lines) < 2 * REFERENCE_RUN or sum(cited[-REFERENCE_RUN:]) < REFERENCE_RUN * 0.6:
        return None
    start = len(lines) - REFERENCE_RUN
    while start > len(lines) // 2:  # extend backwards while the window is still mostly citations
        window = cited[start - REFERENCE_RUN : start]
        if sum(window) < REFERENCE_RUN * 0.6:
            break
        start -= REFERENCE_RUN // 2
    while start > len(lines) // 2 and any(cited[start - 3 : start]):  # wrapped entries too
        start -= 1
    while start < len(lines) and not cited[start]:
        start += 1
    return start


def _join_lines(lines: list[str]) -> str:
    """Re-flow wrapped lines into paragraphs (blank lines stay paragraph breaks)."""
    text = "\n".join(lines).strip()
    paragraphs = [re.sub(r"\s*\n\s*", " ", p).strip() for p in re.split(r"\n\s*\n", text)]
    return "\n\n".join(p for p in paragraphs if p)
