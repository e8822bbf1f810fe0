"""Run every benchmark, print each one's table, then one table of all their ratios.

    python bench/run_all.py            # about 18 minutes on 2 CPU cores with OpenBLAS
    python bench/run_all.py --quick    # smaller shapes and fewer steps, for a smoke test

On Linux, preload OpenBLAS first (see README): MLX's reference BLAS is ~35x slower.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    a = parser.parse_args()
    quick = ["--shape", "small"] if a.quick else []
    suites = [
        ["train_vs_mlx_lm.py", *quick, "--iters", "16", "--seq", "128", "--rounds", "4"],
        ["train_step_ab.py", *quick, "--steps", "100" if a.quick else "16"],
        [
            "train_step_ab.py",
            *quick,
            "--steps",
            "100" if a.quick else "16",
            "--prompt-share",
            "0.4",
        ],
        # the chunked loss at issue 16's shape (14 min on 2 CPU cores)
        ["train_step_ab.py", *quick, "--batch", "4", "--seq", "512", "--steps", "4"],
        ["packing.py", "--iters", "20" if a.quick else "30"],
        ["generation.py", *quick],
        ["extraction.py"],
        ["summarize_batch.py"],
    ]
    ratios: list[tuple[str, str]] = []
    for suite in suites:
        print(f"\n## {' '.join(suite)}\n", flush=True)
        result = subprocess.run(
            [sys.executable, str(HERE / suite[0]), *suite[1:]], stdout=subprocess.PIPE, text=True
        )
        print(result.stdout, end="", flush=True)
        if result.returncode:
            ratios.append((suite[0], f"failed (exit code {result.returncode})"))
        for line in result.stdout.splitlines():
            if line.startswith("ratio "):
                what, value = line[len("ratio ") :].split(": ", 1)
                ratios.append((what, value))
    print("\n## ratios\n")
    print("| measured | ratio |")
    print("|---|---|")
    for what, value in ratios:
        print(f"| {what} | {value} |")


if __name__ == "__main__":
    main()
