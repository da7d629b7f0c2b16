"""Bitwise parity of short runs, for restructurings that must change no number.

    python -m tests.parity record DIR     # before the change: metrics and final params to DIR
    python -m tests.parity check DIR      # after it: the same runs, compared bit for bit

The cases cover every algorithm of the table (GRPO on episodes, on branched states and on
batches, collected on-policy; GRPO with process supervision; PPO; GRPO on text; SFT and a
GRPO run started from it through run folders) and the evaluators. Arrays a newer version adds
(new metrics) are not compared; the ones recorded must all be there and equal. Metrics renamed since the
record are compared under their new names (``RENAMED``). XLA compiles differently per CPU
model, so record and check on the same machine. Not a pytest module (its name does not start
with ``test_``): a full check takes a few minutes.
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import jax
import numpy as np

# old metric name -> new name (a rename changes no number)
RENAMED = {"clip_frac": "clip_ratio/region_mean", "frac_zero_std_groups": "frac_reward_zero_std"}

TEXT = dict(env="text:addition", env_kwargs={"digits": 1}, num_layers=1, width=32, num_heads=2,
            max_len=16)


def _flat(tree, prefix):
    out = {}
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        out[prefix + jax.tree_util.keystr(path)] = np.asarray(leaf)
    return out


def _make_run(config, seeds=2):
    from jaxgrpo import make_train
    train = jax.jit(jax.vmap(make_train(config)))
    state, metrics = train(jax.random.split(jax.random.key(3), seeds))
    return state, metrics


def _direct(config):
    from jaxgrpo import evaluate
    state, metrics = _make_run(config)
    out = {**_flat(jax.device_get(metrics), "metrics"), **_flat(state.params, "params")}
    if not str(config.env).startswith("text:"):
        out["eval/sampled"] = np.asarray(evaluate(config, state, jax.random.key(5), 16))
        out["eval/greedy"] = np.asarray(evaluate(config, state, jax.random.key(5), 16,
                                                 greedy=True))
    return out


def _folders(tmp):
    """SFT into a run folder, then text GRPO from it (init_from), through run_training."""
    import pandas as pd

    from jaxgrpo import GRPOConfig, load_run, run_training
    from jaxgrpo.config import SFTConfig
    sft_dir, grpo_dir = Path(tmp) / "sft", Path(tmp) / "grpo"
    run_training(SFTConfig(**TEXT, num_steps=30, batch_size=16), sft_dir, seeds=2)
    run_training(GRPOConfig(**TEXT, init_from=str(sft_dir), num_groups=4, group_size=4,
                            total_timesteps=400, beta=0.04), grpo_dir, seeds=2)
    out = {}
    for name, d in (("sft", sft_dir), ("grpo", grpo_dir)):
        frame = pd.read_csv(d / "metrics.csv")
        for col in frame.columns:
            if frame[col].dtype.kind in "fiub":
                out[f"{name}/csv/{col}"] = frame[col].to_numpy()
        out.update(_flat(load_run(d).state.params, f"{name}/params"))
    return out


def cases():
    import dataclasses

    from jaxgrpo import GRPOConfig, PPOConfig
    from jaxgrpo.config import SFTConfig
    # the on-policy collector, named where the config has the field (older versions collect
    # on-policy only)
    fields = {f.name for f in dataclasses.fields(GRPOConfig)}
    on = {"on_policy": True} if "on_policy" in fields else {}
    return {
        "grpo_episode": lambda: _direct(GRPOConfig(total_timesteps=6000, beta=0.04, **on)),
        "grpo_process": lambda: _direct(GRPOConfig(total_timesteps=6000, supervision="process",
                                                   loss_type="dr_grpo", ent_coef=0.01)),
        "grpo_state": lambda: _direct(GRPOConfig(total_timesteps=4000, group_mode="state",
                                                 branch_every=4, branch_horizon=8)),
        "grpo_batch": lambda: _direct(GRPOConfig(total_timesteps=6000, group_mode="batch",
                                                 ref_sync_every=2, share_env_noise=True, **on)),
        "ppo": lambda: _direct(PPOConfig(total_timesteps=8192, num_envs=8, num_steps=64)),
        "ppo_pendulum": lambda: _direct(PPOConfig(env="Pendulum-v1", total_timesteps=4096,
                                                  num_envs=4, num_steps=128)),
        "grpo_text": lambda: _direct(GRPOConfig(**TEXT, num_groups=4, group_size=4,
                                                total_timesteps=300, beta=0.04,
                                                loss_type="dapo", clip_eps_high=0.28)),
        "sft": lambda: _direct(SFTConfig(**TEXT, num_steps=12, batch_size=16)),
        "folders": lambda: _folders(tempfile.mkdtemp()),
    }


def record(folder: Path):
    folder.mkdir(parents=True, exist_ok=True)
    for name, run in cases().items():
        np.savez(folder / f"{name}.npz", **run())
        print("recorded", name, flush=True)


def _renamed(key):
    for old, new in RENAMED.items():
        key = key.replace(f"'{old}'", f"'{new}'").replace(f"/{old}", f"/{new}")
    return key


def check(folder: Path) -> int:
    bad = 0
    for name, run in cases().items():
        before = dict(np.load(folder / f"{name}.npz"))
        now = run()
        for key, old in before.items():
            new = now.get(_renamed(key), now.get(key))
            if new is None:
                print(f"{name}: {key} is gone")
                bad += 1
            elif old.shape != new.shape or old.tobytes() != np.asarray(new, old.dtype).tobytes():
                print(f"{name}: {key} differs (max abs diff "
                      f"{np.nanmax(np.abs(old.astype(float) - new.astype(float))) if old.shape == new.shape else 'shape'})")
                bad += 1
        print(f"{name}: {len(before)} arrays compared", flush=True)
    print("bitwise equal" if not bad else f"{bad} arrays differ")
    return 1 if bad else 0


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("record", "check"):
        sys.exit(__doc__)
    folder = Path(sys.argv[2])
    sys.exit(record(folder) if sys.argv[1] == "record" else check(folder))
