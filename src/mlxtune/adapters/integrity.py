"""Is an adapter the one training wrote, and is a path inside an adapter folder?

A run's manifest.json records the SHA-256 of every file the train stage wrote
(`adapters/adapters.safetensors`, `adapters/adapter_config.json`); `recipe run` trains again
when one differs (the pipeline's up-to-date check). `check_adapter` holds an adapter to the same
record before `ask`, `chat`, `serve`, `fuse` and `export` use it, so a damaged adapter is an
error that says what to do rather than an empty answer.

Training replaces `adapters/` whole (it builds `adapters.partial/` and swaps it in), so nothing
else may be written inside it: `adapter_folder_of` finds the adapter folder a path is in.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import MlxtuneError
from ..records import sha256_file

TRAIN_STAGE = "train"
ADAPTER_FILES = ("adapters.safetensors", "adapter_config.json", "adapter_model.safetensors")
RUN_ADAPTER_FOLDERS = ("adapters", "adapters.partial")


def recorded_hashes(adapter: Path) -> tuple[Path, dict[str, str]] | None:
    """(manifest, {run-relative file: SHA-256}) that the run holding `adapter` recorded for
    it when training wrote it; None for an adapter outside a run (or a run not trained)."""
    manifest = adapter.parent / "manifest.json"
    try:
        stages = json.loads(manifest.read_text()).get("stages", {})
        outputs = stages.get(TRAIN_STAGE, {}).get("outputs") or {}
    except (OSError, ValueError, AttributeError):
        return None  # no run here, or an unreadable manifest (the pipeline re-runs then)
    prefix = adapter.name + "/"
    mine = {rel: digest for rel, digest in outputs.items() if rel.startswith(prefix) and digest}
    return (manifest, mine) if mine else None


def check_adapter(adapter: Path) -> None:
    """Refuse an adapter whose files differ from what training recorded (damaged or replaced)."""
    found = recorded_hashes(adapter)
    if found is None:
        return
    manifest, hashes = found
    for rel, recorded in sorted(hashes.items()):
        path = adapter.parent / rel
        if not path.is_file() or sha256_file(path) != recorded:
            state = "is missing" if not path.is_file() else "is not the file training wrote"
            raise MlxtuneError(
                f"adapter {adapter}: {path.name} {state} (its SHA-256 differs from the one in "
                f"{manifest}): it is damaged or was changed; train it again with `mlxtune recipe "
                "run RECIPE` (the train stage re-runs), or give --adapter another folder"
            )


def adapter_folder_of(path: Path) -> Path | None:
    """The adapter folder `path` is in or is: one holding an adapter's files, or a run's
    `adapters/` (or `adapters.partial/`) beside its manifest.json. None when it is in none."""
    resolved = path.expanduser().resolve()
    for folder in (resolved, *resolved.parents):
        if any((folder / name).is_file() for name in ADAPTER_FILES):
            return folder
        if folder.name in RUN_ADAPTER_FOLDERS and (folder.parent / "manifest.json").is_file():
            return folder
    return None
