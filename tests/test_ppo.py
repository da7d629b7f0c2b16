"""jaxgrpo.ppo: score (GAE, returns, weights) and loss (per-minibatch advantage normalization,
clipped surrogate, clipped value loss, entropy bonus) against plain NumPy, on hand-made
rollouts and a linear softmax policy (no environment, nothing to compile but the pieces)."""
import distrax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxgrpo
from jaxgrpo import ppo, rewards
from jaxgrpo.rollout import Rollout
from references import ref_gae

T, N, D, A = 6, 3, 4, 3


class LinearPolicy:
    """logits = obs @ pi, value = obs @ v."""

    def dist(self, params, obs):
        return distrax.Categorical(logits=obs @ params["pi"])

    def value(self, params, obs):
        return obs @ params["v"]


POLICY = LinearPolicy()


def make_params(seed=0):
    rng = np.random.default_rng(seed)
    return {"pi": jnp.asarray(rng.normal(size=(D, A)), jnp.float32),
            "v": jnp.asarray(rng.normal(size=D), jnp.float32)}


def make_rollout(seed=0):
    rng = np.random.default_rng(seed)
    f = lambda *s: jnp.asarray(rng.normal(size=s), jnp.float32)
    terminated = rng.random((T, N)) < 0.15
    truncated = ~terminated & (rng.random((T, N)) < 0.15)
    return Rollout(obs=f(T, N, D), action=jnp.asarray(rng.integers(0, A, (T, N)), jnp.int32),
                   logp=jnp.asarray(np.log(rng.uniform(0.1, 0.9, (T, N))), jnp.float32),
                   reward=f(T, N), mask=jnp.ones((T, N), bool), terminated=jnp.asarray(terminated),
                   truncated=jnp.asarray(truncated), next_obs=f(T, N, D),
                   group_id=jnp.arange(N, dtype=jnp.int32))


CFG = jaxgrpo.PPOConfig(num_envs=N, num_steps=T, num_minibatches=2, gamma=0.9, gae_lambda=0.8)


@pytest.mark.parametrize("transform", [None, "symlog", rewards.scale(0.0)],
                         ids=["identity", "symlog", "zero"])
def test_score_is_gae_of_the_transformed_rewards(transform):
    cfg, params, r = CFG.replace(reward_transform=transform), make_params(), make_rollout()
    batch, weight, mask, metrics = ppo.score(cfg, POLICY, params, r, cfg.hparams())
    np64 = lambda x: np.asarray(x, np.float64)
    value = np64(r.obs) @ np64(params["v"])
    next_value = np64(r.next_obs) @ np64(params["v"])
    reward = np64(cfg.reward_transform(r.reward, r.mask))
    adv, ret = ref_gae(reward, value, next_value, np64(r.terminated),
                       np64(r.terminated | r.truncated), 0.9, 0.8)
    np.testing.assert_allclose(batch["adv"], adv.ravel(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(batch["ret"], ret.ravel(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(batch["value"], value.ravel(), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(batch["obs"], np.asarray(r.obs).reshape(T * N, D))
    np.testing.assert_array_equal(batch["action"], np.asarray(r.action).ravel())
    np.testing.assert_array_equal(batch["logp"], np.asarray(r.logp).ravel())
    np.testing.assert_allclose(weight, np.full(T * N, 1 / (T * N)), rtol=1e-6)
    assert np.asarray(mask).all() and mask.shape == (T * N,)
    np.testing.assert_allclose(metrics["adv_abs"], np.abs(adv).mean(), rtol=1e-5)


def test_ppo_applies_the_transform():
    params, r = make_params(1), make_rollout(1)
    cfg = CFG.replace(reward_transform=rewards.scale(0.0))
    batch, *_ = ppo.score(cfg, POLICY, params, r, cfg.hparams())
    b1, *_ = ppo.score(cfg.replace(reward_transform=None), POLICY, params, r, cfg.hparams())
    # zero rewards: returns are the bootstrapped values only, and differ from the real ones
    assert not np.allclose(batch["ret"], b1["ret"])
    zero = r._replace(reward=jnp.zeros_like(r.reward))
    b0, *_ = ppo.score(CFG, POLICY, params, zero, CFG.hparams())
    np.testing.assert_array_equal(batch["ret"], b0["ret"])


def ref_loss(params, chunk, weight, mask, clip_eps, vf_coef, ent_coef):
    """NumPy per-sample PPO loss and metric sums over the masked samples."""
    p = {k: np.asarray(v, np.float64) for k, v in params.items()}
    c = {k: np.asarray(v, np.float64) for k, v in chunk.items()}
    m = np.asarray(mask)
    adv = c["adv"]
    adv = (adv - adv[m].mean()) / (adv[m].std() + 1e-8)
    logits = c["obs"] @ p["pi"]
    logits = logits - logits.max(1, keepdims=True)
    logp_all = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    logp = logp_all[np.arange(len(adv)), np.asarray(chunk["action"])]
    entropy = -(np.exp(logp_all) * logp_all).sum(1)
    ratio = np.exp(logp - c["logp"])
    rc = np.clip(ratio, 1 - clip_eps, 1 + clip_eps)
    pg = -np.minimum(ratio * adv, rc * adv)
    value = c["obs"] @ p["v"]
    vclip = c["value"] + np.clip(value - c["value"], -clip_eps, clip_eps)
    vl = 0.5 * np.maximum((value - c["ret"]) ** 2, (vclip - c["ret"]) ** 2)
    per = pg + vf_coef * vl - ent_coef * entropy
    lr = logp - c["logp"]
    s = lambda x: x[m].sum()
    aux = {"count": m.sum(), "loss": s(per), "pg_loss": s(pg), "value_loss": s(vl),
           "entropy": s(entropy), "clipped": s((ratio * adv) > (rc * adv)),
           "approx_kl": s(np.expm1(lr) - lr)}
    return (np.asarray(weight, np.float64) * per)[m].sum(), aux


@pytest.mark.parametrize("seed", range(3))
def test_loss_matches_numpy(seed):
    cfg = CFG.replace(clip_eps=0.15, vf_coef=0.7, ent_coef=0.05)
    params = make_params(seed)
    batch, weight, _, _ = ppo.score(cfg, POLICY, make_params(seed + 10), make_rollout(seed),
                                    cfg.hparams())
    mask = jnp.asarray(np.random.default_rng(seed).random(T * N) < 0.7)
    loss, aux = ppo.loss(cfg, POLICY, params, None, batch, weight, mask, cfg.hparams())
    ref, ref_aux = ref_loss(params, batch, weight, mask, 0.15, 0.7, 0.05)
    np.testing.assert_allclose(loss, ref, rtol=1e-4, atol=1e-6)
    clip_key = "clip_ratio/region_mean"
    for k, v in ref_aux.items():
        np.testing.assert_allclose(aux[clip_key if k == "clipped" else k], v, rtol=1e-4,
                                   atol=1e-5, err_msg=k)
    assert ref_aux["clipped"] > 0          # some samples clip: the test means it


def test_loss_ignores_masked_samples_and_normalizes_per_minibatch():
    """Masked samples do not enter the advantage normalization or the sums; scaling every
    advantage by c > 0 does not change the loss (normalized per minibatch)."""
    params = make_params(3)
    batch, weight, _, _ = ppo.score(CFG, POLICY, make_params(4), make_rollout(3), CFG.hparams())
    mask = jnp.asarray(np.arange(T * N) % 4 != 0)
    loss, aux = ppo.loss(CFG, POLICY, params, None, batch, weight, mask, CFG.hparams())
    dirty = {**batch, "adv": jnp.where(mask, batch["adv"], 1e6),
             "ret": jnp.where(mask, batch["ret"], -1e6)}
    loss2, aux2 = ppo.loss(CFG, POLICY, params, None, dirty, weight, mask, CFG.hparams())
    np.testing.assert_allclose(loss2, loss, rtol=1e-5)
    for k in aux:
        np.testing.assert_allclose(aux2[k], aux[k], rtol=1e-5, err_msg=k)
    scaled = {**batch, "adv": batch["adv"] * 7.0}
    loss3, _ = ppo.loss(CFG, POLICY, params, None, scaled, weight, mask, CFG.hparams())
    np.testing.assert_allclose(loss3, loss, rtol=1e-4)
