"""Configs as plain data: YAML files, ``--set key=value`` overrides, and the dicts a run
folder's ``config.yaml`` holds (``algo``, every field, ``seeds``, ``base_seed``). Sweep files
and their grids are ``jaxgrpo.grids``."""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import yaml

from .checks import check_count, field_hint
from .config import config_class, is_text
from .fileio import write_text
from .presets import preset_fields

RUN_KEYS = ("algo", "seeds", "base_seed")
RUN_DEFAULTS = {"algo": "grpo", "seeds": 1, "base_seed": 0}   # also quoted by --help


def yaml_loader():
    """A ``yaml.SafeLoader`` that also reads ``1e-3`` as a float (YAML 1.2 style; PyYAML
    alone reads it as a string)."""
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
    try:
        return yaml.load(text, Loader=yaml_loader())
    except yaml.YAMLError as e:
        raise ValueError(f"cannot parse {text!r}: {getattr(e, 'problem', None) or e}") from None


def load_yaml(path) -> dict:
    """Read a YAML mapping; ``ValueError`` with one line naming the file and the problem."""
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
    ``reward_transform`` by name, ``reward_funcs`` as ``"module:function"`` strings, a
    dataset's rows as a list of dicts), then ``seeds`` and ``base_seed`` when given.
    Raises ``ValueError`` for a custom reward transform or a reward function that has no
    importable name to write."""
    from . import rewards   # here: it imports JAX, which the command line's --help must not
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
        elif f.name == "reward_funcs":
            v = reward_func_specs(v)
        d[f.name] = plain(v)
    if seeds is not None:
        d["seeds"] = int(seeds)
    if base_seed is not None:
        d["base_seed"] = int(base_seed)
    return d


def reward_func_specs(funcs) -> list[str]:
    """A config's ``reward_funcs`` as the ``"module:function"`` strings config.yaml stores
    (``jaxgrpo.text.rewardfns.spec_of``); ValueError naming a function that has none."""
    from .text.rewardfns import reward_names, spec_of
    specs = []
    for f, name in zip(funcs, reward_names(funcs)):
        spec = spec_of(f)
        if spec is None:
            raise ValueError(f"reward_funcs: {name} cannot be written to a run's config.yaml: "
                             "only functions importable as 'module:function' can (define it "
                             "at the top level of a module)")
        specs.append(spec)
    return specs


def _int_like(annotation) -> bool:
    return str(annotation).replace(" ", "") in ("int", "int|None", "Optional[int]")


def config_from_dict(d: Mapping, extra_keys: Sequence[str] = ()):
    """``(config, seeds, base_seed)`` from a dict like ``config_to_dict``'s (any subset; missing
    fields take the defaults, ``algo`` defaults to grpo, ``seeds`` to 1, ``base_seed`` to 0).
    ``preset``: ``true`` (the preset of ``algo`` and ``env``) or an env id (the preset of
    ``algo`` on it, which also sets ``env``): its fields come first, the dict's own fields
    override them (``jaxgrpo.presets``). ``extra_keys``: other keys the caller accepts (named
    in the "did you mean" of an unknown key; the caller removes them first).

    Raises ``ValueError`` whose message starts with the offending field."""
    d = dict(d)
    algo, seeds, base_seed = (d.pop(k, RUN_DEFAULTS[k]) for k in RUN_KEYS)
    if "max_ahead" in d:   # a config written before the stream collector replaced it
        ahead = d.pop("max_ahead")
        if ahead not in (0, None):
            raise ValueError(f"max_ahead: partial rollouts ({ahead}) were replaced by GRPO's "
                             "stream collector, the default (on_policy: false); remove "
                             "max_ahead")
        d.setdefault("on_policy", True)       # max_ahead 0 collected on-policy
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
    if "init_from" in fields:
        d = task_from_init_from(d)
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


# ----------------------------------------------------------------------------- init_from

MODEL_FIELDS = ("num_layers", "width", "num_heads", "max_len", "positions")
# what a run started with init_from takes from the run it starts from, unless it sets them;
# env_kwargs and max_new_tokens only while env is that run's (they belong to its task)
TASK_FIELDS = ("env", "env_kwargs", "max_new_tokens", *MODEL_FIELDS)


def source_run(path):
    """``(config, seeds)`` of the text run folder ``path`` (its config.yaml only);
    ``ValueError`` starting ``init_from:`` when it is no run folder or not a text run."""
    path = Path(path)
    if not (path / "config.yaml").is_file():
        raise ValueError(f"init_from: {path} is not a run folder (no config.yaml there)")
    try:
        saved, seeds, _ = load_config(path / "config.yaml")
    except ValueError as e:
        raise ValueError(f"init_from: {e}") from None
    if not hasattr(saved, "model_config") or not saved.env.startswith("text:"):
        raise ValueError(f"init_from: {path} is a run on {saved.env}, not a text task")
    return saved, seeds


def task_from_init_from(d: Mapping) -> dict:
    """Config fields ``d`` (a dict as ``config_from_dict`` takes) completed with the task of
    the run ``d["init_from"]`` starts from: each of ``TASK_FIELDS`` that ``d`` does not set is
    that run's (``env_kwargs`` and ``max_new_tokens`` only when ``env`` is unset or the run's).
    Reads the run's config.yaml only when a field is missing; ``d`` unchanged without
    ``init_from``."""
    if d.get("init_from") is None or all(k in d for k in TASK_FIELDS) or (
            "env" in d and not is_text(d["env"])) or _pretrained(d["init_from"]):
        return dict(d)      # (a non-text env is refused when the config is validated; a
        #                     Hugging Face checkpoint has no task, only a model and tokenizer)
    saved, _ = source_run(d["init_from"])
    same_env = d.get("env", saved.env) == saved.env
    fill = {k: plain(getattr(saved, k)) for k in TASK_FIELDS if k not in d and
            (same_env or k not in ("env_kwargs", "max_new_tokens"))}
    return {**d, **fill}


def _pretrained(path) -> bool:
    from .text.pretrained import is_pretrained_dir
    return isinstance(path, str) and is_pretrained_dir(path)


def describe_task(config) -> str:
    """``text:addition`` or ``text:addition {digits: 2}``: a config's env and env_kwargs."""
    kwargs = ", ".join(f"{k}: {v}" for k, v in dict(config.env_kwargs).items())
    return config.env + (f" {{{kwargs}}}" if kwargs else "")


def check_init_from(config, seeds: int | None = None, per_seed: bool = True) -> str | None:
    """``ValueError`` starting ``init_from:`` unless ``config.init_from`` is a run folder of a
    text run (SFT or GRPO) whose model has the config's shape and (``seeds`` given) 1 seed or
    ``seeds`` seeds (seed i of a run starts from seed i of that run; one seed: every seed from
    it; ``per_seed`` False, for sweeps, whose runs all start from the same params: 1 seed);
    reads only its config.yaml. Returns a line naming both tasks when the config's task
    (env, env_kwargs) differs from the one that run learned, else None."""
    path = Path(config.init_from)
    if config.pretrained:       # its config.json and tensors are checked when it is loaded
        return None
    saved, saved_seeds = source_run(path)
    diff = [f"{k} {getattr(saved, k)} (this config: {getattr(config, k)})" for k in MODEL_FIELDS
            if getattr(saved, k) != getattr(config, k)]
    v_saved, v_here = saved.task.tokenizer.vocab_size, config.task.tokenizer.vocab_size
    if v_saved != v_here:
        diff.append(f"vocabulary size {v_saved} (this config: {v_here})")
    if diff:
        raise ValueError(f"init_from: the model of {path} differs from this config's: "
                         + ", ".join(diff))
    if not per_seed and saved_seeds > 1:
        raise ValueError(f"init_from: {path} has {saved_seeds} seeds; a sweep starts every run "
                         "from the same params: give it a run of one seed (jaxgrpo train "
                         f"--seeds {saved_seeds} starts seed i from its seed i)")
    if seeds is not None and saved_seeds not in (1, seeds):
        raise ValueError(f"init_from: {path} has {saved_seeds} seeds; a run from it takes 1 "
                         f"seed or {saved_seeds} (seed i starts from its seed i), not {seeds}")
    learned, here = describe_task(saved), describe_task(config)
    if learned != here:
        return f"init_from: {path} learned {learned}; this run trains {here}"
    return None
