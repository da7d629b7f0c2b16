"""jaxgrpo: GRPO (and PPO) on gymnax, compiled end to end with JAX."""
from . import advantages, losses
from .config import GRPOConfig, PPOConfig
from .train import TrainState, evaluate, make_train
from .sweep import SweepResult, sweep  # noqa: E402  (the function shadows the module name)

__all__ = ["GRPOConfig", "PPOConfig", "make_train", "evaluate", "TrainState", "advantages",
           "losses", "sweep", "SweepResult"]
__version__ = "0.1.0"
