"""End to end on real PDFs and a real (tiny) MLX model: every stage, skipping, bad inputs."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner
from conftest import write_recipe
from pdfgen import paper_text, write_encrypted, write_image_only, write_paper, write_truncated

from mlxtune.cli import cli
from mlxtune.records import read_jsonl
from mlxtune.stages import STAGE_NAMES

pytestmark = pytest.mark.slow

RECIPE = """\
name: e2e
papers: papers
run_dir: run
model:
  tiny: {{hidden_size: 64, num_layers: 2, vocab_size: 600}}
split: {{per_category: {{valid: 1, test: 0}}}}
train: {{use: mlx, iters: {iters}, batch_size: 2, learning_rate: 3.0e-3, lora_rank: 8,
        lora_scale: 2.0, num_layers: -1, eval_every: 0.25}}
ask: {{max_tokens: 20}}
"""


@pytest.fixture
def corpus(papers_dir):
    good = write_paper(papers_dir / "scratch.pdf", "A Perfectly Fine Paper", paper_text("x"))
    write_encrypted(papers_dir / "vision" / "locked.pdf", good, user_password="secret")
    write_image_only(papers_dir / "vision" / "scanned.pdf")
    write_truncated(papers_dir / "language" / "cut.pdf", good)
    good.unlink()
    return papers_dir


def run(*args):
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output


def test_whole_pipeline_then_everything_skipped(tmp_path, corpus):
    recipe = write_recipe(tmp_path / "r.yaml", RECIPE.format(iters=24))
    code, out = run("recipe", "run", str(recipe))
    assert code == 0, out
    root = tmp_path / "run"

    docs = list(read_jsonl(root / "documents.jsonl"))
    reasons = {d["path"].rsplit("/", 1)[-1]: d["reason"] for d in docs if d["status"] != "ok"}
    assert set(reasons) == {"locked.pdf", "scanned.pdf", "cut.pdf"}
    assert "encrypted" in reasons["locked.pdf"] and "no text layer" in reasons["scanned.pdf"]
    assert "truncated" in reasons["cut.pdf"]
    assert (
        "9 files: 6 extracted in 2 categories; 2 skipped (1 encrypted, 1 image-only); "
        "1 failed (1 truncated)" in " ".join(out.split())
    )

    pairs = list(read_jsonl(root / "pairs.jsonl"))
    assert len(pairs) == 6 and {p["split"] for p in pairs} == {"train", "valid"}
    train = list(read_jsonl(root / "data" / "train.jsonl"))
    assert len(train) == 4 and all(r["text"].startswith(r["prompt"]) for r in train)
    assert len(list(read_jsonl(root / "data" / "valid.jsonl"))) == 2

    adapters = root / "adapters"
    config = json.loads((adapters / "adapter_config.json").read_text())
    assert config["fine_tune_type"] == "lora" and config["lora_parameters"]["rank"] == 8
    metrics = list(read_jsonl(adapters / "metrics.jsonl"))
    evals = [m for m in metrics if "val_loss" in m]
    best = json.loads((adapters / "train_summary.json").read_text())
    assert best["best_step"] == min(evals, key=lambda m: m["val_loss"])["step"]
    assert [m["step"] for m in evals] == [0, 6, 12, 18, 24]
    train_losses = [m["train_loss"] for m in metrics if "train_loss" in m]
    assert train_losses[-1] < train_losses[0]

    answers = list(read_jsonl(root / "answers.jsonl"))
    assert [a["kind"] for a in answers] == ["recall", "heldout"]
    manifest = json.loads((root / "manifest.json").read_text())
    assert set(manifest["stages"]) == {
        "extract",
        "split",
        "summarize",
        "curate",
        "format",
        "model",
        "train",
        "ask",
    }
    assert manifest["versions"]["mlx"] and manifest["recipe"]["name"] == "e2e"

    code, out = run("recipe", "run", str(recipe))
    assert code == 0, out
    used = len(STAGE_NAMES) - 1  # repair: not in a recipe without a repair: section
    assert out.count("up to date, skipped") == used

    # a changed recipe section redoes that stage and what depends on it, nothing before
    code, out = run("recipe", "run", str(recipe), "ask.max_tokens=5")
    assert code == 0
    assert out.count("up to date, skipped") == used - 1 and "✓ ask" in out

    # mlx-lm itself accepts the model and the adapter
    gen = subprocess.run(
        [
            sys.executable,
            "-m",
            "mlx_lm",
            "generate",
            "--model",
            str(root / "model"),
            "--adapter-path",
            str(adapters),
            "--prompt",
            "Research question: why?",
            "--max-tokens",
            "5",
        ],
        capture_output=True,
        text=True,
    )
    assert gen.returncode == 0, gen.stderr

    code, out = run(
        "ask",
        "Why do nets forget?",
        "--recipe",
        str(recipe),
        "--json",
        "--stats",
        "--max-tokens",
        "7",
    )
    assert code == 0, out
    answer = json.loads(out.strip().splitlines()[-1])
    assert answer["question"] == "Why do nets forget?"
    # the reason agrees with what was generated: 7 tokens is the limit, fewer an end-of-sequence
    generated = answer["stats"]["generation_tokens"]
    assert answer["finish_reason"] == ("length" if generated == 7 else "stop"), answer


def test_training_problems_are_one_clear_message(tmp_path, papers_dir):
    recipe = write_recipe(tmp_path / "r.yaml", RECIPE.format(iters=2))
    code, out = run("recipe", "run", str(recipe), "train.batch_size=16")
    assert code != 0
    assert "only 4 training examples but train.batch_size is 16" in out
    assert "Traceback" not in out
    assert not (tmp_path / "run" / "adapters").exists()

    code, out = run("recipe", "run", str(recipe), "split.per_category.valid=0")
    assert code != 0 and "validation split is empty" in out

    code, out = run("ask", "q", "--recipe", str(recipe.with_name("none.yaml")))
    assert code != 0


def test_only_needs_upstream_outputs(tmp_path, papers_dir):
    recipe = write_recipe(tmp_path / "r.yaml", RECIPE.format(iters=2))
    code, out = run("recipe", "run", str(recipe), "--only", "format")
    assert code != 0 and "run the earlier stages first" in out
    code, out = run("recipe", "run", str(recipe), "--until", "format")
    assert code == 0, out
    assert (tmp_path / "run" / "data" / "train.jsonl").is_file()
    assert not (tmp_path / "run" / "adapters").exists()


def test_an_improved_extractor_redoes_the_extraction_of_an_existing_run(
    tmp_path, papers_dir, monkeypatch
):
    """A run made before an extractor's cleaning improved is not up to date with it (its
    documents would keep the old text while the extraction cache already has the new)."""
    from mlxtune.extract.pypdf_extractor import PypdfExtractor

    recipe = write_recipe(tmp_path / "r.yaml", RECIPE.format(iters=2))
    assert run("recipe", "run", str(recipe), "--until", "split")[0] == 0
    code, out = run("recipe", "run", str(recipe), "--until", "split")
    assert code == 0 and out.count("up to date, skipped") == 2, out
    monkeypatch.setattr(PypdfExtractor, "version", PypdfExtractor.version + "-next")
    code, out = run("recipe", "run", str(recipe), "--until", "split")
    assert code == 0 and "✓ extract" in out and "0 from cache" not in out, out


def test_missing_hub_model_offline_is_a_clear_error(tmp_path, papers_dir, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    recipe = write_recipe(
        tmp_path / "r.yaml",
        RECIPE.format(iters=2).replace(
            "  tiny: {hidden_size: 64, num_layers: 2, vocab_size: 600}",
            "  id: mlx-community/Qwen2.5-0.5B-Instruct-4bit",
        ),
    )
    code, out = run("recipe", "run", str(recipe))
    assert code != 0
    assert "not in the local Hugging Face cache" in out and "Traceback" not in out
    assert not (tmp_path / "run" / "documents.jsonl").exists()  # checked before any work


def test_a_multi_process_launch_only_trains_with_a_trainer_that_can(
    tmp_path, papers_dir, monkeypatch
):
    recipe = write_recipe(tmp_path / "r.yaml", RECIPE.format(iters=2))
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    code, out = run("recipe", "run", str(recipe))
    assert code != 0 and "a launch of 2 processes only trains" in out, out
    assert not (tmp_path / "run" / "documents.jsonl").exists()  # nothing done twice over

    with monkeypatch.context() as one_process:
        one_process.delenv("WORLD_SIZE")
        one_process.delenv("RANK")
        code, out = run("recipe", "run", str(recipe), "--until", "model")
        assert code == 0, out
    code, out = run("recipe", "run", str(recipe))
    expected = "the 'mlx' trainer cannot be one of the 2 processes of an accelerate/torchrun launch"
    assert code != 0 and expected in " ".join(out.split()), out
    assert not (tmp_path / "run" / "adapters").exists()


def test_stage_names_and_sections_are_declared_once():
    """The CLI's choices, the recipe's sections and the driver all read mlxtune.stages.STAGES."""
    from mlxtune.cli import cli
    from mlxtune.pipeline import select_stages
    from mlxtune.recipe import Recipe
    from mlxtune.stages import STAGE_NAMES, STAGES

    run_command = cli.commands["recipe"].commands["run"]
    choices = {
        p.name: tuple(p.type.choices)
        for p in run_command.params
        if p.name in ("only", "until", "force")
    }
    assert choices == {"only": STAGE_NAMES, "until": STAGE_NAMES, "force": STAGE_NAMES}
    assert all(stage.section in Recipe.model_fields for stage in STAGES)
    assert select_stages() == list(STAGE_NAMES) and select_stages(until="format")[-1] == "format"
    assert len(set(STAGE_NAMES)) == len(STAGE_NAMES) == 9
