"""Finding the papers: a walk of the papers folder that follows symbolic links safely.

A folder of papers is often assembled by hand or unpacked from someone else's archive, so it may
hold links (a category folder linked in from elsewhere, a link whose target was deleted, a link
back to a parent), named pipes, sockets or devices. The walk never opens a file (a FIFO would
block), follows linked folders once each (by real path, so a loop ends), keeps to the papers
folder unless the recipe allows otherwise (a link named `passwd.txt` to /etc/passwd must not
become training data), and reports every entry it passes over, so that documents.jsonl accounts
for each one instead of some papers silently going missing.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

NOT_PAPERS = ("readme", "license", "licence", "changelog", "notice")
OUTSIDE_HINT = "set extract.follow_outside: true to read it"


@dataclass(frozen=True)
class Entry:
    """A file the walk found under the papers folder (the path as walked, links not resolved).

    `problem` is empty for a file to extract; otherwise the entry is recorded as skipped with
    `problem` (a short kind) and `reason` (one line for the user) and never opened.
    """

    path: Path
    category: str
    problem: str = ""
    reason: str = ""

    @property
    def readable(self) -> bool:
        return not self.problem


class PapersFolderError(OSError):
    """The papers folder itself cannot be listed."""


def walk_papers(
    papers: Path, suffixes: Collection[str], *, follow_outside: bool = False
) -> list[Entry]:
    """Every paper under `papers` (by suffix) and every entry passed over, sorted by path.

    Hidden files and folders and a folder's own README/LICENSE are not papers and are not
    reported; nor are files whose suffix no extractor handles. An entry that cannot even be
    looked at (a dangling link, a link loop, no permission) is reported whatever its name.
    """
    walker = _Walker(papers, {s.lower() for s in suffixes}, follow_outside)
    walker.walk_dir(papers)
    while walker.linked:
        walker.enter(walker.linked.pop(0))
    return sorted(walker.found, key=lambda entry: entry.path)


class _Walker:
    def __init__(self, papers: Path, suffixes: set[str], follow_outside: bool):
        self.papers = papers
        self.root = os.path.realpath(papers)
        self.suffixes = suffixes
        self.follow_outside = follow_outside
        self.visited = {self.root}  # real paths of the folders walked: each once, loops end
        self.found: list[Entry] = []
        self.linked: list[Path] = []  # linked folders, walked after the real ones

    def walk_dir(self, folder: Path) -> None:
        try:
            with os.scandir(folder) as it:
                names = sorted(entry.name for entry in it)
        except OSError as exc:
            if folder == self.papers:
                raise PapersFolderError(exc.errno, exc.strerror, str(folder)) from exc
            self.skip(folder, "unreadable", f"unreadable folder: {_why(exc)}", folder=True)
            return
        for name in names:
            if not name.startswith("."):
                self.visit(folder / name)

    def visit(self, path: Path) -> None:
        is_link = path.is_symlink()
        try:
            info = os.stat(path)  # follows links; never opens the file
        except OSError as exc:  # recorded whatever its name: it may be a (category) folder
            if path.stem.lower() in NOT_PAPERS:
                return
            if is_link and exc.errno == errno.ENOENT:
                self.skip(path, "dangling-link", f"dangling link to {_target(path)}")
            elif exc.errno == errno.ELOOP:
                self.skip(path, "link-loop", f"link that loops ({_target(path)})")
            else:
                self.skip(path, "unreadable", f"unreadable: {_why(exc)}")
            return
        directory = stat.S_ISDIR(info.st_mode)
        if not directory and not self.wanted(path):
            return
        real = os.path.realpath(path) if is_link else ""
        if is_link and not self.follow_outside and not _inside(real, self.root):
            kind = "folder" if directory else "file"
            reason = f"link to a {kind} outside the papers folder ({real}); {OUTSIDE_HINT}"
            self.skip(path, "outside", reason, folder=directory)
        elif directory and is_link:
            self.linked.append(path)  # after the real folders, so that those keep their names
        elif directory:
            self.enter(path)
        elif not stat.S_ISREG(info.st_mode):
            self.skip(path, "special", f"{_special_kind(info.st_mode)}, not a file: not opened")
        else:
            self.found.append(Entry(path, self.category(path)))

    def enter(self, folder: Path) -> None:
        real = os.path.realpath(folder)
        if real in self.visited:
            shown = real if not _inside(real, self.root) else os.path.relpath(real, self.root)
            shown = "the papers folder" if shown == "." else shown
            if real in self.above(folder):  # a link back up the way it was reached
                self.skip(folder, "link-loop", f"link to a folder above it ({shown})", folder=True)
            else:
                self.skip(folder, "duplicate", f"folder already read as {shown}", folder=True)
        else:
            self.visited.add(real)
            self.walk_dir(folder)

    def above(self, folder: Path) -> set[str]:
        """The real paths of the folders the walk went through to reach `folder`."""
        parts = folder.relative_to(self.papers).parts
        return {os.path.realpath(self.papers.joinpath(*parts[:i])) for i in range(len(parts))}

    def wanted(self, path: Path) -> bool:
        """A name an extractor handles, and not a README/LICENSE."""
        return path.suffix.lower() in self.suffixes and path.stem.lower() not in NOT_PAPERS

    def category(self, path: Path, folder: bool = False) -> str:
        """The first sub-folder (a top-level folder is its own category)."""
        parts = path.relative_to(self.papers).parts
        return parts[0] if len(parts) > 1 or folder else "uncategorized"

    def skip(self, path: Path, problem: str, reason: str, *, folder: bool = False) -> None:
        self.found.append(Entry(path, self.category(path, folder), problem, reason))


def _inside(real: str, root: str) -> bool:
    return real == root or real.startswith(root.rstrip(os.sep) + os.sep)


def _target(path: Path) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return "?"


def _why(exc: OSError) -> str:
    return exc.strerror or str(exc)


def _special_kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "named pipe (FIFO)"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    return "special file"
