"""The data a model would learn from a folder of papers, measured: extraction and heuristic pairs.

    python bench/data_quality.py ../shared/corpus            # any folder of PDFs (sub-folders:
    python bench/data_quality.py PAPERS --json               #  categories)

Runs the extract, split and summarize stages (heuristic summarizer, curation as the recipe
default) into a temporary run directory and prints the figures issue 15 asks for: documents passed
as readable that score below the readability threshold, control / private-use characters in texts
and pairs, unjoined line-break hyphens per 10,000 words, lines repeated on 3 or more pages left in
the texts, canned questions where an abstract exists, approaches with a heading or code, questions
that do not end in "?", and the extraction time. Not a test: a user's own corpus is the point.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ue000-\uf8ff]")
# a word broken at a line end and left so: "signifi- cantly", "signifi-\ncantly"
UNJOINED = re.compile(r"\b[a-z]{2,}-\s+(?!and\b|or\b|to\b|in\b)[a-z]{3,}\b")
CANNED = re.compile(r"^How can we advance ", re.I)
HEADING = re.compile(
    r"(?:^|\s)(?:\d+(?:\.\d+)*\.?\s+)?(?:Introduction|Related Work|Method|Methods|Methodology|"
    r"Experiments|Results|Conclusion|Abstract|References|Algorithm \d+)\s*(?:\n|$)",
)
CODE = re.compile(r"[{};]\s*$|\bdef |\breturn\b|==|\+=|for \w+ in |\bwhile \(|\w+\[\w+\]\s*=", re.M)


def run_stages(papers: Path, root: Path) -> tuple[list, list, float]:
    from mlxtune.pipeline import run_recipe
    from mlxtune.recipe import load_recipe
    from mlxtune.records import load_documents, load_pairs

    recipe_path = root / "recipe.yaml"
    recipe_path.write_text(
        f"name: quality\npapers: {papers.resolve()}\nrun_dir: {root / 'run'}\n"
        f"cache_dir: {root / 'cache'}\nmodel: {{tiny: {{}}}}\n"
    )
    recipe, registry = load_recipe(recipe_path)
    started = time.perf_counter()
    run_recipe(recipe, registry, only="extract")
    seconds = time.perf_counter() - started
    run_recipe(recipe, registry, until="summarize")
    run = root / "run"
    return load_documents(run / "documents.jsonl"), load_pairs(run / "pairs.jsonl"), seconds


def repeated_lines(text: str) -> int:
    """Lines of 4+ words that occur 3 or more times in one text (running headers left in; a
    figure's tick labels and table cells, numbers and fragments, do not count)."""
    lines = [
        line.strip()
        for line in text.splitlines()
        if sum(word.isalpha() for word in line.split()) >= 4
    ]
    return sum(1 for _, n in Counter(lines).items() if n >= 3)


def measure(documents: list, pairs: list, seconds: float) -> dict:
    from mlxtune.extract.quality import readability

    ok = [d for d in documents if d.ok]
    words = sum(len(d.text.split()) for d in ok)
    unjoined = sum(len(UNJOINED.findall(d.text)) for d in ok)
    abstracts = {d.id for d in ok if d.sections.get("abstract")}
    return {
        "files": len(documents),
        "ok": len(ok),
        "skipped_or_failed": Counter(f"{d.status}:{d.problem}" for d in documents if not d.ok),
        "ok_below_readability_threshold": sum(readability(d.text).score < 0.5 for d in ok),
        "texts_with_control_chars": sum(bool(CONTROL.search(d.text)) for d in ok),
        "pairs_with_control_chars": sum(
            bool(CONTROL.search(p.question + p.approach)) for p in pairs
        ),
        "unjoined_hyphens_per_10k_words": round(unjoined / max(words, 1) * 1e4, 2),
        "texts_with_lines_repeated_3_times": sum(repeated_lines(d.text) > 0 for d in ok),
        "pairs": len(pairs),
        "canned_questions_with_abstract": sum(
            bool(CANNED.match(p.question)) and p.document_id in abstracts for p in pairs
        ),
        "approaches_with_heading_or_code": sum(
            bool(HEADING.search(p.approach) or CODE.search(p.approach)) for p in pairs
        ),
        "questions_not_ending_in_question_mark": sum(
            not p.question.rstrip().endswith("?") for p in pairs
        ),
        "extract_seconds": round(seconds, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("papers", type=Path)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="quality-") as tmp:
        figures = measure(*run_stages(args.papers, Path(tmp)))
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    for key, value in figures.items():
        print(f"{key:40} {dict(value) if isinstance(value, Counter) else value}", file=sys.stdout)


if __name__ == "__main__":
    main()
