"""Check the memory planner against measured peak memory of real training steps.

    python bench/planner_check.py                 # tiny, Qwen2.5-0.5B and 1.5B shapes; T=128, 512
    python bench/planner_check.py --shapes Qwen2.5-0.5B --seq 256 1024
    python bench/planner_check.py --dtype float32 # (default auto: the device's compute dtype)

On a Mac this measures Metal in bfloat16, which the planner's table in docs/memory.md was not
checked against: paste the output (its first line names the device) into an issue.

For each shape a random-weight model with the real config's dimensions (and a small local
tokenizer) is built, the `mlx` trainer runs a few steps on examples of exactly T tokens, and the
planner's estimate is compared with `mx.get_peak_memory()` over those steps (as recorded in
train_summary.json). Prints a table and the largest relative error; target: within 20%.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import mlx.core as mx

from mlxtune.device import current_device
from mlxtune.models.tiny import build_tiny_model
from mlxtune.records import write_jsonl
from mlxtune.train.mlx_trainer import MlxTrainer
from mlxtune.train.planner import GB, ModelShape, Setting, estimate_training

CONFIGS = Path(__file__).resolve().parents[1] / "src" / "mlxtune" / "train" / "configs"
TINY = {
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "intermediate_size": 128,
    "vocab_size": 1024,
    "tie_word_embeddings": True,
}
TEXT = (
    "We train a convolutional network with a contrastive loss and evaluate it on two "
    "benchmarks, where it improves accuracy over strong baselines. "
)


def shape_config(name: str) -> dict:
    return TINY if name == "tiny" else json.loads((CONFIGS / f"{name}.json").read_text())


def data(root: Path, examples: int) -> Path:
    rows = [{"text": f"{i}: " + TEXT * 200} for i in range(examples)]  # truncated to T tokens
    write_jsonl(root / "data" / "train.jsonl", rows)
    write_jsonl(root / "data" / "valid.jsonl", rows[:2])
    return root / "data"


def measure(
    model: Path,
    root: Path,
    seq: int,
    batch: int,
    layers: int,
    steps: int,
    dtype: str,
    chunked: bool = True,
) -> float:
    options = MlxTrainer.Options(
        chunked_loss=chunked,
        iters=steps,
        batch_size=batch,
        max_seq_length=seq,
        num_layers=layers,
        lora_rank=8,
        eval_every=1.0,
        sample_max_tokens=0,
        steps_per_report=steps,
        learning_rate=1e-5,
        dtype=dtype,
    )
    out = root / f"adapters-{seq}"
    MlxTrainer(options).train(str(model), root / "data", out, log=lambda _: None)
    return json.loads((out / "train_summary.json").read_text())["peak_memory_gb"] * GB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="+", default=["tiny", "Qwen2.5-0.5B", "Qwen2.5-1.5B"])
    parser.add_argument("--seq", nargs="+", type=int, default=[128, 512])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--layers", type=int, default=16)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--dtype", choices=["auto", "float32", "bfloat16"], default="auto")
    parser.add_argument("--no-chunked", action="store_true", help="train.chunked_loss=false")
    args = parser.parse_args()
    device = current_device()
    dtype = device.compute_dtype if args.dtype == "auto" else args.dtype
    print(f"device: {device.describe()}; measuring {dtype}; mlx {mx.__version__}")
    rows = []
    for name in args.shapes:
        root = Path(tempfile.mkdtemp(prefix="planner-"))
        config = shape_config(name)
        started = time.perf_counter()
        model = build_tiny_model(root / "model", texts=[TEXT], vocab_size=1024, shape_config=config)
        print(f"{name}: built in {time.perf_counter() - started:.0f}s", file=sys.stderr)
        data(root, max(4, args.batch * 2))
        shape = ModelShape.from_config(json.loads((model / "config.json").read_text()), name)
        for seq in args.seq:
            chunked = not args.no_chunked
            measured = measure(
                model, root, seq, args.batch, args.layers, args.steps, dtype, chunked
            )
            setting = Setting(
                chunked_loss=chunked,
                batch_size=args.batch,
                seq_len=seq,
                num_layers=args.layers,
                lora_rank=8,
                dtype_bytes=4 if dtype == "float32" else 2,
            )
            estimate = estimate_training(shape, setting)
            rows.append((name, seq, estimate, measured))
            print(
                f"{name} T={seq}: estimate {estimate.total / GB:.3f} GB, measured "
                f"{measured / GB:.3f} GB",
                file=sys.stderr,
            )
    print("| model shape | batch x T | estimate (GB) | measured peak (GB) | error |")
    print("|---|---|---|---|---|")
    worst = 0.0
    for name, seq, estimate, measured in rows:
        error = estimate.total / measured - 1
        worst = max(worst, abs(error))
        print(
            f"| {name} | {args.batch} x {seq} | {estimate.total / GB:.3f} "
            f"({estimate.describe().split('(')[1].rstrip(')')}) | {measured / GB:.3f} | "
            f"{error:+.1%} |"
        )
    print(f"\nlargest error: {worst:.1%} (target: within 20%)")


if __name__ == "__main__":
    main()
