"""Stable-Baselines3 PPO (PyTorch, CPU) at PureJaxRL's CartPole configuration; runs in
benchmarks/.venv-sb3.

    python benchmarks/peers/sb3_ppo.py '{"total_timesteps": 50000, "key": 0}'

4 envs (DummyVecEnv) x 128 steps, 4 epochs x 4 minibatches (batch_size 128), lr 2.5e-4 annealed
linearly to 0, gamma 0.99, GAE lambda 0.95, clip 0.2, ent 0.01, vf 0.5, max grad norm 0.5,
separate 64x64 tanh actor and critic (SB3's MlpPolicy default). Prints ``RESULT <json>``:
construction seconds (SB3 has no compile step), learn() seconds, steps/s, peak RSS, and the
per-rollout training return (mean of the episodes that ended in each rollout).
"""
import json
import resource
import sys
import time

import numpy as np


def main():
    spec = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
    import gymnasium as gym
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env

    if spec.get("threads"):
        torch.set_num_threads(int(spec["threads"]))
    total = int(spec.get("total_timesteps", 50_000))
    seed = int(spec.get("key", 0))

    class Curve(BaseCallback):
        def __init__(self):
            super().__init__()
            self.returns, self.times, self.steps, self._ended = [], [], [], []

        def _on_step(self):
            for info in self.locals.get("infos", []):
                if "episode" in info:
                    self._ended.append(info["episode"]["r"])
            return True

        def _on_rollout_end(self):
            self.returns.append(float(np.mean(self._ended)) if self._ended else float("nan"))
            self.times.append(time.perf_counter())
            self.steps.append(self.num_timesteps)
            self._ended = []

    t0 = time.perf_counter()
    env = make_vec_env("CartPole-v1", n_envs=4, seed=seed)
    model = PPO("MlpPolicy", env, n_steps=128, batch_size=128, n_epochs=4,
                learning_rate=lambda f: 2.5e-4 * f, gamma=0.99, gae_lambda=0.95, clip_range=0.2,
                ent_coef=0.01, vf_coef=0.5, max_grad_norm=0.5, seed=seed, device="cpu",
                policy_kwargs={"net_arch": {"pi": [64, 64], "vf": [64, 64]},
                               "activation_fn": torch.nn.Tanh})
    t1 = time.perf_counter()
    cb = Curve()
    model.learn(total_timesteps=total, callback=cb)
    run_s = time.perf_counter() - t1
    steps = int(model.num_timesteps)
    curve = np.array(cb.returns)
    filled = np.array([curve[: i + 1][~np.isnan(curve[: i + 1])][-1] if (~np.isnan(curve[: i + 1])).any()
                       else np.nan for i in range(len(curve))])
    hit = np.flatnonzero(filled >= 475.0)
    out = {"algo": "sb3-ppo", "setup_s": t1 - t0, "run_s": run_s, "valid_steps": steps,
           "sps": steps / run_s, "torch_threads": torch.get_num_threads(),
           "final_return": float(np.nanmean(curve[-max(1, len(curve) // 10):])),
           "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
           "hit_steps": int(cb.steps[hit[0]]) if hit.size else None,
           "hit_time_s": float(cb.times[hit[0]] - t1) if hit.size else None}
    import stable_baselines3
    out["versions"] = {"stable_baselines3": stable_baselines3.__version__,
                       "torch": torch.__version__, "gymnasium": gym.__version__}
    print("RESULT " + json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
