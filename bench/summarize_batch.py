"""`mlx` summarizer throughput: documents/second batched (batch 8) vs one at a time.

    python bench/summarize_batch.py                     # a tiny random model built on the spot
    python bench/summarize_batch.py --model mlx-community/Qwen2.5-0.5B-Instruct-4bit

Both settings run the same prompts through the same model with greedy decoding (so the same
replies, hence the same work); the baseline is batch size 1. The tiny model has random weights,
so its replies are not JSON: every document also gets its repair prompt, as an unparseable
reply would. On a real model most documents need one prompt.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from mlxtune.records import Document
from mlxtune.summarize.mlx_summarizer import MlxSummarizer


def documents(n: int) -> list[Document]:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from pdfgen import paper_text

    docs = []
    for i in range(n):
        sections = paper_text(f"topic number {i}", i)
        docs.append(
            Document(
                id=f"d{i}",
                path=f"d{i}.pdf",
                category="bench",
                title=f"Paper {i} on topic {i}",
                text="",
                sections={k.split()[-1].lower(): v for k, v in sections.items()},
            )
        )
    return docs


def tiny_model() -> str:
    from mlxtune.models.tiny import build_tiny_model

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from pdfgen import paper_text

    texts = [" ".join(paper_text(f"topic {i}", i).values()) for i in range(20)]
    path = Path(tempfile.mkdtemp()) / "model"
    build_tiny_model(
        path,
        texts=texts,
        hidden_size=256,
        num_layers=4,
        num_heads=4,
        num_kv_heads=2,
        intermediate_size=768,
        vocab_size=2000,
    )
    return str(path)


def timed(model: str, docs: list[Document], batch: int, max_tokens: int) -> float:
    summarizer = MlxSummarizer(
        MlxSummarizer.Options(model=model, batch_size=batch, max_tokens=max_tokens)
    )
    summarizer.load()
    summarizer.complete([summarizer._conversation("warm up")])
    started = time.perf_counter()
    results = list(summarizer.summarize(docs))
    assert len(results) == len(docs)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="hub id or folder (default: a tiny random model)")
    parser.add_argument("--documents", type=int, default=16)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=64)
    args = parser.parse_args()
    model = args.model or tiny_model()
    docs = documents(args.documents)
    print(f"model: {model}; {len(docs)} documents, max {args.max_tokens} tokens per reply")
    rates = {}
    for batch in (1, args.batch):
        seconds = timed(model, docs, batch, args.max_tokens)
        rates[batch] = len(docs) / seconds
        print(f"batch={batch:<3} {seconds:7.2f}s = {rates[batch]:6.2f} documents/s")
    print(f"ratio documents/s (batch {args.batch} / batch 1): {rates[args.batch] / rates[1]:.2f}x")


if __name__ == "__main__":
    main()
