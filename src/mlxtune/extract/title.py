"""A paper's title from its first page's typography: the largest upright text near the top.

PDF metadata titles are often missing or junk ("Microsoft Word - draft3.docx"), and the first
lines of extracted text are often not the title: conference templates repeat the title as a
running header (which cleaning removes), arXiv stamps a sideways identifier in a large font,
and author names follow on the next line. The title is set in the page's largest font, so
pypdf's text visitor (font size and position of each run) finds it: the first group of runs
at the largest size, upright, on neighbouring lines, with enough letters to be words (so a
figure's big axis labels do not win).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any

MIN_LETTERS = 10
JUNK_METADATA = re.compile(
    r"^(microsoft (word|powerpoint)|untitled|title|document\d*)\b|\.(docx?|pdf|tex|dvi|ps)$"
    r"|^arxiv:",
    re.I,
)


@dataclass
class _Run:
    text: str
    size: float
    y: float


@dataclass
class FontRuns:
    """Collects the text runs of one page with their rendered size (pass `visit` to
    `page.extract_text(visitor_text=...)`)."""

    runs: list[_Run] = field(default_factory=list)

    def visit(self, text: str, cm: Any, tm: Any, font: Any, size: float) -> None:
        if not text.strip():
            return
        try:
            if any(abs(v) > 1e-6 for v in (tm[1], tm[2], cm[1], cm[2])):
                return  # rotated or skewed: arXiv's side stamp, watermarks
            rendered = round(float(size) * abs(tm[3]) * abs(cm[3]), 1)
            self.runs.append(_Run(text, rendered, tm[5] * cm[3] + cm[5]))
        except (TypeError, IndexError, ValueError):  # a damaged content stream: no title hint
            return

    def title(self) -> str:
        """The largest-font group of runs that reads as words, set larger than the body text;
        "" when there is none (no text layer, or one font size throughout)."""
        chars: dict[float, int] = {}
        for run in self.runs:
            chars[run.size] = chars.get(run.size, 0) + len(run.text)
        if not chars:
            return ""
        body = max(chars, key=lambda size: chars[size])
        drop_cap = ""
        for size in sorted((s for s in chars if s >= 1.15 * body), reverse=True):
            group = self._group(size)
            if len(group) == 1 and group.isupper():  # an initial set large ("C" + "ONTINUOUS")
                drop_cap = group
                continue
            if sum(c.isalpha() for c in group) >= MIN_LETTERS and len(group) <= 300:
                if drop_cap and group[:2].isupper():
                    return drop_cap + group
                return group
        return ""

    def _group(self, size: float) -> str:
        picked: list[str] = []
        last_y = None
        for run in self.runs:
            if abs(run.size - size) <= 0.5:
                if last_y is not None and abs(run.y - last_y) > 1.8 * size:
                    break  # the same size further down the page: a heading, not the title
                picked.append(run.text)
                last_y = run.y
            elif picked:
                break
        return " ".join(" ".join(picked).split())


def usable_metadata_title(title: str) -> str:
    """The metadata title if it looks like one (10-300 characters, not a file name)."""
    title = " ".join(title.split())
    if not 10 <= len(title) <= 300 or JUNK_METADATA.search(title) or not plausible_title(title):
        return ""
    return title


CONNECTORS = frozenset(
    [
        "a",
        "an",
        "and",
        "as",
        "at",
        "by",
        "for",
        "from",
        "in",
        "into",
        "of",
        "on",
        "or",
        "the",
        "to",
        "via",
        "with",
        "without",
        "using",
    ]
)
_TITLE_JUNK = re.compile(
    r"^(?:(?:\d+|[ivx]+)\.?\s+)?(?:abstract|introduction|contents|preprint|article|research"
    r"(?: article)?|article research|original (?:article|paper)|letter)\b\W*$"
    r"|^arxiv:|^doi:|^https?://|^(?:vol(?:ume)?|no|pp)\.?\s*\d",
    re.I,
)


def plausible_title(title: str) -> bool:
    """Not a heading, stamp, masthead or garbage: words, mostly well formed."""
    from .quality import readability

    title = " ".join(title.split())
    if len(title) < 8 or _TITLE_JUNK.search(title) or sum(c.isalpha() for c in title) < 6:
        return False
    return readability(title).well_formed >= 0.6


def ends_cut_off(title: str) -> bool:
    """ "SQUEEZENET: ALEXNET-LEVEL ACCURACY WITH": a title line that stops at a connector."""
    words = title.split()
    return len(words) >= 2 and words[-1].lower().strip(",:") in CONNECTORS


def clean_title(title: str, slash_glyphs: bool = False) -> str:
    """NFKC (ligatures), old-TeX slash glyphs when the document has them, one line."""
    title = unicodedata.normalize("NFKC", title)
    if slash_glyphs:
        title = re.sub(r"/(?=[^\sA-Za-z])", "", title)
    return " ".join(title.split()).strip(" .")[:300]
