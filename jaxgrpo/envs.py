"""gymnax environments: construction, validation and action-space facts."""
from __future__ import annotations

import dataclasses
import difflib
import functools
import os
from typing import NamedTuple

import jax.numpy as jnp

from .text.tasks import make_task


class ActionSpec(NamedTuple):
    discrete: bool
    n: int              # number of actions (discrete) or action dimension (continuous)
    low: float | None   # continuous bounds (scalars), None when discrete
    high: float | None


# text:dataset's options (jaxgrpo.text.datasets.from_records), and text:reasoning_gym's
# natural-form ones: "data" may be rows (a list of dicts, a datasets.Dataset), "tokenizer" is a
# Hugging Face folder (default: init_from's when it is one, else the character tokenizer)
DATASET_OPTIONS = ("data", "prompt_column", "answer_column", "heldout", "seed",
                   "max_prompt_len", "tokenizer")
TOKENIZER_TASKS = ("text:dataset", "text:reasoning_gym")


def normalize_env_kwargs(env_id, env_kwargs) -> dict:
    """``env_kwargs`` as a config stores them: for ``text:dataset``, rows given as a list of
    dicts or a ``datasets.Dataset`` become a ``jaxgrpo.text.datasets.Rows`` (a tuple hashed by
    content, so the config compares and caches by the data and its config.yaml holds them)."""
    kwargs = dict(env_kwargs)
    data = kwargs.get("data")
    if env_id == "text:dataset" and data is not None and not isinstance(data, str):
        from .text.datasets import Rows
        if not isinstance(data, Rows):
            try:
                kwargs["data"] = Rows(data)
            except ValueError as e:
                raise ValueError(f"env_kwargs: {e}") from None
    return kwargs


def validate_env(env_id: str, env_kwargs: dict, env_params: dict) -> None:
    """Raise ``ValueError`` naming the field if the env id, kwargs or params are wrong.
    ``text:dataset`` is only checked for its option names here: its task is built (reading
    and tokenizing the data) by ``make_text_task``, which knows the config's tokenizer."""
    for name, options in (("env_kwargs", env_kwargs), ("env_params", env_params)):
        for k, v in options.items():
            if not isinstance(k, str):
                raise ValueError(f"{name}: keys must be names, got {k!r}")
            if env_id == "text:dataset" and name == "env_kwargs" and k == "data":
                continue
            if v is not None and not isinstance(v, (bool, int, float, str)):
                raise ValueError(f"{name}: {k} must be one value (a number, bool or string), "
                                 f"got the {type(v).__name__} {v!r} (to try several, a "
                                 f"sweep's grid takes a list of {name} dicts)")
    if env_id.startswith("text:"):
        if env_params:
            raise ValueError("env_params: text tasks take their options in env_kwargs")
        if env_id == "text:dataset":
            _check_dataset_options(env_kwargs)
            return
        if env_kwargs.get("natural"):     # built with the config's tokenizer: make_text_task
            return
        _text_task(env_id, tuple(sorted(env_kwargs.items())))
        return
    import gymnax         # here: importing gymnax starts JAX (jaxgrpo.cores must come first)
    if env_id not in gymnax.registered_envs:
        close = (difflib.get_close_matches(env_id, gymnax.registered_envs, n=1) or
                 [e for e in gymnax.registered_envs if env_id.lower().split("-")[0] in e.lower()])
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"env: unknown gymnax environment {env_id!r}{hint}; "
                         f"known: {', '.join(gymnax.registered_envs)}")
    _make(env_id, tuple(sorted(env_kwargs.items())), tuple(sorted(env_params.items())))


@functools.lru_cache(maxsize=64)
def _make(env_id, kwargs_items, params_items):
    import gymnax
    try:
        env, params = gymnax.make(env_id, **dict(kwargs_items))
    except TypeError as e:
        raise ValueError(f"env_kwargs: {env_id} does not accept {dict(kwargs_items)}: {e}") from None
    except OSError as e:        # MNISTBandit-bsuite downloads MNIST when it is made
        raise ValueError(f"env: {env_id} could not be made: {' '.join(str(e).split())}") from None
    names = {f.name for f in dataclasses.fields(params)}
    for k, v in params_items:
        if k not in names:
            raise ValueError(f"env_params: {env_id} has no parameter {k!r}; it has {sorted(names)}")
        old = getattr(params, k)
        if isinstance(old, bool) and not isinstance(v, bool):
            raise ValueError(f"env_params: {k} must be true or false, got {v!r}")
        if not isinstance(old, bool) and isinstance(old, (int, float)) and (
                isinstance(v, bool) or not isinstance(v, (int, float))):
            raise ValueError(f"env_params: {k} must be a number, got {v!r}")
    params = params.replace(**dict(params_items))
    T = params.max_steps_in_episode
    if isinstance(T, float) and T.is_integer():      # 1e3, or a gymnax default of 100.0
        params = params.replace(max_steps_in_episode=int(T))
    if not isinstance(params.max_steps_in_episode, int) or params.max_steps_in_episode < 1:
        raise ValueError(f"env_params: max_steps_in_episode must be a positive int, "
                         f"got {params.max_steps_in_episode!r}")
    return env, params


def _check_dataset_options(kwargs):
    for k in kwargs:
        if k not in DATASET_OPTIONS:
            close = difflib.get_close_matches(k, DATASET_OPTIONS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"env_kwargs: dataset: unknown option {k!r}{hint}; options: "
                             f"{', '.join(DATASET_OPTIONS)}")
    if kwargs.get("data") is None:
        raise ValueError("env_kwargs: dataset: option 'data' is required (a list of dicts, a "
                         "JSONL path or a datasets.Dataset)")


def _file_stamp(path):
    """What a data file is cached by besides its path: its size and modification time."""
    try:
        st = os.stat(path)
        return (st.st_size, st.st_mtime_ns)
    except OSError:
        return None


@functools.lru_cache(maxsize=64)
def _text_task(env_id, kwargs_items, stamp=None):
    kwargs = dict(kwargs_items)
    try:
        if isinstance(kwargs.get("tokenizer"), str):
            from .text.datasets import load_tokenizer
            kwargs["tokenizer"] = load_tokenizer(kwargs["tokenizer"])
        if env_id == "text:dataset":
            from .text.datasets import from_records
            return from_records(kwargs.pop("data"), **kwargs)
        return make_task(env_id[len("text:"):], **kwargs)
    except ValueError as e:
        msg = str(e)
        field = "env" if msg.startswith("unknown task") else "env_kwargs"
        raise ValueError(f"{field}: {msg.replace('unknown task', 'unknown text task')}") from None


def _pretrained(config) -> bool:
    """Whether the config starts from a Hugging Face checkpoint folder (its tokenizer is the
    task's)."""
    if hasattr(config, "pretrained"):
        return bool(config.pretrained)
    path = getattr(config, "init_from", None)
    if not isinstance(path, str):
        return False
    try:
        from .text.pretrained import is_pretrained_dir
    except ImportError:
        return False
    return is_pretrained_dir(path)


def make_text_task(config):
    """The ``TextTask`` of a text config (``env="text:NAME"``), ``max_new_tokens`` applied.
    A dataset task (``text:dataset``, and reasoning-gym's natural form) is tokenized with
    ``env_kwargs["tokenizer"]`` (a Hugging Face folder), else with the ``init_from``
    checkpoint's tokenizer when that is a Hugging Face folder, else with the character
    tokenizer; it is built once per options (a data file: per its size and time)."""
    kwargs = dict(config.env_kwargs)
    if (config.env in TOKENIZER_TASKS and kwargs.get("tokenizer") is None
            and (config.env == "text:dataset" or kwargs.get("natural")) and _pretrained(config)):
        kwargs["tokenizer"] = config.init_from
    stamp = _file_stamp(kwargs["data"]) if isinstance(kwargs.get("data"), str) else None
    task = _text_task(config.env, tuple(sorted(kwargs.items())), stamp)
    m = getattr(config, "max_new_tokens", None)
    return task if m is None else task._replace(max_new_tokens=int(m))


def make_env(config):
    """``(env, env_params)`` for a config; env_params has the config's overrides applied."""
    return _make(config.env, tuple(sorted(config.env_kwargs.items())),
                 tuple(sorted(config.env_params.items())))


def max_episode_steps(config) -> int:
    """The time limit, which bounds every episode (and the GRPO rollout buffer); for a text
    task ``max_new_tokens``."""
    if config.env.startswith("text:"):
        return make_text_task(config).max_new_tokens
    return int(make_env(config)[1].max_steps_in_episode)


def action_spec(env, env_params) -> ActionSpec:
    from gymnax.environments import spaces
    space = env.action_space(env_params)
    if isinstance(space, spaces.Discrete):
        return ActionSpec(True, int(space.n), None, None)
    if isinstance(space, spaces.Box):
        shape = space.shape or (1,)
        return ActionSpec(False, int(jnp.prod(jnp.array(shape))), float(jnp.min(space.low)),
                          float(jnp.max(space.high)))
    raise ValueError(f"env: action space {type(space).__name__} is not supported")


def obs_shape(env, env_params) -> tuple:
    return tuple(env.observation_space(env_params).shape)


def env_action(spec: ActionSpec, action):
    """What the env receives: continuous samples are clipped to the bounds."""
    if spec.discrete:
        return action
    a = jnp.clip(action, spec.low, spec.high)
    return a
