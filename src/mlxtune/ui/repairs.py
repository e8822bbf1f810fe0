"""What cleaning changed in a paper: its raw PDF text (read page by page as the pypdf extractor
reads it) against the cleaned text recorded in documents.jsonl, as a word-level diff.

The extract stage records only the cleaned text; this re-reads the PDF (the app checks first that
its bytes are still the recorded paper) so that a reviewer sees the removed running headers, page
numbers, reference lists and decorations, and the words that were joined or repaired. The work is
bounded: the first MAX_PAGES pages, at most MAX_CHARS characters of them."""

from __future__ import annotations

import re
from dataclasses import dataclass
from difflib import SequenceMatcher
from pathlib import Path

from markupsafe import Markup, escape

MAX_PAGES = 8  # pages of the PDF compared
MAX_CHARS = 40_000  # characters of their raw text compared (~7,000 words: well under a second)
REFINE_CHARS = 600  # a replaced run this long or shorter is matched character by character
_TOKEN = re.compile(r"\S+")
# glyph codes a PDF delivers unmapped (ligatures as NUL, old TeX's OT1 codes): shown as their
# Unicode control pictures (U+2400...), since a raw control character is invisible in a page
_PICTURES = {c: 0x2400 + c for c in range(0x20) if chr(c) not in "\t\n\r"} | {0x7F: 0x2421}


@dataclass
class Repairs:
    """The diff as the page shows it, with its counts and what part of the paper it covers."""

    html: Markup
    repaired: int  # words of the cleaned text that cleaning joined or repaired
    removed_words: int
    removed_lines: int  # raw lines every word of which cleaning dropped
    pages_read: int
    pages_total: int
    limited: bool  # True: only the start of the paper was compared


def read_raw_pages(path: Path, max_pages: int = MAX_PAGES) -> list[str]:
    """The PDF's page texts before cleaning, through the pypdf extractor's own reader (the
    same text its clean_pages received); an encrypted or damaged file raises."""
    from ..extract.pypdf_extractor import PypdfExtractor

    extractor = PypdfExtractor(PypdfExtractor.Options(max_pages=max_pages))
    pages, _title = extractor._read_pages(path)
    return pages


def paper_repairs(path: Path, cleaned: str, pages_total: int | None = None) -> Repairs:
    """The repairs of the paper at `path` whose cleaned text is `cleaned`."""
    pages = read_raw_pages(path)
    return diff_repairs(pages, cleaned, max(pages_total or 0, len(pages)))


def diff_repairs(pages: list[str], cleaned: str, pages_total: int) -> Repairs:
    """Diff the raw `pages` (as read) against `cleaned`, over words (autojunk off: a paper's
    common words must still match)."""
    raw = "\n".join(pages)
    limited = pages_total > len(pages) or len(raw) > MAX_CHARS
    if len(raw) > MAX_CHARS:
        cut = raw.rfind("\n", 0, MAX_CHARS)
        raw = raw[: cut if cut > MAX_CHARS // 2 else MAX_CHARS]
    if limited:  # cleaning only shortens: the raw part's cleaned text is within this prefix
        cleaned = cleaned[: len(raw) + len(raw) // 20]
    a, b = _tokens(raw), _tokens(cleaned)
    ops = SequenceMatcher(None, [t[0] for t in a], [t[0] for t in b], autojunk=False).get_opcodes()
    if limited:  # past the last match the two texts are no longer the same part of the paper
        last = max((i for i, op in enumerate(ops) if op[0] == "equal"), default=-1)
        ops = ops[: last + 1]
    page_starts = _page_starts(pages)
    view = _View(raw, a, cleaned, b, page_starts)
    for tag, i1, i2, j1, j2 in ops:
        view.op(tag, i1, i2, j1, j2)
    removed = [i for i in range(len(a)) if view.removed[i]]
    seen = {_line(raw, a[i][1]) for i in range(len(a)) if view.seen[i]}
    kept_lines = {
        _line(raw, a[i][1]) for i in range(len(a)) if view.seen[i] and not view.removed[i]
    }
    removed_lines = len(seen - kept_lines)
    pages_read = len(pages) if not limited else 1 + sum(1 for s in page_starts if s < len(raw))
    return Repairs(
        Markup("".join(view.out)),
        view.repaired,
        len(removed),
        removed_lines,
        min(pages_read, len(pages)),
        pages_total,
        limited,
    )


def _tokens(text: str) -> list[tuple[str, int]]:
    return [(m.group(), m.start()) for m in _TOKEN.finditer(text)]


def _page_starts(pages: list[str]) -> list[int]:
    """Character offsets in the joined raw text where pages 2, 3, ... begin."""
    starts, at = [], 0
    for page in pages[:-1]:
        at += len(page) + 1
        starts.append(at)
    return starts


def _shown(raw: str) -> Markup:
    """Raw PDF text, escaped, its control characters made visible."""
    return escape(raw.translate(_PICTURES))


def _line(text: str, offset: int) -> int:
    return text.count("\n", 0, offset)


class _View:
    """Builds the HTML: the cleaned text in its own layout, removed raw words struck through in
    theirs, repaired words marked with their raw form as a tooltip, page breaks numbered."""

    def __init__(self, raw, a, cleaned, b, page_starts):
        self.raw, self.a, self.cleaned, self.b = raw, a, cleaned, b
        self.page_starts, self.page = page_starts, 0
        self.removed = [False] * len(a)
        self.seen = [False] * len(a)
        self.repaired = 0
        self.out: list[str] = []

    def _gap(self, text: str, tokens: list[tuple[str, int]], k: int) -> str:
        """The whitespace before token k as its text has it: a line break or a space."""
        if k == 0:
            return ""
        end = tokens[k - 1][1] + len(tokens[k - 1][0])
        gap = text[end : tokens[k][1]]
        return "\n\n" if gap.count("\n") > 1 else "\n" if "\n" in gap else " "

    def _pages_to(self, i: int) -> None:
        """Mark the page breaks before raw token i."""
        while self.page < len(self.page_starts) and self.a[i][1] >= self.page_starts[self.page]:
            self.page += 1
            self.out.append(f"<span class='page-break'>page {self.page + 1}</span>")

    def _clean(self, j: int, css: str = "", raw: str = "") -> None:
        text = escape(self.b[j][0])
        gap = self._gap(self.cleaned, self.b, j) if j or not self.out else "\n"
        if css:
            title = f" title='{_shown(raw)}'" if raw else ""
            text = Markup(f"<mark class='{css}'{title}>") + text + Markup("</mark>")
            self.repaired += 1
        self.out.append(gap + str(text))

    def _removed(self, indices: list[int]) -> None:
        """Raw words cleaning dropped, struck through (a page break closes the run)."""
        parts: list[str] = []
        for i in indices:
            breaks = len(self.out)
            self._pages_to(i)
            if len(self.out) > breaks and parts:  # the break goes between the two runs
                self.out.insert(breaks, "<del>" + "".join(parts) + "</del>")
                parts = []
            self.removed[i] = self.seen[i] = True
            gap = self._gap(self.raw, self.a, i) if i else ""
            parts.append(gap + str(_shown(self.a[i][0])))
        if parts:
            self.out.append("<del>" + "".join(parts) + "</del>")

    def op(self, tag: str, i1: int, i2: int, j1: int, j2: int) -> None:
        if tag == "equal":
            for i, j in zip(range(i1, i2), range(j1, j2), strict=True):
                self._pages_to(i)
                self.seen[i] = True
                self._clean(j)
        elif tag == "delete":
            self._removed(list(range(i1, i2)))
        elif tag == "insert":
            for j in range(j1, j2):
                self._clean(j, "repair")
        else:
            self._replace(i1, i2, j1, j2)

    def _replace(self, i1: int, i2: int, j1: int, j2: int) -> None:
        """Raw words i1:i2 became cleaned words j1:j2: match their characters to tell the raw
        words used by a repair (a hyphen join's two halves) from those dropped (a header)."""
        raw_words = [self.a[i][0] for i in range(i1, i2)]
        new_words = [self.b[j][0] for j in range(j1, j2)]
        owner_raw = [k for k, w in enumerate(raw_words) for _ in w]
        owner_new = [k for k, w in enumerate(new_words) for _ in w]
        sources: list[list[int]] = [[] for _ in new_words]  # raw words each new word came from
        if len(owner_raw) + len(owner_new) <= REFINE_CHARS:
            matcher = SequenceMatcher(None, "".join(raw_words), "".join(new_words), autojunk=False)
            for block in matcher.get_matching_blocks():
                for d in range(block.size):
                    k, m = owner_raw[block.a + d], owner_new[block.b + d]
                    if k not in sources[m]:
                        sources[m].append(k)
        used = {k for s in sources for k in s}
        if not used:  # too long to match, or nothing in common: all dropped, all new
            self._removed(list(range(i1, i2)))
            for m in range(len(new_words)):
                self._clean(j1 + m, "repair")
            return
        emitted, dropped = 0, []
        for k in range(len(raw_words)):
            if k not in used:
                dropped.append(i1 + k)
                continue
            self._removed(dropped)
            dropped = []
            self._pages_to(i1 + k)
            self.seen[i1 + k] = True
            while emitted < len(new_words) and (not sources[emitted] or sources[emitted][0] <= k):
                raw = " ".join(raw_words[s] for s in sources[emitted])
                self._clean(j1 + emitted, "repair", raw)
                emitted += 1
        self._removed(dropped)
        for m in range(emitted, len(new_words)):
            self._clean(j1 + m, "repair")
