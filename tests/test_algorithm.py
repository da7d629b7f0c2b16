"""jaxgrpo.algorithm: the Algorithm interface and make_train's table (train.ALGORITHMS,
train.algorithm), and the shared pieces: sync_reference against NumPy, adam's warmup and eps
against optax written out by hand, minibatch_learn's arguments to update.learn, gymnax_env,
no_carry. Tiny inputs, no rollouts."""
import types

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxgrpo
from jaxgrpo import envs, train, update
from jaxgrpo.algorithm import Algorithm, adam, gymnax_env, minibatch_learn, no_carry, sync_reference
from jaxgrpo.config import GRPOConfig, SFTConfig
from jaxgrpo.grpo import GRPO
from jaxgrpo.ppo import PPO
from jaxgrpo.text.grpo import TEXT_GRPO
from jaxgrpo.text.sft import SFT

TEXT = dict(env="text:addition", env_kwargs={"digits": 1}, num_layers=1, width=32, num_heads=2,
            max_len=16)
FUNCTIONS = ("make_env", "make_policy", "optimizer", "init_carry", "collect", "score", "loss",
             "learn")


# ----------------------------------------------------------------------------- the table

def test_table_maps_algo_and_env_kind_to_the_four_algorithms():
    assert train.ALGORITHMS == {("grpo", False): GRPO, ("ppo", False): PPO,
                                ("grpo", True): TEXT_GRPO, ("sft", True): SFT}
    assert train.algorithm(jaxgrpo.GRPOConfig()) is GRPO
    assert train.algorithm(jaxgrpo.PPOConfig()) is PPO
    assert train.algorithm(jaxgrpo.GRPOConfig(**TEXT)) is TEXT_GRPO
    assert train.algorithm(SFTConfig(**TEXT)) is SFT


def test_every_algorithm_has_callable_fields_and_sane_flags():
    assert Algorithm._fields[:len(FUNCTIONS)] == FUNCTIONS
    for algo in train.ALGORITHMS.values():
        assert isinstance(algo, Algorithm)
        for name in FUNCTIONS:
            assert callable(getattr(algo, name)), name
        assert isinstance(algo.reference, bool)
        assert isinstance(algo.budgeted, bool) or callable(algo.budgeted)
        assert algo.keys in (2, 3)
    assert (GRPO.reference, GRPO.keys) == (True, 3)
    # GRPO is budgeted only when it collects on-policy (the stream's iterations are exact)
    assert GRPO.budgeted(GRPOConfig(on_policy=True)) and not GRPO.budgeted(GRPOConfig())
    assert (TEXT_GRPO.reference, TEXT_GRPO.budgeted, TEXT_GRPO.keys) == (True, True, 3)
    assert (PPO.reference, PPO.budgeted, PPO.keys) == (False, False, 3)
    assert (SFT.reference, SFT.budgeted, SFT.keys) == (False, False, 2)
    f = lambda *a: None
    assert Algorithm(*[f] * len(FUNCTIONS))[len(FUNCTIONS):] == (False, False, 3)   # defaults


@pytest.mark.parametrize("algo, env, message", [
    ("ppo", "text:addition", "env: 'text:addition' has no PPO (text tasks run grpo, sft)"),
    ("sft", "CartPole-v1", "env: 'CartPole-v1' has no SFT (gymnax envs run grpo, ppo)"),
    ("dpo", "CartPole-v1", "env: 'CartPole-v1' has no DPO (gymnax envs run grpo, ppo)"),
])
def test_algorithm_refuses_a_combination_the_table_lacks(algo, env, message):
    config = types.SimpleNamespace(algo=algo, env=env)    # the configs refuse some themselves
    with pytest.raises(ValueError) as e:
        train.algorithm(config)
    assert str(e.value) == message


# ----------------------------------------------------------------------------- shared pieces

def test_gymnax_env_and_no_carry():
    config = jaxgrpo.GRPOConfig()
    env, params = gymnax_env(config)
    want_env, want_params = envs.make_env(config)
    assert type(env) is type(want_env) and params == want_params
    assert no_carry(config, env, None, {}) is None
    assert no_carry(config, env, None, {}, jax.random.key(0)) is None


def test_minibatch_learn_passes_the_config_to_update_learn(monkeypatch):
    seen = {}

    def fake_learn(*args, **kw):
        seen["args"], seen["kw"] = args, kw
        return "params", "opt_state", {"m": 1}

    monkeypatch.setattr(update, "learn", fake_learn)
    config = types.SimpleNamespace(update_epochs=3, num_minibatches=5, chunk_size=7)
    args = ("loss_fn", "p", "o", "opt", "batch", "weight", "mask", "key")
    for all_valid in (False, True):
        learn = minibatch_learn(lambda c: c.chunk_size * 2, all_valid=all_valid)
        assert learn(config, *args) == ("params", "opt_state", {"m": 1})
        assert seen["args"] == args
        assert seen["kw"] == dict(epochs=3, num_minibatches=5, chunk=14, all_valid=all_valid)
    minibatch_learn(lambda c: 1)(config, *args)
    assert seen["kw"]["all_valid"] is False                                  # the default


def test_sync_reference_against_numpy():
    rng = np.random.default_rng(0)
    params = {"a": rng.normal(size=(3, 2)).astype(np.float32), "b": np.float32(2.5)}
    ref = {"a": rng.normal(size=(3, 2)).astype(np.float32), "b": np.float32(-1.0)}
    hp = {"ref_mixup_alpha": jnp.float32(0.3)}
    never = types.SimpleNamespace(ref_sync_every=0)
    assert sync_reference(never, jnp.int32(4), params, ref, hp) is ref      # 0: never synced
    every3 = types.SimpleNamespace(ref_sync_every=3)
    sync = jax.jit(lambda i, p, r: sync_reference(every3, i, p, r, hp))    # iteration traced
    for i in range(7):
        out = jax.tree.map(np.asarray, sync(jnp.int32(i), params, ref))
        if (i + 1) % 3 == 0:                                              # iterations 2 and 5
            want = jax.tree.map(lambda p, r: np.float32(0.3) * p + np.float32(0.7) * r,
                                params, ref)
            for k in params:
                np.testing.assert_allclose(out[k], want[k], rtol=1e-6, atol=1e-7)
                assert not np.allclose(out[k], ref[k])
        else:
            for k in params:
                np.testing.assert_array_equal(out[k], ref[k])             # exactly the ref
    one = types.SimpleNamespace(ref_sync_every=1)                         # every iteration;
    out = sync_reference(one, jnp.int32(0), params, ref, {"ref_mixup_alpha": jnp.float32(1.0)})
    for k in params:                                                      # alpha 1: a copy
        np.testing.assert_array_equal(out[k], params[k])


def _updates(tx, grads):
    params = jax.tree.map(jnp.zeros_like, grads[0])
    state = tx.init(params)
    out = []
    for g in grads:
        u, state = tx.update(g, state, params)
        out.append(jax.tree.map(np.asarray, u))
    return out


def test_adam_warmup_ramps_the_learning_rate_against_optax():
    rng = np.random.default_rng(1)
    # gradients of size ~1e-5, so eps (1e-5, not optax's 1e-8) changes the updates
    grads = [{"w": jnp.asarray(rng.normal(size=(4,)) * 1e-5, jnp.float32),
              "b": jnp.asarray(rng.normal(size=(2, 2)) * 1e-5, jnp.float32)} for _ in range(6)]
    hp = {"lr": 0.1, "max_grad_norm": 1e9}
    unit = _updates(optax.adam(1.0, eps=1e-5), grads)                  # lr 1: the direction
    warm = _updates(adam(types.SimpleNamespace(warmup_steps=4), hp, 10), grads)
    cold = _updates(adam(types.SimpleNamespace(), hp, 10), grads)      # no warmup_steps field
    for k in range(6):
        ramp = min(1.0, (k + 1) / 4)                                    # 1/4, 2/4, 3/4, 1, 1, 1
        for name in ("w", "b"):
            np.testing.assert_allclose(warm[k][name], 0.1 * ramp * unit[k][name], rtol=1e-5)
            np.testing.assert_allclose(cold[k][name], 0.1 * unit[k][name], rtol=1e-5)
    eps8 = _updates(optax.adam(0.1), grads)
    assert not np.allclose(cold[0]["w"], eps8[0]["w"], rtol=1e-2)      # eps 1e-5 matters here


def test_adam_clips_and_takes_an_lr_schedule():
    rng = np.random.default_rng(2)
    grads = [{"w": jnp.asarray(rng.normal(size=(5,)) * s, jnp.float32)} for s in (10, 0.1, 3)]
    hp = {"lr": jnp.float32(0.5), "max_grad_norm": 1.0}
    schedule = optax.linear_schedule(0.2, 0.0, 4)
    config = types.SimpleNamespace(warmup_steps=2)
    got = _updates(adam(config, hp, 4, lr=schedule), grads)
    by_hand = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(
        lambda count: schedule(count) * jnp.minimum(1.0, (count + 1) / 2), eps=1e-5))
    want = _updates(by_hand, grads)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g["w"], w["w"], rtol=1e-5, atol=1e-9)
    unclipped = _updates(optax.chain(optax.adam(
        lambda count: schedule(count) * jnp.minimum(1.0, (count + 1) / 2), eps=1e-5)), grads)
    assert not np.allclose(got[1]["w"], unclipped[1]["w"], rtol=1e-3)  # the clip is applied
