"""`mlxtune export`: the tuned model as an MLX folder, a GGUF file, or an Ollama model folder.

The adapter is fused into its base first, de-quantized (GGUF gets its own quantization), in a
temporary folder beside the output; what is written appears only when complete.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..components import Sampling
from ..errors import MlxtuneError
from ..records import atomic_write_text

TARGETS = ("gguf", "ollama", "mlx")


def write_modelfile(
    out: Path, folder: Path, gguf_path: Path, formatter: Any, sampling: Sampling
) -> Path:
    """Ollama's Modelfile: the GGUF, the formatter's prompt as TEMPLATE, a stop per
    end-of-sequence token and the recipe's sampling defaults."""
    from transformers import AutoTokenizer

    from .gguf_export import modelfile, prompt_template

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
    log: Callable[[str], None] = print,
) -> list[Path]:
    from ..asking import sampling_from, trained_adapter
    from ..plugins import get_registry
    from .gguf_export import QUANTS, export_gguf
    from .resolve import resolve_model

    if to not in TARGETS:
        raise MlxtuneError(f"--to {to}: choose one of {', '.join(TARGETS)}")
    if to != "mlx" and quant not in QUANTS:
        raise MlxtuneError(f"--quant {quant}: not offered; choose one of {', '.join(QUANTS)}")
    sampling, format_spec, name = Sampling(), {"use": formatter or "approach"}, "model"
    if recipe is not None:
        from ..recipe import load_recipe

        loaded, registry = load_recipe(recipe, (), plugins_dirs, check_paths=False)
        model, name = model or loaded.model_ref, loaded.name
        adapter = adapter or trained_adapter(loaded, recipe)
        format_spec = loaded.component("format") if formatter is None else format_spec
        sampling = sampling_from(loaded.ask)
    else:
        registry = get_registry(plugins_dirs)
    if not model:
        raise MlxtuneError("export needs --recipe, or --model (and --adapter for a tuned one)")
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out, prefix=".export-") as scratch:
        if adapter:
            from ..adapters.fuse import fuse

            folder = fuse(model, Path(adapter), Path(scratch) / "fused", dequantize=True)
            log(f"fused {adapter} into {model}")
        else:
            folder = resolve_model(model)
        if to == "mlx":
            target = out / name
            if target.exists():
                raise MlxtuneError(f"{target} exists: choose another output folder")
            shutil.copytree(folder, target)
            return [target]
        gguf_path = export_gguf(folder, out / f"{name}-{quant}.gguf", quant)
        log(f"wrote {gguf_path}")
        if to == "gguf":
            return [gguf_path]
        formatter_component = registry.build("formatter", format_spec)
        path = write_modelfile(out, folder, gguf_path, formatter_component, sampling)
        log(f"wrote {path}; load it with: ollama create {name} -f {path}")
        return [gguf_path, path]
