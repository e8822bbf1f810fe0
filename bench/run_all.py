"""Run every benchmark and print their tables and ratios.

    python bench/run_all.py            # several minutes on a laptop; longer on 2 CPU cores
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
        ["train_vs_mlx_lm.py", *quick, "--iters", "10", "--seq", "128"],
        ["packing.py", "--iters", "20" if a.quick else "30"],
        ["generation.py", *quick],
        ["extraction.py"],
        ["summarize_batch.py"],
    ]
    for suite in suites:
        print(f"\n## {suite[0]}\n", flush=True)
        code = subprocess.call([sys.executable, str(HERE / suite[0]), *suite[1:]])
        if code:
            print(f"({suite[0]} failed with exit code {code})")


if __name__ == "__main__":
    main()
