"""The device a run trains on, as MLX reports it: its memory, the share training may use, and
the compute dtype. The planner, auto-fit, training, loading and `doctor` all read it from here;
it imports nothing of mlxtune, so every floor may.

Not the operating system's name: on a Mac the budget is Metal's recommended working set (about
two thirds of unified memory on 16 GB machines, three quarters and more on larger ones; beyond
it macOS swaps), on CUDA the GPU's own memory (not the host's RAM), and on MLX's CPU backend the
physical RAM less a tenth for the system. `mx.device_info()` (MLX >= 0.30; `mx.metal.device_info`
before) gives the numbers; `profile_from_info` turns a recorded dictionary into a profile, so
tests simulate a 16 GB Mac or an 80 GB GPU on any machine.
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

GB = 1e9
KINDS = ("metal", "cuda", "cpu")
# leave this share of a GPU's (or the host's) memory to the driver, the system and the cache
HEADROOM = 0.1


@dataclass(frozen=True)
class DeviceProfile:
    kind: str  # "metal", "cuda" or "cpu"
    name: str
    memory: float  # bytes: unified memory (Metal), the GPU's memory (CUDA), RAM (CPU)
    budget: float  # bytes a training run may use
    compute_dtype: str  # what `dtype: auto` trains in: bfloat16 on a GPU, float32 on the CPU

    @property
    def dtype_bytes(self) -> int:
        return dtype_bytes(self.compute_dtype, self.kind)

    def describe(self) -> str:
        return (
            f"{self.name} ({self.kind}): {self.memory / GB:.1f} GB, {self.budget / GB:.1f} GB "
            f"usable for training, computes in {self.compute_dtype}"
        )


def resolve_dtype(option: str | None, kind: str) -> str | None:
    """The dtype policy, the one place it is decided: `auto` is float32 on MLX's CPU backend
    (bf16/fp16 matmuls have no BLAS path there) and bfloat16 on a GPU (Metal, CUDA), whatever
    the checkpoint stores: a float32 checkpoint would take twice the planned memory, and float16
    (older mlx-community conversions) trains without loss scaling. Losses are computed in float32
    either way. Any other option is kept; None keeps the model's stored dtype."""
    if option != "auto":
        return option
    return "float32" if kind == "cpu" else "bfloat16"


def dtype_bytes(option: str, kind: str) -> int:
    """Bytes per value of `option` (auto resolved for a device of `kind`), as the planner counts."""
    return 4 if resolve_dtype(option, kind) == "float32" else 2


def clear_cache() -> None:
    """Give MLX's cached buffers back (after a stage, before an out-of-memory retry); nothing to
    do where MLX was never imported (a stage that did not use it)."""
    core = sys.modules.get("mlx.core")
    if core is not None:
        core.clear_cache()


def host_memory() -> float:
    """Physical memory in bytes."""
    try:
        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 16 * GB


def metal_working_set(memory: float) -> float:
    """Metal's recommended working set for a Mac of `memory` bytes, where it cannot be asked
    (planning for another machine): two thirds up to 32 GB, three quarters above. Recorded
    machines give at least that (16 GB M1: 0.667; 48 GB M4 Pro: 0.78; 64 GB: 0.81-0.88)."""
    return memory * (2 / 3 if memory <= 32 * 2**30 else 0.75)


def profile_from_info(kind: str, info: dict, host: float | None = None) -> DeviceProfile:
    """A profile from `mx.device_info()`'s dictionary on a device of `kind`."""
    name = str(info.get("device_name") or info.get("architecture") or kind)
    if kind == "metal":
        memory = float(info.get("memory_size") or host or host_memory())
        working_set = info.get("max_recommended_working_set_size")
        budget = float(working_set) if working_set else metal_working_set(memory)
        return DeviceProfile("metal", name, memory, budget, resolve_dtype("auto", kind))
    if kind == "cuda":  # an MLX that does not report the GPU's memory: plan with the host's
        memory = float(info.get("total_memory") or host or host_memory())
        budget = memory * (1 - HEADROOM)
        free = info.get("free_memory")
        if free:  # another process holding GPU memory leaves this run less
            budget = min(budget, float(free) * (1 - HEADROOM / 2))
        return DeviceProfile("cuda", name, memory, budget, resolve_dtype("auto", kind))
    memory = host if host is not None else host_memory()
    return DeviceProfile("cpu", name, memory, memory * (1 - HEADROOM), resolve_dtype("auto", kind))


def named_profile(kind: str, memory: float) -> DeviceProfile:
    """A device to plan for that is not this one (`mlxtune plan --device metal --memory 32GB`)."""
    if kind not in KINDS:
        raise ValueError(f"unknown device '{kind}'; choose one of {', '.join(KINDS)}")
    dtype = resolve_dtype("auto", kind)
    if kind == "metal":
        return DeviceProfile("metal", "Mac", memory, metal_working_set(memory), dtype)
    if kind == "cuda":
        return DeviceProfile("cuda", "GPU", memory, memory * (1 - HEADROOM), dtype)
    return DeviceProfile("cpu", "CPU", memory, memory * (1 - HEADROOM), dtype)


def device_kind() -> str:
    """Which backend MLX computes on by default here."""
    import mlx.core as mx

    if mx.default_device() == mx.cpu:
        return "cpu"
    if mx.metal.is_available():
        return "metal"
    return "cuda"


def device_info() -> dict:
    import mlx.core as mx

    if hasattr(mx, "device_info"):
        return dict(mx.device_info())
    return dict(mx.metal.device_info()) if mx.metal.is_available() else {}  # MLX < 0.30


def current_device() -> DeviceProfile:
    """This machine's default MLX device (CPU when MLX cannot be imported)."""
    try:
        kind = device_kind()
        info = device_info()
    except Exception:  # no MLX here (doctor reports that): plan for the CPU
        return profile_from_info("cpu", {"device_name": platform.machine()})
    if kind == "cpu":
        info.setdefault("device_name", platform.machine())
    return profile_from_info(kind, info)


@contextmanager
def wired_limit(profile: DeviceProfile, log: Callable[[str], None] = print) -> Iterator[None]:
    """On Metal, wire up to the recommended working set while training (as mlx-lm's trainer
    does), so that macOS 15+ does not page a large model's weights out between steps; the
    previous limit is restored afterwards. Nothing to do on CUDA or the CPU."""
    if profile.kind != "metal":
        yield
        return
    import mlx.core as mx

    previous = mx.set_wired_limit(int(profile.budget))
    log(f"  wired memory limit {profile.budget / GB:.1f} GB (Metal's recommended working set)")
    try:
        yield
    finally:
        mx.set_wired_limit(previous)
