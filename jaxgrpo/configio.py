"""Configs as plain data: YAML files, ``--set key=value`` overrides, and the dicts a run
folder's ``config.yaml`` holds (``algo``, every field, ``seeds``, ``base_seed``)."""
from __future__ import annotations

import dataclasses
import itertools
import logging
import operator
import re
from typing import Mapping, Sequence

import numpy as np

RUN_KEYS = ("algo", "seeds", "base_seed")
logger = logging.getLogger("jaxgrpo.sweeps")


def yaml_loader():
    """A ``yaml.SafeLoader`` that also reads ``1e-3`` as a float (YAML 1.2 style; PyYAML
    alone reads it as a string)."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                    |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                    |[-+]?\.(?:inf|Inf|INF)
                    |\.(?:nan|NaN|NAN))$""", re.X),
        list("-+0123456789."))
    return Loader


def parse_value(text: str):
    """A command-line value as YAML: ``3e-4`` -> 0.0003, ``true`` -> True, ``[32, 32]`` ->
    list, ``{size: 10}`` -> dict, ``symlog`` -> 'symlog', empty -> None."""
    import yaml
    try:
        return yaml.load(text, Loader=yaml_loader())
    except yaml.YAMLError as e:
        raise ValueError(f"cannot parse {text!r}: {getattr(e, 'problem', None) or e}") from None


def load_yaml(path) -> dict:
    """Read a YAML mapping; ``ValueError`` with one line naming the file and the problem."""
    import yaml
    try:
        with open(path) as f:
            data = yaml.load(f, Loader=yaml_loader())
    except OSError as e:
        raise ValueError(f"{path}: cannot read: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a text file") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = getattr(e, "problem", None) or " ".join(str(e).split())
        raise ValueError(f"{path}: not valid YAML: {what}{where}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: must be a YAML mapping of config fields, got "
                         f"{type(data).__name__}")
    return data


def plain(v):
    """NumPy scalars, tuples and mappings inside ``v`` as plain Python (YAML/JSON-able)."""
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, (list, tuple)):
        return [plain(x) for x in v]
    if isinstance(v, Mapping):
        return {str(k): plain(x) for k, x in v.items()}
    return v


def config_to_dict(config, seeds: int | None = None, base_seed: int | None = None) -> dict:
    """The resolved config as plain YAML/JSON values: ``algo``, every field (tuples as lists,
    ``reward_transform`` by name), then ``seeds`` and ``base_seed`` when given.
    Raises ``ValueError`` for a custom reward function (it has no name to write)."""
    from . import rewards
    d = {"algo": config.algo}
    for f in dataclasses.fields(config):
        if not f.init:
            continue
        v = getattr(config, f.name)
        if f.name == "reward_transform":
            name = rewards.name_of(v)
            try:
                rewards.from_string(name)
            except ValueError:
                raise ValueError(f"reward_transform: {name} is a custom function; only named "
                                 "transforms can be written to a run's config.yaml") from None
            v = name
        d[f.name] = plain(v)
    if seeds is not None:
        d["seeds"] = int(seeds)
    if base_seed is not None:
        d["base_seed"] = int(base_seed)
    return d


def _int_like(annotation) -> bool:
    return str(annotation).replace(" ", "") in ("int", "int|None", "Optional[int]")


def init_fields(cls) -> set:
    """The names of ``cls``'s init fields (a config class's settable fields)."""
    return {f.name for f in dataclasses.fields(cls) if f.init}


def check_vmap_size(vmap_size):
    """``vmap_size`` validated: ``"auto"``, None or an int >= 1 (``ValueError`` otherwise)."""
    if vmap_size is None or vmap_size == "auto":
        return vmap_size
    if isinstance(vmap_size, str):
        raise ValueError(f"vmap_size: must be 'auto', an int >= 1 or null, got {vmap_size!r}")
    return check_count("vmap_size", vmap_size, 1)


def check_count(name, v, low):
    """``v`` as an int >= ``low``; ``ValueError`` naming ``name`` otherwise."""
    try:
        if isinstance(v, bool):
            raise TypeError
        v = operator.index(v)
    except TypeError:
        raise ValueError(f"{name}: must be an int, got {type(v).__name__} {v!r}") from None
    if v < low:
        raise ValueError(f"{name}: must be >= {low}, got {v}")
    return v


def field_hint(name, cls, extra: Sequence[str] = ()) -> str:
    """``"did you mean 'gamma'?"``: the closest of ``cls``'s init fields and ``extra`` (other
    keys the file may hold) to ``name``, else the list of them."""
    import difflib
    fields = sorted(init_fields(cls) | set(extra))
    close = difflib.get_close_matches(str(name), fields, n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}?" if close else f"known: {', '.join(fields)}"


def unknown_field(name, cls, extra: Sequence[str] = ()) -> str:
    """``"'gama' is not a field of GRPOConfig (did you mean 'gamma'?)"``."""
    return f"{name!r} is not a field of {cls.__name__} ({field_hint(name, cls, extra)})"


def config_from_dict(d: Mapping, extra_keys: Sequence[str] = ()):
    """``(config, seeds, base_seed)`` from a dict like ``config_to_dict``'s (any subset; missing
    fields take the defaults, ``algo`` defaults to grpo, ``seeds`` to 1, ``base_seed`` to 0).
    ``preset``: ``true`` (the preset of ``algo`` and ``env``) or an env id (the preset of
    ``algo`` on it, which also sets ``env``): its fields come first, the dict's own fields
    override them (``jaxgrpo.presets``). ``extra_keys``: other keys the caller accepts (named
    in the "did you mean" of an unknown key; the caller removes them first).

    Raises ``ValueError`` whose message starts with the offending field."""
    from .config import config_class
    d = dict(d)
    algo = d.pop("algo", "grpo")
    seeds = d.pop("seeds", 1)
    base_seed = d.pop("base_seed", 0)
    preset = d.pop("preset", None)
    integral = lambda v: int(v) if isinstance(v, float) and v.is_integer() else v
    seeds = check_count("seeds", integral(seeds), 1)
    base_seed = check_count("base_seed", integral(base_seed), 0)
    cls = config_class(algo)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for k in d:
        if k not in fields:
            other_algo = "ppo" if algo == "grpo" else "grpo"
            other = config_class(other_algo)
            if k in {f.name for f in dataclasses.fields(other) if f.init}:
                hint = f"it is a {other.__name__} field: set algo to {other_algo!r}"
            else:
                hint = field_hint(k, cls, (*RUN_KEYS, "preset", *extra_keys))
            raise ValueError(f"{k}: unknown field of {cls.__name__} (algo {algo!r}; {hint})")
    if preset is not None and preset is not False:
        from .presets import preset_fields
        if preset is True:
            env = d.get("env", fields["env"].default)
        elif isinstance(preset, str):
            p_algo, _, env = preset.rpartition("/")      # "Acrobot-v1" or "grpo/Acrobot-v1"
            if p_algo and p_algo != algo:
                raise ValueError(f"preset: {preset!r} is a {p_algo} preset, but algo is "
                                 f"{algo!r}")
            if "env" in d and d["env"] != env:
                raise ValueError(f"preset: {preset!r} is for {env}, but env is {d['env']!r}; "
                                 "give one of them")
        else:
            raise ValueError(f"preset: must be an env id or true, got {preset!r}")
        d = {**preset_fields(algo, env), **d}
    for k, v in list(d.items()):
        if _int_like(fields[k].type) and isinstance(v, float) and v.is_integer():
            d[k] = int(v)
    if "hidden_sizes" in d and not isinstance(d["hidden_sizes"], (list, tuple)):
        raise ValueError(f"hidden_sizes: must be a list of ints, got {d['hidden_sizes']!r}")
    try:
        config = cls(**d)
    except TypeError as e:
        raise ValueError(f"config: {e}") from None
    return config, seeds, base_seed


def apply_override(d: dict, text: str) -> dict:
    """``d`` with ``key=value`` applied (value parsed as YAML). ``a.b=value`` sets key ``b``
    of the dict field ``a`` (e.g. ``env_params.max_steps_in_episode=200``)."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ValueError(f"--set: expected key=value, got {text!r}")
    v = parse_value(value)
    parts = key.split(".")
    d = dict(d)
    node = d
    for i, p in enumerate(parts[:-1]):
        child = node.get(p, {})
        if child is None:
            child = {}
        if not isinstance(child, Mapping):
            raise ValueError(f"{'.'.join(parts[:i + 1])}: is not a dict field, cannot set {key}")
        node[p] = dict(child)
        node = node[p]
    node[parts[-1]] = v
    return d


def save_config(path, config, seeds: int, base_seed: int, preset: str | None = None,
                exclusive: bool = False) -> None:
    """Write the resolved config (every field) to ``path`` as YAML, atomically (``exclusive``:
    only if ``path`` does not exist, else ``FileExistsError``)."""
    import yaml

    from .fileio import write_text
    head = "# jaxgrpo run config: `jaxgrpo train --config THIS_FILE` reproduces the run\n"
    if preset:
        head += f"# (from the preset {preset}; every field is written out below)\n"
    write_text(path, head + yaml.safe_dump(config_to_dict(config, seeds, base_seed),
                                           sort_keys=False), exclusive=exclusive)


def load_config(path):
    """``(config, seeds, base_seed)`` from a YAML file (a run's config.yaml or a hand-written
    one); ``ValueError`` naming the file and the field otherwise."""
    d = load_yaml(path)
    try:
        return config_from_dict(d)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None



# ----------------------------------------------------------------------------- sweep files

SWEEP_KEYS = ("grid", "log_every", "out", "compiler_options", "vmap_size", "checkpoint_every")


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
        check_count("log_every", own.get("log_every", 1), 1)
        check_vmap_size(own.get("vmap_size", "auto"))
        if own.get("checkpoint_every") is not None:
            check_count("checkpoint_every", own["checkpoint_every"], 1)
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


# ----------------------------------------------------------------------------- sweep grids

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


def _switch_algo(config, algo: str):
    """``config`` as ``config_class(algo)``. A field shared by both classes is carried over when
    it differs from the source class's default (the user set it); otherwise the target class's
    own default applies (GRPO's lr default is not PPO's). Fields of the source class only are
    dropped."""
    from .config import config_class
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
    from .config import config_class
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
            base = _switch_algo(config, combo["algo"]) if "algo" in combo else config
            unknown = set(changes) - init_fields(type(base))
            if unknown:
                raise ValueError(unknown_field(sorted(unknown)[0], type(base)))
            configs.append(base.replace(**changes))
        except (TypeError, ValueError) as e:
            raise _field_error(combo, e) from None
    return combos, configs
