"""jaxgrpo.losses against NumPy formulas."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgrpo.losses import clipped_surrogate, clipped_value_loss, kl_estimate


# ----------------------------------------------------------------------------- references

def ref_kl(logp, ref_logp, kind):
    logp, ref_logp = np.float64(logp), np.float64(ref_logp)
    lr = logp - ref_logp
    if kind == "k1":
        return lr
    if kind == "k2":
        return 0.5 * lr ** 2
    return np.exp(ref_logp - logp) - (ref_logp - logp) - 1.0


def ref_surrogate(logp, old_logp, adv, clip_low, clip_high):
    r = np.exp(np.float64(logp) - np.float64(old_logp))
    rc = np.clip(r, 1.0 - clip_low, 1.0 + clip_high)
    adv = np.float64(adv)
    return -np.minimum(r * adv, rc * adv), r * adv > rc * adv


def ref_value_loss(value, old_value, target, eps):
    value, old_value, target = (np.float64(a) for a in (value, old_value, target))
    vc = old_value + np.clip(value - old_value, -eps, eps)
    return 0.5 * np.maximum((value - target) ** 2, (vc - target) ** 2)


# ----------------------------------------------------------------------------- KL estimators

@pytest.mark.parametrize("kind", ["k1", "k2", "k3"])
def test_kl_estimate_formulas(kind):
    rng = np.random.default_rng(0)
    logp = np.log(rng.uniform(0.01, 1.0, size=200)).astype(np.float32)
    ref_logp = np.log(rng.uniform(0.01, 1.0, size=200)).astype(np.float32)
    out = np.asarray(kl_estimate(jnp.asarray(logp), jnp.asarray(ref_logp), kind))
    np.testing.assert_allclose(out, ref_kl(logp, ref_logp, kind), rtol=1e-5, atol=1e-6)


def test_kl_estimate_default_is_k3():
    logp, ref_logp = jnp.array([-0.3, -2.0]), jnp.array([-1.2, -0.1])
    np.testing.assert_array_equal(np.asarray(kl_estimate(logp, ref_logp)),
                                  np.asarray(kl_estimate(logp, ref_logp, "k3")))


def test_kl_k3_hand_values():
    # log ratio d = logp - ref: k3 = exp(-d) + d - 1
    d = np.array([1.0, -1.0, 2.0])
    out = np.asarray(kl_estimate(jnp.asarray(d, jnp.float32), jnp.zeros(3), "k3"))
    np.testing.assert_allclose(out, [np.exp(-1) + 0.0, np.e - 2.0, np.exp(-2) + 1.0], rtol=1e-6)


@pytest.mark.parametrize("kind", ["k1", "k2", "k3"])
def test_kl_zero_when_equal(kind):
    logp = jnp.asarray(np.log(np.linspace(1e-6, 1.0, 50)), jnp.float32)
    assert np.all(np.asarray(kl_estimate(logp, logp, kind)) == 0.0)


def test_k2_k3_never_negative():
    rng = np.random.default_rng(1)
    d = np.concatenate([rng.normal(scale=s, size=2000) for s in (1e-8, 1e-5, 1e-3, 0.1, 1.0, 10.0)])
    d = np.concatenate([d, [0.0, 50.0, -50.0, 1e-30, -1e-30]]).astype(np.float32)
    logp = rng.uniform(-20.0, 0.0, size=d.size).astype(np.float32)
    ref_logp = (logp - d).astype(np.float32)
    for kind in ("k2", "k3"):
        out = np.asarray(kl_estimate(jnp.asarray(logp), jnp.asarray(ref_logp), kind))
        assert np.all(out >= 0.0), (kind, out.min())
        assert np.all(np.isfinite(out))


@pytest.mark.parametrize("seed", range(3))
def test_k1_k3_unbiased_for_exact_categorical_kl(seed):
    """Mean of k1 and of k3 over actions sampled from pi approaches KL(pi || pi_ref)."""
    rng = np.random.default_rng(100 + seed)
    K, n = 6, 400_000
    pi = rng.dirichlet(np.ones(K))
    ref = rng.dirichlet(np.ones(K))
    exact = float(np.sum(pi * (np.log(pi) - np.log(ref))))
    a = rng.choice(K, size=n, p=pi)
    logp = jnp.asarray(np.log(pi)[a], jnp.float32)
    ref_logp = jnp.asarray(np.log(ref)[a], jnp.float32)
    for kind in ("k1", "k3"):
        est = np.asarray(kl_estimate(logp, ref_logp, kind), np.float64)
        se = est.std() / np.sqrt(n)
        assert abs(est.mean() - exact) < 5 * se + 1e-4, (kind, est.mean(), exact, se)
    # k3 is the lower-variance estimator when pi_ref is close to pi
    close = 0.9 * pi + 0.1 * ref
    k1 = np.asarray(kl_estimate(logp, jnp.asarray(np.log(close)[a], jnp.float32), "k1"))
    k3 = np.asarray(kl_estimate(logp, jnp.asarray(np.log(close)[a], jnp.float32), "k3"))
    assert k3.var() < k1.var()


def test_kl_unknown_kind_raises():
    with pytest.raises(ValueError, match="k4"):
        kl_estimate(jnp.zeros(2), jnp.zeros(2), "k4")


# ----------------------------------------------------------------------------- clipped surrogate

def test_clipped_surrogate_cases():
    lo, hi = 0.2, 0.28                        # DAPO clip-higher: asymmetric bounds
    ratio = np.array([1.5, 1.25, 0.5, 0.5, 1.5, 0.9, 1.0, 1.5, 0.79, 1.27])
    adv = np.array([2.0, 2.0, 2.0, -2.0, -2.0, -1.0, 3.0, 0.0, -1.0, 1.0])
    # expected loss and clip flag by hand
    exp_loss = np.array([-1.28 * 2, -1.25 * 2, -0.5 * 2, -0.8 * -2, -1.5 * -2, -0.9 * -1,
                         -3.0, 0.0, -0.8 * -1, -1.27])
    exp_clip = np.array([True, False, False, True, False, False, False, False, True, False])
    logp = np.log(ratio).astype(np.float32)
    old = np.zeros_like(logp)
    loss, clipped = clipped_surrogate(jnp.asarray(logp), jnp.asarray(old), jnp.asarray(adv, jnp.float32),
                                      lo, hi)
    np.testing.assert_allclose(np.asarray(loss), exp_loss, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(clipped), exp_clip)
    # with symmetric 0.2 bounds, ratio 1.25 with positive advantage would be clipped
    loss_s, clipped_s = clipped_surrogate(jnp.asarray(logp), jnp.asarray(old),
                                          jnp.asarray(adv, jnp.float32), lo, lo)
    assert bool(np.asarray(clipped_s)[1]) and not bool(np.asarray(clipped)[1])
    np.testing.assert_allclose(float(loss_s[1]), -1.2 * 2, rtol=1e-5)


@pytest.mark.parametrize("clip_low,clip_high", [(0.2, 0.2), (0.2, 0.28), (0.1, 0.5)])
def test_clipped_surrogate_random(clip_low, clip_high):
    rng = np.random.default_rng(2)
    n = 500
    logp = rng.normal(scale=0.4, size=n).astype(np.float32)
    old = rng.normal(scale=0.4, size=n).astype(np.float32)
    adv = rng.normal(size=n).astype(np.float32)
    adv[:10] = 0.0
    loss, clipped = clipped_surrogate(jnp.asarray(logp), jnp.asarray(old), jnp.asarray(adv),
                                      clip_low, clip_high)
    ref_loss, ref_clip = ref_surrogate(logp, old, adv, clip_low, clip_high)
    np.testing.assert_allclose(np.asarray(loss), ref_loss, rtol=1e-5, atol=1e-6)
    # flags agree except possibly at the exact float boundary
    r = np.exp(np.float64(logp) - old)
    near = (np.abs(r - (1 + clip_high)) < 1e-5) | (np.abs(r - (1 - clip_low)) < 1e-5)
    np.testing.assert_array_equal(np.asarray(clipped)[~near], ref_clip[~near])
    assert ref_clip.any() and (~ref_clip).any()
    assert not np.asarray(clipped)[:10].any()          # zero advantage is never clipped
    # clipped samples carry no gradient; the others have d loss / d logp = -ratio * adv
    grad = np.asarray(jax.grad(lambda lp: jnp.sum(clipped_surrogate(
        lp, jnp.asarray(old), jnp.asarray(adv), clip_low, clip_high)[0]))(jnp.asarray(logp)))
    ok = ~near
    np.testing.assert_allclose(grad[ok], np.where(ref_clip, 0.0, -r * adv)[ok], rtol=1e-4, atol=1e-6)


# ----------------------------------------------------------------------------- value loss

def test_clipped_value_loss_hand():
    eps = 0.2
    value = np.array([1.0, 1.0, 0.5, 2.0, 0.0])
    old = np.array([0.5, 0.9, 0.5, 1.0, 0.0])
    target = np.array([2.0, 0.0, 1.5, 1.1, 0.0])
    # 0: v moves 0.5 > eps toward the target: clipped (0.7) is further -> 0.5*1.3^2
    # 1: unclipped error 1.0 vs clipped v=1.0 (within eps) -> 0.5*1.0
    # 2: no move -> 0.5*1.0^2
    # 3: v overshoots to 2.0, clipped 1.2: errors 0.9 vs 0.1 -> 0.5*0.81
    exp = 0.5 * np.array([1.3 ** 2, 1.0, 1.0, 0.81, 0.0])
    out = clipped_value_loss(*(jnp.asarray(a, jnp.float32) for a in (value, old, target)), eps)
    np.testing.assert_allclose(np.asarray(out), exp, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("eps", [0.05, 0.2, 1.0])
def test_clipped_value_loss_random(eps):
    rng = np.random.default_rng(3)
    value, old, target = (rng.normal(size=300).astype(np.float32) for _ in range(3))
    out = clipped_value_loss(jnp.asarray(value), jnp.asarray(old), jnp.asarray(target), eps)
    np.testing.assert_allclose(np.asarray(out), ref_value_loss(value, old, target, eps),
                               rtol=1e-5, atol=1e-6)
    # never below the unclipped loss
    assert np.all(np.asarray(out) >= 0.5 * (np.float64(value) - target) ** 2 - 1e-5)
