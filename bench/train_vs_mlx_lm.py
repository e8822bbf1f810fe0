"""Training throughput and peak memory: mlxtune's `mlx` trainer vs `python -m mlx_lm lora`.

    python bench/train_vs_mlx_lm.py                       # Qwen2.5-0.5B shape, random weights
    python bench/train_vs_mlx_lm.py --shape small --iters 40

The identical model, data (plain text, every token in the loss), batch size, sequence length,
LoRA rank/scale, number of layers and optimizer (Adam, constant learning rate); each tool runs in
its own process, alternately and each going first in turn (with mlxtune always second it
measured 0.97x, in turns 1.00x), `--rounds` times. Both report every step's time
(steps_per_report 1); the first `--warmup` steps of each run (compilation) are dropped and the
median step time of all the rest counts, so one slow step does not decide the ratio. Peak memory is
`mx.get_peak_memory()` as each tool reports it at its last step (the lower over the rounds).
Targets: tokens/s ratio >= 1.0, peak-memory ratio <= 1.0.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import yaml
from common import build, dataset, run, shape

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
print("RESULT", json.dumps(rows))
"""


def ours(model: Path, data: Path, out: Path, a: argparse.Namespace) -> tuple[list[float], float]:
    """(per-step steps/s after the warm-up, peak memory in GB)."""
    options = dict(
        iters=a.iters,
        batch_size=a.batch,
        max_seq_length=a.seq,
        lora_rank=a.rank,
        lora_scale=20.0,
        num_layers=a.layers,
        optimizer="adam",
        learning_rate=1e-5,
        warmup_fraction=0.0,
        min_lr_fraction=1.0,  # a constant learning rate, as mlx_lm lora's default
        eval_every=1.0,
        val_batches=1,
        sample_max_tokens=0,
        steps_per_report=1,
        mask_prompt=False,
    )
    output = run([sys.executable, "-c", OURS, json.dumps(options), str(model), str(data), str(out)])
    rows = json.loads(output.split("RESULT", 1)[1])
    rates = [r["steps_per_second"] for r in rows if r["step"] > a.warmup]
    return rates, rows[-1]["peak_memory_gb"]


def theirs(model: Path, data: Path, out: Path, a: argparse.Namespace) -> tuple[list[float], float]:
    config = {
        "model": str(model),
        "train": True,
        "data": str(data),
        "batch_size": a.batch,
        "iters": a.iters,
        "num_layers": a.layers,
        "max_seq_length": a.seq,
        "optimizer": "adam",
        "learning_rate": 1e-5,
        "steps_per_report": 1,
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
        if report_file.is_file()
        else []
    )
    if not reports:
        raise SystemExit(f"could not read mlx_lm lora's reports:\n{output[-2000:]}")
    rates = [r["iterations_per_second"] for r in reports if r["iteration"] > a.warmup]
    return rates, reports[-1]["peak_memory"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="Qwen2.5-0.5B")
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--seq", type=int, default=256)
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--layers", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workdir", default=None)
    a = parser.parse_args()
    a.layers = min(a.layers, shape(a.shape)["num_hidden_layers"])  # mlx_lm lora refuses more
    root = Path(a.workdir or tempfile.mkdtemp(prefix="bench-train-"))
    model = build(root, a.shape)
    data = dataset(root, [a.seq * 2] * 16)  # every example fills max_seq_length
    rates: dict[str, list[float]] = {"mlxtune": [], "mlx_lm lora": []}
    peaks: dict[str, list[float]] = {"mlxtune": [], "mlx_lm lora": []}
    tools = [("mlx_lm lora", theirs), ("mlxtune", ours)]
    for r in range(a.rounds):
        for tool, fn in tools if r % 2 == 0 else tools[::-1]:  # each goes first in turn
            step_rates, peak = fn(model, data, root / f"{tool.split()[0]}{r}", a)
            rates[tool] += step_rates
            peaks[tool].append(peak)
        print(
            f"round {r + 1}: "
            + ", ".join(
                f"{k} median {statistics.median(rates[k]):.3f} it/s, {peaks[k][-1]:.4f} GB"
                for k in rates
            ),
            file=sys.stderr,
        )
    tokens = a.batch * a.seq
    speed = {k: statistics.median(v) * tokens for k, v in rates.items()}
    spread = {k: (min(v) * tokens, max(v) * tokens) for k, v in rates.items()}
    peak = {k: min(v) for k, v in peaks.items()}
    print(
        f"training, {a.shape} shape, batch {a.batch} x {a.seq} tokens, LoRA rank {a.rank} on "
        f"{a.layers} layers, {a.iters} steps x {a.rounds} rounds, median of "
        f"{len(rates['mlxtune'])} timed steps each"
    )
    print("| tool | tokens/s (median) | slowest-fastest step | peak memory (GB) |")
    print("|---|---|---|---|")
    for tool in rates:
        low, high = spread[tool]
        print(f"| {tool} | {speed[tool]:.1f} | {low:.1f}-{high:.1f} | {peak[tool]:.4f} |")
    ratio = speed["mlxtune"] / speed["mlx_lm lora"]
    memory = peak["mlxtune"] / peak["mlx_lm lora"]
    print(f"ratio tokens/s (mlxtune / mlx_lm lora): {ratio:.3f}x (target >= 1.0)")
    print(f"ratio peak memory (mlxtune / mlx_lm lora): {memory:.4f}x (target <= 1.0)")


if __name__ == "__main__":
    main()
