"""jaxgrpo.losses: the KL estimators, the clipped surrogate and the clipped value loss
against NumPy formulas (float32); ``policy_loss`` and ``loss_weights`` against a transcription
of TRL's GRPOTrainer loss (float64).

``trl_compute_loss`` below is a line-by-line transcription of
``GRPOTrainer._compute_loss`` in ``trl/trainer/grpo_trainer.py`` of trl 1.16.0 (the version
the TRL benchmark pins; for these loss types its lines are those of v1.9.0, where this
transcription was first made; 1.16's dapo normalizer, ``num_items_in_batch`` over processes and
accumulation steps, is the batch's token count with one process and no accumulation), for
loss_type grpo / bnpo / dr_grpo / dapo, importance_sampling_level token / sequence, ``delta``,
``epsilon`` / ``epsilon_high``, ``beta``, ``use_bias_correction_kl``, with one process and no
gradient accumulation (normalizer 1), no vLLM importance correction, no entropy mask, no
off-policy mask, no entropy bonus, and ``num_items_in_batch`` = the loss mask's sum, as
``_generate_and_score_completions`` computes it. torch ops map to the array module ``xp``:
``clamp(min=c)`` -> ``maximum(x, c)``, ``clamp(max=c)`` -> ``minimum(x, c)``, ``clamp(lo, hi)``
-> ``clip``, ``torch.min(a, b)`` -> ``minimum``. TRL has only the k3 KL estimator; k1 and k2
swap that one line (``kl_estimator``, an extension). Run with ``xp=numpy`` it is the value
reference; with ``xp=jax.numpy`` its ``jax.grad`` is the gradient reference.

The policy_loss tests run in float64 (``jax.enable_x64``) and eagerly (no per-combination
compile).
"""
import itertools
import zlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgrpo.losses import (clipped_surrogate, clipped_value_loss, kl_estimate, loss_weights,
                            policy_loss)


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

# ============================================================================= policy_loss

LOSS_TYPES = ("grpo", "bnpo", "dr_grpo", "dapo")
METRICS = ("kl", "clip_ratio/low_mean", "clip_ratio/high_mean", "clip_ratio/region_mean")
CLIP_EPS = 0.2


# ----------------------------------------------------------------------------- TRL reference

def trl_compute_loss(xp, per_token_logps, old_per_token_logps, ref_per_token_logps, advantages,
                     completion_mask, *, loss_type, epsilon, epsilon_high, delta, beta,
                     importance_sampling_level, use_bias_correction_kl, max_completion_length,
                     kl_estimator="k3"):
    """-> (loss, metrics); metrics as TRL logs them (``kl`` only when beta != 0)."""
    epsilon_low = epsilon
    epsilon_high = epsilon_high if epsilon_high is not None else epsilon
    mask = completion_mask.astype(per_token_logps.dtype)
    num_items_in_batch = mask.sum()                         # gather(loss_mask.sum()).sum()
    if advantages.ndim == 1:
        advantages = advantages[:, None]
    log_ratio = per_token_logps - old_per_token_logps
    if importance_sampling_level == "token":
        log_importance_weights = log_ratio
    elif importance_sampling_level == "sequence":
        log_importance_weights = (log_ratio * mask).sum(-1) / xp.maximum(mask.sum(-1), 1.0)
        log_importance_weights = log_importance_weights[:, None]
    coef_1 = xp.exp(log_importance_weights)

    if beta != 0.0:
        if kl_estimator == "k3":
            per_token_kl = (xp.exp(ref_per_token_logps - per_token_logps)
                            - (ref_per_token_logps - per_token_logps) - 1)
        elif kl_estimator == "k1":
            per_token_kl = per_token_logps - ref_per_token_logps
        else:
            per_token_kl = 0.5 * (per_token_logps - ref_per_token_logps) ** 2
        if use_bias_correction_kl:
            per_token_kl = per_token_kl * coef_1

    coef_2 = xp.clip(coef_1, 1 - epsilon_low, 1 + epsilon_high)
    if delta is not None:
        coef_1 = xp.minimum(coef_1, delta)
    per_token_loss1 = coef_1 * advantages
    per_token_loss2 = coef_2 * advantages
    per_token_loss = -xp.minimum(per_token_loss1, per_token_loss2)

    if beta != 0.0:
        per_token_loss = per_token_loss + beta * per_token_kl

    if loss_type == "grpo":
        loss = ((per_token_loss * mask).sum(-1) / xp.maximum(mask.sum(-1), 1.0)).mean()
    elif loss_type == "bnpo":
        loss = (per_token_loss * mask).sum() / xp.maximum(mask.sum(), 1.0)
    elif loss_type == "dr_grpo":
        loss = (per_token_loss * mask).sum() / (per_token_loss.shape[0] * max_completion_length)
    elif loss_type == "dapo":
        normalizer = xp.maximum(num_items_in_batch, 1.0) / 1          # / num_processes
        loss = (per_token_loss * mask).sum() / normalizer

    def global_masked_mean(x):
        if x.shape[1] == 1:
            local_sum, local_count = x.sum(), float(x.shape[0])
        else:
            local_sum, local_count = (x * mask).sum(), mask.sum()
        return local_sum / xp.maximum(local_count, 1.0)

    metrics = {}
    if beta != 0.0:
        metrics["kl"] = global_masked_mean(per_token_kl)
    is_low_clipped = (coef_1 < 1 - epsilon_low) & (advantages < 0)
    is_high_clipped = (coef_1 > 1 + epsilon_high) & (advantages > 0)
    is_region_clipped = is_low_clipped | is_high_clipped
    f = per_token_logps.dtype
    metrics["clip_ratio/low_mean"] = global_masked_mean(is_low_clipped.astype(f))
    metrics["clip_ratio/high_mean"] = global_masked_mean(is_high_clipped.astype(f))
    metrics["clip_ratio/region_mean"] = global_masked_mean(is_region_clipped.astype(f))
    return loss, metrics


def trl_grad_by_hand(per_token_logps, old_per_token_logps, ref_per_token_logps, advantages,
                     completion_mask, *, loss_type, epsilon, epsilon_high, delta, beta,
                     importance_sampling_level, use_bias_correction_kl, max_completion_length,
                     kl_estimator="k3"):
    """d loss / d per_token_logps of ``trl_compute_loss``, derived by hand (NumPy; checked
    against ``jax.grad`` of the jnp transcription in test_hand_gradient_is_trl_autodiff).
    Kinks (a ratio exactly on a clip bound or on delta) take torch's one-sided choice; at a
    tie of the two surrogate terms torch.min (like jnp.minimum) gives each half."""
    lp, old, ref = per_token_logps, old_per_token_logps, ref_per_token_logps
    eps_high = epsilon_high if epsilon_high is not None else epsilon
    M = completion_mask.astype(float)
    Bn, Tn = M.shape
    n = np.maximum(M.sum(-1, keepdims=True), 1.0)
    A = np.broadcast_to(advantages[:, None] if advantages.ndim == 1 else advantages, (Bn, Tn))
    lr = lp - old
    liw = lr if importance_sampling_level == "token" else np.broadcast_to(
        (lr * M).sum(-1, keepdims=True) / n, (Bn, Tn))
    c1 = np.exp(liw)
    c2 = np.clip(c1, 1 - epsilon, 1 + eps_high)
    c1d = c1 if delta is None else np.minimum(c1, delta)
    l1, l2 = c1d * A, c2 * A
    s1 = (l1 < l2) + 0.5 * (l1 == l2)
    s2 = (l2 < l1) + 0.5 * (l1 == l2)
    dc1d = np.ones_like(c1) if delta is None else (c1 <= delta).astype(float)
    dc2 = ((c1 >= 1 - epsilon) & (c1 <= 1 + eps_high)).astype(float)
    W = {"grpo": M / n / Bn, "bnpo": M / max(M.sum(), 1.0), "dapo": M / max(M.sum(), 1.0),
         "dr_grpo": M / (Bn * max_completion_length)}[loss_type]
    d_c1 = -(s1 * A * dc1d + s2 * A * dc2)   # d per_token_loss / d coef_1
    direct = np.zeros_like(lp)          # d per_token_loss / d logp, not through coef_1
    if beta != 0.0:
        d = lp - ref
        kl, dkl = {"k3": (np.exp(-d) + d - 1, 1 - np.exp(-d)), "k1": (d, np.ones_like(d)),
                   "k2": (0.5 * d ** 2, d)}[kl_estimator]
        if use_bias_correction_kl:
            d_c1 = d_c1 + beta * kl
            direct = beta * dkl * c1
        else:
            direct = beta * dkl
    g_liw = W * d_c1 * c1
    if importance_sampling_level == "sequence":
        g_liw = g_liw.sum(-1, keepdims=True) * M / n
    return g_liw + W * direct


# ----------------------------------------------------------------------------- data

B, L = 6, 7


def make_batch(seed):
    """A ragged batch: random lengths, one empty row and two full rows. Values at masked steps
    are finite (what TRL sees); ``garbage`` puts NaN / inf / huge values there instead.
    The full rows carry log-ratios of +-0.6 (ratios 1.82 and 0.55) with advantages of both
    signs, so that both clip sides and the delta = 1.5 cap are exercised."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, L, size=B)
    lengths[:3] = (0, L, L)
    mask = np.arange(L)[None, :] < lengths[:, None]
    logp = np.log(rng.uniform(0.05, 1.0, size=(B, L)))
    log_ratio = rng.normal(scale=0.4, size=(B, L))
    adv_seq = rng.normal(size=B)
    adv_tok = rng.normal(size=(B, L))
    order = rng.permutation(L)
    d = np.array([0.6, -0.6, 0.6, 0.05, -0.6, 0.6, -0.05])[order]
    sign = np.array([1, -1, -1, 1, 1, 1, -1])[order]
    log_ratio[1:3] = d + rng.normal(scale=0.01, size=(2, L))
    adv_tok[1:3] = sign * rng.uniform(0.5, 1.5, size=(2, L))
    adv_seq[1:3] = (rng.uniform(0.5, 1.5), -rng.uniform(0.5, 1.5))
    rows = rng.permutation(B)
    logp, log_ratio, adv_seq, adv_tok = logp[rows], log_ratio[rows], adv_seq[rows], adv_tok[rows]
    mask, lengths = mask[rows], lengths[rows]
    old = logp - log_ratio
    ref = logp + rng.normal(scale=0.4, size=(B, L))
    return {"logp": logp, "old": old, "ref": ref, "adv_seq": adv_seq, "adv_tok": adv_tok,
            "mask": mask, "lengths": lengths}


def garbage(batch, kind):
    """Copy of batch with masked steps (and the empty row's sequence advantage) overwritten."""
    m = batch["mask"]
    fill = {"nan": (np.nan, np.inf, -np.inf, np.nan), "big": (1e30, -1e30, 1e300, -1e300)}[kind]
    out = dict(batch)
    for key, v in zip(("logp", "old", "ref", "adv_tok"), fill):
        out[key] = np.where(m, batch[key], v)
    out["adv_seq"] = np.where(m.any(1), batch["adv_seq"], fill[0])
    return out


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


in_float64 = pytest.mark.usefixtures("x64")   # every policy_loss test below


def ours(batch, adv_key, **kw):
    """(loss, metrics, d loss / d logp) of policy_loss."""
    def f(logp):
        return policy_loss(logp, batch["old"], batch["ref"], batch[adv_key], batch["mask"], **kw)
    (loss, metrics), grad = jax.value_and_grad(f, has_aux=True)(jnp.asarray(batch["logp"]))
    return (np.asarray(loss), {k: np.asarray(v) for k, v in metrics.items()}, np.asarray(grad))


def trl_kwargs(kw):
    return {"loss_type": kw["loss_type"], "epsilon": kw["clip_eps"],
            "epsilon_high": kw["clip_eps_high"], "delta": kw.get("delta"),
            "beta": float(kw.get("beta", 0.0)),
            "importance_sampling_level": kw.get("importance_sampling_level", "token"),
            "use_bias_correction_kl": kw.get("kl_bias_correction", False),
            "max_completion_length": kw.get("max_len") or L,
            "kl_estimator": kw.get("kl_estimator", "k3")}


def reference(batch, adv_key, autodiff=False, **kw):
    """(loss, metrics, d loss / d logp) of the TRL transcription: NumPy values; the gradient by
    hand, or (``autodiff``) by jax.grad of the jnp transcription."""
    args = (batch["old"], batch["ref"], batch[adv_key], batch["mask"])
    loss, metrics = trl_compute_loss(np, batch["logp"], *args, **trl_kwargs(kw))
    if autodiff:
        grad = jax.grad(lambda lp: trl_compute_loss(
            jnp, lp, *(jnp.asarray(a) for a in args), **trl_kwargs(kw))[0])(
                jnp.asarray(batch["logp"]))
    else:
        grad = trl_grad_by_hand(batch["logp"], *args, **trl_kwargs(kw))
    return float(loss), {k: float(v) for k, v in metrics.items()}, np.asarray(grad)


def ours_lanes(batches, adv_key, hypers, **kw):
    """policy_loss (loss, metrics, gradient) for each (batch, (clip_eps_high, beta)) lane,
    both hyperparameters traced, in one vmapped (eager) call."""
    stack = lambda k: jnp.asarray(np.stack([b[k] for b in batches]))
    mask = batches[0]["mask"]

    def f(logp, old, ref, adv, clip_eps_high, beta):
        return policy_loss(logp, old, ref, adv, mask, clip_eps_high=clip_eps_high, beta=beta, **kw)
    (loss, metrics), grad = jax.vmap(jax.value_and_grad(f, has_aux=True))(
        stack("logp"), stack("old"), stack("ref"), stack(adv_key),
        jnp.asarray([h for h, _ in hypers]), jnp.asarray([b for _, b in hypers]))
    return np.asarray(loss), {k: np.asarray(v) for k, v in metrics.items()}, np.asarray(grad)


def assert_close_to_trl(out, ref, mask):
    (loss, metrics, grad), (ref_loss, ref_metrics, ref_grad) = out, ref
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-9, atol=1e-13)
    assert np.all(grad[~mask] == 0.0)
    ref_metrics = {"kl": 0.0, **ref_metrics}             # TRL logs no kl when beta == 0
    for k in METRICS:
        np.testing.assert_allclose(metrics[k], ref_metrics[k], rtol=1e-10, atol=1e-13, err_msg=k)


def assert_matches_trl(batch, adv_key, **kw):
    """policy_loss (eager, hyperparameters as Python numbers) = TRL, and unchanged bit for bit
    by garbage on the masked steps."""
    clean = ours(batch, adv_key, **kw)
    assert_close_to_trl(clean, reference(batch, adv_key, **kw), batch["mask"])
    for kind in ("nan", "big"):
        dirty = ours(garbage(batch, kind), adv_key, **kw)
        np.testing.assert_array_equal(dirty[0], clean[0])
        np.testing.assert_array_equal(dirty[2], clean[2])
        for k in clean[1]:
            np.testing.assert_array_equal(dirty[1][k], clean[1][k], err_msg=k)
    return clean


# ----------------------------------------------------------------------------- the grid

# (clip_eps_high, beta) lanes: clip-higher off (= clip_eps) / on, KL off / on
HYPERS = list(itertools.product((CLIP_EPS, 0.28), (0.0, 0.04)))


@in_float64
@pytest.mark.parametrize("loss_type", LOSS_TYPES)
@pytest.mark.parametrize("level", ["token", "sequence"])
@pytest.mark.parametrize("delta", [None, 1.5])
@pytest.mark.parametrize("adv_key", ["adv_seq", "adv_tok"])
def test_matches_trl_grid(loss_type, level, delta, adv_key):
    """Every loss_type x IS level x delta x clip-higher x KL estimator x bias correction x beta,
    advantages [B] and [B, L], against TRL: values, metrics, gradients; the same numbers bit
    for bit with NaN / inf / huge values on the masked steps."""
    batch = make_batch(zlib.crc32(f"{loss_type}/{level}/{delta}/{adv_key}".encode()))
    lanes = [(b, hb) for b in (batch, garbage(batch, "nan"), garbage(batch, "big"))
             for hb in HYPERS]
    n = len(HYPERS)
    seen = {"low": 0, "high": 0}
    for kl_estimator, bias in itertools.product(("k1", "k2", "k3"), (False, True)):
        kw = {"loss_type": loss_type, "clip_eps": CLIP_EPS, "delta": delta,
              "kl_estimator": kl_estimator, "importance_sampling_level": level,
              "kl_bias_correction": bias}
        loss, metrics, grad = ours_lanes([b for b, _ in lanes], adv_key, [h for _, h in lanes],
                                         **kw)
        for i, (clip_high, beta) in enumerate(HYPERS):
            ref = reference(batch, adv_key, clip_eps_high=clip_high, beta=beta, **kw)
            lane = (loss[i], {k: v[i] for k, v in metrics.items()}, grad[i])
            assert_close_to_trl(lane, ref, batch["mask"])
            seen["low"] += lane[1]["clip_ratio/low_mean"] > 0
            seen["high"] += lane[1]["clip_ratio/high_mean"] > 0
            for j in (i + n, i + 2 * n):                 # the garbage lanes
                np.testing.assert_array_equal(loss[j], loss[i])
                np.testing.assert_array_equal(grad[j], grad[i])
                for k in metrics:
                    np.testing.assert_array_equal(metrics[k][j], metrics[k][i], err_msg=k)
    # the batch exercises both clip sides (token level; GSPO's averaged ratios clip less)
    if level == "token":
        assert seen["low"] and seen["high"], seen
        m, lr = batch["mask"], batch["logp"] - batch["old"]
        a = batch[adv_key] if adv_key == "adv_tok" else batch[adv_key][:, None]
        assert np.sum(m & (np.exp(lr) > 1.5) & (a < 0)) > 0   # delta = 1.5 caps where it matters


@in_float64
def test_hand_gradient_is_trl_autodiff():
    """The hand-derived TRL gradient used by the grid equals jax.grad of the jnp transcription."""
    batch = make_batch(21)
    # each loss type, both levels, delta on / off, k1 / k2 / k3, bias correction on / off,
    # advantages [B] / [B, L], beta 0 / 0.04
    for loss_type, level, delta, est, bias, adv_key, beta in (
            ("grpo", "token", 1.5, "k3", True, "adv_tok", 0.04),
            ("grpo", "token", 1.5, "k3", True, "adv_tok", 0.0),
            ("bnpo", "sequence", None, "k1", True, "adv_seq", 0.04),
            ("bnpo", "sequence", 1.5, "k1", True, "adv_seq", 0.0),
            ("dr_grpo", "sequence", 1.5, "k2", False, "adv_tok", 0.04),
            ("dapo", "token", None, "k2", False, "adv_seq", 0.04)):
        kw = {"loss_type": loss_type, "clip_eps": CLIP_EPS, "clip_eps_high": 0.28,
              "delta": delta, "beta": beta, "kl_estimator": est,
              "importance_sampling_level": level, "kl_bias_correction": bias}
        by_hand = reference(batch, adv_key, **kw)[2]
        auto = reference(batch, adv_key, autodiff=True, **kw)[2]
        np.testing.assert_allclose(by_hand, auto, rtol=1e-12, atol=1e-15)


@in_float64
@pytest.mark.parametrize("level", ["token", "sequence"])
def test_sequence_level_clips_sometimes(level):
    """A wider spread of log-ratios: GSPO's sequence ratios also clip on both sides."""
    batch = make_batch(7)
    rng = np.random.default_rng(8)
    shift = rng.normal(scale=1.0, size=(B, 1))                      # one per sequence
    batch["old"] = batch["logp"] + shift + 0.1 * rng.normal(size=(B, L))
    for adv_key in ("adv_seq", "adv_tok"):
        for delta in (None, 1.5):
            _, metrics, _ = assert_matches_trl(batch, adv_key, loss_type="grpo", clip_eps=CLIP_EPS,
                                               clip_eps_high=0.28, delta=delta, beta=0.04,
                                               importance_sampling_level=level)
            assert metrics["clip_ratio/region_mean"] > 0


@in_float64
@pytest.mark.parametrize("loss_type", LOSS_TYPES)
def test_dr_grpo_max_len_and_other_seeds(loss_type):
    for seed, max_len in ((11, None), (12, 20), (13, 7)):
        assert_matches_trl(make_batch(seed), "adv_seq", loss_type=loss_type, clip_eps=0.1,
                           clip_eps_high=0.3, delta=1.3, beta=0.04, max_len=max_len,
                           importance_sampling_level="sequence", kl_bias_correction=True)


# ----------------------------------------------------------------------------- edge cases

@in_float64
def test_clip_eps_high_none_is_symmetric():
    """clip_eps_high=None: the upper bound is clip_eps (TRL's epsilon_high=None)."""
    batch = make_batch(1)
    kw = {"loss_type": "grpo", "clip_eps": 0.25, "beta": 0.04, "delta": 1.5}
    a = assert_matches_trl(batch, "adv_tok", clip_eps_high=None, **kw)
    b = ours(batch, "adv_tok", clip_eps_high=0.25, **kw)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[2], b[2])


@in_float64
@pytest.mark.parametrize("loss_type", LOSS_TYPES)
@pytest.mark.parametrize("level", ["token", "sequence"])
def test_beta_zero_ignores_ref_logp(loss_type, level):
    """beta = 0 (a Python number): ref_logp is not read (None or NaN everywhere), the KL
    settings do not matter, the kl metric is 0, and the numbers are TRL's; a traced beta = 0
    gives the same numbers (up to rounding)."""
    batch = make_batch(2)
    kw = {"loss_type": loss_type, "clip_eps": CLIP_EPS, "clip_eps_high": 0.28,
          "importance_sampling_level": level, "delta": 1.5}
    base = assert_matches_trl(batch, "adv_seq", beta=0.0, **kw)
    for ref, est, bias in ((None, "k3", False), (np.full((B, L), np.nan), "k1", True)):
        out = ours(dict(batch, ref=ref), "adv_seq", beta=0.0, kl_estimator=est,
                   kl_bias_correction=bias, **kw)
        np.testing.assert_array_equal(out[0], base[0])
        np.testing.assert_array_equal(out[2], base[2])
        assert out[1]["kl"] == 0.0
    traced = ours(batch, "adv_seq", beta=jnp.float64(0.0), kl_bias_correction=True, **kw)
    np.testing.assert_allclose(traced[0], base[0], rtol=1e-15)
    np.testing.assert_allclose(traced[2], base[2], rtol=1e-15, atol=1e-300)
    with pytest.raises(ValueError, match="ref_logp"):
        ours(dict(batch, ref=None), "adv_seq", beta=0.04, **kw)


@in_float64
@pytest.mark.parametrize("loss_type", LOSS_TYPES)
@pytest.mark.parametrize("level", ["token", "sequence"])
def test_all_masked(loss_type, level):
    """No valid step: loss, metrics and gradient are 0, never NaN, even with NaN inputs."""
    nan = np.full((B, L), np.nan)

    def f(logp):
        return policy_loss(logp, nan, nan, np.full(B, np.nan), np.zeros((B, L), bool),
                           loss_type=loss_type, clip_eps=0.2, clip_eps_high=0.28, delta=2.0,
                           beta=0.04, importance_sampling_level=level, kl_bias_correction=True)
    (loss, metrics), grad = jax.value_and_grad(f, has_aux=True)(jnp.asarray(nan))
    assert float(loss) == 0.0
    assert np.all(np.asarray(grad) == 0.0)
    for k, v in metrics.items():
        if level == "token" and k in ("clip_ratio/low_min", "clip_ratio/high_max"):
            assert np.isnan(float(v)), k    # TRL: per-sequence 0/0 = NaN, nanmin of all NaN
        else:
            assert float(v) == 0.0, k


@in_float64
def test_hand_example_gspo_and_dapo():
    """Two sequences, lengths 2 and 1, one advantage each, in a batch of B = 6 whose other
    rows are empty (TRL's grpo and dr_grpo still divide by 6). GSPO: r_0 = exp(mean of row 0's
    log-ratios) = exp(0.1); r_1 = exp(0.5) > 1.2 with A_1 = 1 > 0 is clipped to 1.2."""
    def pad(rows, fill):
        out = np.full((B, L), fill)
        out[:2, :3] = rows
        return out
    logp = pad([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]], 0.0)
    old = pad([[-0.3, 0.1, 9.0], [-0.5, 9.0, 9.0]], 9.0)
    mask = pad([[True, True, False], [True, False, False]], False)
    adv = np.array([-1.0, 1.0, 5.0, 5.0, 5.0, 5.0])
    kw = {"clip_eps": 0.2, "clip_eps_high": None, "importance_sampling_level": "sequence"}
    r0 = np.exp(0.1)
    seq_loss = np.array([r0 * 1.0, -1.2])           # -min(r A, clip(r) A)
    grpo, m = policy_loss(logp, old, None, adv, mask, loss_type="grpo", **kw)
    np.testing.assert_allclose(float(grpo), seq_loss.sum() / B, rtol=1e-12)
    bnpo, _ = policy_loss(logp, old, None, adv, mask, loss_type="bnpo", **kw)
    np.testing.assert_allclose(float(bnpo), (2 * seq_loss[0] + seq_loss[1]) / 3, rtol=1e-12)
    dapo, _ = policy_loss(logp, old, None, adv, mask, loss_type="dapo", **kw)
    assert float(dapo) == float(bnpo)
    dr, _ = policy_loss(logp, old, None, adv, mask, loss_type="dr_grpo", max_len=10, **kw)
    np.testing.assert_allclose(float(dr), (2 * seq_loss[0] + seq_loss[1]) / (B * 10), rtol=1e-12)
    # one sequence of the B is high-clipped (TRL counts sequences here, empty ones included)
    assert float(m["clip_ratio/high_mean"]) == 1 / B and float(m["clip_ratio/low_mean"]) == 0.0
    # GSPO gradient: d r_0 / d logp_0t = r_0 / |o_0| on each of row 0's tokens; row 1 clipped
    g = jax.grad(lambda lp: policy_loss(lp, old, None, adv, mask, loss_type="grpo", **kw)[0])(
        jnp.asarray(logp))
    np.testing.assert_allclose(np.asarray(g), pad([[r0 / 2 / B] * 2 + [0.0], [0.0] * 3], 0.0),
                               rtol=1e-12)
    # delta caps the unclipped term where it is the one taken: with A_1 = -1, row 1's loss is
    # -min(r_1 A, 1.2 A) = r_1 = exp(0.5), capped at delta = 1.5 (and its gradient is then 0)
    neg = -np.ones(B)
    f = lambda lp, d: policy_loss(lp, old, None, neg, mask, loss_type="grpo", delta=d, **kw)[0]
    np.testing.assert_allclose(float(f(logp, None)), (r0 + np.exp(0.5)) / B, rtol=1e-12)
    np.testing.assert_allclose(float(f(logp, 1.5)), (r0 + 1.5) / B, rtol=1e-12)
    g = np.asarray(jax.grad(f)(jnp.asarray(logp), 1.5))
    np.testing.assert_allclose(g, pad([[r0 / 2 / B] * 2 + [0.0], [0.0] * 3], 0.0), rtol=1e-12)
    # a delta below 1 + clip_eps_high (not what TRL recommends) also caps positive advantages,
    # and the clip metrics test the capped ratio: r_1 = 1.65 capped to 1.05 is not high-clipped
    np.testing.assert_allclose(float(f(logp, 1.05)), (r0 + 1.2) / B, rtol=1e-12)
    _, m = policy_loss(logp, old, None, adv, mask, loss_type="grpo", delta=1.05, **kw)
    assert float(m["clip_ratio/high_mean"]) == 0.0


@in_float64
def test_policy_loss_weights_count_empty_rows():
    """policy_loss's grpo / dr_grpo divide by every row (TRL); the env path's weights by the
    nonempty sequences."""
    mask = jnp.asarray(make_batch(0)["mask"].T)                  # [T=L, N=B], one empty row
    w = lambda lt, **kw: np.asarray(loss_weights(mask, lt, L, dtype=jnp.float64, **kw))
    for lt in ("grpo", "dr_grpo"):
        np.testing.assert_allclose(w(lt, count_empty=True), w(lt) * (B - 1) / B, rtol=1e-15)
    for lt in ("bnpo", "dapo"):
        np.testing.assert_array_equal(w(lt, count_empty=True), w(lt))


@in_float64
def test_traced_hyperparameters_under_jit_and_vmap():
    """clip_eps, clip_eps_high, delta and beta traced (vmapped) inside jit agree with eager."""
    batch = make_batch(3)
    hp = {"clip_eps": jnp.array([0.1, 0.2, 0.3]), "clip_eps_high": jnp.array([0.2, 0.28, 0.3]),
          "delta": jnp.array([1.2, 1.5, 3.0]), "beta": jnp.array([0.0, 0.04, 0.1])}

    def f(h, logp):
        return policy_loss(logp, batch["old"], batch["ref"], batch["adv_tok"], batch["mask"],
                           loss_type="dr_grpo", importance_sampling_level="sequence",
                           kl_bias_correction=True, **h)
    fj = jax.jit(jax.vmap(jax.value_and_grad(f, argnums=1, has_aux=True), in_axes=(0, None)))
    (loss, metrics), grad = fj(hp, jnp.asarray(batch["logp"]))
    for i in range(3):
        h = {k: float(v[i]) for k, v in hp.items()}
        ref_loss, ref_metrics, ref_grad = reference(batch, "adv_tok", loss_type="dr_grpo",
                                                    importance_sampling_level="sequence",
                                                    kl_bias_correction=True, **h)
        np.testing.assert_allclose(float(loss[i]), ref_loss, rtol=1e-10)
        np.testing.assert_allclose(np.asarray(grad[i]), ref_grad, rtol=1e-9, atol=1e-13)
        for k in ref_metrics:
            np.testing.assert_allclose(float(metrics[k][i]), ref_metrics[k], rtol=1e-10, atol=1e-13)


@in_float64
def test_float32_close_to_float64():
    batch = make_batch(4)
    kw = {"loss_type": "grpo", "clip_eps": CLIP_EPS, "clip_eps_high": 0.28, "delta": 1.5,
          "beta": 0.04, "importance_sampling_level": "token", "kl_bias_correction": True}
    ref_loss, _, ref_grad = reference(batch, "adv_tok", **kw)
    b32 = {k: (v.astype(np.float32) if v.dtype == np.float64 else v) for k, v in batch.items()}
    f = jax.jit(jax.value_and_grad(lambda lp: policy_loss(
        lp, b32["old"], b32["ref"], b32["adv_tok"], b32["mask"], **kw)[0]))   # one compile
    loss, grad = (np.asarray(x) for x in f(jnp.asarray(b32["logp"])))
    assert loss.dtype == np.float32 and grad.dtype == np.float32
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-4, atol=1e-6)


@in_float64
def test_bad_static_arguments():
    batch = make_batch(5)
    kw = {"clip_eps": 0.2, "clip_eps_high": None}
    for bad in ({"loss_type": "ppo"}, {"loss_type": "grpo", "kl_estimator": "k4"},
                {"loss_type": "grpo", "importance_sampling_level": "sequence_token"}):
        with pytest.raises(ValueError):
            ours(batch, "adv_seq", **kw, **bad)
