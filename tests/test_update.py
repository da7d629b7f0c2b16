"""jaxgrpo.update: epoch_order, the per-epoch shuffle of the learn loop (a permutation, valid
samples first, uniform), checked against counts from NumPy; and learn, on a tiny hand-made loss
(no environment): its chunked and dense paths agree, one minibatch over the whole batch is one
optimizer step on the batch gradient, and masked samples change nothing."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxgrpo.update import epoch_order, learn

order = jax.jit(epoch_order)


@pytest.mark.parametrize("C,n_valid", [(1, 1), (8, 5), (512, 512), (1000, 0), (1000, 300),
                                       (16000, 7000)])   # 16000: two sort rounds
def test_a_permutation_with_the_valid_samples_first(C, n_valid):
    mask = np.zeros(C, bool)
    mask[np.random.default_rng(C).choice(C, n_valid, replace=False)] = True
    o = np.asarray(order(jax.random.key(C), jnp.asarray(mask)))
    assert o.dtype == np.int32
    np.testing.assert_array_equal(np.sort(o), np.arange(C))
    assert mask[o[:n_valid]].all() and not mask[o[n_valid:]].any()


def test_every_order_is_equally_likely():
    """C = 4: all 24 orders appear, each about 1/24 of the time, and each sample lands in each
    place 1/4 of the time (tolerance ~5 standard deviations); the masked sample is always last."""
    n = 24_000
    keys = jax.random.split(jax.random.key(0), n)
    o = np.asarray(jax.jit(jax.vmap(epoch_order, in_axes=(0, None)))(keys, jnp.ones(4, bool)))
    _, counts = np.unique(o, axis=0, return_counts=True)
    assert len(counts) == 24
    assert np.abs(counts / n - 1 / 24).max() < 5 * np.sqrt((1 / 24) * (23 / 24) / n)
    place = np.stack([np.bincount(o[:, i], minlength=4) for i in range(4)]) / n
    assert np.abs(place - 0.25).max() < 5 * np.sqrt(0.25 * 0.75 / n)
    masked = np.asarray(jax.jit(jax.vmap(epoch_order, in_axes=(0, None)))(
        keys[:100], jnp.array([True, False, True, True])))
    assert (masked[:, 3] == 1).all()


def test_too_many_samples_is_refused_before_compiling():
    with pytest.raises(ValueError, match="too many"):
        jax.eval_shape(epoch_order, jax.random.key(0), jax.ShapeDtypeStruct((2**28,), bool))


# ----------------------------------------------------------------------------- learn
# A tiny least-squares loss on hand-made params: the learn loop's bookkeeping (chunks,
# minibatches, masks, the two paths) is checked against jax.grad of the batch loss directly.

D, C = 3, 12


def sq_loss(params, chunk, weight, mask):
    """learn's loss convention: (sum_i weight_i * l_i over the masked samples, aux sums)."""
    err = chunk["x"] @ params["w"] + params["b"] - chunk["y"]
    l = jnp.where(mask, err ** 2, 0.0)
    return jnp.sum(jnp.where(mask, weight * l, 0.0)), {"count": jnp.sum(mask.astype(jnp.float32)),
                                                       "loss": jnp.sum(l)}


def problem(seed=0, n=C):
    rng = np.random.default_rng(seed)
    params = {"w": jnp.asarray(rng.normal(size=D), jnp.float32), "b": jnp.float32(0.3)}
    batch = {"x": jnp.asarray(rng.normal(size=(n, D)), jnp.float32),
             "y": jnp.asarray(rng.normal(size=n), jnp.float32)}
    weight = jnp.asarray(rng.uniform(0.5, 1.5, size=n) / n, jnp.float32)
    return params, batch, weight


@functools.partial(jax.jit, static_argnames=("optimizer", "loss_fn", "epochs", "num_minibatches",
                                             "chunk", "all_valid"))
def run_learn(params, batch, weight, mask, key, *, optimizer, loss_fn=sq_loss, epochs=1,
              num_minibatches=1, chunk=4, all_valid=False):
    return learn(loss_fn, params, optimizer.init(params), optimizer, batch, weight, mask, key,
                 epochs=epochs, num_minibatches=num_minibatches, chunk=chunk, all_valid=all_valid)


ADAM = optax.adam(1e-2)
SGD = optax.sgd(0.1)


def assert_trees_close(a, b, **kw):
    jax.tree.map(lambda x, y: np.testing.assert_allclose(np.asarray(x), np.asarray(y), **kw), a, b)


def assert_trees_equal(a, b):
    jax.tree.map(lambda x, y: np.testing.assert_array_equal(np.asarray(x), np.asarray(y)), a, b)


@pytest.mark.parametrize("all_valid", [False, True])
@pytest.mark.parametrize("optimizer", [SGD, ADAM], ids=["sgd", "adam"])
def test_one_minibatch_one_epoch_is_one_step_on_the_batch_gradient(all_valid, optimizer):
    """One minibatch over the whole batch, one epoch: exactly one optimizer step on
    jax.grad of the batch loss (sum of weight * l over the valid samples)."""
    params, batch, weight = problem(1)
    mask = jnp.ones(C, bool) if all_valid else jnp.asarray(np.arange(C) % 3 != 1)
    new, _, metrics = run_learn(params, batch, weight, mask, jax.random.key(0),
                                optimizer=optimizer, all_valid=all_valid)
    g = jax.grad(lambda p: sq_loss(p, batch, weight, mask)[0])(params)
    updates, _ = optimizer.update(g, optimizer.init(params), params)
    assert_trees_close(new, optax.apply_updates(params, updates), rtol=1e-5, atol=1e-6)
    _, aux = sq_loss(params, batch, weight, mask)
    np.testing.assert_allclose(metrics["loss"], aux["loss"] / aux["count"], rtol=1e-5)
    assert set(metrics) == {"loss"}


@pytest.mark.parametrize("optimizer", [SGD, ADAM], ids=["sgd", "adam"])
def test_chunked_and_dense_paths_agree_with_one_minibatch(optimizer):
    """All valid, one minibatch per epoch, several epochs: the order of the samples does not
    change the minibatch gradient, so both paths give the same params and metrics."""
    params, batch, weight = problem(2)
    mask = jnp.ones(C, bool)
    kw = dict(optimizer=optimizer, epochs=3, num_minibatches=1)
    chunked = run_learn(params, batch, weight, mask, jax.random.key(1), chunk=5, **kw)
    dense = run_learn(params, batch, weight, mask, jax.random.key(1), all_valid=True, **kw)
    assert_trees_close(chunked[0], dense[0], rtol=1e-5, atol=1e-6)
    assert_trees_close(chunked[2], dense[2], rtol=1e-5, atol=1e-6)


def linear_loss(params, chunk, weight, mask):
    """A loss whose gradient does not depend on params: with SGD the epoch's update is the sum
    of the minibatch gradients, whatever order the shuffle drew."""
    l = jnp.where(mask, chunk["x"] @ params["w"] + params["b"] * chunk["y"], 0.0)
    return jnp.sum(weight * l), {"count": jnp.sum(mask.astype(jnp.float32))}


@pytest.mark.parametrize("num_minibatches,chunk", [(2, 2), (4, 3), (3, 4)])
def test_chunked_and_dense_paths_agree_with_several_minibatches(num_minibatches, chunk):
    params, batch, weight = problem(3)
    mask = jnp.ones(C, bool)
    kw = dict(optimizer=SGD, loss_fn=linear_loss, epochs=2, num_minibatches=num_minibatches)
    chunked, _, _ = run_learn(params, batch, weight, mask, jax.random.key(2), chunk=chunk, **kw)
    dense, _, _ = run_learn(params, batch, weight, mask, jax.random.key(2), all_valid=True, **kw)
    assert_trees_close(chunked, dense, rtol=1e-5, atol=1e-6)
    # and both are epochs * num_minibatches steps of (num_minibatches x) a minibatch's share,
    # i.e. epochs * num_minibatches steps on the batch gradient in total
    g = jax.grad(lambda p: linear_loss(p, batch, weight, mask)[0])(params)
    expect = jax.tree.map(lambda p, g: p - 0.1 * 2 * num_minibatches * g, params, g)
    assert_trees_close(dense, expect, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("num_minibatches,chunk", [(1, 4), (2, 3), (3, 2)])
def test_masked_samples_change_nothing(num_minibatches, chunk):
    """Other values (data and weights) on the masked samples give bitwise the same params,
    optimizer state and metrics."""
    params, batch, weight = problem(4)
    mask = jnp.asarray(np.random.default_rng(4).random(C) < 0.6)
    _, other, other_w = problem(5)
    dirty = jax.tree.map(lambda a, b: jnp.where(mask.reshape(-1, *[1] * (a.ndim - 1)), a, b),
                         batch, other)
    dirty_w = jnp.where(mask, weight, other_w * 100)
    kw = dict(optimizer=ADAM, epochs=2, num_minibatches=num_minibatches, chunk=chunk)
    clean = run_learn(params, batch, weight, mask, jax.random.key(3), **kw)
    out = run_learn(params, dirty, dirty_w, mask, jax.random.key(3), **kw)
    assert_trees_equal(clean, out)
    assert not np.allclose(clean[0]["w"], params["w"])


def test_no_valid_sample_leaves_params_and_optimizer_state_unchanged():
    params, batch, weight = problem(6)
    opt_state = ADAM.init(params)
    new, new_opt, metrics = jax.jit(lambda p, o: learn(
        sq_loss, p, o, ADAM, batch, weight, jnp.zeros(C, bool), jax.random.key(0), epochs=2,
        num_minibatches=2, chunk=4))(params, opt_state)
    assert_trees_equal(new, params)
    assert_trees_equal(new_opt, opt_state)
    assert float(metrics["loss"]) == 0.0


def extremes_loss(params, chunk, weight, mask):
    """sq_loss with TRL's clip extremes: the chunk's min / max of its masked ``y`` (NaN when
    none is masked in), which learn reduces by min / max over chunks, not by a mean."""
    loss, aux = sq_loss(params, chunk, weight, mask)
    y = chunk["y"]
    lo = jnp.where(jnp.any(mask), jnp.min(jnp.where(mask, y, jnp.inf)), jnp.nan)
    hi = jnp.where(jnp.any(mask), jnp.max(jnp.where(mask, y, -jnp.inf)), jnp.nan)
    return loss, {**aux, "clip_ratio/low_min": lo, "clip_ratio/high_max": hi}


@pytest.mark.parametrize("all_valid", [False, True])
def test_min_and_max_metrics_reduce_over_chunks(all_valid):
    """``AUX_MIN``/``AUX_MAX`` entries: the min / max over every chunk of every epoch of the
    valid samples (NaN chunks ignored); the other entries stay means."""
    params, batch, weight = problem(2)
    mask = jnp.ones(C, bool) if all_valid else jnp.asarray(np.arange(C) % 4 != 0)
    _, _, m = run_learn(params, batch, weight, mask, jax.random.key(1), optimizer=SGD,
                        loss_fn=extremes_loss, epochs=2, num_minibatches=2, chunk=4,
                        all_valid=all_valid)
    y = np.asarray(batch["y"])[np.asarray(mask)]
    np.testing.assert_allclose(m["clip_ratio/low_min"], y.min(), rtol=1e-6)
    np.testing.assert_allclose(m["clip_ratio/high_max"], y.max(), rtol=1e-6)
    assert np.isfinite(m["loss"])
    # no valid sample: no chunk has an extreme -> NaN
    _, _, m = run_learn(params, batch, weight, jnp.zeros(C, bool), jax.random.key(1),
                        optimizer=SGD, loss_fn=extremes_loss)
    assert np.isnan(m["clip_ratio/low_min"]) and np.isnan(m["clip_ratio/high_max"])
