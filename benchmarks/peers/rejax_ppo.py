"""rejax PPO on CartPole-v1 at PureJaxRL's CartPole configuration; runs in benchmarks/.venv-rejax.

    python benchmarks/peers/rejax_ppo.py '{"total_timesteps": 500000, "seeds": 1, "key": 0}'

Prints ``RESULT <json>``: compile seconds, run seconds of the compiled program, steps/s, peak
RSS, and (seeds > 1, vmapped) the per-iteration training return, read from a gymnax
``LogWrapper`` by rejax's ``eval_callback`` (mean over the envs of each env's last completed
episode: PureJaxRL's ``returned_episode_returns``). rejax's own evaluation (128 extra episodes
per eval) is replaced by that read, so no evaluation work is timed.

Differences from jaxgrpo PPO that rejax does not let us remove: rejax clips gradients
elementwise (``optax.clip``) instead of by global norm, uses separate Adam states for actor and
critic, does not anneal the learning rate, and treats time-limit truncation as termination.
"""
import json
import resource
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np


def main():
    spec = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
    from gymnax.wrappers.purerl import LogWrapper
    from rejax import PPO

    total = int(spec.get("total_timesteps", 500_000))
    num_envs, num_steps = int(spec.get("num_envs", 4)), int(spec.get("num_steps", 128))
    seeds = int(spec.get("seeds", 1))
    algo = PPO.create(
        env=spec.get("env", "CartPole-v1"), num_envs=num_envs, num_steps=num_steps, num_epochs=4,
        num_minibatches=4, learning_rate=2.5e-4, max_grad_norm=0.5, total_timesteps=total,
        eval_freq=num_envs * num_steps, gamma=0.99, gae_lambda=0.95, clip_eps=0.2, ent_coef=0.01,
        vf_coef=0.5, skip_initial_evaluation=True,
        agent_kwargs={"activation": "tanh", "hidden_layer_sizes": (64, 64)})
    class Logged(LogWrapper):
        # rejax deep-copies its config (also inside train); a gymnax wrapper's __getattr__
        # recurses forever under deepcopy, and the env is immutable anyway
        def __deepcopy__(self, memo):
            return self

    algo = algo.replace(
        env=Logged(algo.env),
        eval_callback=lambda algo, ts, rng: ts.env_state.returned_episode_returns.mean())
    key = jax.random.key(int(spec.get("key", 0)))
    fn, arg = (jax.vmap(algo.train), jax.random.split(key, seeds)) if seeds > 1 else (algo.train, key)
    t0 = time.perf_counter()
    compiled = jax.jit(fn).lower(arg).compile()
    t1 = time.perf_counter()
    ts, curve = jax.block_until_ready(compiled(arg))
    run_s = time.perf_counter() - t1
    curve = np.atleast_2d(np.asarray(curve, np.float64))          # [seeds, iterations]
    iters = curve.shape[1]
    steps = iters * num_envs * num_steps * seeds
    mean_curve = curve.mean(0)
    hit = np.flatnonzero(mean_curve >= 475.0)
    out = {"algo": "rejax-ppo", "compile_s": t1 - t0, "run_s": run_s, "valid_steps": steps,
           "sps": steps / run_s, "seeds": seeds, "iterations": iters,
           "final_return": float(curve[:, -max(1, iters // 10):].mean()),
           "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if hit.size:
        i = int(hit[0])
        out.update(hit_iteration=i, hit_steps_per_seed=(i + 1) * num_envs * num_steps,
                   hit_time_s=(i + 1) / iters * run_s)
    else:
        out.update(hit_iteration=None, hit_steps_per_seed=None, hit_time_s=None,
                   best_curve=float(mean_curve.max()))
    import rejax
    from importlib.metadata import version
    out["versions"] = {p: version(p) for p in ("rejax", "jax", "jaxlib", "flax", "optax", "gymnax")}
    print("RESULT " + json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
