"""Generation tokens/s: `mlxtune ask` vs `python -m mlx_lm generate`, same model and prompt.

    python bench/generation.py                          # Qwen2.5-0.5B shape, random weights
    python bench/generation.py --shape small --max-tokens 256

Both greedy, both from their own process; each reports its generation tokens/s (mlx-lm's
`stream_generate` statistics: tokens after the first over the time they took). Alternate runs,
best of `--rounds`.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from pathlib import Path

from common import build, run

PROMPT = "Research question: How can a network keep information over long time spans?\nApproach:"


def ours(model: Path, a: argparse.Namespace) -> float:
    output = run(
        [
            "mlxtune",
            "ask",
            PROMPT,
            "--model",
            str(model),
            "--max-tokens",
            str(a.max_tokens),
            "--json",
            "--stats",
        ]
    )
    record = json.loads(output.strip().splitlines()[-1])
    return record["stats"]["generation_tps"], record["stats"]["generation_tokens"]


def theirs(model: Path, a: argparse.Namespace) -> float:
    output = run(
        [
            sys.executable,
            "-m",
            "mlx_lm",
            "generate",
            "--model",
            str(model),
            "--prompt",
            PROMPT,
            "--max-tokens",
            str(a.max_tokens),
            "--ignore-chat-template",
            "--verbose",
            "True",
        ]
    )
    match = re.search(r"Generation: (\d+) tokens, ([\d.]+) tokens-per-sec", output)
    if not match:
        raise SystemExit(f"could not read mlx_lm generate's output:\n{output[-1500:]}")
    return float(match.group(2)), int(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="Qwen2.5-0.5B")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workdir", default=None)
    a = parser.parse_args()
    root = Path(a.workdir or tempfile.mkdtemp(prefix="bench-gen-"))
    model = build(root, a.shape)
    results = {"mlx_lm generate": [], "mlxtune ask": []}
    for _ in range(a.rounds):
        results["mlx_lm generate"].append(theirs(model, a))
        results["mlxtune ask"].append(ours(model, a))
    best = {k: max(v) for k, v in results.items()}
    print(f"generation, {a.shape} shape, greedy, up to {a.max_tokens} tokens, best of {a.rounds}")
    print("| tool | generation tokens/s | tokens generated |")
    print("|---|---|---|")
    for tool, (tps, n) in best.items():
        print(f"| {tool} | {tps:.1f} | {n} |")
    ratio = best["mlxtune ask"][0] / best["mlx_lm generate"][0]
    print(f"ratio generation tokens/s (mlxtune ask / mlx_lm generate): {ratio:.2f}x")


if __name__ == "__main__":
    main()
