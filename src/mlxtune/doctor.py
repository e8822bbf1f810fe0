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

from .version import __version__

OPENBLAS = "/usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3"
# float32 matmul GFLOP/s that is not the reference BLAS (2-5); OpenBLAS gives ~186 on two idle
# x86 cores and still 25+ on a busy machine
BLAS_FAST_GFLOPS = 15


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


def device_checks(profile: Any) -> list[Check]:
    """The device MLX trains on, its memory budget and compute dtype; on the CPU backend the
    BLAS speed."""
    from .device import GB, host_memory

    where = "GPU memory" if profile.kind == "cuda" else "unified memory"
    if profile.kind == "cpu":
        where = "RAM"
    detail = (
        f"{profile.name} ({profile.kind}): {profile.memory / GB:.1f} GB {where}, "
        f"{profile.budget / GB:.1f} GB usable for training"
    )
    if profile.kind == "metal":
        detail += " (Metal's recommended working set: beyond it macOS swaps)"
    if profile.kind == "cuda":
        detail += f"; host RAM {host_memory() / GB:.1f} GB"
    checks = [Check("device", True, detail + "; `mlxtune plan R.yaml` says what fits")]
    why = (
        "bf16/fp16 matmuls have no BLAS path on MLX's CPU backend"
        if profile.kind == "cpu"
        else "half the memory of float32; losses are computed in float32"
    )
    checks.append(Check("dtype", True, f"dtype: auto trains in {profile.compute_dtype} ({why})"))
    if profile.kind == "cpu":
        gflops = matmul_gflops()
        fast = gflops > BLAS_FAST_GFLOPS
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
    return checks


def mac_check() -> Check | None:
    """On macOS: its version and whether Python runs natively on Apple Silicon (MLX has no
    wheels for Intel Macs, and a Python under Rosetta sees an x86_64 machine)."""
    if platform.system() != "Darwin":
        return None
    version = platform.mac_ver()[0] or "unknown"
    if platform.machine() == "arm64":
        return Check("macos", True, f"macOS {version}, native arm64 Python")
    translated = os.popen("sysctl -n sysctl.proc_translated 2>/dev/null").read().strip() == "1"
    return Check(
        "macos",
        False,
        f"macOS {version}, Python for {platform.machine()}"
        + (" under Rosetta" if translated else ""),
        "MLX needs an arm64 Python on Apple Silicon: install one (python.org, Homebrew or uv "
        "on an arm64 shell) and recreate the virtual environment",
    )


def run_checks(run_dir: str = "runs") -> list[Check]:
    checks = [
        Check(
            "mlxtune",
            True,
            f"{__version__} on Python {platform.python_version()}, "
            f"{platform.system()} {platform.machine()}",
        )
    ]
    mac = mac_check()
    if mac is not None:
        checks.append(mac)
    try:
        import mlx.core as mx

        from .device import current_device

        profile = current_device()
        detail = f"{mx.__version__}, default device {mx.default_device()} ({profile.kind})"
        checks.append(Check("mlx", True, detail))
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
    checks += device_checks(profile)
    checks.append(hub_check())
    checks.append(plugins_check())
    checks.append(recipes_check())
    checks.append(disk_check(run_dir))
    return checks


def recipes_check() -> Check:
    """The shipped recipes and sample papers (an installed wheel carries them; a broken install
    or a checkout without them cannot run `mlxtune recipe run quickstart`)."""
    from .shipped import shipped_recipes, shipped_root

    root, names = shipped_root(), list(shipped_recipes())
    papers = sorted((root / "examples" / "papers").rglob("*.pdf")) if root else []
    if not names or not papers:
        return Check(
            "recipes",
            False,
            "the shipped recipes or sample papers are missing",
            "reinstall mlxtune (pip install --force-reinstall mlxtune), or run from a clone",
        )
    return Check(
        "recipes",
        True,
        f"{len(names)} shipped ({', '.join(names[:4])}, ...; `mlxtune recipe list`) and "
        f"{len(papers)} sample papers in {root}; start with `mlxtune recipe run quickstart`",
    )


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
