"""`mlxtune ui` on a run of 1,500 papers: milliseconds per page (the pairs page must render in
under a second, issue 29), against the baseline of reading the run's files whole on every
request (what the byte-offset indexes of mlxtune/ui/index.py avoid).

    python bench/ui_pages.py                 # 1,500 papers of ~20,000 characters each
    python bench/ui_pages.py --papers 300 --chars 5000

The run is synthetic (tests/ui_support.py writes it as the stages write theirs): the pages
read files, no model is involved. Timed in-process through Starlette's TestClient (the whole
app and its middleware; no socket)."""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from starlette.testclient import TestClient  # noqa: E402
from ui_support import make_run  # noqa: E402

from mlxtune.ui import open_runs  # noqa: E402
from mlxtune.ui.app import make_app  # noqa: E402


def timed(call, repeat: int) -> float:
    """Median milliseconds of `call()` over `repeat` calls."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def whole_files(run: Path) -> None:
    """The baseline: every line of the files a pairs page needs, parsed on every request."""
    for name in ("documents.jsonl", "pairs.jsonl", "curation_rejects.jsonl"):
        with open(run / name) as fh:
            for line in fh:
                json.loads(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--papers", type=int, default=1500)
    parser.add_argument("--chars", type=int, default=20000, help="characters of text per paper")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run = make_run(Path(tmp) / "runs" / "big", args.papers, chars=args.chars)
        size = sum((run / n).stat().st_size for n in ("documents.jsonl", "pairs.jsonl"))
        client = TestClient(make_app(open_runs([str(run)]), "bench"), base_url="http://127.0.0.1")
        start = time.perf_counter()
        first = client.get("/run/big/pairs")
        cold = (time.perf_counter() - start) * 1000
        assert first.status_code == 200
        pages = {
            "runs (counts, stages)": "/",
            "pairs, page 1": "/run/big/pairs",
            "pairs, page 40": "/run/big/pairs?page=40",
            "pairs, category + curator rejected": "/run/big/pairs?category=vision&verdict=rejected",
            "papers, page 60": "/run/big/papers?page=60",
            "one paper": "/run/big/papers/"
            + json.loads((run / "documents.jsonl").open().readline())["id"],
        }
        print(f"{args.papers} papers, {size / 2**20:.1f} MiB of documents.jsonl + pairs.jsonl")
        print(f"| page | ms (median of {args.repeat}) |\n|---|---|")
        print(f"| pairs, first request (indexes built) | {cold:.1f} |")
        for name, url in pages.items():
            assert client.get(url).status_code == 200, url
            print(f"| {name} | {timed(lambda u=url: client.get(u), args.repeat):.1f} |")
        page = timed(lambda: client.get("/run/big/pairs?page=40"), args.repeat)
        naive = timed(lambda: whole_files(run), args.repeat)
        print(
            f"\npairs page 40: {page:.1f} ms; baseline (parse the files whole per request, "
            f"before rendering anything): {naive:.1f} ms; ratio {page / naive:.3f}x"
        )


if __name__ == "__main__":
    main()
