"""Preference training (train.objective: dpo | orpo, issue 30) on the shared loop (the losses
against torch: test_preference_losses.py): real MLX runs on the tiny model (the loss falls, the
chosen answer's margin grows, DPO's reference computed once and reused, resume), the data's
errors, the planner and the torch plugin's refusal."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import TOPICS
from pdfgen import paper_text

from mlxtune.errors import MlxtuneError
from mlxtune.records import read_jsonl

TOPIC_LIST = [t for ts in TOPICS.values() for t in ts]


def preference(i: int) -> dict[str, str]:
    """The paper's approach as chosen, a loop of one word (the failure to unlearn) as rejected."""
    topic = TOPIC_LIST[i % len(TOPIC_LIST)]
    method = " ".join(paper_text(topic, i)["2 Method"].split()[:16])
    return {
        "prompt": f"Question: How can we improve {topic} ({i})?\nAnswer:",
        "chosen": " " + method,
        "rejected": " " + " ".join([topic.split()[0]] * 10),
    }


def write_data(root: Path, n_train: int = 6, n_valid: int = 3) -> Path:
    data = root / "data"
    data.mkdir(parents=True, exist_ok=True)
    for name, span in (
        ("preference_train.jsonl", range(n_train)),
        ("preference_valid.jsonl", range(n_train, n_train + n_valid)),
    ):
        (data / name).write_text("".join(json.dumps(preference(i)) + "\n" for i in span))
    return data


OPTIONS: dict[str, Any] = dict(
    iters=6,
    batch_size=2,
    learning_rate=5e-3,
    lora_rank=4,
    lora_scale=2.0,
    num_layers=-1,
    eval_every=1 / 3,
    steps_per_report=2,
    sample_max_tokens=0,
)


def train(model: Path, data: Path, out: Path, lines: list[str] | None = None, **options: Any):
    from mlxtune.train.mlx_trainer import MlxTrainer

    log = lines.append if lines is not None else (lambda _: None)
    trainer = MlxTrainer(MlxTrainer.Options(**{**OPTIONS, **options}))
    return trainer.train(str(model), data, out, log=log)


def evals(out: Path) -> list[tuple[int, float]]:
    return [
        (m["step"], m["val_loss"]) for m in read_jsonl(out / "metrics.jsonl") if "val_loss" in m
    ]


# ---------------------------------------------------------------- data errors


@pytest.mark.parametrize(
    "line, words",
    [
        ("{not json", "not a JSON line"),
        ('["a", "b"]', "a JSON list, not an object"),
        ('{"prompt": "q", "chosen": "a"}', "no 'rejected'"),
        ('{"prompt": "q", "chosen": "a", "rejected": "a"}', "the same answer"),
        ('{"prompt": 3, "chosen": "a", "rejected": "b"}', "'prompt' must be a string"),
        ('{"prompt": "q", "chosen": "", "rejected": "b"}', "'chosen' must be a non-empty"),
        ('{"prompt": "q", "chosen": "a", "rejected": "b", "score": 1}', "unknown key 'score'"),
        ('{"prompt": "q", "chosen": "a", "rejected": "b", "rejected_eos": 0}', "true or false"),
    ],
)
def test_a_malformed_line_is_one_error_naming_file_and_line(tmp_path, tiny_model, line, words):
    data = write_data(tmp_path)
    path = data / "preference_train.jsonl"
    lines = path.read_text().splitlines()
    lines.insert(2, line)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(MlxtuneError) as error:
        train(tiny_model, data, tmp_path / "out", objective="orpo")
    message = str(error.value)
    assert message.startswith(f"{path}:3: ") and words in message and "\n" not in message
    assert not (tmp_path / "out").exists()  # checked before any model is loaded


def test_missing_validation_pairs_and_options_that_do_not_apply(tmp_path):
    from pydantic import ValidationError

    from mlxtune.train.mlx_trainer import MlxTrainer

    data = write_data(tmp_path)
    (data / "preference_valid.jsonl").unlink()
    with pytest.raises(MlxtuneError, match="no validation pairs in .*preference_valid.jsonl"):
        train(Path("unused"), data, tmp_path / "out", objective="dpo")
    with pytest.raises(ValidationError, match="unlikelihood applies to objective sft only"):
        MlxTrainer.Options(objective="dpo", unlikelihood=0.5)
    with pytest.raises(ValidationError, match="packing does not apply"):
        MlxTrainer.Options(objective="orpo", packing=True)
    with pytest.raises(ValidationError, match="preference_nll applies to objective dpo only"):
        MlxTrainer.Options(objective="orpo", preference_nll=1.0)
    with pytest.raises(ValidationError, match="start_adapter applies to objective dpo or orpo"):
        MlxTrainer.Options(start_adapter="runs/x/adapters")


def test_rejected_eos_false_scores_the_rejected_answer_without_its_end_of_sequence(tiny_model):
    """What the self-repair lines ask for: the rejected answer's log-probability is its tokens'
    only, so pushing it down never pushes down stopping; the chosen side keeps its EOS."""
    import mlx.core as mx
    from mlx_lm import load

    from mlxtune.train.preference_data import Preference, pair_rows
    from mlxtune.train.preference_run import logps_forms, pair_logps

    net, tokenizer = load(str(tiny_model))
    line, eos = preference(0), tokenizer.eos_token_id
    scored, unscored = (
        Preference(line["prompt"], line["chosen"], line["rejected"], rejected_eos=flag)
        for flag in (True, False)
    )
    rows = pair_rows(tokenizer, [scored, unscored], 256, print)
    with_eos, without = rows[0].rejected, rows[1].rejected
    assert with_eos.tokens[-1] == eos and with_eos.tokens[:-1] == without.tokens
    assert with_eos.weights[:-1] == without.weights and with_eos.weights[-1]
    assert rows[0].chosen.tokens == rows[1].chosen.tokens and rows[1].chosen.tokens[-1] == eos
    # chat: the answer as the model generated it, without the end of turn the template adds
    messages = [{"role": "user", "content": line["prompt"]}]
    chat = [Preference(messages, line["chosen"], line["rejected"], flag) for flag in (True, False)]
    turn, cut = (r.rejected.tokens for r in pair_rows(tokenizer, chat, 256, print))
    assert turn[: len(cut)] == cut and "<|im_end|>" in tokenizer.decode(turn[len(cut) :])
    for chunked in (False, True):
        form, _, evaluation = logps_forms(net, chunked)
        logps = pair_logps(net, rows, form, evaluation, 2, 256)
        logits = net(mx.array([with_eos.tokens[:-1]]))[0, -1].astype(mx.float32)
        eos_logp = float((logits - mx.logsumexp(logits))[eos])
        assert logps[1, 0] == pytest.approx(logps[0, 0], abs=1e-4)
        assert logps[1, 1] == pytest.approx(logps[0, 1] - eos_logp, abs=1e-3)
        assert eos_logp < -1e-3  # the difference is real, not a rounding


# ---------------------------------------------------------------- real runs on the tiny model


@pytest.fixture(scope="module")
def dpo_run(tiny_model, tmp_path_factory) -> tuple[Path, Path, list[str], Any]:
    """The data and an unbroken DPO run on it (evaluations at steps 0, 2, 4, 6)."""
    root = tmp_path_factory.mktemp("dpo")
    data = write_data(root)
    lines: list[str] = []
    result = train(tiny_model, data, root / "unbroken", lines, objective="dpo")
    return data, root / "unbroken", lines, result


def test_dpo_loss_falls_reference_is_computed_once_and_reused(tmp_path, tiny_model, dpo_run):
    data, unbroken, lines, result = dpo_run
    cached = list((data / "preference_reference").glob("*.json"))
    assert len(cached) == 1
    assert [line for line in lines if "reference log-probabilities of 9 pairs" in line]
    found = evals(unbroken)
    # before the first step the policy is the reference: every pair's loss is -log sigmoid(0)
    assert found[0] == (0, pytest.approx(np.log(2), abs=1e-5))
    assert found[-1][1] < found[0][1] - 0.05
    assert result.extra["val_reward_margin"] > result.extra["val_reward_margin_start"] + 1.0
    assert result.extra["val_reward_margin_start"] == pytest.approx(0.0, abs=1e-4)

    # a second run on the same model and data reads the cache: no reference pass
    from mlxtune.train import preference_run

    before = cached[0].stat().st_mtime_ns
    again: list[str] = []
    real, calls = preference_run.pair_logps, []

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(len(args[1]))
        return real(*args, **kwargs)

    preference_run.pair_logps = counting
    try:
        train(tiny_model, data, tmp_path / "second", again, objective="dpo", iters=2, eval_every=1)
    finally:
        preference_run.pair_logps = real
    assert any("reference log-probabilities reused" in line for line in again), again
    assert cached[0].stat().st_mtime_ns == before
    assert calls == [3, 3]  # only the two evaluations of the 3 validation pairs
    assert (
        json.loads((tmp_path / "second" / "adapter_config.json").read_text())["objective"] == "dpo"
    )


def test_dpo_interrupted_then_resumed_ends_with_the_same_metrics(
    tmp_path, tiny_model, dpo_run, monkeypatch
):
    from mlxtune.train.preference_run import PreferenceSteps

    data, unbroken, _, expected_result = dpo_run
    out = tmp_path / "out"
    real, calls = PreferenceSteps.evaluate, []

    def evaluate(self: Any) -> float:
        calls.append(1)
        if len(calls) == 3:  # during the evaluation at step 4
            raise KeyboardInterrupt
        return real(self)

    with monkeypatch.context() as patch:
        patch.setattr(PreferenceSteps, "evaluate", evaluate)
        with pytest.raises(MlxtuneError, match="interrupted at step 4"):
            train(tiny_model, data, out, objective="dpo")
    lines: list[str] = []
    resumed = train(tiny_model, data, out, lines, objective="dpo")
    assert any("resuming from the checkpoint at step 4 of 6" in line for line in lines), lines
    assert resumed.extra["resumed_at"] == 4
    expected = list(read_jsonl(unbroken / "metrics.jsonl"))
    got = list(read_jsonl(out / "metrics.jsonl"))
    assert [m["step"] for m in got] == [m["step"] for m in expected]
    for a, b in zip(expected, got, strict=True):
        for key in ("train_loss", "val_loss", "learning_rate"):
            assert b.get(key) == (pytest.approx(a[key], rel=1e-5) if key in a else None), key
    assert resumed.best_val_loss == pytest.approx(expected_result.best_val_loss, rel=1e-5)


def test_orpo_loss_falls_and_the_chosen_margin_grows(tmp_path, tiny_model):
    data = write_data(tmp_path)
    result = train(tiny_model, data, tmp_path / "out", objective="orpo", iters=8, eval_every=0.5)
    found = evals(tmp_path / "out")
    assert [s for s, _ in found] == [0, 4, 8]
    assert found[-1][1] < found[0][1] - 0.3
    assert result.extra["val_margin"] > result.extra["val_margin_start"] + 1.0
    assert not (data / "preference_reference").exists()  # ORPO needs no reference
    summary = json.loads((tmp_path / "out" / "train_summary.json").read_text())
    assert summary["objective"] == "orpo" and summary["val_wins"] > 0.5


def test_start_adapter_is_the_starting_point_and_must_fit(tmp_path, tiny_model, dpo_run):
    data, unbroken, _, _ = dpo_run
    local = write_data(tmp_path)
    lines: list[str] = []
    # DPO from the trained adapter: its reference is that adapter, so step 0's loss is ln 2
    train(
        tiny_model,
        local,
        tmp_path / "dpo2",
        lines,
        objective="dpo",
        iters=2,
        eval_every=1,
        start_adapter=str(unbroken),
    )
    assert evals(tmp_path / "dpo2")[0][1] == pytest.approx(np.log(2), abs=1e-5)
    assert any(f"starting from the adapter {unbroken}" in line for line in lines)
    with pytest.raises(MlxtuneError, match="has rank 4, this run 8: set train.lora_rank: 4"):
        train(
            tiny_model,
            local,
            tmp_path / "bad",
            objective="orpo",
            lora_rank=8,
            start_adapter=str(unbroken),
        )
    with pytest.raises(MlxtuneError, match="train.start_adapter: no adapter at"):
        train(tiny_model, local, tmp_path / "bad", objective="orpo", start_adapter="nowhere")


# ---------------------------------------------------------------- the planner and the torch plugin


def test_planner_counts_both_answers_of_a_pair():
    from mlxtune.device import DeviceProfile
    from mlxtune.train.mlx_trainer import MlxTrainer
    from mlxtune.train.planner import ModelShape, estimate_training, setting_from_options

    config = {
        "hidden_size": 896,
        "intermediate_size": 4864,
        "num_hidden_layers": 24,
        "num_attention_heads": 14,
        "num_key_value_heads": 2,
        "vocab_size": 151936,
    }
    shape = ModelShape.from_config(config)
    device = DeviceProfile("cpu", "test", 64e9, 48e9, "float32")
    sft = setting_from_options(MlxTrainer.Options(batch_size=4), config, device)
    dpo = setting_from_options(MlxTrainer.Options(batch_size=4, objective="dpo"), config, device)
    assert (sft.rows_per_process, dpo.rows_per_process) == (4, 8)
    a, b = estimate_training(shape, sft).parts, estimate_training(shape, dpo).parts
    assert b["activations"] == pytest.approx(2 * a["activations"])


def test_torch_trainer_refuses_preference_objectives_clearly():
    pytest.importorskip("mlxtune_torch")
    from mlxtune_torch.trainer import TorchTrainer
    from pydantic import ValidationError

    from mlxtune.plugins import pydantic_problem

    assert TorchTrainer.Options().objective == "sft"
    with pytest.raises(ValidationError) as error:
        TorchTrainer.Options(objective="orpo")
    problems = [pydantic_problem(e, "train") for e in error.value.errors()]
    assert problems == [
        "train.objective: value error, the torch trainer trains objective sft only; orpo runs "
        "on the mlx trainer (train.use: mlx) (got 'orpo')"
    ]


# ---------------------------------------------------------------- through `recipe run`

RECIPE = """\
name: {name}
papers: papers
run_dir: {name}
model:
  tiny: {{hidden_size: 64, num_layers: 2, vocab_size: 600}}
split: {{per_category: {{valid: 1, test: 0}}}}
train: {{use: mlx, iters: 4, batch_size: 2, learning_rate: 3.0e-3, lora_rank: 8,
        lora_scale: 2.0, num_layers: -1, eval_every: 0.5, sample_max_tokens: 0{extra}}}
ask: {{max_tokens: 8}}
"""


@pytest.mark.slow
def test_recipe_runs_sft_then_dpo_from_its_adapter_and_retrains_on_new_pairs(tmp_path, papers_dir):
    from click.testing import CliRunner
    from conftest import write_recipe

    from mlxtune.cli import cli

    def run(recipe: Path) -> tuple[int, str]:
        result = CliRunner().invoke(cli, ["recipe", "run", str(recipe), "--until", "train"])
        return result.exit_code, " ".join(result.output.split())

    sft = write_recipe(tmp_path / "sft.yaml", RECIPE.format(name="sft", extra=""))
    assert run(sft)[0] == 0
    extra = ", objective: dpo, start_adapter: ../sft/adapters"
    dpo = write_recipe(tmp_path / "dpo.yaml", RECIPE.format(name="dpo", extra=extra))
    write_data(tmp_path / "dpo")
    code, out = run(dpo)
    assert code == 0, out
    found = evals(tmp_path / "dpo" / "adapters")
    assert found[0][1] == pytest.approx(np.log(2), abs=1e-5)  # the SFT adapter is the reference
    summary = json.loads((tmp_path / "dpo" / "adapters" / "train_summary.json").read_text())
    assert summary["objective"] == "dpo"
    code, out = run(dpo)
    assert code == 0 and "✓ train" not in out, out  # up to date
    pairs = tmp_path / "dpo" / "data" / "preference_train.jsonl"
    pairs.write_text(pairs.read_text() + json.dumps(preference(20)) + "\n")
    code, out = run(dpo)
    assert code == 0 and "✓ train" in out, out  # new pairs: trained again
