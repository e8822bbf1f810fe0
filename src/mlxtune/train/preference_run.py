"""The preference phase (`train.objective: dpo | orpo`) of the mlx trainer, on the shared loop.

The same run as SFT (mlx_trainer.MlxRun: model, adapters, optimizer, schedule, auto-fit, launch)
and the same loop (best/last keeping, patience, checkpoints, resume, trackers); what differs is
the data (pairs, preference_data.py), the loss (preference.py) and, for DPO, the reference
log-probabilities. Those come from the starting model (the frozen `start_adapter`, or the base)
in one pass before the first step, and are cached in the run's data folder under a key of the
model, the adapter and the data, so no second model is ever in memory and a resumed or repeated
run does not compute them again.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..components import TrainResult
from ..errors import MlxtuneError
from ..records import atomic_write_json, sha256_file, sha256_json
from .mlx_run import NOT_IN_CONFIG, MlxRun
from .mlx_steps import MlxSteps, read_arrays
from .preference import (
    dpo_objective,
    orpo_objective,
    pair_batch,
    preference_loss,
    sequence_logps,
)
from .preference_data import TRAIN_FILE, VALID_FILE, PairRow, Preference, pair_rows

REFERENCE_DIR = "preference_reference"


def logps_forms(net: Any, chunked: bool) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """(the form to train with, per-sequence log-prob functions for training and evaluation):
    the chunked form where the head splits off and is frozen, else the masked one."""
    from .chunked_loss import chunk_tokens, head_is_frozen
    from .losses import split_head

    head = split_head(net) if chunked and head_is_frozen(net) else None
    if head is None:
        masked = {"masked": sequence_logps("masked")}
        return "masked", masked, masked
    size = chunk_tokens(int(net.model.embed_tokens.weight.shape[0]))
    forms = ("chunked", "masked")
    train = {f: sequence_logps(f, head, size) for f in forms}
    evaluation = {f: sequence_logps(f, head, size, train=False) for f in forms}
    return "chunked", train, evaluation


def pair_logps(
    net: Any, pairs: list[PairRow], form: str, fns: dict[str, Any], batch: int, width: int
) -> np.ndarray:
    """[N, 2] summed answer log-probabilities (chosen, rejected) of `pairs`, no gradients, in
    evaluation mode (no dropout)."""
    import mlx.core as mx

    training = net.training
    net.eval()
    out = []
    for i in range(0, len(pairs), batch):
        kind, tokens, targets, _ = pair_batch(pairs[i : i + batch], form, width)
        logps, _ = fns[kind](net, tokens, targets)
        mx.eval(logps)
        values = np.array(logps, dtype=np.float64)
        half = len(values) // 2
        out.append(np.stack([values[:half], values[half:]], axis=1))
    net.train(training)
    return np.concatenate(out) if out else np.zeros((0, 2))


class PreferenceSteps(MlxSteps):
    """MlxSteps with the DPO or ORPO loss over pairs; validation: the same loss on the
    validation pairs (what best-keeping and patience read), with the answers' log-prob margin
    and how often the chosen answer wins kept for the summary."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        o = self.options
        self.form, train, self.eval_fns = logps_forms(self.net, o.chunked_loss)
        self.eval_form = self.form
        beta = o.preference_beta
        if o.objective == "dpo":
            self.objective = dpo_objective(beta, o.preference_nll)
        else:
            self.objective = orpo_objective(beta)
        self.micro_steps = {
            kind: self.make_step(preference_loss(fn, self.objective)) for kind, fn in train.items()
        }
        # the answers' margins at the first and the last evaluation, for the summary
        self.first_eval: dict[str, float] = {}
        self.last_eval: dict[str, float] = {}

    def micro_batch(self, rows: list, last: bool) -> float:
        import mlx.core as mx

        from .failures import NonFinite

        width = self.options.max_seq_length
        kind, tokens, targets, reference = pair_batch(self.ranks.shard(rows), self.form, width)
        step = self.micro_steps[kind]
        loss, n, self.grad, finite = step(tokens, (targets, reference), self.grad, last)
        mx.eval(self.compiled_state, loss, n, self.grad, finite)
        if not finite.item():
            raise NonFinite("gradient")
        return loss.item()

    def evaluate(self) -> float:
        import mlx.core as mx

        o, pairs = self.options, self.valid_rows
        if o.val_batches > 0:
            pairs = pairs[: o.val_batches * o.batch_size]
        mine = pairs[self.ranks.rank :: self.ranks.size]
        width = o.max_seq_length
        logps = pair_logps(self.net, mine, self.eval_form, self.eval_fns, o.batch_size, width)
        reference = np.array([p.reference or (0.0, 0.0) for p in mine]).reshape(-1, 2)
        counts = np.array([[sum(p.chosen.weights[1:]), sum(p.rejected.weights[1:])] for p in mine])
        flat = np.concatenate([logps[:, 0], logps[:, 1]])
        per_pair = (
            float(
                self.objective(
                    mx.array(flat, dtype=mx.float32),
                    mx.array(np.concatenate([counts[:, 0], counts[:, 1]]), dtype=mx.float32),
                    mx.array(reference, dtype=mx.float32),
                ).item()
            )
            if len(mine)
            else 0.0
        )
        total = self.ranks.total(mx.array([per_pair * len(mine), len(mine)]))
        margin = logps[:, 0] - logps[:, 1]  # the policy's log-prob margin, chosen - rejected
        reward = margin - (reference[:, 0] - reference[:, 1])  # DPO's implicit reward margin
        sums = self.ranks.total(mx.array([margin.sum(), reward.sum(), float((reward > 0).sum())]))
        n = max(float(total[1].item()), 1.0)
        margins = {
            "val_margin": float(sums[0].item()) / n,
            "val_reward_margin": float(sums[1].item()) / n,
        }
        if not self.first_eval:
            self.first_eval = {f"{k}_start": v for k, v in margins.items()}
        self.last_eval = {**self.first_eval, **margins, "val_wins": float(sums[2].item()) / n}
        return float(total[0].item()) / n

    def summary(self) -> dict[str, Any]:
        return {**super().summary(), "objective": self.options.objective, **self.last_eval}


class PreferenceRun(MlxRun):
    """An MlxRun over preference pairs: the starting adapter loaded, the DPO reference cached."""

    def preference_files(self) -> list[Path]:
        return [self.data_dir / TRAIN_FILE, self.data_dir / VALID_FILE]

    def start_adapter(self) -> Path | None:
        """The `start_adapter` folder's weights file, relative to the run folder if relative."""
        name = self.options.start_adapter
        if name is None:
            return None
        folder = Path(name).expanduser()
        if not folder.is_absolute():
            folder = self.data_dir.parent / folder
        path = folder / "adapters.safetensors" if folder.is_dir() else folder
        if not path.is_file():
            raise MlxtuneError(
                f"train.start_adapter: no adapter at {path}: name the folder of a trained "
                "adapter (its adapters.safetensors)"
            )
        return path

    def config_hash(self) -> str:
        options = self.options.model_dump(mode="json", exclude=NOT_IN_CONFIG)
        options["effective_batch"] = self.options.batch_size * self.options.grad_accumulation_steps
        data = [sha256_file(p) for p in self.preference_files()]
        start = self.start_adapter()
        return sha256_json([options, self.model_ref, data, start and sha256_file(start)])

    def setup_model(self) -> tuple[Any, Any, dict[str, Any]]:
        net, tokenizer, config = super().setup_model()
        start = self.start_adapter()
        if start is not None:
            check_adapter_config(start.parent / "adapter_config.json", config)
            from mlx.utils import tree_flatten

            like = dict(tree_flatten(net.trainable_parameters()))
            try:
                weights = read_arrays(start, like)
            except ValueError as exc:
                raise MlxtuneError(f"train.start_adapter: {exc}") from None
            net.load_weights(list(weights.items()), strict=False)
            self.log(f"  starting from the adapter {start}")
        return net, tokenizer, config

    def reference_key(self) -> str:
        o, start = self.options, self.start_adapter()
        tokens = [o.max_seq_length, o.dtype, o.quantize, o.quantize_group_size, o.fine_tune_type]
        lora = [o.lora_rank, o.lora_scale, o.num_layers, o.lora_keys]
        data = [sha256_file(p) for p in self.preference_files()]
        rows = 2  # 2: "rejected_eos" read
        return sha256_json([rows, self.model_ref, start and sha256_file(start), data, tokens, lora])

    def attach_reference(self, net: Any, train: list[PairRow], valid: list[PairRow]) -> Path:
        """Set each pair's reference log-probabilities: read from the cache, or computed once
        with the starting model (before any step) and cached. Returns the cache file."""
        path = self.data_dir / REFERENCE_DIR / f"{self.reference_key()[:24]}.json"
        cached = read_reference(path, len(train), len(valid), self.log)
        if cached is None:
            o = self.options
            form, _, evaluation = logps_forms(net, o.chunked_loss)
            width, batch = o.max_seq_length, o.batch_size
            cached = {
                name: pair_logps(net, rows, form, evaluation, batch, width).tolist()
                for name, rows in (("train", train), ("valid", valid))
            }
            if self.ranks().rank == 0:
                atomic_write_json(path, {"pairs": [len(train), len(valid)], **cached})
            self.log(f"  reference log-probabilities of {len(train) + len(valid)} pairs: {path}")
        else:
            self.log(f"  reference log-probabilities reused from {path}")
        for rows, values in ((train, cached["train"]), (valid, cached["valid"])):
            for row, (chosen, rejected) in zip(rows, values, strict=True):
                row.reference = (float(chosen), float(rejected))
        return path

    def train(  # type: ignore[override]
        self, train_examples: list[Preference], valid_examples: list[Preference]
    ) -> TrainResult:
        o = self.options
        ranks = self.ranks()
        net, tokenizer, adapter_config = self.setup_model()
        train_rows = pair_rows(tokenizer, train_examples, o.max_seq_length, self.log)
        valid_rows = pair_rows(tokenizer, valid_examples, o.max_seq_length, self.log)
        if not valid_rows:
            raise MlxtuneError(
                f"no validation pair fits max_seq_length={o.max_seq_length}: raise it"
            )
        if o.objective == "dpo":
            self.attach_reference(net, train_rows, valid_rows)
        prompt = sample_prompt(tokenizer, o, valid_examples[0])
        rows = (train_rows, valid_rows)
        return self.run_loop(
            PreferenceSteps, ranks, net, tokenizer, adapter_config, rows, prompt, "pairs"
        )


def sample_prompt(tokenizer: Any, options: Any, first: Preference) -> list[int] | None:
    """The training samples' prompt: the recipe's question, else the first validation pair's."""
    from ..records import Example
    from ..tokens import encode_prompt

    if not options.sample_max_tokens:
        return None
    if options.sample_question is not None:
        return list(tokenizer.encode(options.sample_question))
    if isinstance(first.prompt, list):
        return encode_prompt(tokenizer, Example(messages=first.prompt))
    return encode_prompt(tokenizer, Example(prompt=first.prompt))


def read_reference(
    path: Path, n_train: int, n_valid: int, log: Any
) -> dict[str, list[list[float]]] | None:
    """The cached reference log-probabilities if the file is whole and of this data; a
    damaged one is recomputed (with a warning), never trusted."""
    if not path.is_file():
        return None
    try:
        value = json.loads(path.read_text("utf-8"))
        ok = value["pairs"] == [n_train, n_valid] and all(
            len(value[k]) == n and all(len(v) == 2 and all(map(np.isfinite, v)) for v in value[k])
            for k, n in (("train", n_train), ("valid", n_valid))
        )
    except (OSError, ValueError, KeyError, TypeError):
        ok = False
    if not ok:
        log(f"  warning: {path} is damaged or of other data: computing the reference again")
        return None
    return value


def check_adapter_config(path: Path, config: dict[str, Any]) -> None:
    """The starting adapter must have this run's adapter layout (else its weights mean
    something else even where the shapes agree, e.g. another LoRA scale)."""
    if not path.is_file():
        return
    try:
        theirs = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        raise MlxtuneError(f"train.start_adapter: {path} is not readable JSON") from None
    ours = {"fine_tune_type": config["fine_tune_type"], "num_layers": config["num_layers"]}
    ours.update({k: config["lora_parameters"][k] for k in ("rank", "scale")})
    found = {"fine_tune_type": theirs.get("fine_tune_type"), "num_layers": theirs.get("num_layers")}
    found.update({k: (theirs.get("lora_parameters") or {}).get(k) for k in ("rank", "scale")})
    differ = [k for k in ours if found[k] is not None and found[k] != ours[k]]
    if differ:
        k = differ[0]
        key = {"rank": "lora_rank", "scale": "lora_scale"}.get(k, k)
        raise MlxtuneError(
            f"train.start_adapter: {path} has {k} {found[k]}, this run {ours[k]}: "
            f"set train.{key}: {found[k]}"
        )
