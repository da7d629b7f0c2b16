"""The sweep that tests/multiprocess_worker.py runs on two processes (from the command line as
``YAML``, then from Python as ``sweep_args()``) and tests/test_multiprocess.py on one (not a
test module). ``sweep_args`` is a function because building a config starts JAX's backend,
which must wait for ``jax.distributed.initialize``."""

YAML = """\
algo: grpo
total_timesteps: 2000
num_groups: 2
group_size: 4
num_iterations: 3
env_params: {max_steps_in_episode: 50}
grid:
  lr: [1.0e-3, 3.0e-3, 1.0e-2]
seeds: 2
compiler_options: {xla_backend_optimization_level: 0}
"""


def sweep_args():
    """``(config, grid, seeds, kwargs)`` of the same sweep as ``YAML``."""
    from jaxgrpo import GRPOConfig
    cfg = GRPOConfig(total_timesteps=2000, num_groups=2, group_size=4, num_iterations=3,
                     env_params={"max_steps_in_episode": 50})
    return cfg, {"lr": [1e-3, 3e-3, 1e-2]}, 2, {"compiler_options":
                                                 {"xla_backend_optimization_level": 0}}
