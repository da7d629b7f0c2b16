"""Checks of user values shared by every module that validates input (configs, YAML files, text
task options): one ``ValueError`` line that starts with what is wrong, and a "did you mean" for a
misspelled field. No JAX and no other jaxgrpo module: the command line uses them for --help."""
from __future__ import annotations

import dataclasses
import difflib
import math
import operator
from typing import Sequence


def fail(where: str, msg: str):
    """Raise ``ValueError("WHERE: MSG")``."""
    raise ValueError(f"{where}: {msg}")


def check_count(name: str, v, low: int = 1, high: int | None = None, why: str = "") -> int:
    """``v`` as an int in ``[low, high]`` (any integer type but bool); ``ValueError`` starting
    with ``name`` otherwise (``why``: said after the upper bound, e.g. " (int32 arithmetic)")."""
    try:
        if isinstance(v, bool):
            raise TypeError
        v = operator.index(v)
    except TypeError:
        fail(name, f"must be an int, got {type(v).__name__} {v!r}")
    if v < low:
        fail(name, f"must be >= {low}, got {v}")
    if high is not None and v > high:
        fail(name, f"must be <= {high}{why}, got {v}")
    return v


def check_number(name: str, v, low=None, high=None, low_open: bool = False):
    """``v`` as a finite number in ``[low, high]`` (``(low, high]`` with ``low_open``; either
    bound None: unbounded); ``ValueError`` starting with ``name`` otherwise."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        fail(name, f"must be a number, got {type(v).__name__} {v!r}")
    if not math.isfinite(v):
        fail(name, f"must be finite, got {v}")
    if low is not None and (v <= low if low_open else v < low):
        fail(name, f"must be {'>' if low_open else '>='} {low}, got {v}")
    if high is not None and v > high:
        fail(name, f"must be <= {high}, got {v}")
    return v


def check_choice(name: str, v, choices):
    """``v`` if it is one of ``choices``; ``ValueError`` starting with ``name`` otherwise."""
    if v not in choices:
        fail(name, f"must be one of {list(choices)}, got {v!r}")
    return v


def init_fields(cls) -> set:
    """The names of ``cls``'s init fields (a config class's settable fields)."""
    return {f.name for f in dataclasses.fields(cls) if f.init}


def field_hint(name, cls, extra: Sequence[str] = ()) -> str:
    """``"did you mean 'gamma'?"``: the closest of ``cls``'s init fields and ``extra`` (other
    keys the file may hold) to ``name``, else the list of them."""
    fields = sorted(init_fields(cls) | set(extra))
    close = difflib.get_close_matches(str(name), fields, n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}?" if close else f"known: {', '.join(fields)}"


def unknown_field(name, cls, extra: Sequence[str] = ()) -> str:
    """``"'gama' is not a field of GRPOConfig (did you mean 'gamma'?)"``."""
    return f"{name!r} is not a field of {cls.__name__} ({field_hint(name, cls, extra)})"
