"""Training throughput and peak memory: mlxtune's `mlx` trainer vs `python -m mlx_lm lora`.

    python bench/train_vs_mlx_lm.py                       # Qwen2.5-0.5B shape, random weights
    python bench/train_vs_mlx_lm.py --shape small --iters 40

The identical model, data (plain text, every token in the loss), batch size, sequence length,
LoRA rank/scale and number of layers; each tool runs in its own process, alternately, `--rounds`
times, and the best round of each counts. Throughput is steps/s over the last report window
(compilation and the first evaluation excluded) times the same tokens per step; peak memory is
`mx.get_peak_memory()` as each tool reports it. Targets: tokens/s ratio >= 1.0, memory <= 1.0.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import yaml
from common import build, dataset, run

# `python -m mlx_lm lora -c CONFIG` as its main() and run() do, plus a callback that records the
# numbers its progress table does not show (steps/s, peak memory)
THEIRS = r"""
import json, sys, types, yaml
from mlx_lm import lora
from mlx_lm.tuner.callbacks import TrainingCallback
class Report(TrainingCallback):  # a file: mlx-lm's live progress display captures stdout
    def on_train_loss_report(self, info):
        with open(sys.argv[2], "a") as fh:
            fh.write(json.dumps({k: float(v) for k, v in info.items()}) + "\n")
args = vars(lora.build_parser().parse_args(["-c", sys.argv[1]]))
for k, v in yaml.safe_load(open(sys.argv[1])).items():
    if args.get(k) is None:
        args[k] = v
for k, v in lora.CONFIG_DEFAULTS.items():
    if args.get(k) is None:
        args[k] = v
args = types.SimpleNamespace(**args)
# what lora.run does (it replaces a callback passed to it with its own reporters)
import numpy as np
np.random.seed(args.seed)
model, tokenizer = lora.load(args.model)
train_set, valid_set, _ = lora.load_dataset(args, tokenizer)
lora.train_model(args, model, train_set, valid_set, Report())
"""

OURS = """
import json, sys
from pathlib import Path
from mlxtune.train.mlx_trainer import MlxTrainer
o = MlxTrainer.Options(**json.loads(sys.argv[1]))
MlxTrainer(o).train(sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4]), log=lambda _: None)
rows = [json.loads(l) for l in open(Path(sys.argv[4]) / "metrics.jsonl") if "train_loss" in l]
print("RESULT", json.dumps(rows[-1]))
"""


def ours(model: Path, data: Path, out: Path, a: argparse.Namespace) -> tuple[float, float]:
    options = dict(
        iters=a.iters,
        batch_size=a.batch,
        max_seq_length=a.seq,
        lora_rank=a.rank,
        lora_scale=20.0,
        num_layers=a.layers,
        learning_rate=1e-5,
        eval_every=1.0,
        val_batches=1,
        sample_max_tokens=0,
        steps_per_report=a.iters // 2,
        mask_prompt=False,
        warmup_fraction=0.0,
    )
    output = run([sys.executable, "-c", OURS, json.dumps(options), str(model), str(data), str(out)])
    last = json.loads(output.split("RESULT", 1)[1])
    return last["steps_per_second"], last["peak_memory_gb"]


def theirs(model: Path, data: Path, out: Path, a: argparse.Namespace) -> tuple[float, float]:
    config = {
        "model": str(model),
        "train": True,
        "data": str(data),
        "batch_size": a.batch,
        "iters": a.iters,
        "num_layers": a.layers,
        "max_seq_length": a.seq,
        "learning_rate": 1e-5,
        "steps_per_report": a.iters // 2,
        "steps_per_eval": 10 * a.iters,
        "val_batches": 1,
        "save_every": 10 * a.iters,
        "adapter_path": str(out),
        "fine_tune_type": "lora",
        "lora_parameters": {"rank": a.rank, "scale": 20.0, "dropout": 0.0},
    }
    path = out.with_suffix(".yaml")
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config))
    report_file = out / "reports.jsonl"
    report_file.unlink(missing_ok=True)
    output = run([sys.executable, "-c", THEIRS, str(path), str(report_file)])
    reports = (
        [json.loads(line) for line in report_file.read_text().splitlines()]
        if (report_file.is_file())
        else []
    )
    if not reports:
        raise SystemExit(f"could not read mlx_lm lora's reports:\n{output[-2000:]}")
    return reports[-1]["iterations_per_second"], reports[-1]["peak_memory"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="Qwen2.5-0.5B")
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--seq", type=int, default=256)
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--layers", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workdir", default=None)
    a = parser.parse_args()
    root = Path(a.workdir or tempfile.mkdtemp(prefix="bench-train-"))
    model = build(root, a.shape)
    data = dataset(root, [a.seq * 2] * 16)  # every example fills max_seq_length
    results = {"mlxtune": [], "mlx_lm lora": []}
    for r in range(a.rounds):
        results["mlx_lm lora"].append(theirs(model, data, root / f"theirs{r}", a))
        results["mlxtune"].append(ours(model, data, root / f"ours{r}", a))
        print(
            f"round {r + 1}: "
            + ", ".join(f"{k} {v[-1][0]:.3f} it/s {v[-1][1]:.2f} GB" for k, v in results.items()),
            file=sys.stderr,
        )
    tokens = a.batch * a.seq
    best = {k: (max(i for i, _ in v), min(p for _, p in v)) for k, v in results.items()}
    print(
        f"training, {a.shape} shape, batch {a.batch} x {a.seq} tokens, LoRA rank {a.rank} on "
        f"{a.layers} layers, {a.iters} steps, best of {a.rounds}"
    )
    print("| tool | tokens/s | peak memory (GB) |")
    print("|---|---|---|")
    for tool, (its, peak) in best.items():
        print(f"| {tool} | {its * tokens:.0f} | {peak:.3f} |")
    speed = best["mlxtune"][0] / best["mlx_lm lora"][0]
    memory = best["mlxtune"][1] / best["mlx_lm lora"][1]
    print(f"ratio tokens/s (mlxtune / mlx_lm lora): {speed:.2f}x (target >= 1.0)")
    print(f"ratio peak memory (mlxtune / mlx_lm lora): {memory:.2f}x (target <= 1.0)")


if __name__ == "__main__":
    main()
