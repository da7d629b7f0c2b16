"""The sweep that tests/multiprocess_worker.py runs on two processes and
tests/test_multiprocess.py runs on one (not a test module)."""
from jaxgrpo import GRPOConfig

CFG = GRPOConfig(total_timesteps=2000, num_groups=2, group_size=4, num_iterations=3,
                 env_params={"max_steps_in_episode": 50})
GRID = {"lr": [1e-3, 3e-3, 1e-2]}
SEEDS = 2
KW = dict(compiler_options={"xla_backend_optimization_level": 0})
