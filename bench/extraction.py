"""Extraction throughput: pages/second with N worker processes vs one worker, same corpus.

    python bench/extraction.py                      # ../shared/corpus if present, else generated
    python bench/extraction.py --papers ~/papers --workers 8

The baseline is one worker in-process (what a plain loop over pypdf does). Each setting runs
`--repeat` times and the best time counts, so a cold disk cache does not decide the ratio.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from mlxtune.extract.pool import Job, extract_all
from mlxtune.extract.pypdf_extractor import PypdfExtractor


def corpus(path: str | None) -> Path:
    if path:
        return Path(path).expanduser()
    shared = Path(__file__).resolve().parents[2] / "shared" / "corpus"
    if shared.is_dir():
        return shared
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from pdfgen import paper_text, write_paper

    root = Path(tempfile.mkdtemp()) / "papers"
    for n in range(60):
        write_paper(
            root / f"c{n % 6}" / f"p{n}.pdf",
            f"Paper {n} Title Here",
            paper_text(f"topic {n}", n),
            pages=3,
        )
    return root


def timed(files: list[Path], workers: int) -> tuple[float, int]:
    extractor = PypdfExtractor()
    pages = 0

    def done(job, doc):
        nonlocal pages
        pages += doc.pages

    jobs = [Job(i, extractor, p, p.parent.name) for i, p in enumerate(files)]
    started = time.perf_counter()
    extract_all(jobs, workers, 0 if workers == 1 else 600, done)
    return time.perf_counter() - started, pages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--papers")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    root = corpus(args.papers)
    files = sorted(root.rglob("*.pdf"))
    print(f"corpus: {root} ({len(files)} PDFs), cpu cores: {os.cpu_count()}")
    results = {}
    for workers in (1, args.workers):
        best = min((timed(files, workers) for _ in range(args.repeat)), key=lambda r: r[0])
        results[workers] = best
        seconds, pages = best
        print(
            f"workers={workers:<3} {pages} pages in {seconds:6.2f}s "
            f"= {pages / seconds:7.1f} pages/s"
        )
    one, many = results[1], results[args.workers]
    ratio = (many[1] / many[0]) / (one[1] / one[0])
    print(f"ratio pages/s ({args.workers} workers / 1 worker): {ratio:.2f}x")


if __name__ == "__main__":
    main()
