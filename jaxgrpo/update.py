"""Learn: epochs x minibatches of clipped-surrogate steps over the valid samples of a batch.

Shared by GRPO and PPO. Gradient work is proportional to the number of valid samples, not to
the (padded) buffer: each epoch draws a random order with the valid samples first
(``epoch_order``), splits the
``n_valid`` of them into ``num_minibatches`` minibatches, and runs each minibatch as a
``lax.while_loop`` over fixed-size chunks whose gradients are summed before one optimizer step.
When every sample is valid (PPO: ``all_valid=True``) the same update is a plain permutation
split into ``num_minibatches`` equal minibatches, one ``scan`` (``_learn_dense``).

Loss convention: ``loss_fn(params, chunk, weight, mask)`` returns ``(sum_i weight_i * l_i,
aux)`` over the chunk's masked samples, where the weights are chosen so that the sum over the
whole batch is the aggregated loss (per ``loss_type``). A minibatch holding ``M`` of the
``n_valid`` samples uses ``(n_valid / M) *`` its partial sum: an unbiased estimate of the
batch loss, and exactly the batch loss when there is one minibatch.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def clipped_adam(lr, max_grad_norm, warmup_steps=0, eps=1e-8):
    """Adam after global-norm gradient clipping, on one flat parameter vector (a few large
    kernels per step instead of many tiny ones). ``lr``: a number or a schedule of the update
    count; ``warmup_steps`` > 0 scales it linearly from 1/warmup_steps to 1 over the first
    updates (Adam's first steps move every parameter by about lr whatever the gradient's
    size, which noisy policy gradients turn into a large random step)."""
    if warmup_steps:
        base = lr
        lr = lambda count: ((base(count) if callable(base) else base)
                            * jnp.minimum(1.0, (count + 1) / warmup_steps))
    return optax.flatten(optax.chain(optax.clip_by_global_norm(max_grad_norm),
                                     optax.adam(lr, eps=eps)))


def epoch_order(key, mask):
    """[C] int32: a random order of the C samples (a permutation), the valid ones (mask) first.

    Sorts one packed uint32 per sample, ``invalid flag | random bits | index`` (the low
    ``b = bit_length(C - 1)`` bits carry the index back out of the sort). A sort of one
    primitive operand takes XLA:CPU's fast path; a key-value sort (``argsort``,
    ``jax.random.permutation``) goes through a comparator and cost PPO a sixth and GRPO's
    default batch a third of their learn phase (benchmarks/FINDINGS.md). Each round has ``31 - b`` random bits; equal ones keep the previous round's (random)
    order, and rounds are added until ``rounds * (31 - b) >= 2 b``, which makes such ties rare
    (one round up to C = 1024, two up to C = 2^16).
    """
    C = mask.shape[0]
    b = max(1, (C - 1).bit_length())
    r = 31 - b
    if r < 4:
        raise ValueError(f"epoch_order: {C} samples is too many to shuffle in uint32 keys")
    low = jnp.uint32((1 << b) - 1)
    flag = jnp.where(mask, jnp.uint32(0), jnp.uint32(1 << 31))
    pos = jnp.arange(C, dtype=jnp.uint32)
    order = pos
    for k in jax.random.split(key, max(1, -(-2 * b // r))):
        rand = (jax.random.bits(k, (C,), jnp.uint32) >> (b + 1)) << b
        order = order[jnp.sort(flag[order] | rand | pos) & low]
    return order.astype(jnp.int32)


# aux entries reduced by a min / max over the chunks of every epoch instead of a sum divided by
# the count (TRL's per-completion clip extremes; NaN where a chunk has none, and when none has)
AUX_MIN = ("clip_ratio/low_min",)
AUX_MAX = ("clip_ratio/high_max",)


def _accumulate(acc, aux):
    """``acc`` combined with a chunk's ``aux``: sums, and ``AUX_MIN``/``AUX_MAX`` extremes."""
    return {k: (jnp.fmin(v, aux[k]) if k in AUX_MIN else jnp.fmax(v, aux[k]) if k in AUX_MAX
                else v + aux[k]) for k, v in acc.items()}


def _aux_init(aux_shape):
    """The accumulator's start: zeros; +inf / -inf for the min / max entries."""
    fill = lambda k: jnp.inf if k in AUX_MIN else -jnp.inf if k in AUX_MAX else 0
    return {k: jnp.full(s.shape, fill(k), s.dtype) for k, s in aux_shape.items()}


def _aux_metrics(aux):
    """Accumulated aux -> metrics: sums over the total count (means); min / max entries as
    they are (NaN when no chunk had one)."""
    count = jnp.maximum(aux["count"], 1.0)
    return {k: (jnp.where(jnp.isinf(v), jnp.nan, v) if k in AUX_MIN + AUX_MAX else v / count)
            for k, v in aux.items() if k != "count"}


def learn(loss_fn, params, opt_state, optimizer, batch, weight, mask, key, *, epochs,
          num_minibatches, chunk, all_valid=False):
    """batch: pytree of [C, ...] samples; weight: [C, ...] float (per sample, or per token of a
    sequence sample: [C, M]); mask: [C] bool (valid samples).

    aux of ``loss_fn`` is a dict of sums over the chunk's masked samples, with a ``"count"``
    entry; the returned metrics are those sums divided by the total count (means over every
    sample of every epoch), except ``AUX_MIN``/``AUX_MAX`` entries, a min / max over the chunks
    (NaN-ignoring). Returns (params, opt_state, metrics).
    """
    C = mask.shape[0]
    n_valid = jnp.sum(mask).astype(jnp.int32)
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    if all_valid:   # fixed-size minibatches of a permutation, no while loops (PPO, GRPO stream)
        return _learn_dense(grad_fn, params, opt_state, optimizer, batch, weight, mask, key,
                            epochs, num_minibatches)

    def chunk_slice(perm, pos):
        idx = jax.lax.dynamic_slice_in_dim(perm, pos, chunk)
        return idx, jax.tree.map(lambda x: x[idx], batch)

    aux_shape = jax.eval_shape(
        lambda: loss_fn(params, chunk_slice(jnp.zeros(C + chunk, jnp.int32), 0)[1],
                        jnp.zeros((chunk, *weight.shape[1:]), weight.dtype),
                        jnp.zeros(chunk, bool))[1])
    zeros_aux = _aux_init(aux_shape)

    def epoch(carry):
        e, params, opt_state, aux_acc = carry
        perm = jnp.concatenate([epoch_order(jax.random.fold_in(key, e), mask),
                                jnp.zeros((chunk,), jnp.int32)])

        def minibatch(carry, j):
            params, opt_state, aux_acc = carry
            start = j * n_valid // num_minibatches
            end = (j + 1) * n_valid // num_minibatches

            def body(c):
                pos, grads, aux = c
                idx, cb = chunk_slice(perm, pos)
                in_mb = (pos + jnp.arange(chunk)) < end
                (_, a), g = grad_fn(params, cb, weight[idx], in_mb)
                return pos + chunk, jax.tree.map(jnp.add, grads, g), _accumulate(aux, a)

            zeros_g = jax.tree.map(jnp.zeros_like, params)
            _, grads, aux = jax.lax.while_loop(lambda c: c[0] < end, body,
                                               (start, zeros_g, zeros_aux))
            size = end - start
            scale = n_valid.astype(jnp.float32) / jnp.maximum(size, 1).astype(jnp.float32)
            grads = jax.tree.map(lambda g: g * scale, grads)
            updates, new_opt = optimizer.update(grads, opt_state, params)
            new_params = optax.apply_updates(params, updates)
            ok = size > 0   # an empty minibatch must not move Adam's moments or the params
            pick = lambda new, old: jnp.where(ok, new, old)
            params = jax.tree.map(pick, new_params, params)
            opt_state = jax.tree.map(pick, new_opt, opt_state)
            return (params, opt_state, _accumulate(aux_acc, aux)), None

        carry, _ = jax.lax.scan(minibatch, (params, opt_state, aux_acc),
                                jnp.arange(num_minibatches))
        return (e + 1, *carry)

    # A while loop, not a scan: with no valid sample (an iteration past the env-step budget)
    # it runs zero times, so skipped iterations cost next to nothing.
    num_epochs = jnp.where(n_valid > 0, epochs, 0)
    _, params, opt_state, aux = jax.lax.while_loop(
        lambda c: c[0] < num_epochs, epoch, (jnp.int32(0), params, opt_state, zeros_aux))
    return params, opt_state, _aux_metrics(aux)


def _learn_dense(grad_fn, params, opt_state, optimizer, batch, weight, mask, key, epochs, M):
    """learn() when (nearly) every sample is valid and M divides C: each epoch a uniform
    permutation split into M minibatches of C / M, one optimizer step each (PureJaxRL's loop).
    Masked samples, if any, are spread over the minibatches and weigh nothing."""
    C = mask.shape[0]
    mb = C // M
    scale = float(M)   # n_valid / minibatch size, as in learn()

    def epoch(carry, k):
        params, opt_state, aux_acc = carry
        perm = epoch_order(k, jnp.ones_like(mask))
        shuf = lambda x: x[perm].reshape(M, mb, *x.shape[1:])
        mbs = (jax.tree.map(shuf, batch), shuf(weight), shuf(mask))

        def minibatch(carry, xs):
            params, opt_state, aux_acc = carry
            cb, w, m = xs
            (_, a), g = grad_fn(params, cb, w, m)
            g = jax.tree.map(lambda x: x * scale, g)
            updates, opt_state = optimizer.update(g, opt_state, params)
            params = optax.apply_updates(params, updates)
            return (params, opt_state, _accumulate(aux_acc, a)), None

        carry, _ = jax.lax.scan(minibatch, (params, opt_state, aux_acc), mbs)
        return carry, None

    aux_shape = jax.eval_shape(lambda: grad_fn(params, jax.tree.map(lambda x: x[:mb], batch),
                                               weight[:mb], mask[:mb])[0][1])
    (params, opt_state, aux), _ = jax.lax.scan(
        epoch, (params, opt_state, _aux_init(aux_shape)), jax.random.split(key, epochs))
    return params, opt_state, _aux_metrics(aux)
