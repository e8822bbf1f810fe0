"""The ways a training run stops short, each with the words a user needs: out of memory (the
auto-fit retry or its settings), non-finite numbers (which step, which rate, what to try)."""

from __future__ import annotations

from typing import Any

OOM_MARKERS = (
    "insufficient memory",
    "kiogpucommandbuffercallbackerroroutofmemory",
    "[metal::malloc]",
    "resource limit",
    "out of memory",
    "std::bad_alloc",
    "unable to allocate",
    "[cuda::malloc]",
)


class OutOfMemory(Exception):
    """Training ran out of memory at `step` (the last checkpoint is kept)."""

    def __init__(self, step: int, detail: str):
        super().__init__(detail)
        self.step, self.detail = step, detail


def is_out_of_memory(exc: BaseException) -> bool:
    """Metal's `Insufficient Memory` / command-buffer OOM, CUDA's and the allocators' errors."""
    if isinstance(exc, MemoryError):
        return True
    text = str(exc).lower()
    return any(marker in text for marker in OOM_MARKERS)


class NonFinite(Exception):
    """A backend found non-finite numbers it computed (`what`: e.g. "gradients"); the loop stops
    the run with the step, the learning rate and what to try, and saves nothing after it."""

    def __init__(self, what: str):
        super().__init__(what)
        self.what = what


def diverged_message(
    what: str, step: int, steps: int, rate: float, options: Any, saved_at: int | None
) -> str:
    """One line for a run whose numbers stopped being finite: where, what is kept, what to try."""
    kept = (
        f"the checkpoint of step {saved_at} (the last finite one) is kept"
        if saved_at is not None
        else "no checkpoint is kept"
    )
    if step == 0:
        where = "before the first step"
        advice = "check the model's weights, or set train.dtype: float32 (float16 overflows)"
    else:
        where = f"at step {step} of {steps} (learning rate {rate:.2e})"
        advice = (
            f"lower train.learning_rate (now {options.learning_rate:g}), raise "
            "train.warmup_fraction, or set train.dtype: float32, then run again"
        )
    return (
        f"training diverged {where}: the {what} is not finite; {kept} and no adapter was "
        f"written: {advice}"
    )


def one_line(exc: BaseException) -> str:
    """An exception's first line (a framework's reader may raise pages)."""
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]
