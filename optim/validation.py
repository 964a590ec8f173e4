"""Hyperparameter checks shared by the registry and the optimizers.

Every error is a :class:`HyperparameterError` that reads ``Invalid <name>[ (param group)]: <value> (<what
would work>)`` so the user sees the key, the value and the fix before any step is taken; a caller that
speaks in its own terms (the trainer's config keys) reads its ``name``, ``value`` and ``why`` fields.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Iterable
from typing import Any

import torch

Check = Callable[[str, Any], None]  # (name as the user spells it, value) -> None or ValueError


PARAM_GROUP = " (param group)"  # suffix of a name checked on one param group's override


class HyperparameterError(ValueError):
    """An out-of-range or ill-typed hyperparameter: ``name`` as the optimizer spells it (without the
    param-group suffix), the offending ``value`` and ``why`` (what would work)."""

    def __init__(self, name: str, value: Any, why: str) -> None:
        super().__init__(f"Invalid {name}: {value!r} ({why})")
        self.name, self.value, self.why = name.removesuffix(PARAM_GROUP), value, why


class UnknownHyperparameter(TypeError):
    """Keyword arguments the optimizer does not take (a ``TypeError``, as Python raises for an unexpected
    keyword): ``names`` the unknown ones, ``known`` every one it takes, ``close`` per unknown name its
    closest known names (for "did you mean")."""

    def __init__(self, names: Iterable[str], known: Iterable[str]) -> None:
        self.names, self.known = sorted(names), sorted(known)
        self.close = {n: difflib.get_close_matches(n, self.known, n=3, cutoff=0.6) for n in self.names}
        hints = "; ".join(f"{n}: did you mean {' or '.join(c)}?" for n, c in self.close.items() if c)
        super().__init__(
            f"Invalid hyperparameter(s) {self.names}{f' ({hints})' if hints else ''}; known: {self.known}"
        )


def bad(name: str, value: Any, why: str) -> HyperparameterError:
    return HyperparameterError(name, value, why)


def check_float(
    name: str,
    value: Any,
    lo: float | None = None,
    hi: float | None = None,
    lo_open: bool = False,
    hi_open: bool = False,
) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise bad(name, value, "must be a finite number")
    if lo is not None and (value < lo or (lo_open and value == lo)):
        raise bad(name, value, f"must be {'>' if lo_open else '>='} {lo}")
    if hi is not None and (value > hi or (hi_open and value == hi)):
        raise bad(name, value, f"must be {'<' if hi_open else '<='} {hi}")


def check_choice(name: str, value: Any, choices: Iterable[Any]) -> None:
    choices = tuple(choices)
    if not isinstance(value, str) or value not in choices:
        raise bad(name, value, f"must be one of {', '.join(map(repr, choices))}")


def check_bool(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise bad(name, value, "must be True or False")


def check_int(name: str, value: Any, lo: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise bad(name, value, f"must be an int >= {lo}")


def float_in(
    lo: float | None = None, hi: float | None = None, lo_open: bool = False, hi_open: bool = False
) -> Check:
    """A :data:`Check` for a finite float in the given range (for registrations)."""
    return lambda name, value: check_float(name, value, lo, hi, lo_open, hi_open)


def one_of(*choices: str) -> Check:
    return lambda name, value: check_choice(name, value, choices)


def boolean(name: str, value: Any) -> None:
    check_bool(name, value)


DTYPES = ("float32", "bfloat16", "float16", "float64")  # ns_dtype by name (a config file's spelling)


def as_dtype(name: str, value: Any) -> torch.dtype | None:
    """``value`` as a floating torch.dtype: None, a dtype, or its name (``"bfloat16"``)."""
    if value is None or (isinstance(value, torch.dtype) and value.is_floating_point):
        return value
    if isinstance(value, str) and value in DTYPES:
        return getattr(torch, value)
    raise bad(name, value, f"must be None, a floating torch.dtype or one of {', '.join(map(repr, DTYPES))}")
