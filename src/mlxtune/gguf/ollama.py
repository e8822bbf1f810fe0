"""Find a model in the local Ollama store: the GGUF blob behind a name like `qwen2.5:0.5b`.

Ollama keeps `manifests/<host>/<namespace>/<model>/<tag>` (an OCI-style JSON manifest) and
content-addressed `blobs/sha256-<hex>`; the layer whose media type ends in `.model` is a plain
GGUF file, and the `.params` layer holds the sampling defaults the model was published with.
Reading the store needs no Ollama process and no network.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import MlxtuneError

DEFAULT_HOST = "registry.ollama.ai"
DEFAULT_NAMESPACE = "library"
MODEL_MEDIA = "application/vnd.ollama.image.model"
PARAMS_MEDIA = "application/vnd.ollama.image.params"
ADAPTER_MEDIA = "application/vnd.ollama.image.adapter"
DIGEST = re.compile(r"sha256[:-][0-9a-f]{64}")
# Ollama's parameter names -> generation_config.json's
PARAMETER_NAMES = {
    "temperature": "temperature",
    "top_p": "top_p",
    "top_k": "top_k",
    "min_p": "min_p",
    "repeat_penalty": "repetition_penalty",
}


@dataclass
class OllamaModel:
    name: str
    gguf: Path
    digest: str
    parameters: dict[str, Any] = field(default_factory=dict)


def ollama_home() -> Path:
    """The store Ollama uses: $OLLAMA_MODELS, else ~/.ollama/models."""
    return Path(os.environ.get("OLLAMA_MODELS") or "~/.ollama/models").expanduser()


def manifest_path(name: str, home: Path) -> Path:
    """`[host/][namespace/]model[:tag]` -> its manifest file (tag defaults to latest)."""
    base, _, tag = name.partition(":")
    parts = [p for p in base.split("/") if p]
    if not parts or any(p in (".", "..") for p in parts) or "/" in tag:
        raise MlxtuneError(f"'{name}' is not an Ollama model name (e.g. qwen2.5:0.5b)")
    if len(parts) == 1:
        parts = [DEFAULT_HOST, DEFAULT_NAMESPACE, *parts]
    elif len(parts) == 2:
        parts = [DEFAULT_HOST, *parts]
    return home.joinpath("manifests", *parts, tag or "latest")


def list_models(home: Path) -> list[str]:
    """Every name:tag in the store, short names for the default registry and namespace."""
    root = home / "manifests"
    names = []
    for path in sorted(root.rglob("*")):
        if not path.is_file():
            continue
        parts = path.relative_to(root).parts
        if len(parts) < 3:
            continue
        *model, tag = parts
        if model[:2] == [DEFAULT_HOST, DEFAULT_NAMESPACE]:
            model = model[2:]
        elif model[0] == DEFAULT_HOST:
            model = model[1:]
        names.append(f"{'/'.join(model)}:{tag}")
    return names


def blob_path(home: Path, digest: str, manifest: Path | None = None) -> Path:
    """Ollama writes `sha256-<hex>` (older versions `sha256:<hex>`). A manifest is data from
    elsewhere: a digest that is anything but `sha256` and 64 hex digits (`../../etc/passwd`, an
    absolute path) is refused, so a blob is always a file directly inside `blobs/`."""
    if not isinstance(digest, str) or not DIGEST.fullmatch(digest):
        raise MlxtuneError(
            f"Ollama manifest {manifest or home}: layer digest {str(digest)[:80]!r} is not "
            "'sha256:' and 64 hex digits; the manifest is damaged: `ollama pull` the model again"
        )
    blobs = home / "blobs"
    for candidate in (digest.replace(":", "-", 1), digest):
        path = blobs / candidate
        if path.parent == blobs and path.is_file():
            return path
    raise MlxtuneError(
        f"the Ollama store {home} names blob {digest} but it is missing: `ollama pull` the model "
        "again"
    )


def find_model(
    name: str, home: Path | None = None, warn: Callable[[str], None] = lambda _: None
) -> OllamaModel:
    home = home or ollama_home()
    if not home.is_dir():
        raise MlxtuneError(
            f"Ollama store not found: {home} (set OLLAMA_MODELS to the folder Ollama keeps its "
            "models in, or use a .gguf file)"
        )
    path = manifest_path(name, home)
    if not path.is_file():
        available = ", ".join(list_models(home)) or "none"
        raise MlxtuneError(
            f"Ollama model '{name}' is not in {home}; available: {available} "
            f"(`ollama pull {name}` first)"
        )
    try:
        manifest = json.loads(path.read_text())
        layers = {layer["mediaType"]: layer["digest"] for layer in manifest["layers"]}
    except (ValueError, KeyError, TypeError) as exc:
        raise MlxtuneError(f"unreadable Ollama manifest {path}: {exc}") from None
    if MODEL_MEDIA not in layers:
        raise MlxtuneError(f"Ollama model '{name}' has no model layer in {path}")
    if ADAPTER_MEDIA in layers:
        raise MlxtuneError(
            f"Ollama model '{name}' is a base model plus an adapter layer; import its base "
            "model instead"
        )
    digest = layers[MODEL_MEDIA]
    gguf = blob_path(home, digest, path)
    parameters: dict[str, Any] = {}
    if PARAMS_MEDIA in layers:
        params = blob_path(home, layers[PARAMS_MEDIA], path)
        try:
            raw = json.loads(params.read_text())
        except (ValueError, UnicodeDecodeError):
            raw = None
        if not isinstance(raw, dict):
            warn(f"Ollama model '{name}': its params blob {params} is not a JSON object; ignored")
            raw = {}
        parameters, dropped = sampling_parameters(raw)
        if dropped:
            warn(
                f"Ollama model '{name}': params not carried into generation_config.json: "
                + "; ".join(dropped)
            )
    return OllamaModel(name, gguf, digest, parameters)


def sampling_parameters(raw: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The params blob's sampling defaults under generation_config.json's names, each checked
    against the bounds of the sampling options (`mlxtune.sampling`, the one definition), plus a
    note for each one dropped. Dropped rather than refused: the weights are fine, and a bad
    default must not become the model's sampling (top_p "not a number", a negative penalty)."""
    from pydantic import ValidationError

    from ..sampling import SamplingOptions

    kept: dict[str, Any] = {}
    dropped = []
    for key, value in raw.items():
        target = PARAMETER_NAMES.get(key)
        shown = key if key.isidentifier() else repr(key)[:40]
        if target is None:
            dropped.append(f"{shown} (no equivalent)")
            continue
        problem = None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            problem = "not a number"
        elif not math.isfinite(value):
            problem = "not finite"
        elif target == "top_k":
            if value != int(value) or value < 0:
                problem = "must be a whole number >= 0"
        else:
            try:
                SamplingOptions.model_validate({target: value}, strict=True)
            except ValidationError as exc:
                problem = exc.errors()[0]["msg"].lower()
        if problem:
            dropped.append(f"{shown}={str(value)[:40]!r} ({problem})")
        else:
            kept[target] = int(value) if target == "top_k" else value
    return kept, dropped
