"""`mlxtune export`: the tuned model as an MLX folder, a GGUF file, or an Ollama model folder.

The adapter is fused into its base first, de-quantized (GGUF gets its own quantization), in a
temporary folder beside the output; what is written appears only when complete. Files that
exist already are replaced only with `force`, and nothing is written inside an adapter folder
(the next training run replaces a run's `adapters/` whole); both are checked before any work.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .components import Sampling
from .errors import MlxtuneError
from .records import atomic_write_text
from .selection import select

TARGETS = ("gguf", "ollama", "mlx")


def write_modelfile(
    out: Path, folder: Path, gguf_path: Path, formatter: Any, sampling: Sampling
) -> Path:
    """Ollama's Modelfile: the GGUF, the formatter's prompt as TEMPLATE, a stop per
    end-of-sequence token and the recipe's sampling defaults."""
    from transformers import AutoTokenizer

    from .gguf.gguf_export import modelfile, prompt_template

    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    template = prompt_template(formatter, tokenizer)
    config = json.loads((folder / "config.json").read_text())
    eos = config.get("eos_token_id")
    eos_ids = eos if isinstance(eos, list) else [eos] if eos is not None else []
    eos_ids = list(dict.fromkeys([*eos_ids, tokenizer.eos_token_id]))
    stops = [tokenizer.convert_ids_to_tokens(i) for i in eos_ids if i is not None]
    path = out / "Modelfile"
    atomic_write_text(path, modelfile(gguf_path.name, template, stops, sampling))
    return path


def export_model(
    out: Path,
    *,
    to: str = "gguf",
    quant: str = "f16",
    recipe: str | None = None,
    model: str | None = None,
    adapter: str | None = None,
    formatter: str | None = None,
    plugins_dirs: tuple[str, ...] = (),
    force: bool = False,
    log: Callable[[str], None] = print,
) -> list[Path]:
    from .gguf.gguf_export import QUANTS, export_gguf
    from .models.resolve import resolve_model
    from .records import replace_dir

    if to not in TARGETS:
        raise MlxtuneError(f"--to {to}: choose one of {', '.join(TARGETS)}")
    if to != "mlx" and quant not in QUANTS:
        raise MlxtuneError(f"--quant {quant}: not offered; choose one of {', '.join(QUANTS)}")
    chosen = select(
        recipe=recipe,
        model=model,
        adapter=adapter,
        formatter=formatter,
        plugins_dirs=plugins_dirs,
        usage="export needs --recipe, or --model (and --adapter for a tuned one)",
    )
    name = chosen.name
    targets = {"mlx": [out / name], "gguf": [out / f"{name}-{quant}.gguf"]}
    targets["ollama"] = [*targets["gguf"], out / "Modelfile"]
    check_targets(out, targets[to], force, log)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        with tempfile.TemporaryDirectory(dir=out, prefix=".export-") as scratch:
            if chosen.adapter is not None:
                from .adapters.fuse import fuse

                fused = Path(scratch) / "fused"
                folder = fuse(chosen.model, chosen.adapter, fused, dequantize=True)
                log(f"fused {chosen.adapter} into {chosen.model}")
            else:
                folder = resolve_model(chosen.model)
            if to == "mlx":
                target = out / name
                staging = Path(scratch) / "mlx"
                shutil.copytree(folder, staging)
                if target.is_file() or target.is_symlink():
                    target.unlink()
                replace_dir(staging, target)
                return [target]
            gguf_path = export_gguf(folder, out / f"{name}-{quant}.gguf", quant)
            log(f"wrote {gguf_path}")
            if to == "gguf":
                return [gguf_path]
            formatter_component = chosen.registry.build("formatter", chosen.formatter)
            path = write_modelfile(out, folder, gguf_path, formatter_component, chosen.sampling)
            log(f"wrote {path}; load it with: ollama create {name} -f {path}")
            return [gguf_path, path]
    except BaseException:
        if created and out.is_dir() and not any(out.iterdir()):
            out.rmdir()  # a failed export leaves no empty folder behind
        raise


def check_targets(out: Path, targets: list[Path], force: bool, log: Callable[[str], None]) -> None:
    """Refuse, before any work: an output inside an adapter folder (the next training run
    replaces it whole), and files or folders that exist already unless `force`."""
    from .adapters.integrity import adapter_folder_of

    folder = adapter_folder_of(out)
    if folder is not None:
        raise MlxtuneError(
            f"--output {out} is inside the adapter folder {folder}, which the next training run "
            f"replaces whole (the export would be deleted): choose another folder, e.g. "
            f"{folder.parent / 'export'}"
        )
    if out.exists() and not out.is_dir():
        raise MlxtuneError(f"--output {out} is a file: give a folder")
    existing = [t for t in targets if t.exists() or t.is_symlink()]
    if existing and not force:
        names = ", ".join(str(t) for t in existing)
        raise MlxtuneError(
            f"{names} exist{'s' if len(existing) == 1 else ''} already: pass --force to replace "
            f"{'it' if len(existing) == 1 else 'them'}, or choose another --output folder"
        )
    for target in existing:
        log(f"replacing {target} (--force)")
