"""``make_train(config) -> train(key, hparams=None) -> (TrainState, metrics)``.

One iteration is collect -> score -> learn; the whole run is one ``lax.scan`` over
iterations, jittable and vmappable over keys and hparams.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from .algorithm import adapters_only, reference_params, sync_reference, with_adapters
from .config import is_text
from .grpo import GRPO
from .ppo import PPO
from .text.grpo import TEXT_GRPO
from .text.sft import SFT

# make_train's table: (config.algo, text task?) -> the algorithm (``jaxgrpo.algorithm``)
ALGORITHMS = {("grpo", False): GRPO, ("ppo", False): PPO, ("grpo", True): TEXT_GRPO,
              ("sft", True): SFT}


def algorithm(config):
    """The ``Algorithm`` of a config, from ``ALGORITHMS``."""
    kind = (config.algo, is_text(config.env))
    if kind not in ALGORITHMS:
        raise ValueError(f"env: {config.env!r} has no {config.algo.upper()} "
                         f"({'text tasks' if kind[1] else 'gymnax envs'} run "
                         f"{', '.join(a for a, t in ALGORITHMS if t == kind[1])})")
    return ALGORITHMS[kind]


class TrainState(NamedTuple):
    """params: ``{"actor", ["critic"]}``; ref_params: the reference actor (GRPO) or None;
    env_carry: what the envs carry between iterations: PPO's ``SegmentCarry``, GRPO's
    ``stream.StreamCarry`` (None when it collects on-policy); env_steps: valid env steps simulated so
    far; iteration: iterations run so far."""

    params: Any
    opt_state: Any
    ref_params: Any
    key: jax.Array
    iteration: jax.Array
    env_steps: jax.Array
    env_carry: Any


def make_policy(config):
    """The policy of a config (``networks.Policy`` for gymnax envs, a ``text.Transformer``
    for text tasks; both with ``init(key) -> params``)."""
    algo = algorithm(config)
    return algo.make_policy(config, algo.make_env(config))


def resolve_hparams(config, hparams=None) -> dict:
    """The config's defaults overridden by ``hparams`` (any subset); unknown names raise."""
    hp = config.hparams()
    if hparams is not None:
        unknown = set(hparams) - set(hp)
        if unknown:
            raise ValueError(f"hparams: {sorted(unknown)[0]!r} is not a dynamic hyperparameter of "
                             f"{type(config).__name__}; those are {sorted(hp)}")
        hp.update({k: jnp.asarray(v, jnp.float32) for k, v in hparams.items()})
        if (getattr(config, "clip_eps_high", 0.0) is None and "clip_eps" in hparams
                and "clip_eps_high" not in hparams):
            hp["clip_eps_high"] = hp["clip_eps"]      # a symmetric clip range stays symmetric
    return hp


def scan_iterations(step, state, num_iterations, callback=None, callback_every=1):
    """``lax.scan`` of ``step(state) -> (state, metrics)`` over ``num_iterations`` iterations.
    ``callback(i, metrics)``, if given, is called on the host (``jax.debug.callback``) after
    every ``callback_every``-th iteration and the last one, ``i`` the index within this scan
    (under ``vmap``, once per batch element): for progress lines and loggers; None adds nothing
    to the program. The reported ``metrics`` hold each metric's last non-NaN value since the
    previous report (``held``), so the last iterations a spent budget leaves NaN do not hide
    the last real values; the returned metrics are every iteration's, as without a callback.
    -> (state, metrics stacked [num_iterations])."""
    if callback is None:
        return jax.lax.scan(lambda s, i: step(s), state, jnp.arange(num_iterations))
    floating = lambda x: jnp.issubdtype(x.dtype, jnp.floating)
    fresh = {k: jnp.full(v.shape, jnp.nan if floating(v) else 0, v.dtype)
             for k, v in jax.eval_shape(step, state)[1].items()}

    def body(carry, i):
        s, held = carry
        s, metrics = step(s)
        held = {k: jnp.where(jnp.isnan(v), held[k], v) if floating(v) else v
                for k, v in metrics.items()}
        report = (i % callback_every == callback_every - 1) | (i == num_iterations - 1)
        jax.lax.cond(report, lambda: jax.debug.callback(callback, i, held), lambda: None)
        held = jax.tree.map(lambda h, f: jnp.where(report, f, h), held, fresh)
        return (s, held), metrics

    (state, _), metrics = jax.lax.scan(body, (state, fresh), jnp.arange(num_iterations))
    return state, metrics


def make_train(config, callback=None, callback_every=1, params=None):
    """The pure training function of a config: its algorithm's collect -> score -> learn ->
    reference sync, iterated in one ``lax.scan``: ``train(key, hparams=None) -> (TrainState,
    metrics [config.iterations] each)``, with ``train.init``, ``train.run`` (chunks, resume),
    ``train.policy``, ``train.num_iterations``, ``train.step`` (one iteration, unscanned),
    ``train.optimizer(hparams)`` and ``train.run_spent`` (a budgeted run's ``run`` once its
    budget is spent; None when not budgeted). A budgeted
    algorithm (GRPO) runs while fewer than ``total_timesteps`` valid steps were used; later
    rows are NaN, their ``env_steps`` unchanged. ``params``: the initial params of every run
    (e.g. ``runs.init_params(config)`` for ``init_from``; make_train reads no file);
    ``train(key, hparams, params)`` and ``train.init(key, hparams, params)`` take a run's own
    instead, so seeds that start from different params (``runs.init_params(config, seeds)``,
    ``[S, ...]``) are ``jax.vmap(train, in_axes=(0, None, 0))(keys, None, params)``;
    ``callback``, ``callback_every``: see ``scan_iterations``."""
    algo = algorithm(config)
    if params is None and getattr(config, "init_from", None) is not None:
        raise ValueError("init_from: make_train reads no run folder; pass "
                         "params=jaxgrpo.runs.init_params(config)")
    env = algo.make_env(config)
    policy = algo.make_policy(config, env)
    n_iter = config.iterations
    budgeted = algo.budgeted(config) if callable(algo.budgeted) else algo.budgeted
    optimizer = lambda hp: algo.optimizer(config, hp, n_iter)
    if getattr(config, "lora_rank", 0) > 0:        # LoRA: only the adapters are trained
        optimizer = lambda hp, full=optimizer: adapters_only(full(hp))

    def init(key, hp, own=None) -> TrainState:
        key, k_init, *k_env = jax.random.split(key, algo.keys)
        start = params if own is None else own
        p = policy.init(k_init) if start is None else jax.tree.map(jnp.asarray, start)
        p = with_adapters(policy, p, jax.random.fold_in(k_init, 1))
        carry = algo.init_carry(config, env, policy, p, *k_env)
        return TrainState(p, optimizer(hp).init(p), reference_params(p) if algo.reference
                          else None, key, jnp.int32(0), jnp.float32(0), carry)

    def iteration(state: TrainState, hp):
        key, k_col, *k_learn = jax.random.split(state.key, algo.keys)
        # under vmap the budget's cond in run is a select that runs this for every run: a
        # spent run must then simulate nothing
        active = budget_left(config, state) if budgeted else jnp.bool_(True)
        rollout, stats, carry = algo.collect(config, env, policy, state.params, k_col,
                                             state.env_carry, active, hp)
        # an algorithm with a reference policy may score against it (REINFORCE++'s KL penalty)
        ref_kw = {"ref_params": state.ref_params} if algo.reference else {}
        batch, weight, mask, score_metrics = algo.score(config, policy, state.params, rollout,
                                                        hp, **ref_kw)
        loss_fn = lambda p, c, w, m: algo.loss(config, policy, p, state.ref_params, c, w, m, hp)
        params, opt_state, learn_metrics = algo.learn(
            config, loss_fn, state.params, state.opt_state, optimizer(hp), batch, weight, mask,
            *k_learn)
        ref = (sync_reference(config, state.iteration, params, state.ref_params, hp)
               if algo.reference else None)
        env_steps = state.env_steps + stats.valid_steps
        return (TrainState(params, opt_state, ref, key,
                           state.iteration + active.astype(jnp.int32), env_steps, carry),
                iteration_metrics(stats, {**score_metrics, **learn_metrics}, active, env_steps))

    def step(state, hp):
        if not budgeted:
            return iteration(state, hp)
        return within_budget(config, lambda s: iteration(s, hp), state, algo.keys)

    def init_state(key, hparams=None, params=None) -> TrainState:
        """A fresh TrainState (params, optimizer, reference, env carry) from ``key``;
        ``params``: this run's initial params, instead of make_train's."""
        return init(key, resolve_hparams(config, hparams), params)

    def run(state: TrainState, hparams=None, num_iterations=n_iter):
        """Continue training from ``state`` for ``num_iterations`` iterations (one scan).
        ``run(init_state(k, hp), hp, a)`` then ``run(state_a, hp, b)`` equals one run of a + b."""
        hp = resolve_hparams(config, hparams)
        return scan_iterations(lambda s: step(s, hp), state, num_iterations, callback,
                               callback_every)

    def one_step(state: TrainState, hparams=None):
        """One iteration from ``state`` (a ``run`` of length 1 without the scan):
        ``-> (state, metrics)``."""
        return step(state, resolve_hparams(config, hparams))

    def run_spent(state: TrainState, hparams=None, num_iterations=n_iter):
        """``run(state, hparams, num_iterations)`` of a budgeted run whose budget is spent
        (``budget_left`` false), bitwise, without the rollout and update in the program (each
        iteration is ``idle``'s) and with one callback, after the last iteration (the ones
        between would report nothing new): cheap to compile and to run, for the rest of a
        scan once every run's budget is used (``runs`` does that)."""
        hp = resolve_hparams(config, hparams)
        return scan_iterations(lambda s: idle(s, lambda x: iteration(x, hp), algo.keys), state,
                               num_iterations, callback, num_iterations)

    train = train_function(init_state, run, optimizer, policy, n_iter, one_step)
    train.run_spent = run_spent if budgeted else None
    return train


def budget_left(config, state):
    """A budgeted algorithm's iteration runs while fewer than ``total_timesteps`` valid steps
    were used (so the last one may end past it, by less than one iteration)."""
    return state.env_steps < config.total_timesteps


def within_budget(config, iteration, state, keys):
    """``iteration(state)`` while the budget lasts (``budget_left``), else ``idle``'s result.
    A ``lax.while_loop`` of at most one trip rather than a ``lax.cond``: under ``vmap`` (seeds,
    sweeps) a cond with a per-run predicate becomes a select that runs the iteration for
    every run, spent or not, while the loop runs it only while some run has budget left, so
    the iterations after every run's budget is spent cost next to nothing (``iterations`` of
    an on-policy config is an upper bound, far above the iterations the budget allows)."""
    skipped, nan = idle(state, iteration, keys)
    # the state goes through the loop's carry: a body of loop-invariant values would be
    # hoisted out of the loop by XLA, and run every time
    ran, state, metrics = jax.lax.while_loop(
        lambda c: ~c[0] & budget_left(config, c[1]),
        lambda c: (jnp.bool_(True), *iteration(c[1])), (jnp.bool_(False), state, nan))
    return state._replace(key=jax.lax.select(ran, state.key, skipped.key)), metrics


def iteration_metrics(stats, metrics, active, env_steps) -> dict:
    """An iteration's metrics: its episodes' (``EpisodeStats``), ``valid_frac``, the scoring and
    learning ``metrics`` (NaN when the iteration was not ``active``; one of the same name as an
    episode metric replaces it) and ``env_steps``."""
    nan_if_idle = lambda x: jnp.where(active, x, jnp.nan)
    return {"episode_return": stats.return_sum / stats.count,
            "episode_length": stats.length_sum / stats.count, "episodes": stats.count,
            **jax.tree.map(nan_if_idle, {
                "valid_frac": stats.valid_steps / jnp.maximum(stats.sim_steps, 1.0), **metrics}),
            "env_steps": env_steps}


def idle(state, iteration, keys):
    """What an iteration the budget does not allow reports, without running it: NaN metrics,
    ``env_steps`` unchanged, 0 episodes; the key moves on as a run iteration's would (split
    into ``keys``)."""
    _, m = jax.eval_shape(iteration, state)
    nan = {k: jnp.full(v.shape, jnp.nan, v.dtype) for k, v in m.items()}
    nan["env_steps"] = state.env_steps
    nan["episodes"] = jnp.zeros_like(nan["episodes"])
    return state._replace(key=jax.random.split(state.key, keys)[0]), nan


def train_function(init_state, run, optimizer, policy, num_iterations, step):
    """``train(key, hparams=None, params=None) = run(init_state(key, hparams, params), hparams,
    num_iterations)`` with the attributes ``make_train`` documents (init, run, optimizer,
    policy, num_iterations, step)."""
    def train(key, hparams=None, params=None):
        return run(init_state(key, hparams, params), hparams, num_iterations)

    train.init = init_state
    train.run = run
    train.optimizer = optimizer
    train.policy = policy
    train.num_iterations = num_iterations
    train.step = step
    return train
