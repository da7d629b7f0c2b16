"""Sweeps as data: the sweep YAML (a base config, a ``grid`` of field values, seeds and the
``jaxgrpo.sweep`` arguments) and the configs of a grid's combinations. Nothing is compiled
here; ``jaxgrpo.sweeps`` runs them."""
from __future__ import annotations

import itertools
import logging
from typing import Mapping, Sequence

import numpy as np

from .checks import check_count, init_fields, unknown_field
from .config import config_class
from .configio import config_from_dict, load_yaml, plain

logger = logging.getLogger("jaxgrpo.grids")

SWEEP_KEYS = ("grid", "log_every", "out", "compiler_options", "vmap_size", "checkpoint_every")


def check_vmap_size(vmap_size):
    """``vmap_size`` validated: ``"auto"``, None or an int >= 1 (``ValueError`` otherwise)."""
    if vmap_size is None or vmap_size == "auto":
        return vmap_size
    if isinstance(vmap_size, str):
        raise ValueError(f"vmap_size: must be 'auto', an int >= 1 or null, got {vmap_size!r}")
    return check_count("vmap_size", vmap_size, 1)


def check_checkpoint_every(checkpoint_every, log_every: int):
    """``checkpoint_every`` validated: None, or an int >= 1 that is a multiple of
    ``log_every`` (a checkpoint is written where the metrics were reported)."""
    if checkpoint_every is None:
        return None
    checkpoint_every = check_count("checkpoint_every", checkpoint_every, 1)
    if checkpoint_every % log_every:
        raise ValueError(f"checkpoint_every: must be a multiple of log_every ({log_every}), "
                         f"got {checkpoint_every}")
    return checkpoint_every


def load_sweep_spec(path) -> dict:
    """Read and validate a sweep YAML; nothing is compiled.

    The file holds ``algo`` (default grpo), optionally ``preset``, any config fields (the base
    config), ``grid`` (field -> list of values), ``seeds``, and optionally ``base_seed``,
    ``log_every``, ``vmap_size`` (default ``"auto"``), ``compiler_options``,
    ``checkpoint_every`` (the ``sweep`` arguments) and ``out``. Returns ``{"config", "grid",
    "seeds", "base_seed", "log_every", "out", "compiler_options", "vmap_size",
    "checkpoint_every"}``; raises ``ValueError`` with one message naming the
    file and the problem (a misspelled key gets a "did you mean")."""
    spec = load_yaml(path)
    own = {k: spec.pop(k) for k in SWEEP_KEYS if k in spec}
    try:
        config, seeds, base_seed = config_from_dict(spec, extra_keys=SWEEP_KEYS)
        log_every = check_count("log_every", own.get("log_every", 1), 1)
        check_vmap_size(own.get("vmap_size", "auto"))
        check_checkpoint_every(own.get("checkpoint_every"), log_every)
        grid = own.get("grid") or {}
        grid_configs(config, grid)   # validates the grid; raises "grid: ..."
        opts = own.get("compiler_options")
        if opts is not None and not isinstance(opts, dict):
            raise ValueError(f"compiler_options: must be a mapping, got {type(opts).__name__}")
        out = own.get("out")
        if out is not None and not isinstance(out, str):
            raise ValueError(f"out: must be a path string, got {out!r}")
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    return {"config": config, "grid": grid, "seeds": seeds, "base_seed": base_seed,
            "log_every": own.get("log_every", 1), "out": out, "compiler_options": opts,
            "vmap_size": own.get("vmap_size", "auto"),
            "checkpoint_every": own.get("checkpoint_every")}


def expand_grid(grid: Mapping[str, Sequence] | None) -> list[dict]:
    """All combinations of ``grid`` (a dict of non-empty lists), in ``itertools.product``
    order: the last key varies fastest. ``{}`` or None gives ``[{}]`` (one combination)."""
    grid = {} if grid is None else grid
    if not isinstance(grid, Mapping):
        raise ValueError(f"grid: must be a dict of lists, got {type(grid).__name__}")
    values = []
    for k, vals in grid.items():
        if not isinstance(k, str):
            raise ValueError(f"grid: field names must be strings, got {k!r}")
        if isinstance(vals, np.ndarray):
            vals = vals.tolist()
        if not isinstance(vals, (list, tuple)) or len(vals) == 0:
            raise ValueError(f"grid: {k}: values must be a non-empty list, got "
                             f"{type(vals).__name__} {vals!r}")
        values.append([plain(v) for v in vals])
    keys = list(grid)
    return [dict(zip(keys, combo)) for combo in itertools.product(*values)]


def switch_algo(config, algo: str):
    """``config`` as ``config_class(algo)``. A field shared by both classes is carried over when
    it differs from the source class's default (the user set it); otherwise the target class's
    own default applies (GRPO's lr default is not PPO's). Fields of the source class only are
    dropped."""
    cls = config_class(algo)
    if isinstance(config, cls):
        return config
    src_defaults = type(config)()  # the source class's defaults (a valid config)
    shared = init_fields(cls) & init_fields(type(config))
    carried = {k: getattr(config, k) for k in shared
               if getattr(config, k) != getattr(src_defaults, k)}
    dropped = sorted(k for k in init_fields(type(config)) - shared
                     if getattr(config, k) != getattr(src_defaults, k))
    if dropped:
        logger.info("sweep: algo=%s drops %s fields %s", algo, type(config).__name__, dropped)
    return cls(**carried)


def _field_error(combo: dict, e: Exception) -> ValueError:
    where = ", ".join(f"{k}={v!r}" for k, v in combo.items())
    return ValueError(f"grid: {e} (in the combination {where})")


def grid_configs(config, grid) -> tuple[list[dict], list]:
    """Validate ``grid`` against ``config`` and build one config per combination.

    Returns ``(combinations, configs)``: ``configs[c] = config.replace(**combinations[c])``
    (with ``algo`` switching the config class first). Raises ``ValueError`` naming the field for
    an unknown field, a value of the wrong type or out of range. Nothing is compiled.
    """
    if isinstance(grid, Mapping) and "algo" in grid:
        algos = grid["algo"]
        if isinstance(algos, (list, tuple)):
            for a in algos:
                config_class(a)   # raises "algo: must be 'grpo' or 'ppo'"
    combos = expand_grid(grid)
    known_any = init_fields(type(config)) | {"algo"}
    if isinstance(grid, Mapping) and "algo" in grid:
        known_any |= init_fields(config_class("grpo")) | init_fields(config_class("ppo"))
    for k in (grid or {}):
        if k not in known_any:
            raise ValueError(f"grid: {unknown_field(k, type(config))}")
    configs = []
    for combo in combos:
        changes = {k: v for k, v in combo.items() if k != "algo"}
        try:
            base = switch_algo(config, combo["algo"]) if "algo" in combo else config
            unknown = set(changes) - init_fields(type(base))
            if unknown:
                raise ValueError(unknown_field(sorted(unknown)[0], type(base)))
            configs.append(base.replace(**changes))
        except (TypeError, ValueError) as e:
            raise _field_error(combo, e) from None
    return combos, configs
