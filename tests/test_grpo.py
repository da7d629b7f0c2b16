"""jaxgrpo.grpo: loss_weights and advantages on small hand-made rollouts, against NumPy
references; the reward transform applied before scoring."""
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxgrpo
from jaxgrpo.envs import make_env
from jaxgrpo.grpo import advantages, loss_weights
from jaxgrpo.rollout import Rollout, collect_episodes
from jaxgrpo.train import make_policy
from references import ref_episode_returns, ref_group_normalize, ref_reverse_discounted_cumsum

T = 6
# episode lengths, 3 groups of 4 episodes (ragged; group 2 has a zero-length episode)
LENGTHS = np.array([6, 2, 4, 1,   3, 3, 5, 6,   2, 0, 4, 1])
GROUP_ID = np.repeat(np.arange(3), 4).astype(np.int32)
N = LENGTHS.size


def prefix_mask(lengths, T=T):
    return np.arange(T)[:, None] < np.asarray(lengths)[None, :]


def make_rollout(reward, mask, group_id):
    Tn, Nn = mask.shape
    z = jnp.zeros((Tn, Nn), jnp.float32)
    f = jnp.zeros((Tn, Nn), bool)
    return Rollout(obs=jnp.zeros((Tn, Nn, 4), jnp.float32), action=jnp.zeros((Tn, Nn), jnp.int32),
                   logp=z, reward=jnp.asarray(reward, jnp.float32), mask=jnp.asarray(mask),
                   terminated=f, truncated=f, next_obs=None,
                   group_id=jnp.asarray(group_id, jnp.int32))


def config(**kw):
    return jaxgrpo.GRPOConfig(num_groups=3, group_size=4, **kw)


# ----------------------------------------------------------------------------- references
# (group normalization, episode returns and the discounted cumsum: references.py)

def ref_outcome(reward, mask, group_id, gamma, scale, baseline, eps, G):
    ret = ref_episode_returns(reward, mask, gamma)
    adv_ep = ref_group_normalize(ret, group_id, G, mask.any(0), scale, baseline, eps)
    return np.where(mask, adv_ep[None, :], 0.0), ret


def ref_process(reward, mask, group_id, gamma, scale, baseline, eps, G):
    Tn, Nn = mask.shape
    gid = np.broadcast_to(group_id[None, :], (Tn, Nn)).ravel()
    r = ref_group_normalize(reward.ravel(), gid, G, mask.ravel(), scale, baseline, eps)
    return ref_reverse_discounted_cumsum(r.reshape(Tn, Nn), gamma, mask)


def run_advantages(cfg, rollout, gamma):
    """Eager: after the first call the per-primitive compilation cache is shared by every
    config, which is much cheaper here than one jit compilation per config
    (test_advantages_under_jit checks jit gives the same)."""
    return advantages(cfg, rollout, gamma)


# ----------------------------------------------------------------------------- loss_weights

def test_loss_weights_all_types():
    mask = prefix_mask(LENGTHS)
    n_ep = int(np.sum(LENGTHS > 0))
    n_valid = int(mask.sum())
    m = jnp.asarray(mask)
    w = {k: np.asarray(loss_weights(m, k, T)) for k in ("grpo", "bnpo", "dapo", "dr_grpo")}
    for k, wk in w.items():
        assert wk.shape == (T, N)
        assert np.all(wk[~mask] == 0.0), k
        assert np.all(wk[mask] > 0.0), k
    ep_len = np.broadcast_to(np.maximum(LENGTHS, 1)[None, :], (T, N))
    np.testing.assert_allclose(w["grpo"][mask], (1.0 / ep_len / n_ep)[mask], rtol=1e-6)
    np.testing.assert_allclose(w["bnpo"][mask], 1.0 / n_valid, rtol=1e-6)
    np.testing.assert_array_equal(w["dapo"], w["bnpo"])
    np.testing.assert_allclose(w["dr_grpo"][mask], 1.0 / (n_ep * T), rtol=1e-6)
    # grpo and bnpo are means: the weights sum to 1
    np.testing.assert_allclose(w["grpo"].sum(), 1.0, rtol=1e-6)
    np.testing.assert_allclose(w["bnpo"].sum(), 1.0, rtol=1e-6)
    np.testing.assert_allclose(w["dr_grpo"].sum(), n_valid / (n_ep * T), rtol=1e-6)
    # each (nonempty) episode has total weight 1/n_ep under grpo, whatever its length
    per_ep = w["grpo"].sum(0)
    np.testing.assert_allclose(per_ep[LENGTHS > 0], 1.0 / n_ep, rtol=1e-6)
    assert per_ep[LENGTHS == 0] == 0.0


def test_loss_weights_horizon_and_aggregates():
    """Weighted sums of a per-step loss equal the NumPy aggregations they stand for."""
    rng = np.random.default_rng(0)
    lengths = np.array([5, 1, 3, 5])
    mask = prefix_mask(lengths, 5)
    loss = rng.normal(size=(5, 4))
    agg = lambda k, h: float(np.sum(np.asarray(loss_weights(jnp.asarray(mask), k, h)) * loss))
    seq_means = [loss[:L, n].mean() for n, L in enumerate(lengths)]
    np.testing.assert_allclose(agg("grpo", 5), np.mean(seq_means), rtol=1e-5)
    np.testing.assert_allclose(agg("bnpo", 5), loss[mask].mean(), rtol=1e-5)
    np.testing.assert_allclose(agg("dr_grpo", 500), loss[mask].sum() / (4 * 500), rtol=1e-5)


def test_loss_weights_all_masked_and_unknown():
    m = jnp.zeros((3, 2), bool)
    for k in ("grpo", "bnpo", "dapo", "dr_grpo"):
        w = np.asarray(loss_weights(m, k, 3))
        assert np.all(w == 0.0) and np.all(np.isfinite(w))
    with pytest.raises(ValueError, match="loss_type"):
        loss_weights(m, "token_mean", 3)


# ----------------------------------------------------------------------------- advantages

def random_rewards(seed, mask, discrete):
    rng = np.random.default_rng(seed)
    if discrete:
        r = rng.integers(0, 2, size=mask.shape).astype(np.float32)
    else:
        r = rng.normal(size=mask.shape).astype(np.float32)
    return np.where(mask, r, 7.0).astype(np.float32)      # junk on padding must not matter


@pytest.mark.parametrize("scale,baseline", list(itertools.product(("group", "batch", "none"),
                                                                  ("mean", "loo"))))
@pytest.mark.parametrize("supervision", ["outcome", "process"])
def test_advantages_against_numpy(supervision, scale, baseline):
    cfg = config(supervision=supervision, scale_rewards=scale, baseline=baseline)
    mask = prefix_mask(LENGTHS)
    for seed, gamma in ((0, 0.9), (1, 1.0)):
        reward = random_rewards(seed, mask, discrete=bool(seed))
        adv, metrics = run_advantages(cfg, make_rollout(reward, mask, GROUP_ID), gamma)
        adv = np.asarray(adv)
        clean = np.where(mask, reward, 0.0)
        fn = ref_outcome if supervision == "outcome" else ref_process
        ref = fn(clean, mask, GROUP_ID, gamma, scale, baseline, cfg.adv_eps, 3)
        if supervision == "outcome":
            ref = ref[0]
        np.testing.assert_allclose(adv, ref, rtol=2e-4, atol=2e-5)
        assert np.all(adv[~mask] == 0.0)
        assert np.all(np.isfinite(adv))
        np.testing.assert_allclose(float(metrics["adv_abs"]), np.abs(ref).sum() / mask.sum(),
                                   rtol=2e-4, atol=1e-6)


def test_outcome_constant_within_episode_and_group_centered():
    cfg = config()
    mask = prefix_mask(LENGTHS)
    reward = random_rewards(3, mask, discrete=False)
    adv = np.asarray(run_advantages(cfg, make_rollout(reward, mask, GROUP_ID), 0.95)[0])
    for n in range(N):
        col = adv[:LENGTHS[n], n]
        assert np.all(col == col[0]) if LENGTHS[n] else True
    ep_adv = adv[0]
    for g in range(3):
        sel = (GROUP_ID == g) & (LENGTHS > 0)
        assert abs(ep_adv[sel].sum()) < 1e-4
        if sel.sum() > 1:
            np.testing.assert_allclose(np.std(ep_adv[sel], ddof=1), 1.0, rtol=1e-3)


def test_outcome_cartpole_like_flat_group_and_metrics():
    """Reward 1 per step: returns differ only by length. A group whose episodes all have the
    same length is flat (advantage exactly 0); longer episodes get positive advantage."""
    lengths = np.array([6, 6, 6, 6,   1, 3, 5, 6,   2, 2, 4, 0])
    mask = prefix_mask(lengths)
    reward = mask.astype(np.float32)
    cfg = config()
    adv, metrics = run_advantages(cfg, make_rollout(reward, mask, GROUP_ID), 1.0)
    adv = np.asarray(adv)
    assert np.all(adv[:, :4] == 0.0)
    ep = adv[0, 4:8]
    assert np.all(np.diff(ep) > 0)
    np.testing.assert_allclose(adv, ref_outcome(reward, mask, GROUP_ID, 1.0, "group", "mean",
                                                cfg.adv_eps, 3)[0], rtol=2e-4, atol=2e-5)
    # metrics: per-group std of returns (group 2: unbiased std of [2, 2, 4]; empty episode out)
    stds = [0.0, np.std([1, 3, 5, 6], ddof=1), np.std([2, 2, 4], ddof=1)]
    np.testing.assert_allclose(float(metrics["reward_std"]), np.mean(stds), rtol=1e-5)
    np.testing.assert_allclose(float(metrics["frac_reward_zero_std"]), 1.0 / 3.0, rtol=1e-6)


def test_process_hand_example():
    """One group of two episodes, scale none, gamma 0.5: rewards centered over all 5 valid
    steps of the group, then summed (discounted) to the episode end."""
    mask = prefix_mask([3, 2], 3)
    reward = np.array([[1.0, 0.0], [2.0, 4.0], [5.0, 99.0]], np.float32)
    cfg = jaxgrpo.GRPOConfig(num_groups=1, group_size=2, supervision="process",
                             scale_rewards="none")
    adv, metrics = run_advantages(cfg, make_rollout(reward, mask, [0, 0]), 0.5)
    mean = (1 + 2 + 5 + 0 + 4) / 5
    c = np.where(mask, reward - mean, 0.0)
    expected = np.array([[c[0, 0] + 0.5 * c[1, 0] + 0.25 * c[2, 0], c[0, 1] + 0.5 * c[1, 1]],
                         [c[1, 0] + 0.5 * c[2, 0], c[1, 1]],
                         [c[2, 0], 0.0]])
    np.testing.assert_allclose(np.asarray(adv), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(float(metrics["reward_std"]), np.std([1, 2, 5, 0, 4], ddof=1),
                               rtol=1e-5)


def test_outcome_hand_example_gamma():
    """Discounted returns, scale none, loo baseline: 2 episodes per group."""
    mask = prefix_mask([3, 1], 3)
    reward = np.array([[1.0, 3.0], [1.0, 0.0], [1.0, 0.0]], np.float32)
    cfg = jaxgrpo.GRPOConfig(num_groups=1, group_size=2, scale_rewards="none", baseline="loo")
    adv, _ = run_advantages(cfg, make_rollout(reward, mask, [0, 0]), 0.5)
    R0, R1 = 1 + 0.5 + 0.25, 3.0
    expected = np.where(mask, np.array([[R0 - R1, R1 - R0]] * 3), 0.0)
    np.testing.assert_allclose(np.asarray(adv), expected, rtol=1e-6)


@pytest.mark.parametrize("supervision", ["outcome", "process"])
def test_advantages_under_jit(supervision):
    """As in training: inside jit with a traced gamma."""
    cfg = config(supervision=supervision, baseline="loo")
    mask = prefix_mask(LENGTHS)
    rollout = make_rollout(random_rewards(5, mask, discrete=False), mask, GROUP_ID)
    adv_jit, met_jit = jax.jit(lambda r, g: advantages(cfg, r, g))(rollout, jnp.float32(0.9))
    adv, met = advantages(cfg, rollout, 0.9)
    np.testing.assert_allclose(np.asarray(adv_jit), np.asarray(adv), rtol=1e-5, atol=1e-6)
    for k in met:
        np.testing.assert_allclose(float(met_jit[k]), float(met[k]), rtol=1e-5, atol=1e-7)
    assert np.any(np.asarray(adv_jit) != 0.0)


# ----------------------------------------------------------------------------- reward transform

def test_zeroing_transform_gives_zero_advantages():
    cfg = jaxgrpo.GRPOConfig(num_groups=2, group_size=4, reward_transform=lambda r, m: r * 0.0)
    env, env_params = make_env(cfg)
    policy = make_policy(cfg)
    params = policy.init(jax.random.key(0))
    rollout, _ = collect_episodes(policy, env, env_params, params, jax.random.key(3), 2, 4)
    adv, _ = advantages(cfg, rollout, 0.99)
    assert not np.asarray(adv).any()
    adv_id, _ = advantages(cfg.replace(reward_transform=None), rollout, 0.99)
    assert np.asarray(adv_id).any()
