"""`mlxtune push`: a trained adapter to the Hugging Face Hub, with a card the Hub can read.

The folder it uploads (written alone by `--dry-run`): the adapter in mlx-lm's format at the top
(`mlx_lm.generate --adapter-path` on a snapshot), the same adapter in PEFT's format under
`peft/`, README.md (the model card with Hub metadata: base model, datasets, tags, license) and
the latest comparison report that holds the recipe under `report/`. The card is parsed by
huggingface_hub's own `ModelCard` before anything is uploaded, and checked by the Hub
(`ModelCard.validate`) before a real upload.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from ..errors import MlxtuneError
from ..recipe import Recipe
from ..records import replace_dir

REPORT_FILES = ("report.md", "report.html", "report.json", "loss_curves.png")


def latest_report(recipe: Recipe) -> Path | None:
    """The newest report folder under `compare/` beside the run that compared this recipe."""
    found = []
    for path in (recipe.run_path.parent / "compare").glob("**/report.json"):
        try:
            names = [m["name"] for m in json.loads(path.read_text())["models"]]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if recipe.name in names:
            found.append((path.stat().st_mtime, path.parent))
    return max(found)[1] if found else None


def card_text(
    recipe: Recipe, adapter: Path, base_model: str | None, datasets: list[str], license: str
) -> str:
    """README.md: Hub metadata, then the MODEL_CARD.md `compare` wrote (or a short stand-in)."""
    from huggingface_hub import ModelCard, ModelCardData

    tags = ["mlxtune", "mlx", "lora", "peft", f"formatter-{recipe.format.use}"]
    data = ModelCardData(
        base_model=base_model,
        datasets=datasets or None,
        library_name="mlx",
        license=license,
        tags=tags,
        pipeline_tag="text-generation",
    )
    written = adapter / "MODEL_CARD.md"
    body = (
        written.read_text()
        if written.is_file()
        else f"# {recipe.name}\n\n{recipe.description}\n\n"
        "No evaluation yet: `mlxtune compare` writes the scores into this card.\n"
    )
    usage = (
        "\n## Use\n\n- mlx-lm: `mlx_lm.generate --model BASE --adapter-path .` in a snapshot of "
        "this repository\n- PEFT: `PeftModel.from_pretrained(base, REPO, subfolder='peft')`\n"
    )
    text = f"---\n{data.to_yaml()}\n---\n\n{body.rstrip()}\n{usage}"
    card = ModelCard(text)  # huggingface_hub's own parser: malformed metadata raises here
    if card.data.to_dict().get("license") != license or "mlxtune" not in (card.data.tags or []):
        raise MlxtuneError("the model card's metadata did not survive huggingface_hub's parser")
    return text


def build_folder(
    recipe: Recipe,
    target: Path,
    *,
    base_model: str | None,
    datasets: list[str],
    license: str,
    report: Path | None,
) -> Path:
    """The folder to upload, written whole or not at all (built beside `target`, then moved)."""
    from ..adapters.convert import mlx_to_peft

    adapter = recipe.run_path / "adapters"
    if not (adapter / "adapters.safetensors").is_file():
        raise MlxtuneError(
            f"no adapter in {adapter}: train it first (mlxtune recipe run RECIPE), "
            "a recipe with train: {use: none} has nothing to push"
        )
    base_model = base_model or recipe.model.id
    text = card_text(recipe, adapter, base_model, datasets, license)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".push-", dir=target.parent))
    try:
        for name in ("adapters.safetensors", "adapter_config.json"):
            shutil.copy2(adapter / name, staging / name)
        mlx_to_peft(adapter, staging / "peft", base_model)
        (staging / "README.md").write_text(text, encoding="utf-8")
        if report is not None:
            (staging / "report").mkdir()
            for name in REPORT_FILES:
                if (report / name).is_file():
                    shutil.copy2(report / name, staging / "report" / name)
        replace_dir(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def upload(folder: Path, repo: str, *, private: bool) -> str:
    """Create the repository (kept if it exists), check the card with the Hub, upload."""
    from huggingface_hub import HfApi, ModelCard
    from huggingface_hub.errors import HfHubHTTPError

    api = HfApi(endpoint=os.environ.get("HF_ENDPOINT") or None)
    try:
        ModelCard((folder / "README.md").read_text()).validate("model")
        api.create_repo(repo, private=private, exist_ok=True, repo_type="model")
        commit = api.upload_folder(
            folder_path=folder, repo_id=repo, repo_type="model",
            commit_message="mlxtune push: adapter (mlx-lm, PEFT), model card, report",
        )  # fmt: skip
    except HfHubHTTPError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise MlxtuneError(
            f"push to {repo}: {first} (log in with `hf auth login` or set HF_TOKEN)"
        ) from None
    except ValueError as exc:  # the Hub refused the card's metadata
        raise MlxtuneError(f"push to {repo}: the Hub refused the model card: {exc}") from None
    return str(commit.commit_url)
