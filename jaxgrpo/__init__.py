"""jaxgrpo: GRPO (and PPO) on gymnax, compiled end to end with JAX.

Names are imported on first use (PEP 562), so that ``import jaxgrpo`` and ``jaxgrpo --help``
do not pay for importing JAX.
"""
from .lazy import lazy_attributes

__version__ = "0.1.1"

_NAMES = {
    "GRPOConfig": "config", "PPOConfig": "config",
    "make_train": "train", "evaluate": "evaluation", "TrainState": "train",
    "sweep": "sweeps", "SweepResult": "sweeps", "use_cpu_cores": "cores",
    "preset": "presets",
    "run_training": "runs", "load_run": "runs", "sft": "runs",
    "plot_runs": "rundir",
}
_MODULES = ("advantages", "algorithm", "checkpoint", "checks", "cli", "compiled", "config",
            "configio", "cores", "envs", "errors", "evaluation", "fileio", "grids", "grpo",
            "keys", "loggers", "losses", "networks", "plots", "ppo", "preemption", "presets",
            "provenance", "render", "rewards", "rollout", "rundir", "runs", "stats", "sweepdir",
            "sweeps", "text", "train", "update")

__all__ = sorted(_NAMES)

__getattr__, __dir__ = lazy_attributes(__name__, _NAMES, _MODULES)
