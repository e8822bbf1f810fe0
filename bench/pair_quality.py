"""How good are a run's curated pairs? Scored against a hand-written gold set (issue 26).

    python bench/pair_quality.py RUN                       # a run directory (curated.jsonl)
    python bench/pair_quality.py RUN --gold bench/gold/corpus.yaml --json
    python bench/pair_quality.py --make ../shared/corpus --summarizer heuristic  # run, then score

For each gold paper (bench/gold/, keyed by the file's SHA-256, so renamed files still match):
whether a curated pair's question names the paper's problem and its approach names its method
(by the gold key terms), and ROUGE-L (F1 of the longest common word subsequence) of the question
and approach to the gold texts. Over all curated pairs: the share of questions that open with the
same four words (one template), pairs holding an affiliation, e-mail, address or section heading,
and the share whose recorded evidence supports them (curate/rules.py's `evidence_problem`). A
paper with no curated pair counts as a miss. Not a test: the gold terms are one reader's.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from collections import Counter
from pathlib import Path

import yaml

from mlxtune.evaluate.metrics import rouge_l  # the compare report's ROUGE-L

GOLD = Path(__file__).parent / "gold" / "corpus.yaml"
_TOKEN = re.compile(r"[a-z0-9]+")
EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+\.[\w.-]+")
AFFILIATION = re.compile(
    r"\b(?:Universit(?:y|ät|é|e)|Institute|Department|Dept\.|Laborator(?:y|ies)|Labs?\b|"
    r"School of|College|Inc\.|Corporation|Research Center|AI Research)\b"
)
ADDRESS = re.compile(
    r"\b\d{1,5}\s+(?:[A-Z][a-z]+\s+){0,3}(?:Street|St\.|Road|Rd\.?|Avenue|Ave\.?|Broadway|"
    r"Boulevard|Blvd\.?|Drive|Way)\b|\b[A-Z]{2}\s+\d{5}\b|\b[A-Z]\d[A-Z]\s?\d[A-Z]\d\b"
)
HEADING = re.compile(
    r"(?:^|[.:]\s+|\s)(?:\d+(?:\.\d+)*\.?\s+)?(?:Abstract|Introduction|Related Work|Methods?|"
    r"Methodology|Experiments|Results|Conclusions?|References|Acknowledge?ments)(?=\s+[A-Z]|\s*$)"
    r"|(?:^|[.:]\s+)\d+(?:\.\d+)+\.?\s+[A-Z][a-z]+"
)


def words(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def names(text: str, term: str) -> bool:
    """Whether `text` contains `term`: whole words, the last one as a prefix ("residual" finds
    "residuals"; a term under five letters only whole or plural, so "dec" is not "decoder"), a
    hyphen, a space or nothing between words the same ("multi-task" finds "multitask")."""
    have, want = words(text), words(term)
    if not want:
        return False
    n = len(want)

    def fits(word: str, term: str) -> bool:  # a short term (an acronym) only whole or plural
        return word.startswith(term) if len(term) >= 5 else word in (term, term + "s")

    for i in range(len(have) - n + 1):
        if have[i : i + n - 1] == want[:-1] and fits(have[i + n - 1], want[-1]):
            return True
    joined = "".join(want)
    return n > 1 and any(
        fits("".join(have[i : i + k]), joined) for k in (1, 2, 3) for i in range(len(have) - k + 1)
    )


def front_matter(text: str) -> str:
    """What in `text` is an affiliation, e-mail, address or heading ("" if none)."""
    for pattern in (EMAIL, AFFILIATION, ADDRESS, HEADING):
        found = pattern.search(text)
        if found:
            return found.group(0).strip()
    return ""


def template(question: str) -> str:
    return " ".join(words(question)[:4])


def score(run: Path, gold_path: Path = GOLD) -> dict:
    from mlxtune.curate.rules import evidence_problem
    from mlxtune.records import load_documents, load_pairs

    gold = {paper["id"]: paper for paper in yaml.safe_load(gold_path.read_text())["papers"]}
    documents = {d.id: d for d in load_documents(run / "documents.jsonl")}
    pairs = load_pairs(run / "curated.jsonl")
    by_doc: dict[str, list] = {}
    for pair in pairs:
        by_doc.setdefault(pair.document_id, []).append(pair)
    rows = []
    for doc_id, paper in gold.items():
        if doc_id not in documents:
            continue
        mine = by_doc.get(doc_id, [])
        best = {"problem": False, "method": False, "both": False, "rouge_q": 0.0, "rouge_a": 0.0}
        for pair in mine:
            problem = any(names(pair.question, t) for t in paper["problem"])
            method = any(names(pair.approach, t) for t in paper["method"])
            best["problem"] |= problem
            best["method"] |= method
            best["both"] |= problem and method
            best["rouge_q"] = max(best["rouge_q"], rouge_l(pair.question, paper["question"]))
            best["rouge_a"] = max(best["rouge_a"], rouge_l(pair.approach, paper["approach"]))
        rows.append({"file": paper["file"], "pairs": len(mine), **best})
    n = max(1, len(rows))
    openings = Counter(template(p.question) for p in pairs)
    top, top_n = openings.most_common(1)[0] if openings else ("", 0)
    held = [(p, front_matter(f"{p.question} {p.approach}")) for p in pairs]
    supported = [
        p for p in pairs if p.evidence and not evidence_problem(p, documents.get(p.document_id))
    ]
    return {
        "gold_papers": len(rows),
        "papers_with_pair": sum(r["pairs"] > 0 for r in rows),
        "question_names_problem": round(sum(r["problem"] for r in rows) / n, 3),
        "approach_names_method": round(sum(r["method"] for r in rows) / n, 3),
        "both": round(sum(r["both"] for r in rows) / n, 3),
        "rouge_l_question": round(sum(r["rouge_q"] for r in rows) / n, 3),
        "rouge_l_approach": round(sum(r["rouge_a"] for r in rows) / n, 3),
        "curated_pairs": len(pairs),
        "top_template_share": round(top_n / max(1, len(pairs)), 3),
        "top_template": top,
        "pairs_with_front_matter_or_heading": sum(bool(h) for _, h in held),
        "front_matter_seen": [h for _, h in held if h][:5],
        "evidence_supported_share": round(len(supported) / max(1, len(pairs)), 3),
        "papers": rows,
    }


def make_run(papers: Path, root: Path, summarizer: str, model: str | None = None) -> Path:
    """Extract, summarize and curate `papers` into `root/run` (the recipe's defaults)."""
    from mlxtune.pipeline import run_recipe
    from mlxtune.recipe import load_recipe

    spec = f"{{use: {summarizer}" + (f", model: '{model}'" if model else "") + "}"
    recipe_path = root / "recipe.yaml"
    recipe_path.write_text(
        f"name: pair-quality\npapers: {papers.resolve()}\nrun_dir: {root / 'run'}\n"
        f"cache_dir: {root / 'cache'}\nmodel: {{tiny: {{}}}}\n"
        f"split: {{per_category: {{valid: 0, test: 0}}}}\nsummarize: {spec}\n"
    )
    recipe, registry = load_recipe(recipe_path)
    run_recipe(recipe, registry, until="curate")
    return root / "run"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, nargs="?", help="a run directory with curated.jsonl")
    parser.add_argument("--gold", type=Path, default=GOLD)
    parser.add_argument("--make", type=Path, metavar="PAPERS", help="run extract..curate first")
    parser.add_argument("--summarizer", default="heuristic")
    parser.add_argument("--model", help="the LLM summarizer's model (hub id, folder, GGUF ref)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--papers", action="store_true", help="print one line per paper")
    args = parser.parse_args()
    if args.run is None and args.make is None:
        parser.error("give a RUN directory or --make PAPERS")
    with tempfile.TemporaryDirectory(prefix="pair-quality-") as tmp:
        run = make_run(args.make, Path(tmp), args.summarizer, args.model) if args.make else args.run
        if not (run / "curated.jsonl").is_file():
            sys.exit(f"{run}: no curated.jsonl; run the recipe through its curate stage first")
        figures = score(run, args.gold)
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    for key, value in figures.items():
        if key != "papers":
            print(f"{key:38} {value}")
    if args.papers:
        for row in figures["papers"]:
            flags = "".join(("P" if row["problem"] else "-", "M" if row["method"] else "-"))
            print(f"  {flags} q{row['rouge_q']:.2f} a{row['rouge_a']:.2f} {row['file']}")


if __name__ == "__main__":
    main()
