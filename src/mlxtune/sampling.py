"""The sampling options, derived once from `components.Sampling`: the recipe's `ask:` section,
the `ask`/`chat` flags and `serve`'s request fields all come from here, so a value one of them
refuses the others refuse too, and a default is the same everywhere."""

from __future__ import annotations

from dataclasses import fields, replace
from functools import cache
from typing import Any, get_type_hints

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from .components import Sampling
from .errors import MlxtuneError

NAMES: tuple[str, ...] = tuple(f.name for f in fields(Sampling))


class SamplingBase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    def sampling(self) -> Sampling:
        return Sampling(**{name: getattr(self, name) for name in NAMES})


@cache
def field_types() -> dict[str, Any]:
    """Each option's annotated type (its bounds and help ride on the annotation)."""
    hints = get_type_hints(Sampling, include_extras=True)
    return {name: hints[name] for name in NAMES}


def _model() -> type[SamplingBase]:
    defaults = {f.name: f.default for f in fields(Sampling)}
    return create_model(  # type: ignore[call-overload,no-any-return]
        "SamplingOptions",
        __base__=SamplingBase,
        __doc__="How answers are generated (the recipe's `ask:` keys).",
        **{name: (kind, defaults[name]) for name, kind in field_types().items()},
    )


SamplingOptions = _model()


def describe(error: ValidationError, prefix: str = "") -> str:
    """pydantic's errors as one line each: `key: what is wrong`."""
    lines = []
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"]) or "value"
        lines.append(f"{prefix}{key}: {item['msg']}")
    return "; ".join(lines)


def checked(values: dict[str, Any], base: Sampling | None = None, *, strict: bool) -> Sampling:
    """`base` (the defaults) with `values` applied, each checked against its bounds. Strict
    refuses "5" or 2.7 or true for an integer (request bodies); flags are already typed."""
    merged = {f.name: getattr(base or Sampling(), f.name) for f in fields(Sampling)}
    merged.update(values)
    try:
        return SamplingOptions.model_validate(merged, strict=strict).sampling()
    except ValidationError as exc:
        raise MlxtuneError(describe(exc)) from None


def with_overrides(base: Sampling, overrides: dict[str, Any]) -> Sampling:
    """`base` with the overrides that are not None (flags that were given)."""
    given = {k: v for k, v in overrides.items() if v is not None}
    return checked(given, base, strict=False) if given else replace(base)


def sampling_from(ask: Any, **overrides: Any) -> Sampling:
    """A recipe's `ask:` section as Sampling; `overrides` that are not None win (command-line
    flags: the recipe gives the defaults, a flag replaces one), checked by the same bounds."""
    return with_overrides(ask.sampling(), overrides)
