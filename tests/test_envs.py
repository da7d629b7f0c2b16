"""jaxgrpo.envs: construction and validation of gymnax and text environments (errors name the
field), action-space facts, the time limit, and the action an env receives."""
import types

import jax.numpy as jnp
import numpy as np
import pytest

from jaxgrpo import envs
from jaxgrpo.envs import (ActionSpec, action_spec, env_action, make_env, make_text_task,
                          max_episode_steps, obs_shape, validate_env)


def cfg(env="CartPole-v1", env_kwargs=None, env_params=None, **kw):
    """The fields of a config envs reads (no validation of its own)."""
    return types.SimpleNamespace(env=env, env_kwargs=env_kwargs or {},
                                 env_params=env_params or {}, **kw)


@pytest.mark.parametrize("env_id,kwargs,params,message", [
    ("CartPole", {}, {}, r"^env: unknown gymnax environment 'CartPole' \(did you mean "
                         r"'CartPole-v1'\?\)"),
    ("Nope-v0", {}, {}, r"^env: unknown gymnax environment 'Nope-v0'; known: .*CartPole-v1"),
    ("CartPole-v1", {"colour": 1}, {}, r"^env_kwargs: CartPole-v1 does not accept"),
    ("CartPole-v1", {}, {"gravityy": 9.8}, r"^env_params: CartPole-v1 has no parameter "
                                           r"'gravityy'; it has \[.*'gravity'"),
    ("CartPole-v1", {}, {"gravity": "high"}, r"^env_params: gravity must be a number"),
    ("CartPole-v1", {}, {"max_steps_in_episode": 0}, r"^env_params: max_steps_in_episode must "
                                                     r"be a positive int"),
    ("CartPole-v1", {}, {"max_steps_in_episode": 2.5}, r"max_steps_in_episode must be a "
                                                       r"positive int, got 2.5"),
    ("text:sort", {}, {"length": 3}, r"^env_params: text tasks take their options in env_kwargs"),
    ("text:nope", {}, {}, r"^env: unknown text task 'nope'"),
    ("text:sort", {"lenght": 3}, {}, r"^env_kwargs: sort: unknown option 'lenght'"),
])
def test_bad_environments_name_the_field(env_id, kwargs, params, message):
    with pytest.raises(ValueError, match=message):
        validate_env(env_id, kwargs, params)


def test_good_environments_pass():
    validate_env("CartPole-v1", {}, {"max_steps_in_episode": 50, "gravity": 10.0})
    validate_env("text:sort", {"length": 3}, {})


def test_make_env_applies_the_overrides_and_is_cached():
    env, params = make_env(cfg(env_params={"max_steps_in_episode": 37, "gravity": 5.0}))
    assert params.max_steps_in_episode == 37 and params.gravity == 5.0
    assert make_env(cfg())[1].max_steps_in_episode == 500      # the default is untouched
    a = make_env(cfg(env_params={"max_steps_in_episode": 37, "gravity": 5.0}))
    assert a[0] is env and a[1] is params                       # one env per (id, overrides)


@pytest.mark.parametrize("env_id,spec,shape", [
    ("CartPole-v1", ActionSpec(True, 2, None, None), (4,)),
    ("Acrobot-v1", ActionSpec(True, 3, None, None), (6,)),
    ("Pendulum-v1", ActionSpec(False, 1, -2.0, 2.0), (3,)),
    ("MountainCarContinuous-v0", ActionSpec(False, 1, -1.0, 1.0), (2,)),
])
def test_action_spec_and_obs_shape(env_id, spec, shape):
    env, params = make_env(cfg(env_id))
    assert action_spec(env, params) == spec
    assert obs_shape(env, params) == shape


def test_env_action_clips_continuous_actions_only():
    cont = ActionSpec(False, 2, -1.0, 0.5)
    np.testing.assert_array_equal(env_action(cont, jnp.array([-3.0, 0.25])), [-1.0, 0.25])
    np.testing.assert_array_equal(env_action(cont, jnp.array([0.75, -0.75])), [0.5, -0.75])
    a = jnp.array(7)
    assert env_action(ActionSpec(True, 2, None, None), a) is a


def test_max_episode_steps():
    assert max_episode_steps(cfg()) == 500
    assert max_episode_steps(cfg(env_params={"max_steps_in_episode": 20})) == 20
    text = cfg("text:sort", {"length": 3}, max_new_tokens=None)
    task = make_text_task(text)
    assert max_episode_steps(text) == task.max_new_tokens >= 4      # 3 digits and EOS
    short = cfg("text:sort", {"length": 3}, max_new_tokens=2)
    assert make_text_task(short).max_new_tokens == 2 == max_episode_steps(short)
    assert make_text_task(short).prompt_len == task.prompt_len


def test_text_tasks_are_built_once():
    a = make_text_task(cfg("text:sort", {"length": 3}))
    assert make_text_task(cfg("text:sort", {"length": 3})) is a
    assert envs._text_task.cache_info().hits >= 1
