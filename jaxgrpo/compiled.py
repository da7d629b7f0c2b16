"""One cache of compiled training programs, shared by run folders, sweeps and experiments.

A compiled program depends on the config's static fields (those outside ``config.hparams()``:
they change the traced program), and on whatever else its builder bakes in: a callback,
the number of seeds or iterations per call, the devices, XLA options. Each user names those in
its key, starting with a tag saying what the value is (``"runs.run"``, ``"sweeps.runner"``,
``"experiments"``, ...)::

    fn, seconds = compiled.cached(("runs.run", config_key(config), seeds, n), build)

The cache keeps the ``MAX_ENTRIES`` most recently used values (least recently used first out).
"""
from __future__ import annotations

import collections
import dataclasses
import json
import time
from typing import Any, Callable, Hashable, Mapping

MAX_ENTRIES = 32


class CompileCache:
    """A least-recently-used map ``key -> value`` of at most ``max_entries`` values."""

    def __init__(self, max_entries: int = MAX_ENTRIES):
        self.max_entries = max_entries
        self._values: collections.OrderedDict = collections.OrderedDict()

    def __contains__(self, key: Hashable) -> bool:
        return key in self._values

    def __len__(self) -> int:
        return len(self._values)

    def clear(self) -> None:
        self._values.clear()

    def get(self, key: Hashable, build: Callable[[], Any]) -> tuple[Any, float]:
        """``(value, seconds)``: the value cached under ``key`` (seconds 0.0), or ``build()``'s,
        then cached, with the seconds it took."""
        if key in self._values:
            self._values.move_to_end(key)
            return self._values[key], 0.0
        t = time.perf_counter()
        value = build()
        seconds = time.perf_counter() - t
        self._values[key] = value
        while len(self._values) > self.max_entries:
            self._values.popitem(last=False)
        return value, seconds


CACHE = CompileCache()


def cached(key: Hashable, build: Callable[[], Any]) -> tuple[Any, float]:
    """``CACHE.get(key, build)``: ``(value, seconds build took, 0.0 when cached)``."""
    return CACHE.get(key, build)


def _norm(v):
    if isinstance(v, Mapping):
        return tuple(sorted((k, _norm(x)) for k, x in v.items()))
    if isinstance(v, (list, tuple)):
        return tuple(_norm(x) for x in v)
    return v


def static_key(config) -> tuple:
    """What a program compiled with hparams as inputs depends on: the config class and its
    static (non-hparam) fields. Configs that differ only in hparams share it."""
    dynamic = set(config.hparams())
    # a dynamic field that also picks the program's shape: on an environment, an
    # off_policy_mask_threshold (None or not) decides whether the learn phase takes episodes
    shape = (("by_episode", config.by_episode),) if hasattr(config, "by_episode") else ()
    return (type(config).__name__,) + tuple(
        (f.name, repr(_norm(getattr(config, f.name)))) for f in dataclasses.fields(config)
        if f.init and f.name not in dynamic) + shape


def options_key(compiler_options: Mapping | None) -> str:
    """XLA compiler options as a key (None and ``{}`` are the same)."""
    return json.dumps(dict(compiler_options or {}), sort_keys=True, default=repr)
