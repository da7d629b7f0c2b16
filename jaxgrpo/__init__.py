"""jaxgrpo: GRPO (and PPO) on gymnax, compiled end to end with JAX.

Names are imported on first use (PEP 562), so that ``import jaxgrpo`` and ``jaxgrpo --help``
do not pay for importing JAX.
"""
import importlib

__version__ = "0.1.1"

_NAMES = {
    "GRPOConfig": "config", "PPOConfig": "config",
    "make_train": "train", "evaluate": "evaluation", "TrainState": "train",
    "sweep": "sweeps", "SweepResult": "sweeps",
    "preset": "presets",
    "run_training": "runs", "load_run": "runs", "sft": "runs",
    "plot_runs": "rundir",
}
_MODULES = ("advantages", "algorithm", "checkpoint", "checks", "cli", "compiled", "config",
            "configio", "envs", "errors", "evaluation", "fileio", "grids", "grpo", "keys",
            "loggers", "losses", "networks", "plots", "ppo", "presets", "provenance", "render",
            "rewards", "rollout", "rundir", "runs", "stats", "sweepdir", "sweeps", "text", "train",
            "update")

__all__ = sorted(_NAMES)


def __getattr__(name):
    if name in _NAMES:
        value = getattr(importlib.import_module(f".{_NAMES[name]}", __name__), name)
    elif name in _MODULES:
        value = importlib.import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module 'jaxgrpo' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_NAMES) | set(_MODULES))
