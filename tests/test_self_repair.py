"""Self-repair data (issue 30): the SFT adapter's own flagged answers as preference pairs (the
repair stage), and the chain SFT run -> repair -> DPO through `recipe run`, fingerprinted on the
SFT adapter's contents. Real PDFs, the tiny MLX model, real generation and training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import write_recipe

from mlxtune.cli import cli
from mlxtune.plugins import get_registry
from mlxtune.records import read_jsonl
from mlxtune.train.preference_data import read_preferences
from mlxtune.train.self_repair import METRICS, Limits, flags

QUESTION = "How can contrastive learning segment images without labels?"
APPROACH = "Train a pixel encoder with a contrastive loss between augmented views of one image."


def scores(answer: str, finish: str) -> dict:
    from mlxtune.components import AnswerContext

    ctx = AnswerContext(QUESTION, answer, APPROACH, finish)
    found: dict = {}
    for name in METRICS:
        found.update(get_registry().build("metric", {"use": name}).score(ctx))
    return found


@pytest.mark.parametrize(
    "answer, finish, limits, expected",
    [
        (APPROACH, "stop", Limits(), []),
        (" ".join(["the encoder learns the pixels"] * 6), "length", Limits(), ["loops", "repeats"]),
        (" ".join(["the encoder learns the pixels"] * 4), "stop", Limits(), ["repeats"]),
        (QUESTION, "stop", Limits(), ["echo"]),
        ("*** ### ---\n* * *\n*** Approach ***", "stop", Limits(), ["decoration"]),
        ("We use a large language model.", "stop", Limits(min_rouge=0.3), ["low_rouge"]),
        ("We use a large language model.", "stop", Limits(), []),
    ],
)
def test_an_answer_is_flagged_by_the_compare_reports_metrics(answer, finish, limits, expected):
    assert flags(scores(answer, finish), limits) == expected


# ---------------------------------------------------------------- through `recipe run`

RECIPE = """\
name: {name}
papers: papers
run_dir: {name}
model:
  tiny: {{hidden_size: 64, num_layers: 2, vocab_size: 600}}
split: {{per_category: {{valid: 1, test: 0}}}}
train: {{use: mlx, iters: {iters}, batch_size: 2, learning_rate: {lr}, lora_rank: 8,
        lora_scale: 2.0, num_layers: -1, eval_every: 0.5, sample_max_tokens: 0{extra}}}
{more}"""
DPO = ", objective: dpo, start_adapter: ../sft/adapters"
REPAIR = "repair: {max_tokens: 12, max_repeat: 3}\n"


def run(recipe: Path) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["recipe", "run", str(recipe), "--until", "train"])
    return result.exit_code, " ".join(result.output.split())


def sft_recipe(tmp_path: Path, lr: str = "3.0e-3") -> Path:
    text = RECIPE.format(name="sft", iters=4, lr=lr, extra="", more="")
    return write_recipe(tmp_path / "sft.yaml", text)


@pytest.mark.slow
def test_repair_pairs_the_sft_models_flagged_answers_and_redoes_them_for_a_new_adapter(
    tmp_path, papers_dir
):
    assert run(sft_recipe(tmp_path))[0] == 0
    text = RECIPE.format(name="fix", iters=2, lr="1.0e-3", extra=DPO, more=REPAIR)
    fix = write_recipe(tmp_path / "fix.yaml", text)
    code, out = run(fix)
    assert code == 0, out
    root = tmp_path / "fix"
    flagged = list(read_jsonl(root / "repair_flagged.jsonl"))
    # the tiny model's 4-step adapter babbles: its answers run to max_tokens; every flag
    # is the compare report's verdict on the answer recorded with it
    assert flagged and all("loops" in f["reasons"] for f in flagged), flagged
    for f in flagged:
        assert f["reasons"] == flags(f["metrics"], Limits(max_repeat=3))
        assert (f["finish_reason"] == "length") == ("loops" in f["reasons"])
    n_train = sum(f["split"] == "train" for f in flagged)
    assert f"{len(flagged)} of 6 answers flagged: {len(flagged)} loops" in out, out
    # the pairs are what the trainer reads: the formatter's prompt and answer, the model's reply
    examples = {r["prompt"]: r["text"] for r in read_jsonl(root / "data" / "train.jsonl")}
    train = read_preferences(root / "data" / "preference_train.jsonl")
    assert len(train) == n_train and f"{n_train} train and" in out
    for pair, f in zip(train, [f for f in flagged if f["split"] == "train"], strict=True):
        assert examples[pair.prompt] == pair.prompt + pair.chosen
        assert pair.rejected == f["answer"] and pair.rejected != pair.chosen
        assert not pair.rejected_eos  # a cut-off answer is scored without end-of-sequence
    assert read_preferences(root / "data" / "preference_valid.jsonl")
    assert json.loads((root / "adapters" / "train_summary.json").read_text())["objective"] == "dpo"

    # up to date: nothing redone
    code, out = run(fix)
    assert code == 0 and "✓ repair" not in out and "✓ train" not in out, out
    # the SFT run trained again (another learning rate): its new answers are repaired, and the
    # preference phase starts again from the new adapter
    before = (root / "data" / "preference_train.jsonl").read_bytes()
    assert run(sft_recipe(tmp_path, lr="5.0e-3"))[0] == 0
    code, out = run(fix)
    assert code == 0 and "✓ repair" in out and "✓ train" in out, out
    assert (root / "data" / "preference_train.jsonl").read_bytes() != before


@pytest.mark.slow
def test_preference_training_redoes_when_its_start_adapter_changes(tmp_path, papers_dir):
    """Users' own pairs (no repair:), the same pairs: a retrained SFT adapter still retrains."""
    from test_preference import write_data

    assert run(sft_recipe(tmp_path))[0] == 0
    text = RECIPE.format(name="dpo", iters=2, lr="1.0e-3", extra=DPO, more="")
    dpo = write_recipe(tmp_path / "dpo.yaml", text)
    write_data(tmp_path / "dpo", n_train=2, n_valid=1)
    assert run(dpo)[0] == 0
    code, out = run(dpo)
    assert code == 0 and "✓ train" not in out, out
    assert run(sft_recipe(tmp_path, lr="5.0e-3"))[0] == 0
    code, out = run(dpo)
    assert code == 0 and "✓ train" in out, out


def test_repair_needs_a_preference_objective_and_an_sft_adapter(tmp_path, papers_dir):
    text = RECIPE.format(name="fix", iters=2, lr="1.0e-3", extra="", more=REPAIR)
    code, out = run(write_recipe(tmp_path / "fix.yaml", text))
    assert code != 0 and "repair: needs train.objective: dpo or orpo" in out, out
    assert not (tmp_path / "fix" / "data" / "preference_train.jsonl").exists()
    text = RECIPE.format(name="fix", iters=2, lr="1.0e-3", extra=DPO, more=REPAIR)
    code, out = run(write_recipe(tmp_path / "fix.yaml", text))
    assert code != 0 and "no adapter at" in out and "run the SFT recipe first" in out, out


def test_repair_samples_adds_sampled_answers_and_pairs_each_distinct_flagged_one(
    tmp_path, papers_dir
):
    """`repair.samples: 2`: each question is answered greedily and twice sampled (fixed seeds:
    the same answers again under --force); every distinct flagged answer is a pair."""
    assert run(sft_recipe(tmp_path))[0] == 0
    more = "repair: {max_tokens: 12, max_repeat: 3, samples: 2, temperature: 1.5, seed: 7}\n"
    text = RECIPE.format(name="fix", iters=2, lr="1.0e-3", extra=DPO, more=more)
    fix = write_recipe(tmp_path / "fix.yaml", text)
    code, out = run_until(fix, "repair")
    assert code == 0, out
    root = tmp_path / "fix"
    flagged = list(read_jsonl(root / "repair_flagged.jsonl"))
    assert f"{len(flagged)} of 18 answers flagged" in out, out  # 6 questions x (1 + 2)
    assert {f["sample"] for f in flagged} == {0, 1, 2}, flagged
    for f in flagged:
        assert f["reasons"] == flags(f["metrics"], Limits(max_repeat=3))
    # the sampled answers are not the greedy one again, and each distinct one is a pair
    train = [f for f in flagged if f["split"] == "train" and f["paired"]]
    distinct = {(f["question"], f["answer"]) for f in train}
    assert len(distinct) > len({f["question"] for f in train}), train
    pairs = read_preferences(root / "data" / "preference_train.jsonl")
    assert len(pairs) == len(distinct) and f"{len(distinct)} train and" in out, out
    assert {p.rejected for p in pairs} == {answer for _, answer in distinct}
    before = (root / "data" / "preference_train.jsonl").read_bytes()
    code, out = run_until(fix, "repair", "--force", "repair")
    assert code == 0 and "✓ repair" in out, out
    assert (root / "data" / "preference_train.jsonl").read_bytes() == before


def run_until(recipe: Path, stage: str, *more: str) -> tuple[int, str]:
    args = ["recipe", "run", str(recipe), "--until", stage, *more]
    result = CliRunner().invoke(cli, args)
    return result.exit_code, " ".join(result.output.split())
