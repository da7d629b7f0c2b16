"""One measurement, run in a fresh process: ``python -m benchmarks.measure '<json spec>'``.

Prints one line ``RESULT <json>`` at the end. ``benchmarks.run`` starts one process per
measurement so that compile times are cold (no cache) and the peak RSS
(``resource.getrusage(...).ru_maxrss``) belongs to that measurement alone.

Spec kinds:

- ``{"kind": "train", "algo", "env", "overrides", "seeds", "seeds_mode", "key"}``: ``jax.jit``
  of ``make_train(config)`` (when seeds > 1, over ``seeds`` keys: ``jax.vmap`` with
  ``seeds_mode`` "vmap", the default; ``jax.lax.map``, the runs one after the other in the
  same compiled program, with "map"; vmapped within each device and sharded over
  ``jax.devices()``, as ``jaxgrpo.sweep`` runs them, with "shard"): compile seconds (trace + lower, XLA compile), one run of
  the compiled program (seconds), valid and simulated env steps, learning curve summary, GRPO
  stream's staleness and dropped steps, peak RSS, XLA's memory analysis of the program, bytes
  of the parameters / Adam state / GRPO reference.
- ``{"kind": "scaling", "points": [train specs]}``: each point compiled and run once, in this
  one process (compile excluded from steps/s).
- Any spec may give ``"cpu_devices": n``: JAX starts with n CPU devices
  (``jaxgrpo.use_cpu_cores``; read by ``main``, so only in a fresh process).
- ``{"kind": "phases", ...}``: collect / score / learn of one iteration timed in isolation
  (see :func:`measure_phases`).

Env steps: ``env_steps`` (metric) counts valid steps, i.e. real transitions. Simulated steps
per iteration are recovered as ``valid_i / valid_frac_i`` (GRPO collecting on-policy pads an
ended episode until every episode of its batch has ended; GRPO's stream collector pads only a
lane that found no free group slot; PPO never pads).
"""
from __future__ import annotations

import json
import os
import resource
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

RETURN_TARGET = 475.0


def maxrss_mib() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / 2**20 if sys.platform == "darwin" else r / 2**10


def block(tree):
    return jax.tree.map(lambda x: x.block_until_ready() if hasattr(x, "block_until_ready") else x,
                        tree)


def make_config(spec):
    from jaxgrpo.config import config_class
    return config_class(spec["algo"])(env=spec["env"], **spec.get("overrides", {}))


def tree_bytes(tree) -> int:
    """Bytes of the floating-point array leaves of a pytree (counters and keys excluded)."""
    return int(sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(tree)
                   if hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jnp.floating)))


def tree_count(tree) -> int:
    return int(sum(x.size for x in jax.tree.leaves(tree)
                   if hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jnp.floating)))


def state_bytes(config, train) -> dict:
    """Parameters, optimizer (Adam mu and nu) and GRPO reference bytes of a fresh TrainState."""
    st = jax.eval_shape(train.init, jax.random.key(0))
    out = {"param_count": tree_count(st.params), "param_bytes": tree_bytes(st.params),
           "opt_bytes": tree_bytes(st.opt_state),
           "ref_bytes": tree_bytes(st.ref_params) if st.ref_params is not None else 0}
    if isinstance(st.params, dict):
        out["param_count_by_net"] = {k: tree_count(v) for k, v in st.params.items()}
    return out


def ffill(x):
    """Forward-fill NaNs along the last axis (leading NaNs stay NaN)."""
    x = np.array(x, dtype=np.float64, copy=True)
    for idx in np.ndindex(x.shape[:-1]):
        row = x[idx]
        last = np.nan
        for i in range(row.shape[0]):
            if np.isnan(row[i]):
                row[i] = last
            else:
                last = row[i]
    return x


def summarize_metrics(metrics, run_s: float) -> dict:
    """Steps, validity and learning-curve numbers from the per-iteration metrics.

    metrics arrays are [I] (one seed) or [S, I] (vmapped seeds)."""
    m = {k: np.atleast_2d(np.asarray(v, dtype=np.float64)) for k, v in metrics.items()}
    env_steps = m["env_steps"]                                   # cumulative valid, [S, I]
    valid_i = np.diff(env_steps, axis=1, prepend=0.0)
    vf = m["valid_frac"]
    sim_i = np.where(vf > 0, valid_i / np.where(vf > 0, vf, 1.0), 0.0)
    ran = ~np.isnan(m["loss"])                                   # iterations that trained
    valid, sim = float(valid_i.sum()), float(sim_i.sum())
    ret = m["episode_return"]
    # across-seed mean training return per iteration; a seed's iteration without a completed
    # episode (or one skipped for budget) keeps that seed's previous value
    curve = np.mean(ffill(np.where(ran | (valid_i > 0), ret, np.nan)), axis=0)
    hit = np.flatnonzero(curve >= RETURN_TARGET)
    out = {
        "seeds": int(env_steps.shape[0]),
        "iterations": int(env_steps.shape[1]),
        "iterations_run": float(ran.sum(1).mean()),
        "valid_steps": valid, "sim_steps": sim,
        "valid_frac": valid / sim if sim else float("nan"),
        "valid_steps_per_iter": float(valid_i[ran].mean()) if ran.any() else float("nan"),
        "sps": valid / run_s, "sim_sps": sim / run_s,
        "final_return": float(np.nanmean([r[k][-max(1, k.sum() // 10):].mean() if k.any() else np.nan
                                          for r, k in zip(ffill(ret), ran)])),
    }
    if "staleness/mean" in m:   # GRPO: updates between sampling and training (0 on-policy)
        st = m["staleness/mean"][ran]
        out["staleness_mean"] = float(np.nanmean(st)) if np.isfinite(st).any() else None
        out["staleness_max"] = float(np.nanmax(m["staleness/max"][ran])) if ran.any() else None
    if "dropped" in m:          # GRPO stream: steps the ring overwrote before they were trained
        out["dropped"] = float(np.nansum(m["dropped"][ran]))
    if hit.size:
        i = int(hit[0])
        steps_at = float(env_steps[:, i].sum())
        out.update(hit_iteration=i, hit_steps_per_seed=steps_at / env_steps.shape[0],
                   hit_time_s=steps_at / valid * run_s)
    else:
        out.update(hit_iteration=None, hit_steps_per_seed=None, hit_time_s=None,
                   best_curve=float(np.nanmax(curve)) if np.isfinite(curve).any() else None)
    return out


def compiler_options(spec):
    return spec.get("compiler_options") or None


def _compile(spec):
    """The compiled training program of a spec, with its compile times and memory, from
    ``jaxgrpo.compiled``'s cache (in-process use, tiny mode: one compile per distinct spec)."""
    try:     # here: a prototype measured with --variant may predate jaxgrpo.compiled
        from jaxgrpo import compiled as compiled_cache
    except ImportError:
        return _build(spec)
    ck = json.dumps({k: v for k, v in spec.items() if k not in ("key", "label")}, sort_keys=True)
    return compiled_cache.cached(("benchmarks.measure", ck), lambda: _build(spec))[0]


def _build(spec) -> dict:
    from jaxgrpo import make_train
    cfg = make_config(spec)
    train = make_train(cfg)
    seeds = int(spec.get("seeds", 1))
    mode = spec.get("seeds_mode", "vmap")
    if mode not in ("vmap", "map", "shard"):
        raise ValueError(f"seeds_mode: 'vmap', 'map' or 'shard', got {mode!r}")
    fn = train if seeds == 1 else jax.vmap(train) if mode == "vmap" else (
        lambda keys: jax.lax.map(train, keys)) if mode == "map" else sharded_seeds(train, seeds)
    arg = seed_keys(spec, jax.random.key(0))
    rss_import = maxrss_mib()
    t0 = time.perf_counter()
    lowered = jax.jit(fn).lower(arg)
    t1 = time.perf_counter()
    compiled = lowered.compile(compiler_options(spec))
    t2 = time.perf_counter()
    return dict(cfg=cfg, train=train, compiled=compiled, trace_lower_s=t1 - t0,
                xla_compile_s=t2 - t1, compile_s=t2 - t0, rss_after_import_mib=rss_import,
                rss_after_compile_mib=maxrss_mib())


def sharded_seeds(train, seeds: int):
    """``keys [seeds] -> train(keys)`` with the seeds spread over the devices as
    ``run_training`` spreads them (``jaxgrpo.runs.over_seeds``): each device initializes its
    seeds one at a time and trains them vmapped. On a CPU started with one device per core
    (``jaxgrpo.use_cpu_cores``), each core trains its share."""
    from jaxgrpo.runs import over_seeds
    init, run = over_seeds(train.init, seeds, True), over_seeds(lambda s: train.run(s), seeds)
    return lambda keys: run(init(keys))


def seed_keys(spec, key):
    """The argument of a train spec's program: ``key`` (one seed) or ``split(key, seeds)``."""
    seeds = int(spec.get("seeds", 1))
    if seeds == 1:
        return key
    return jax.random.split(key, seeds)


def measure_train(spec) -> dict:
    c = _compile(spec)
    cfg, train, compiled = c["cfg"], c["train"], c["compiled"]
    arg = seed_keys(spec, jax.random.key(int(spec.get("key", 0))))
    t2 = time.perf_counter()
    _, metrics = block(compiled(arg))
    run_s = time.perf_counter() - t2
    out = {"algo": cfg.algo, "env": cfg.env, "run_s": run_s,
           **{k: c[k] for k in ("trace_lower_s", "xla_compile_s", "compile_s",
                                "rss_after_import_mib", "rss_after_compile_mib")},
           "peak_rss_mib": maxrss_mib(), **summarize_metrics(metrics, run_s), **state_bytes(cfg, train)}
    try:
        ma = compiled.memory_analysis()
        out["xla_temp_mib"] = ma.temp_size_in_bytes / 2**20
        out["xla_args_out_mib"] = (ma.argument_size_in_bytes + ma.output_size_in_bytes) / 2**20
    except Exception:  # noqa: BLE001  (not every backend has it)
        pass
    if cfg.algo == "grpo":
        out["config_iterations"] = cfg.iterations
    # the devices the runs were spread over (seeds_mode "shard": all of them)
    if spec.get("seeds_mode") == "shard":
        from jaxgrpo.runs import seed_devices
        out["devices"] = seed_devices(int(spec.get("seeds", 1)))
    else:
        out["devices"] = 1
    return out


def measure_scaling(spec) -> dict:
    rows = []
    for p in spec["points"]:
        r = measure_train(p)
        r["point"] = p.get("label")
        rows.append(r)
        print(f"  {p.get('label')}: {r['sps']:,.0f} valid steps/s ({r['sim_sps']:,.0f} simulated), "
              f"compile {r['compile_s']:.1f} s, run {r['run_s']:.2f} s", flush=True)
    return {"rows": rows}


# ------------------------------------------------------------------------------------ phases

def _timeit(fn, args, reps):
    """Median seconds of ``reps`` calls of a compiled fn (after one warm call)."""
    block(fn(*args))
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        block(fn(*args))
        ts.append(time.perf_counter() - t)
    return float(np.median(ts))


def measure_phases(spec) -> dict:
    """Collect, score and learn of one iteration, each jitted alone and timed on its own.

    The config's own algorithm (``jaxgrpo.train.algorithm``: GRPO's stream or on-policy
    collector, PPO's segments) runs its ``collect``, ``score`` and ``learn``. ``inner`` copies
    of the phase run inside one ``lax.scan`` per call (so that per-call dispatch does not
    count), with the same params and env carry each time. Params and carry: a fresh init, or,
    with ``"pretrain_iters"``, the state after that many training iterations (so that GRPO
    episodes have realistic lengths and the stream's ring holds steps waiting to be trained).
    Reported per iteration and per valid env step (steps simulated by lanes running an
    episode).
    """
    from jaxgrpo.train import algorithm, make_train

    cfg = make_config(spec)
    inner, reps = int(spec.get("inner", 8)), int(spec.get("reps", 5))
    algo = algorithm(cfg)
    env = algo.make_env(cfg)
    train = make_train(cfg)
    policy = train.policy
    hp = cfg.hparams()
    state = train.init(jax.random.key(0))
    if spec.get("pretrain_iters"):
        state, _ = jax.jit(train.run, static_argnums=2, compiler_options=compiler_options(spec))(
            state, None, int(spec["pretrain_iters"]))
    params, ref, carry = state.params, state.ref_params, state.env_carry
    opt = train.optimizer(hp)   # the training loop's own (flattened) optimizer

    def collect(key):           # -> (rollout, stats); the carry it leaves is not kept
        return algo.collect(cfg, env, policy, params, key, carry, jnp.bool_(True), hp)[:2]

    def score(ro):
        return algo.score(cfg, policy, params, ro, hp)

    def learn_(batch, weight, mask, key):
        loss_fn = lambda p, c, w, m: algo.loss(cfg, policy, p, ref, c, w, m, hp)
        return algo.learn(cfg, loss_fn, params, state.opt_state, opt, batch, weight, mask, key)

    def repeat(f):
        def g(key):
            def body(c, k):
                out = f(k)
                return c + sum(jnp.sum(x).astype(jnp.float32) for x in jax.tree.leaves(out)
                               if jnp.issubdtype(x.dtype, jnp.number)), None
            return jax.lax.scan(body, jnp.float32(0), jax.random.split(key, inner))[0]
        return jax.jit(g, compiler_options=compiler_options(spec))

    key = jax.random.key(1)
    ro, stats = collect(key)
    batch, weight, mask, _ = score(ro)
    # the whole rollout is an output, so that XLA keeps every buffer write of the collect
    t_collect = _timeit(repeat(collect), (key,), reps) / inner

    # a key-dependent nudge of the rollout's floats keeps XLA from hoisting score out of the scan
    def nudge(k):
        u = 1e-6 * jax.random.uniform(k, ())
        return jax.tree.map(lambda x: x + u.astype(x.dtype)
                            if jnp.issubdtype(x.dtype, jnp.floating) else x, ro)
    t_score = _timeit(repeat(lambda k: score(nudge(k))[:3]), (key,), reps) / inner
    t_learn = _timeit(repeat(lambda k: learn_(batch, weight, mask, k)[0]), (key,), reps) / inner
    valid = float(stats.valid_steps)
    return {"algo": cfg.algo, "valid_steps": valid, "sim_steps": float(stats.sim_steps),
            "trained_steps": float(jnp.sum(mask)),
            "collect_s": t_collect, "score_s": t_score, "learn_s": t_learn,
            "iteration_s": t_collect + t_score + t_learn,
            "us_per_valid_step": {k: 1e6 * v / valid for k, v in
                                  (("collect", t_collect), ("score", t_score), ("learn", t_learn))}}


def write_report(md: str, res: dict, out: str | None) -> None:
    """Print the markdown ``md``; with ``out``, also write it there and ``res`` beside it as
    JSON (the same name, ``.json``)."""
    if out:
        from pathlib import Path
        Path(out).write_text(md)
        Path(os.path.splitext(out)[0] + ".json").write_text(json.dumps(res, indent=1))
        print(f"wrote {out}")
    print(md)


def machine() -> dict:
    """``jaxgrpo.provenance.machine_info()`` (imported here: a measurement of a prototype copy
    of jaxgrpo, first on PYTHONPATH, need not have it)."""
    from jaxgrpo.provenance import machine_info
    return machine_info()


KINDS = {"train": measure_train, "scaling": measure_scaling, "phases": measure_phases,
         "machine": lambda spec: machine()}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    spec = json.loads(argv[0])
    if spec.get("cpu_devices"):          # before JAX starts: seeds_mode "shard" on a CPU
        from jaxgrpo.cores import use_cpu_cores
        use_cpu_cores(int(spec["cpu_devices"]))
    out = KINDS[spec.get("kind", "train")](spec)
    out["load_avg"] = os.getloadavg()[0]
    if "jaxgrpo" in sys.modules:   # which package was measured (a prototype copy or the project's)
        out["jaxgrpo_file"] = sys.modules["jaxgrpo"].__file__
    print("RESULT " + json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
