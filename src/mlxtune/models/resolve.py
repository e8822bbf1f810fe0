"""Turn a model reference (local path, Hugging Face hub id, GGUF file or Ollama model) into a
local directory.

We call huggingface_hub ourselves (rather than letting mlx_lm.load download) so that offline mode
and a missing cache give one clear message instead of a network traceback.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import MlxtuneError

MODEL_PATTERNS = [
    "*.json",
    "*.safetensors",
    "*.py",
    "tokenizer.model",
    "*.tiktoken",
    "tiktoken.model",
    "*.txt",
    "*.jsonl",
    "*.jinja",
]


def looks_like_path(ref: str) -> bool:
    return ref.startswith((".", "/", "~")) or Path(ref).exists()


def resolve_model(ref: str, revision: str | None = None) -> Path:
    """A local directory holding the model's config, weights and tokenizer."""
    if not ref:
        raise MlxtuneError(
            "no model given: set model.id, model.path, model.gguf, model.ollama or model.tiny "
            "in the recipe"
        )
    from ..gguf.importing import import_model, is_import_ref

    if is_import_ref(ref):  # imported once into mlxtune's cache, like a hub download
        return import_model(ref)
    path = Path(ref).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise MlxtuneError(f"{path} is not a model directory (no config.json)")
        return path
    if looks_like_path(ref) or ref.count("/") != 1:
        raise MlxtuneError(f"model not found: '{ref}' is neither a local folder nor a hub id")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        return Path(snapshot_download(ref, revision=revision, allow_patterns=MODEL_PATTERNS))
    except (RepositoryNotFoundError, GatedRepoError) as exc:
        raise MlxtuneError(
            f"model '{ref}' not found on the Hugging Face hub (or gated: log in with "
            f"`hf auth login`): {type(exc).__name__}"
        ) from None
    except RevisionNotFoundError:
        raise MlxtuneError(f"model '{ref}' has no revision '{revision}'") from None
    except LocalEntryNotFoundError:
        raise MlxtuneError(
            f"model '{ref}' is not in the local Hugging Face cache and the hub cannot be reached "
            f"(offline?). Download it once with `hf download {ref}` where you have network, "
            "or set model.path to a local folder"
        ) from None
    except OSError as exc:
        raise MlxtuneError(f"could not fetch model '{ref}': {exc}") from None
