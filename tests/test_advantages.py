"""jaxgrpo.advantages against plain NumPy (float64) loop references (group_stats's here; the
shared ones in references.py)."""
import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgrpo.advantages import (episode_returns, gae, group_normalize, group_stats,
                                reverse_discounted_cumsum)
from references import (ref_episode_returns, ref_gae, ref_group_normalize,
                        ref_reverse_discounted_cumsum)

SCALES = ("group", "batch", "none")
BASELINES = ("mean", "loo")
TOL = dict(rtol=2e-4, atol=2e-5)


# ----------------------------------------------------------------------------- references

def ref_group_stats(values, group_ids, num_groups, mask=None):
    v = np.asarray(values, np.float32).astype(np.float64)
    gid = np.asarray(group_ids)
    mask = np.ones(v.shape, bool) if mask is None else np.asarray(mask, bool)
    std = np.zeros(num_groups)
    zero = np.zeros(num_groups, bool)
    for g in range(num_groups):
        x = v[(gid == g) & mask]
        if x.size <= 1:
            zero[g] = True
            continue
        std[g] = np.std(x, ddof=1)
        zero[g] = bool(np.all(x == x[0]))
    return std, zero


def ragged_ids(sizes):
    return np.repeat(np.arange(len(sizes)), sizes).astype(np.int32)


PAD_B, PAD_G = 64, 16


@functools.lru_cache(maxsize=None)
def _jitted(scale, baseline):
    return jax.jit(lambda v, g, m, eps: group_normalize(v, g, PAD_G, mask=m, scale=scale,
                                                        baseline=baseline, eps=eps))


def gn(values, group_ids, num_groups, mask=None, scale="group", baseline="mean", eps=1e-4):
    """group_normalize on inputs padded to one fixed shape (masked padding in group 0, extra
    empty groups), so each (scale, baseline) compiles once. Padding is harmless: masked entries
    and empty groups do not change the result (tested unpadded in test_masked_values_do_not_matter
    and the tests calling group_normalize directly)."""
    B = len(values)
    assert B <= PAD_B and num_groups <= PAD_G
    v = np.zeros(PAD_B, np.float32)
    g = np.zeros(PAD_B, np.int32)
    m = np.zeros(PAD_B, bool)
    v[:B], g[:B] = values, group_ids
    m[:B] = True if mask is None else mask
    return np.asarray(_jitted(scale, baseline)(v, g, m, np.float32(eps)))[:B]


_jit_gn = jax.jit(group_normalize, static_argnames=("num_groups", "scale", "baseline"))


def gn_direct(*args, **kw):
    """Unpadded (jitted, num_groups static)."""
    return np.asarray(_jit_gn(*args, **kw))


# ----------------------------------------------------------------------------- group_normalize

@pytest.mark.parametrize("scale,baseline", list(itertools.product(SCALES, BASELINES)))
def test_equal_groups_all_modes(scale, baseline):
    rng = np.random.default_rng(0)
    G, S = 4, 6
    values = rng.normal(size=G * S).astype(np.float32)
    gid = ragged_ids([S] * G)
    perm = rng.permutation(G * S)                # group ids need not be contiguous
    values, gid = values[perm], gid[perm]
    out = gn(values, gid, G, scale=scale, baseline=baseline)
    np.testing.assert_allclose(out, ref_group_normalize(values, gid, G, scale=scale,
                                                        baseline=baseline), **TOL)
    assert np.all(np.isfinite(out))
    if baseline == "mean":                        # centered: each group sums to 0
        for g in range(G):
            assert abs(out[gid == g].sum()) < 1e-4


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("scale,baseline", list(itertools.product(SCALES, BASELINES)))
def test_random_ragged_masked(seed, scale, baseline):
    """Random ragged groups (incl. singletons and empty groups), a random mask, and a mix of
    continuous and small-integer values (so zero-spread groups occur)."""
    rng = np.random.default_rng(seed)
    G = 7
    sizes = rng.integers(0, 6, size=G - 1).tolist() + [0]          # last group always empty
    gid = ragged_ids(sizes)
    B = gid.size
    gid = gid[rng.permutation(B)]
    if seed % 2:
        values = rng.integers(0, 3, size=B).astype(np.float32)
    else:
        values = (rng.normal(size=B) * 3 + 1).astype(np.float32)
    mask = rng.random(B) < 0.8
    eps = [1e-4, 1e-2, 0.0][seed % 3]
    out = gn(values, gid, G, mask=mask, scale=scale, baseline=baseline, eps=eps)
    ref = ref_group_normalize(values, gid, G, mask, scale, baseline, eps)
    np.testing.assert_allclose(out, ref, **TOL)
    assert np.all(np.isfinite(out))
    assert np.all(out[ref == 0] == 0)               # exact zeros stay exact
    assert np.all(out[~mask] == 0)


@pytest.mark.parametrize("scale,baseline", list(itertools.product(SCALES, BASELINES)))
def test_ragged_sizes_1_2_5_3(scale, baseline):
    sizes = [1, 2, 5, 3]
    gid = ragged_ids(sizes)
    values = np.array([7.0, 1.0, 4.0, 0.5, -1.0, 2.0, 3.5, 0.0, 9.0, -2.0, 1.5], np.float32)
    out = gn(values, gid, 4, scale=scale, baseline=baseline)
    np.testing.assert_allclose(out, ref_group_normalize(values, gid, 4, scale=scale,
                                                        baseline=baseline), **TOL)
    assert out[0] == 0.0                             # singleton
    # a group of two with group scale is +-1/sqrt(2) * (1 / (1 + eps/std)) (mean baseline)
    if scale == "group" and baseline == "mean":
        std = abs(1.0 - 4.0) / np.sqrt(2)
        np.testing.assert_allclose(out[1:3], np.array([-1.5, 1.5]) / (std + 1e-4), rtol=1e-5)


@pytest.mark.parametrize("scale,baseline", list(itertools.product(SCALES, BASELINES)))
def test_singleton_and_empty_groups_give_exact_zero(scale, baseline):
    values = np.array([3.0, -1.0, 2.0, 5.0], np.float32)
    gid = np.array([0, 2, 2, 4], np.int32)            # groups 0,4 singletons; 1,3,5 empty
    out = gn(values, gid, 6, scale=scale, baseline=baseline)
    assert out[0] == 0.0 and out[3] == 0.0
    assert np.all(np.isfinite(out))
    assert out[1] != 0.0 and out[2] != 0.0
    np.testing.assert_allclose(out, ref_group_normalize(values, gid, 6, scale=scale,
                                                        baseline=baseline), **TOL)


@pytest.mark.parametrize("value", [0.1, 0.7, 1.0 / 3.0, -2.3, 1e-3, 123.456, 0.0])
@pytest.mark.parametrize("size", [2, 3, 5, 7, 10])
def test_zero_variance_group_is_exactly_zero(value, size):
    """A group whose values are all equal gives exactly 0 even when its float32 mean is not
    exactly the value (e.g. 0.1 * 3 / 3); the other group is unaffected."""
    values = np.concatenate([np.full(size, value), [0.0, 1.0, 3.0]]).astype(np.float32)
    gid = np.array([0] * size + [1, 1, 1], np.int32)
    for scale, baseline in itertools.product(SCALES, BASELINES):
        out = gn(values, gid, 2, scale=scale, baseline=baseline, eps=0.0)
        assert np.all(out[:size] == 0.0), (scale, baseline, out)
        assert np.all(np.isfinite(out))
        np.testing.assert_allclose(out, ref_group_normalize(values, gid, 2, scale=scale,
                                                            baseline=baseline, eps=0.0), **TOL)


def test_zero_variance_among_unmasked_only():
    """Only the unmasked members decide whether a group is flat."""
    values = np.array([0.1, 0.1, 5.0, 0.1], np.float32)
    mask = np.array([True, True, False, True])
    for scale, baseline in itertools.product(SCALES, BASELINES):
        out = gn(values, np.zeros(4, np.int32), 1, mask=mask, scale=scale, baseline=baseline,
                 eps=0.0)
        assert np.all(out == 0.0), (scale, baseline, out)


def test_single_unmasked_member_is_singleton():
    values = np.array([1.0, 9.0, -4.0], np.float32)
    mask = np.array([False, True, False])
    for scale, baseline in itertools.product(SCALES, BASELINES):
        out = gn(values, np.zeros(3, np.int32), 1, mask=mask, scale=scale, baseline=baseline)
        assert np.all(out == 0.0)


@pytest.mark.parametrize("scale,baseline", list(itertools.product(SCALES, BASELINES)))
def test_masked_values_do_not_matter(scale, baseline):
    rng = np.random.default_rng(1)
    gid = ragged_ids([4, 3, 5, 2])
    values = rng.normal(size=gid.size).astype(np.float32)
    mask = np.ones(gid.size, bool)
    mask[[1, 5, 8, 13]] = False
    base = gn_direct(values, gid, 4, mask=mask, scale=scale, baseline=baseline)
    assert np.all(base[~mask] == 0.0)
    for junk in (0.0, 1e6, -3e7, np.nan, np.inf):
        v2 = values.copy()
        v2[~mask] = junk
        out = gn_direct(v2, gid, 4, mask=mask, scale=scale, baseline=baseline)
        np.testing.assert_array_equal(out, base)
    # and equal to normalizing only the unmasked entries
    sub = gn_direct(values[mask], gid[mask], 4, scale=scale, baseline=baseline)
    np.testing.assert_allclose(base[mask], sub, rtol=1e-6, atol=1e-7)


def test_unbiased_group_std():
    values = np.array([1.0, 2.0, 3.0, 4.0], np.float32)       # ddof=1 std = sqrt(5/3)
    out = gn_direct(values, np.zeros(4, np.int32), 1, eps=0.0)
    np.testing.assert_allclose(out, (values - 2.5) / np.sqrt(5.0 / 3.0), rtol=1e-6)
    # population std would give a different answer
    assert not np.allclose(out, (values - 2.5) / np.std(values), rtol=1e-3)


def test_batch_std_is_unbiased_over_all_unmasked():
    values = np.array([1.0, 3.0, 10.0, 20.0, 30.0, 99.0], np.float32)
    gid = np.array([0, 0, 1, 1, 1, 2], np.int32)
    mask = np.array([True, True, True, True, True, False])
    out = gn_direct(values, gid, 3, mask=mask, scale="batch", eps=0.0)
    bstd = np.std(values[mask], ddof=1)
    expected = np.array([-1.0, 1.0, -10.0, 0.0, 10.0, 0.0]) / bstd
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-7)


def test_scale_none_is_plain_centering():
    values = np.array([1.0, 3.0, 8.0, 10.0, 30.0], np.float32)
    gid = np.array([0, 0, 0, 1, 1], np.int32)
    out = gn_direct(values, gid, 2, scale="none")
    np.testing.assert_allclose(out, [-3.0, -1.0, 4.0, -10.0, 10.0], rtol=1e-6)


def test_loo_baseline_explicit():
    values = np.array([1.0, 2.0, 6.0], np.float32)
    out = gn_direct(values, np.zeros(3, np.int32), 1, scale="none", baseline="loo")
    # x - mean(others): 1-4, 2-3.5, 6-1.5
    np.testing.assert_allclose(out, [-3.0, -1.5, 4.5], rtol=1e-6)


@pytest.mark.parametrize("G", [2, 3, 4, 8, 16])
@pytest.mark.parametrize("scale", SCALES)
def test_rloo_identity(G, scale):
    """x - mean(others) = G/(G-1) * (x - mean) for a group of size G (RLOO, Kool et al.)."""
    rng = np.random.default_rng(G)
    values = rng.normal(size=(3 * G,)).astype(np.float32)
    gid = ragged_ids([G] * 3)
    loo = gn(values, gid, 3, scale=scale, baseline="loo")
    mean = gn(values, gid, 3, scale=scale, baseline="mean")
    np.testing.assert_allclose(loo, G / (G - 1) * mean, rtol=1e-4, atol=1e-5)


def test_bad_options_raise():
    with pytest.raises(ValueError, match="scale"):
        group_normalize(np.zeros(2), np.zeros(2, np.int32), 1, scale="std")
    with pytest.raises(ValueError, match="baseline"):
        group_normalize(np.zeros(2), np.zeros(2, np.int32), 1, baseline="median")


@pytest.mark.parametrize("scale,baseline", [("group", "mean"), ("batch", "loo"), ("none", "loo")])
def test_jit_and_vmap(scale, baseline):
    rng = np.random.default_rng(5)
    gid = ragged_ids([3, 1, 4, 2])
    B, G, K = gid.size, 5, 4
    vals = rng.integers(0, 3, size=(K, B)).astype(np.float32)
    vals[0, :3] = 0.1                                   # a flat group in one batch row
    masks = rng.random((K, B)) < 0.85
    f = jax.jit(group_normalize, static_argnames=("num_groups", "scale", "baseline"))
    out = np.asarray(jax.vmap(lambda v, m: f(v, gid, num_groups=G, mask=m, scale=scale,
                                              baseline=baseline))(vals, masks))
    assert out.shape == (K, B)
    for k in range(K):
        ref = ref_group_normalize(vals[k], gid, G, masks[k], scale, baseline)
        np.testing.assert_allclose(out[k], ref, **TOL)
        assert np.all(out[k][ref == 0] == 0)
        eager = np.asarray(group_normalize(vals[k], gid, G, mask=masks[k], scale=scale,
                                           baseline=baseline))
        np.testing.assert_allclose(out[k], eager, rtol=1e-6, atol=1e-7)
    assert np.all(out[0, :3] == 0.0)


# ----------------------------------------------------------------------------- group_stats

@pytest.mark.parametrize("seed", range(3))
def test_group_stats(seed):
    rng = np.random.default_rng(10 + seed)
    sizes = [1, 2, 5, 3, 0, 4]
    gid = ragged_ids(sizes)
    G = len(sizes) + 1                                  # trailing empty group
    values = rng.integers(0, 3, size=gid.size).astype(np.float32) * 0.1
    mask = rng.random(gid.size) < 0.8
    std, zero = group_stats(values, jnp.asarray(gid), G, jnp.asarray(mask))
    ref_std, ref_zero = ref_group_stats(values, gid, G, mask)
    np.testing.assert_allclose(np.asarray(std), ref_std, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(zero), ref_zero)
    assert np.asarray(zero)[len(sizes)] and np.asarray(zero)[0]


def test_group_stats_no_mask_and_consistency_with_normalize():
    values = np.array([1.0, 2.0, 4.0, 0.1, 0.1, 0.1, 5.0], np.float32)
    gid = np.array([0, 0, 0, 1, 1, 1, 2], np.int32)
    std, zero = group_stats(values, jnp.asarray(gid), 4)
    np.testing.assert_allclose(np.asarray(std)[0], np.std([1.0, 2.0, 4.0], ddof=1), rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(zero), [False, True, True, True])
    out = gn(values, gid, 4)
    # groups flagged zero-std are exactly the groups normalized to 0
    for g in range(4):
        assert np.all(out[gid == g] == 0) == bool(np.asarray(zero)[g])


# ----------------------------------------------------------------------------- cumsum / returns

def prefix_mask(lengths, T):
    return np.arange(T)[:, None] < np.asarray(lengths)[None, :]


@pytest.mark.parametrize("gamma", [1.0, 0.99, 0.5, 0.0])
def test_reverse_discounted_cumsum(gamma):
    rng = np.random.default_rng(3)
    T, lengths = 7, [7, 3, 0, 1, 5]
    mask = prefix_mask(lengths, T)
    x = rng.normal(size=(T, len(lengths))).astype(np.float32)
    out = np.asarray(reverse_discounted_cumsum(jnp.asarray(x), gamma, jnp.asarray(mask)))
    ref = ref_reverse_discounted_cumsum(x, gamma, mask)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)
    assert np.all(out[~mask] == 0.0)
    # the first step of an episode holds its discounted return
    np.testing.assert_allclose(out[0], ref_episode_returns(x, mask, gamma), rtol=1e-5, atol=1e-5)


def test_reverse_discounted_cumsum_hand_example():
    x = jnp.array([[1.0], [2.0], [4.0], [100.0]])
    mask = jnp.array([[True], [True], [True], [False]])
    out = np.asarray(reverse_discounted_cumsum(x, 0.5, mask))[:, 0]
    np.testing.assert_allclose(out, [1 + 0.5 * 2 + 0.25 * 4, 2 + 0.5 * 4, 4.0, 0.0])


@pytest.mark.parametrize("gamma", [1.0, 0.9, 0.0])
def test_episode_returns(gamma):
    rng = np.random.default_rng(4)
    T, lengths = 6, [6, 2, 0, 4]
    mask = prefix_mask(lengths, T)
    r = rng.normal(size=(T, len(lengths))).astype(np.float32)
    r_junk = np.where(mask, r, 1e3).astype(np.float32)      # padding must not count
    out = np.asarray(episode_returns(jnp.asarray(r_junk), jnp.asarray(mask), gamma))
    np.testing.assert_allclose(out, ref_episode_returns(r, mask, gamma), rtol=1e-5, atol=1e-5)
    assert out[2] == 0.0


# ----------------------------------------------------------------------------- GAE

def test_gae_hand_example():
    """One column, gamma=0.5, lam=1; step 1 is truncated (bootstrap, recursion stops),
    step 3 terminated (no bootstrap)."""
    g = 0.5
    r = np.array([1.0, 2.0, 3.0, 4.0])
    v = np.array([0.5, 1.0, 1.5, 2.0])
    nv = np.array([1.0, 10.0, 2.0, 99.0])     # nv[1]: value of final_observation
    term = np.array([0.0, 0.0, 0.0, 1.0])
    done = np.array([0.0, 1.0, 0.0, 1.0])
    adv, ret = gae(*(jnp.asarray(a, jnp.float32)[:, None] for a in (r, v, nv, term, done)), g, 1.0)
    d3 = 4.0 - 2.0                           # terminated: no bootstrap from 99
    d2 = 3.0 + g * 2.0 - 1.5
    d1 = 2.0 + g * 10.0 - 1.0                # truncated: bootstraps from next_values
    d0 = 1.0 + g * 1.0 - 0.5
    expected = np.array([d0 + g * d1, d1, d2 + g * d3, d3])   # nothing flows from 2 into 1
    np.testing.assert_allclose(np.asarray(adv)[:, 0], expected, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(ret)[:, 0], expected + v, rtol=1e-6)


@pytest.mark.parametrize("gamma,lam", [(0.99, 0.95), (0.9, 1.0), (0.8, 0.0), (1.0, 0.5)])
def test_gae_random_segments(gamma, lam):
    rng = np.random.default_rng(int(gamma * 100 + lam * 10))
    T, N = 9, 4
    r = rng.normal(size=(T, N)).astype(np.float32)
    v = rng.normal(size=(T, N)).astype(np.float32)
    nv = rng.normal(size=(T, N)).astype(np.float32)
    term = np.zeros((T, N), bool)
    trunc = np.zeros((T, N), bool)
    term[3, 0] = True                        # episode ends mid-segment (terminal)
    trunc[5, 1] = True                       # time limit mid-segment
    term[2, 2], trunc[6, 2] = True, True
    term[T - 1, 3] = True                    # column 3: ends on the last step
    done = term | trunc
    adv, ret = gae(jnp.asarray(r), jnp.asarray(v), jnp.asarray(nv), jnp.asarray(term, jnp.float32),
                   jnp.asarray(done), gamma, lam)
    ref_adv, ref_ret = ref_gae(r, v, nv, term, done, gamma, lam)
    np.testing.assert_allclose(np.asarray(adv), ref_adv, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.asarray(ret), ref_ret, rtol=1e-4, atol=1e-5)
    # where an episode ends, the advantage is that step's TD error alone
    for t, n in zip(*np.nonzero(done)):
        boot = 0.0 if term[t, n] else gamma * nv[t, n]
        np.testing.assert_allclose(float(adv[t, n]), r[t, n] + boot - v[t, n], rtol=1e-5, atol=1e-6)
    # a step after the end does not influence advantages before it
    r2 = r.copy()
    r2[4:, 0] += 100.0
    adv2, _ = gae(jnp.asarray(r2), jnp.asarray(v), jnp.asarray(nv), jnp.asarray(term, jnp.float32),
                  jnp.asarray(done), gamma, lam)
    np.testing.assert_array_equal(np.asarray(adv2)[:4, 0], np.asarray(adv)[:4, 0])


def test_gae_lambda_one_is_discounted_return_minus_value():
    """With lam=1 and a terminal last step, GAE is the Monte-Carlo return minus V."""
    rng = np.random.default_rng(8)
    T, gamma = 6, 0.9
    r = rng.normal(size=(T, 1)).astype(np.float32)
    v = rng.normal(size=(T, 1)).astype(np.float32)
    nv = np.concatenate([v[1:], [[5.0]]]).astype(np.float32)
    term = np.zeros((T, 1), np.float32)
    term[-1] = 1.0
    adv, ret = gae(jnp.asarray(r), jnp.asarray(v), jnp.asarray(nv), jnp.asarray(term),
                   jnp.asarray(term), gamma, 1.0)
    mc = ref_reverse_discounted_cumsum(r, gamma, np.ones((T, 1), bool))
    np.testing.assert_allclose(np.asarray(ret), mc, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(adv), mc - v, rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------- verl / TRL estimators
# Plain NumPy transcriptions (float64) of verl's verl/trainer/ppo/core_algos.py
# (compute_reinforce_plus_plus_outcome_advantage, compute_reinforce_plus_plus_baseline_outcome_
# advantage, compute_grpo_passk_outcome_advantage), verl.utils.torch_functional.masked_whiten,
# and TRL 1.16's GRPOTrainer._generate_and_score_completions multi_objective_aggregation
# branches (nanstd with Bessel's correction). Where verl raises (a group of one for pass@k, a
# batch of one token for masked_whiten) jaxgrpo gives 0; the references skip those groups.

from jaxgrpo.advantages import (aggregate_rewards, batch_normalize, grpo_passk,  # noqa: E402
                                last_token_rewards, masked_whiten, reinforce_pp,
                                reinforce_pp_baseline)


def verl_masked_whiten(values, mask):
    masked_mean = lambda v: (v * mask).sum() / (mask.sum() + 1e-8)
    mean = masked_mean(values)
    var = masked_mean((values - mean) ** 2)
    n = mask.sum()
    var = var * (n / (n - 1))
    return (values - mean) / np.sqrt(var + 1e-8)


def verl_reinforce_pp(token_level_rewards, response_mask, gamma):
    returns = np.zeros_like(token_level_rewards)
    running_return = 0
    for t in reversed(range(token_level_rewards.shape[1])):
        running_return = token_level_rewards[:, t] + gamma * running_return
        returns[:, t] = running_return
        running_return = running_return * response_mask[:, t]
    return verl_masked_whiten(returns, response_mask) * response_mask


def verl_reinforce_pp_baseline(token_level_rewards, response_mask, index):
    L = token_level_rewards.shape[-1]
    scores = token_level_rewards.sum(-1)
    id2score, id2mean = {}, {}
    for i in range(len(scores)):
        id2score.setdefault(index[i], []).append(scores[i])
    for idx, s in id2score.items():
        id2mean[idx] = 0.0 if len(s) == 1 else np.mean(s)
    scores = np.array([scores[i] - id2mean[index[i]] for i in range(len(scores))])
    scores = np.tile(scores[:, None], [1, L]) * response_mask
    return verl_masked_whiten(scores, response_mask) * response_mask


def verl_grpo_passk(token_level_rewards, response_mask, index, epsilon, norm_by_std):
    scores = token_level_rewards.sum(-1)
    adv = np.zeros_like(scores)
    id2scores, id2indices = {}, {}
    for i in range(len(scores)):
        id2scores.setdefault(index[i], []).append(scores[i])
        id2indices.setdefault(index[i], []).append(i)
    for idx, rewards in id2scores.items():
        rewards = np.asarray(rewards)
        if rewards.size < 2:         # verl raises ValueError here
            continue
        order = np.argsort(-rewards, kind="stable")
        r_max, r_second = rewards[order[0]], rewards[order[1]]
        a = r_max - r_second
        if norm_by_std:
            a = a / (np.std(rewards, ddof=1) + epsilon)
        adv[id2indices[idx][order[0]]] = a
    return adv[:, None] * response_mask


def trl_nanstd(x, axis=None, keepdims=False):
    mean = np.nanmean(x, axis=axis, keepdims=True)
    var = np.nanmean((x - mean) ** 2, axis=axis, keepdims=True)
    count = np.sum(~np.isnan(x), axis=axis, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        corr = np.where(count > 1, count / (count - 1), np.nan)
    std = np.sqrt(var * corr)
    return std if keepdims else (std.squeeze() if axis is None else std.squeeze(axis))


def trl_advantages(rewards_per_func, weights, num_generations, aggregation):
    """TRL's advantages (scale_rewards="group" for sum_then_normalize), nan_to_num'ed."""
    w = np.asarray(weights, np.float64)[None, :]
    unscorable = np.isnan(rewards_per_func).all(1)
    with np.errstate(invalid="ignore", divide="ignore"), \
            __import__("warnings").catch_warnings():
        __import__("warnings").simplefilter("ignore", RuntimeWarning)
        if aggregation == "sum_then_normalize":
            rewards = np.nansum(rewards_per_func * w, 1)
            rewards[unscorable] = np.nan
            g = rewards.reshape(-1, num_generations)
            mean = np.repeat(np.nanmean(g, 1), num_generations)
            std = np.repeat(trl_nanstd(g, axis=1), num_generations)
            adv = (rewards - mean) / (std + 1e-4)
        else:
            F = rewards_per_func.shape[1]
            grouped = rewards_per_func.reshape(-1, num_generations, F)
            mean_k = np.nanmean(grouped, 1, keepdims=True)
            std_k = trl_nanstd(grouped, axis=1, keepdims=True)
            reward_k = ((grouped - mean_k) / (std_k + 1e-4)).reshape(-1, F)
            rewards = np.nansum(reward_k * w, 1)
            rewards[unscorable] = np.nan
            adv = (rewards - np.nanmean(rewards)) / (trl_nanstd(rewards) + 1e-4)
    return np.nan_to_num(adv, nan=0.0)


def ragged_batch(seed, B=24, L=6, G=7):
    """Random ragged batch: group sizes 1..5 (some singletons), token lengths 0..L (empty rows
    and one-token rows included), rewards from {0, 0.5, 1} in some groups (ties, zero
    variance) and continuous in others."""
    rng = np.random.default_rng(seed)
    gid = np.sort(rng.integers(0, G, B)).astype(np.int32)
    lengths = rng.integers(0, L + 1, B)
    lengths[:2] = [0, 1]
    rng.shuffle(lengths)
    scores = np.where(gid % 2 == 0, rng.choice([0.0, 0.5, 1.0], B), rng.normal(size=B))
    scores[gid == 5] = 0.5                    # a zero-variance group
    mask = np.arange(L)[None, :] < lengths[:, None]
    return gid, G, scores.astype(np.float32).astype(np.float64), mask


def test_masked_whiten_matches_verl():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 7))
    m = (rng.random((5, 7)) < 0.6).astype(np.float64)
    got = np.asarray(masked_whiten(x, m))
    np.testing.assert_allclose(got, verl_masked_whiten(x, m) * m, **TOL)
    one = np.zeros((5, 7)); one[2, 3] = 1.0            # one entry: verl raises; 0 here
    assert np.all(np.asarray(masked_whiten(x, one)) == 0.0)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("gamma", [1.0, 0.9])
def test_reinforce_pp_matches_verl(seed, gamma):
    gid, G, scores, mask = ragged_batch(seed)
    rng = np.random.default_rng(100 + seed)
    kl = rng.normal(scale=0.1, size=mask.shape) * mask
    tlr_scores = np.asarray(last_token_rewards(scores, mask), np.float64)
    want_tlr = np.zeros(mask.shape)
    for i, n in enumerate(mask.sum(1)):
        if n:
            want_tlr[i, n - 1] = scores[i]
    np.testing.assert_array_equal(tlr_scores, want_tlr.astype(np.float32))
    token_rewards = want_tlr - 0.05 * kl                # verl's apply_kl_penalty, coef 0.05
    got = np.asarray(jax.jit(reinforce_pp, static_argnums=2)(token_rewards, mask, gamma))
    want = verl_reinforce_pp(token_rewards, mask.astype(np.float64), gamma)
    np.testing.assert_allclose(got, want, **TOL)
    assert (got[~mask] == 0).all() and (got[mask.sum(1) == 0] == 0).all()


@pytest.mark.parametrize("seed", range(4))
def test_reinforce_pp_baseline_matches_verl(seed):
    gid, G, scores, mask = ragged_batch(seed)
    tlr = np.zeros(mask.shape)
    n = mask.sum(1)
    tlr[np.arange(len(n))[n > 0], n[n > 0] - 1] = scores[n > 0]
    sc = tlr.sum(-1)                                      # verl's scores: 0 for an empty row
    f = jax.jit(reinforce_pp_baseline, static_argnums=2)
    got = np.asarray(f(sc, gid, G, n))
    want = verl_reinforce_pp_baseline(tlr, mask.astype(np.float64), gid)
    np.testing.assert_allclose(np.where(mask, got[:, None], 0.0), want, **TOL)
    # rows not valid leave every statistic: as verl on the batch without them
    valid = np.random.default_rng(seed).random(len(sc)) < 0.7
    got_v = np.asarray(f(sc, gid, G, n, valid))
    want_v = verl_reinforce_pp_baseline(tlr[valid], mask[valid].astype(np.float64), gid[valid])
    np.testing.assert_allclose(np.where(mask[valid], got_v[valid][:, None], 0.0), want_v, **TOL)
    assert (got_v[~valid] == 0).all()


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("scale", ["group", "none"])
def test_grpo_passk_matches_verl(seed, scale):
    gid, G, scores, mask = ragged_batch(seed)
    f = jax.jit(grpo_passk, static_argnames=("num_groups", "scale"))
    got = np.asarray(f(scores, gid, num_groups=G, scale=scale, eps=1e-6))
    want = verl_grpo_passk(scores[:, None] * np.eye(1), np.ones((len(scores), 1)), gid, 1e-6,
                           scale == "group")[:, 0]
    np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-4)
    assert 0 < (got != 0).sum() <= G and np.isfinite(got).all()
    valid = np.random.default_rng(seed + 7).random(len(scores)) < 0.7
    got_v = np.asarray(f(scores, gid, valid=valid, num_groups=G, scale=scale, eps=1e-6))
    want_v = verl_grpo_passk(scores[valid][:, None], np.ones((valid.sum(), 1)), gid[valid],
                             1e-6, scale == "group")[:, 0]
    np.testing.assert_allclose(got_v[valid], want_v, rtol=2e-4, atol=2e-4)
    assert (got_v[~valid] == 0).all()


def test_grpo_passk_hand_example():
    #            group 0: best 3, second 2      group 1: tie at 1 -> 0     group 2: alone -> 0
    x = np.array([1.0, 3.0, 2.0, 1.0, 1.0, 0.0, 5.0], np.float32)
    g = np.array([0, 0, 0, 1, 1, 1, 2], np.int32)
    got = np.asarray(grpo_passk(x, g, 3, scale="none"))
    np.testing.assert_array_equal(got, [0, 1.0, 0, 0, 0, 0, 0])
    with pytest.raises(ValueError, match="scale_rewards"):
        grpo_passk(x, g, 3, scale="batch")


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("aggregation", ["sum_then_normalize", "normalize_then_sum"])
def test_multi_objective_aggregation_matches_trl(seed, aggregation):
    """TRL's layout: groups of num_generations consecutive completions; NaN rewards (None),
    rows all NaN (unscorable), zero-variance and single-scored groups per function."""
    rng = np.random.default_rng(seed)
    C, N, F = 24, 4, 3
    per = rng.choice([0.0, 0.5, 1.0], (C, F))
    per[:, 2] = rng.normal(size=C)
    per[rng.random((C, F)) < 0.2] = np.nan
    per[5] = np.nan                          # unscorable row
    per[8:12, 0] = 1.0                       # zero variance in function 0
    per[12:16, 1] = [np.nan, np.nan, np.nan, 0.5]   # one scored member in function 1
    per = per.astype(np.float32).astype(np.float64)
    w = (1.0, 0.5, 2.0)
    gid = np.repeat(np.arange(C // N), N).astype(np.int32)
    valid = np.ones(C, bool)
    r = aggregate_rewards(per, w, gid, C // N, valid, mode=aggregation)
    scored = ~np.isnan(np.asarray(r))
    np.testing.assert_array_equal(scored, ~np.isnan(per).all(1))
    if aggregation == "normalize_then_sum":
        adv = batch_normalize(r, jnp.asarray(scored))
    else:
        adv = group_normalize(r, gid, C // N, mask=jnp.asarray(scored))
    np.testing.assert_allclose(np.asarray(adv), trl_advantages(per, w, N, aggregation),
                               rtol=2e-4, atol=2e-4)
    with pytest.raises(ValueError, match="multi_objective_aggregation"):
        aggregate_rewards(per, w, gid, C // N, valid, mode="sum")


# ----------------------------------------------------------------------------- in the algorithms

import jaxgrpo  # noqa: E402
from jaxgrpo import configio  # noqa: E402
from jaxgrpo.grpo import advantages as env_advantages  # noqa: E402
from jaxgrpo.rollout import Rollout  # noqa: E402
from jaxgrpo.text import grpo as tg  # noqa: E402


def digit_count_reward(prompts, completions, **kw):
    """A second reward: the completion's length in characters (None for an empty one)."""
    return [float(len(c)) if c else None for c in completions]


TEXT = dict(env="text:addition", env_kwargs={"digits": 1}, num_groups=3, group_size=4,
            num_layers=1, width=32, num_heads=2, max_len=16, num_iterations=2, chunk_size=12)


def fake_completions(seed, C=12, M=4, F=2):
    """Completions [C, M] with ragged lengths (one-token and EOS-only ones), rewards [C, F]
    with None (NaN) and one unscorable row, groups of 4."""
    rng = np.random.default_rng(seed)
    length = rng.integers(0, M + 1, C).astype(np.int32)
    length[:2] = [0, 1]
    per = rng.choice([0.0, 1.0], (C, F)).astype(np.float32)
    per[:, 1] = rng.normal(size=C)
    per[rng.random((C, F)) < 0.15] = np.nan
    per[7] = np.nan
    mask = tg.token_mask(jnp.asarray(length), M)
    logp = jnp.where(mask, -jnp.asarray(rng.random((C, M)), jnp.float32), 0.0)
    return tg.Completions(jnp.full((C, 3), 1, jnp.int32), jnp.ones((C, 3), bool),
                          jnp.full((C, M), 1, jnp.int32), logp, jnp.asarray(length), mask,
                          jnp.zeros(C), jnp.repeat(jnp.arange(C // 4), 4), jnp.asarray(per))


@pytest.mark.parametrize("advantage", ["grpo", "reinforce_pp", "reinforce_pp_baseline",
                                       "grpo_passk"])
@pytest.mark.parametrize("aggregation", ["sum_then_normalize", "normalize_then_sum"])
def test_text_score_estimators(advantage, aggregation):
    """``text.grpo.score`` with several reward functions: the aggregated reward (TRL) fed to
    the estimator (verl), on the scored completions only; no reference (KL 0)."""
    w = (1.0, 0.5)
    c = GRPOConfig_text(reward_funcs=[digit_count_reward, digit_count_reward],
                        reward_weights=list(w), advantage=advantage,
                        multi_objective_aggregation=aggregation)
    roll = fake_completions(0)
    per = np.asarray(roll.rewards_per_func, np.float64)
    roll = roll._replace(reward=jnp.asarray(
        np.where(np.isnan(per).all(1), np.nan, np.nansum(per * np.asarray(w), 1)), jnp.float32))
    batch, _, keep, m = tg.score(c, None, None, roll, c.hparams())
    mask = np.asarray(roll.mask)
    scored = mask.any(1) & ~np.isnan(per).all(1)
    np.testing.assert_array_equal(np.asarray(keep), scored)
    gid = np.asarray(roll.group_id)
    if aggregation == "normalize_then_sum":
        r = np.full(len(per), np.nan)
        for g in set(gid):           # TRL's per-function group normalization
            i = np.flatnonzero((gid == g) & scored)
            x = per[i]
            with np.errstate(invalid="ignore", divide="ignore"), \
                    __import__("warnings").catch_warnings():
                __import__("warnings").simplefilter("ignore", RuntimeWarning)
                z = (x - np.nanmean(x, 0)) / (trl_nanstd(x, axis=0) + 1e-4)
            r[i] = np.nansum(z * np.asarray(w), 1)
    else:
        r = np.asarray(roll.reward, np.float64)
    adv = np.asarray(batch["adv"])
    tokens = mask[scored].astype(np.float64)
    if advantage == "grpo":
        if aggregation == "normalize_then_sum":
            x = r[scored]
            want = (x - x.mean()) / (np.std(x, ddof=1) + 1e-4)
            np.testing.assert_allclose(adv[scored], want, rtol=2e-4, atol=2e-4)
        else:
            assert np.isfinite(adv).all()
    elif advantage == "reinforce_pp":
        tlr = np.zeros(mask.shape)
        n = mask.sum(1)
        tlr[np.arange(len(n)), n - 1] = np.where(scored, r, 0.0)
        want = verl_reinforce_pp(tlr[scored], tokens, 1.0)
        assert adv.shape == mask.shape
        np.testing.assert_allclose(adv[scored], want, rtol=2e-4, atol=2e-4)
        assert float(m["reward_kl_penalty"]) == 0.0
    elif advantage == "reinforce_pp_baseline":
        tlr = np.zeros(tokens.shape)
        n = tokens.sum(1).astype(int)
        tlr[np.arange(len(n)), n - 1] = r[scored]
        want = verl_reinforce_pp_baseline(tlr, tokens, gid[scored])
        np.testing.assert_allclose(np.where(tokens > 0, adv[scored][:, None], 0.0), want,
                                   rtol=2e-4, atol=2e-4)
    else:
        want = verl_grpo_passk(r[scored][:, None], np.ones((scored.sum(), 1)), gid[scored],
                               1e-4, True)[:, 0]
        np.testing.assert_allclose(adv[scored], want, rtol=2e-4, atol=2e-4)
    assert (adv[~scored] == 0).all()
    assert {"rewards/digit_count_reward/mean", "rewards/digit_count_reward_2/mean"} <= set(m)


def GRPOConfig_text(**kw):
    return jaxgrpo.GRPOConfig(**{**TEXT, **kw})


def test_text_reinforce_pp_folds_the_kl_into_the_reward():
    """REINFORCE++ on text with ``kl_reward_coef``: the per-token k1 KL of the sampled tokens
    to the reference policy (a forward pass of it) is subtracted from the token rewards
    (verl's apply_kl_penalty), then verl's REINFORCE++."""
    c = GRPOConfig_text(advantage="reinforce_pp", kl_reward_coef=0.3, temperature=0.8)
    model = tg.make_policy(c)
    params = model.init(jax.random.key(0))
    ref = jax.tree.map(lambda p: p * 0.9, params)
    hp = c.hparams()
    roll, _ = jax.jit(lambda p, k: tg.sample_completions(model, c.task, p, k, 3, 4,
                                                         hp["temperature"]))(
        params, jax.random.key(1))
    batch, _, _, m = jax.jit(lambda r, p, q: tg.score(c, model, p, r, hp, ref_params=q))(
        roll, params, ref)
    ref_logp, _ = jax.jit(lambda q: model.token_logp(q, roll.prompt, roll.prompt_valid,
                                                     roll.completion, hp["temperature"],
                                                     c.task.eos_id))(ref)
    mask = np.asarray(roll.mask).astype(np.float64)
    kl = (np.asarray(roll.logp, np.float64) - np.asarray(ref_logp, np.float64)) * mask
    n = mask.sum(1).astype(int)
    tlr = -0.3 * kl
    tlr[np.arange(len(n)), n - 1] += np.asarray(roll.reward)
    np.testing.assert_allclose(np.asarray(batch["adv"]), verl_reinforce_pp(tlr, mask, 1.0),
                               rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(float(m["reward_kl_penalty"]),
                               np.mean(kl.sum(1) / mask.sum(1)), rtol=1e-4, atol=1e-6)
    assert np.abs(kl).max() > 1e-3          # the reference differs: the test can fail


def env_rollout(seed, T=6, N=8):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, T + 1, N)
    lengths[0] = 1
    mask = np.arange(T)[:, None] < lengths[None, :]
    reward = np.where(mask, rng.choice([0.0, 1.0], (T, N)), 0.0).astype(np.float32)
    z = jnp.zeros((T, N), jnp.float32)
    f = jnp.zeros((T, N), bool)
    return Rollout(obs=jnp.zeros((T, N, 4), jnp.float32), action=jnp.zeros((T, N), jnp.int32),
                   logp=z, reward=jnp.asarray(reward), mask=jnp.asarray(mask), terminated=f,
                   truncated=f, next_obs=None, group_id=jnp.repeat(jnp.arange(2), 4)), mask


@pytest.mark.parametrize("advantage", ["reinforce_pp", "reinforce_pp_baseline", "grpo_passk"])
def test_env_estimators(advantage):
    """``grpo.advantages`` (environments, outcome): each episode's discounted return R is the
    outcome score (verl's token = a step); REINFORCE++ whitens every step's reward-to-go less
    the KL penalty."""
    c = jaxgrpo.GRPOConfig(num_groups=2, group_size=4, advantage=advantage)
    assert c.on_policy                      # the new estimators collect on-policy
    roll, mask = env_rollout(3)
    gamma = 0.9
    rng = np.random.default_rng(4)
    kl = jnp.asarray(rng.normal(scale=0.1, size=mask.shape), jnp.float32)
    adv, m = env_advantages(c, roll, gamma, kl, 0.2)
    adv = np.asarray(adv)
    reward = np.asarray(roll.reward, np.float64)
    R = (reward * gamma ** np.arange(mask.shape[0])[:, None]).sum(0)
    fm = mask.T.astype(np.float64)
    if advantage == "reinforce_pp":
        r = (reward - 0.2 * np.asarray(kl, np.float64) * mask).T
        np.testing.assert_allclose(adv.T, verl_reinforce_pp(r, fm, gamma), **TOL)
        assert "reward_kl_penalty" in m
    else:
        gid = np.repeat(np.arange(2), 4)
        tlr = np.zeros(fm.shape)
        n = fm.sum(1).astype(int)
        tlr[np.arange(len(n)), n - 1] = R
        want = (verl_reinforce_pp_baseline(tlr, fm, gid) if advantage == "reinforce_pp_baseline"
                else verl_grpo_passk(tlr, fm, gid, 1e-4, True))
        np.testing.assert_allclose(adv.T, want, **TOL)
    assert np.any(adv != 0)


def test_env_normalize_then_sum_one_reward():
    c = jaxgrpo.GRPOConfig(num_groups=2, group_size=4,
                           multi_objective_aggregation="normalize_then_sum")
    roll, mask = env_rollout(5)
    adv, _ = env_advantages(c, roll, 1.0)
    R = np.asarray(roll.reward, np.float64).sum(0)
    want = trl_advantages(R[:, None], (1.0,), 4, "normalize_then_sum")
    np.testing.assert_allclose(np.asarray(adv), np.where(mask, want[None, :], 0.0), **TOL)


def test_defaults_unchanged_and_options_reachable():
    c = jaxgrpo.GRPOConfig()
    assert (c.advantage, c.multi_objective_aggregation, c.kl_reward_coef) == (
        "grpo", "sum_then_normalize", 0.0)
    assert not c.on_policy                          # the stream collector stays the default
    assert "kl_reward_coef" in c.hparams()
    d = {"algo": "grpo", "env": "CartPole-v1"}
    for text in ("advantage=reinforce_pp", "kl_reward_coef=0.01",
                 "multi_objective_aggregation=normalize_then_sum"):
        d = configio.apply_override(d, text)
    c2 = configio.config_from_dict(d)[0]
    assert (c2.advantage, c2.kl_reward_coef, c2.multi_objective_aggregation) == (
        "reinforce_pp", 0.01, "normalize_then_sum")
    assert configio.config_from_dict(configio.config_to_dict(c2))[0] == c2


@pytest.mark.parametrize("kw, field", [
    (dict(advantage="ppo"), "advantage"),
    (dict(multi_objective_aggregation="sum"), "multi_objective_aggregation"),
    (dict(kl_reward_coef=-1.0, advantage="reinforce_pp"), "kl_reward_coef"),
    (dict(kl_reward_coef=0.1), "kl_reward_coef"),                        # not reinforce_pp
    (dict(advantage="grpo_passk", scale_rewards="batch"), "scale_rewards"),
    (dict(advantage="reinforce_pp_baseline", baseline="loo"), "baseline"),
    (dict(advantage="reinforce_pp", scale_rewards="none"), "scale_rewards"),
    (dict(advantage="grpo_passk", supervision="process"), "supervision"),
    (dict(advantage="reinforce_pp", group_mode="state"), "advantage"),
    (dict(advantage="grpo_passk", on_policy=False), "on_policy"),
])
def test_bad_estimator_options_name_the_field(kw, field):
    with pytest.raises(ValueError, match=f"^{field}: "):
        jaxgrpo.GRPOConfig(num_groups=2, group_size=4, **kw)


@pytest.mark.parametrize("kw", [
    dict(env="CartPole-v1", num_groups=2, group_size=4, num_iterations=2,
         advantage="reinforce_pp", kl_reward_coef=0.05, beta=0.0),
    dict(**TEXT, advantage="reinforce_pp", kl_reward_coef=0.05, beta=0.01),
])
def test_train_runs_with_the_kl_in_the_reward(kw):
    """End to end (make_train, 2 iterations): the reference reaches score; finite metrics."""
    c = jaxgrpo.GRPOConfig(**kw)
    train = jaxgrpo.make_train(c)
    out = jax.jit(train)(jax.random.key(0))
    metrics = out[1]
    assert np.isfinite(np.asarray(metrics["reward_kl_penalty"])).all()
    assert np.isfinite(np.asarray(metrics["loss"])).all()


def test_text_normalize_then_sum_with_the_verifier_alone():
    """Without reward functions the verifier's reward is the one reward: GDPO normalizes it
    within its group, then over the batch (TRL with one reward function)."""
    c = GRPOConfig_text(multi_objective_aggregation="normalize_then_sum")
    roll = fake_completions(1)
    reward = np.random.default_rng(2).choice([0.0, 0.5, 1.0], 12).astype(np.float32)
    reward[4:8] = 1.0                                    # a zero-variance group
    roll = roll._replace(reward=jnp.asarray(reward), rewards_per_func=None)
    batch, _, keep, _ = tg.score(c, None, None, roll, c.hparams())
    ok = np.asarray(keep)
    per = np.where(ok, reward, np.nan)[:, None].astype(np.float64)
    np.testing.assert_allclose(np.asarray(batch["adv"]),
                               trl_advantages(per, (1.0,), 4, "normalize_then_sum"), **TOL)


def test_sweep_over_kl_reward_coef():
    """kl_reward_coef is dynamic: one compilation for its values, vmapped (advantage is static:
    a grid over it compiles once per value, as every static field). The coefficient-0 runs
    never see a KL penalty."""
    from jaxgrpo.sweeps import sweep
    base = jaxgrpo.GRPOConfig(num_groups=2, group_size=4, num_iterations=3,
                              advantage="reinforce_pp", update_epochs=1)
    res = sweep(base, {"kl_reward_coef": [0.0, 0.5]}, seeds=2)
    kl = res.metrics["reward_kl_penalty"]                 # [C, S, I]
    assert (kl[0] == 0).all() and (kl[1, :, -1] != 0).all()     # k1: a sample mean, any sign
