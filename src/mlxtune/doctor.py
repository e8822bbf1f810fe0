"""`mlxtune doctor`: what to know before a long run, each check one line with what to do."""

from __future__ import annotations

import os
import platform
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import __version__

OPENBLAS = "/usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3"


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    advice: str = ""


def matmul_gflops(size: int = 1024, repeat: int = 3) -> float:
    """float32 matmul throughput on MLX's default device."""
    import mlx.core as mx

    a = mx.random.normal((size, size))
    b = mx.random.normal((size, size))
    mx.eval(a @ b)
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        mx.eval(a @ b)
        best = min(best, time.perf_counter() - started)
    return 2 * size**3 / best / 1e9


def device_checks(mx: Any, metal: bool, cuda: bool) -> list[Check]:
    """Memory (and Metal's working set), and on the CPU backend the BLAS speed and dtype."""
    from .models.planner import GB, machine_memory

    checks = []
    memory = machine_memory()
    detail = f"{memory / GB:.1f} GB physical"
    if metal:
        info = mx.metal.device_info()
        working = info.get("max_recommended_working_set_size", 0)
        detail += f" (unified; Metal working set {working / GB:.1f} GB)"
    checks.append(Check("memory", True, detail + "; `mlxtune plan R.yaml` says what fits"))
    if not metal and not cuda:
        gflops = matmul_gflops()
        fast = gflops > 30
        preload = os.environ.get("LD_PRELOAD", "")
        checks.append(
            Check(
                "blas",
                fast,
                f"float32 matmul {gflops:.0f} GFLOP/s on the CPU"
                + (f" (LD_PRELOAD={preload})" if preload else ""),
                ""
                if fast
                else "MLX's Linux CPU wheel ships the reference BLAS (~5 GFLOP/s); with "
                "OpenBLAS it is ~35x faster and gives the same results: apt-get install "
                f"libopenblas0-pthread && export LD_PRELOAD={OPENBLAS}",
            )
        )
        checks.append(
            Check(
                "dtype",
                True,
                "CPU backend: training and generation run in float32 "
                "(bf16/fp16 matmuls have no BLAS path on CPU)",
            )
        )
    return checks


def run_checks(run_dir: str = "runs") -> list[Check]:
    checks = [
        Check(
            "mlxtune",
            True,
            f"{__version__} on Python {platform.python_version()}, "
            f"{platform.system()} {platform.machine()}",
        )
    ]
    try:
        import mlx.core as mx

        device = mx.default_device()
        metal = mx.metal.is_available() if hasattr(mx, "metal") else False
        cuda = bool(getattr(getattr(mx, "cuda", None), "is_available", lambda: False)())
        kind = "Metal GPU" if metal else "CUDA GPU" if cuda else "CPU"
        checks.append(Check("mlx", True, f"{mx.__version__}, default device {device} ({kind})"))
    except Exception as exc:  # a broken MLX install is exactly what doctor is for
        checks.append(
            Check(
                "mlx",
                False,
                f"cannot import mlx: {exc}",
                "pip install 'mlx[cpu]' (Linux) or 'mlx' (macOS)",
            )
        )
        return checks
    checks += device_checks(mx, metal, cuda)
    checks.append(hub_check())
    checks.append(plugins_check())
    checks.append(disk_check(run_dir))
    return checks


def hub_check() -> Check:
    from huggingface_hub import constants

    cache = constants.HF_HUB_CACHE
    if constants.HF_HUB_OFFLINE:
        return Check(
            "hub", True, f"offline mode (HF_HUB_OFFLINE): models only from the cache {cache}"
        )
    import urllib.request

    try:
        urllib.request.urlopen(constants.ENDPOINT, timeout=3).close()
        return Check("hub", True, f"{constants.ENDPOINT} reachable; cache {cache}")
    except Exception as exc:
        return Check(
            "hub",
            False,
            f"{constants.ENDPOINT} unreachable ({type(exc).__name__}); cache {cache}",
            "download models where there is network (`hf download ID`), set "
            "model.path to a local folder, or export HF_HUB_OFFLINE=1",
        )


def plugins_check() -> Check:
    from .plugins import get_registry

    try:
        registry = get_registry()
    except Exception as exc:
        return Check("plugins", False, str(exc), "uninstall or fix the plugin named above")
    kinds = {}
    for kind, name, entry in registry.entries():
        tag = name if "built-in" in entry.source else f"{name} [{entry.source}]"
        kinds.setdefault(kind, []).append(tag)
    detail = "; ".join(f"{kind}s: {', '.join(names)}" for kind, names in kinds.items())
    return Check("plugins", True, detail)


def disk_check(run_dir: str) -> Check:
    path = Path(run_dir).resolve()
    probe = path if path.exists() else Path.cwd()
    free = shutil.disk_usage(probe).free / 1e9
    ok = free > 10
    return Check(
        "disk",
        ok,
        f"{free:.0f} GB free at {probe}",
        "" if ok else "a 7B model and its caches need tens of GB: free some space",
    )


def main_report(checks: list[Check]) -> str:
    lines = []
    for check in checks:
        mark = "ok " if check.ok else "!! "
        lines.append(f"{mark}{check.name:<8} {check.detail}")
        if check.advice:
            lines.append(f"    -> {check.advice}")
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    print(main_report(run_checks()))
    sys.exit(0)
