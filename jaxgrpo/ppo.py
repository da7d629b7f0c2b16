"""PPO baseline (PureJaxRL-equivalent): GAE, clipped value loss, per-minibatch advantage
normalization, entropy bonus. Truncated steps bootstrap from the value of
``info["final_observation"]``. ``PPO`` is its entry in ``make_train``'s table
(``jaxgrpo.algorithm.Algorithm``)."""
from __future__ import annotations

import jax.numpy as jnp

from .advantages import gae
from .algorithm import Algorithm, adam, gymnax_env, gymnax_policy, minibatch_learn
from .losses import clip_ratios, clipped_surrogate, clipped_value_loss
from .rollout import Rollout, collect_segments, reset_segments


def optimizer(config, hp, num_iterations):
    """Adam, its learning rate annealed linearly to 0 over the run with ``anneal_lr``."""
    if not config.anneal_lr:
        return adam(config, hp, num_iterations)
    per_iter = config.update_epochs * config.num_minibatches
    return adam(config, hp, num_iterations,
                lr=lambda count: hp["lr"] * (1.0 - (count // per_iter) / num_iterations))


def init_carry(config, env, policy, params, key):
    """``num_envs`` freshly reset envs (a ``SegmentCarry``), stepped on across iterations."""
    env, env_params = env
    return reset_segments(env, env_params, key, config.num_envs)


def collect(config, env, policy, params, key, carry, active, hp):
    """``num_steps`` steps of the ``num_envs`` envs. -> (Rollout, EpisodeStats, carry)."""
    env, env_params = env
    return collect_segments(policy, env, env_params, params, key, carry, config.num_steps)


def score(config, policy, params, rollout: Rollout, hp):
    """-> (batch of flat [T*N] samples, weight [T*N], mask [T*N], metrics)."""
    T, N = rollout.mask.shape
    flat = lambda x: x.reshape(-1, *x.shape[2:])
    values = policy.value(params, flat(rollout.obs)).reshape(T, N)
    next_values = policy.value(params, flat(rollout.next_obs)).reshape(T, N)
    done = rollout.terminated | rollout.truncated
    reward = config.reward_transform(rollout.reward, rollout.mask)
    adv, ret = gae(reward, values, next_values, rollout.terminated.astype(jnp.float32),
                   done, hp["gamma"], hp["gae_lambda"])
    batch = {"obs": flat(rollout.obs), "action": flat(rollout.action), "logp": flat(rollout.logp),
             "adv": flat(adv), "value": flat(values), "ret": flat(ret)}
    weight = jnp.full((T * N,), 1.0 / (T * N))
    return batch, weight, flat(rollout.mask), {"adv_abs": jnp.mean(jnp.abs(adv))}


def loss(config, policy, params, ref_params, chunk, weight, mask, hp):
    """Per-sample: clipped surrogate (advantages normalized over the minibatch)
    + vf_coef * clipped value loss - ent_coef * entropy."""
    m = mask.astype(jnp.float32)
    n = jnp.maximum(jnp.sum(m), 1.0)
    adv = chunk["adv"]
    mean = jnp.sum(adv * m) / n
    std = jnp.sqrt(jnp.sum(m * (adv - mean) ** 2) / n)
    adv = (adv - mean) / (std + 1e-8)
    dist = policy.dist(params, chunk["obs"])
    logp = dist.log_prob(chunk["action"])
    entropy = dist.entropy()
    pg, _ = clipped_surrogate(logp, chunk["logp"], adv, hp["clip_eps"], hp["clip_eps"])
    value = policy.value(params, chunk["obs"])
    vl = clipped_value_loss(value, chunk["value"], chunk["ret"], hp["clip_eps"])
    per_sample = pg + hp["vf_coef"] * vl - hp["ent_coef"] * entropy
    log_ratio = logp - chunk["logp"]
    s = lambda x: jnp.sum(x * m)
    aux = {"count": jnp.sum(m), "loss": s(per_sample), "pg_loss": s(pg), "value_loss": s(vl),
           "entropy": s(entropy),
           **clip_ratios(jnp.exp(log_ratio), adv, hp["clip_eps"], hp["clip_eps"], None, s),
           "approx_kl": s(jnp.expm1(log_ratio) - log_ratio)}
    return jnp.sum(weight * per_sample * m), aux


PPO = Algorithm(make_env=gymnax_env, make_policy=gymnax_policy(with_critic=True),
                optimizer=optimizer, init_carry=init_carry, collect=collect, score=score,
                loss=loss,
                learn=minibatch_learn(lambda c: c.num_envs * c.num_steps // c.num_minibatches,
                                      all_valid=True))
