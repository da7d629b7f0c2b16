"""Hyperparameter sweeps: many runs from one compilation, sharded over every device.

``sweep(config, grid, seeds)`` runs every combination of ``grid`` (a dict of lists) times
``seeds`` seeds and returns a ``SweepResult``:

- Dynamic fields (those in ``config.hparams()``: lr, beta, gamma, clip_eps, ...) are crossed
  with the seeds into one flat batch of ``R = combinations x seeds`` runs, vmapped, and compiled
  once.
- Static fields (group_size, num_groups, hidden_sizes, env, algo, ... anything that changes the
  traced program) cannot be vmapped: the sweep compiles once per combination of their values,
  and says so with a ``StaticSweepWarning`` and a ``logging`` line.
- The run axis ``R`` is sharded over ``jax.devices()`` (all devices of all processes, so a
  multi-host job only needs ``jax.distributed.initialize()`` before calling ``sweep``): a
  ``Mesh`` with one axis ``"runs"``, inputs placed with ``NamedSharding(mesh, P("runs"))``,
  padded to a multiple of the device count, and a ``shard_map`` so that each device runs its
  own runs with no cross-device traffic (GRPO's episode ``while_loop`` stops per device, not
  when the slowest run on any device is done). Padding runs are dropped afterwards. Within a
  device, ``vmap_size`` runs are vmapped at once (default: all of them). On a CPU,
  ``use_cpu_cores()`` before JAX starts gives one device per core (XLA:CPU runs a program on
  about one core); ``jaxgrpo sweep`` does it itself, and a sweep of several runs on one CPU
  device of a machine with more cores says so with a ``OneCoreWarning``. A single-process
  sweep of fewer runs than devices uses as many devices as it has runs (no padding runs).
- Seed ``s`` uses ``jax.random.split(jax.random.key(base_seed), seeds)[s]``, so
  ``make_train(config.replace(**combination))(key)`` with that key is the sweep's run (equal
  up to float rounding, which RL training amplifies over many iterations: see docs/sweeps.md).

The ``jaxgrpo sweep SWEEP.yaml`` command is in ``jaxgrpo.cli``; its YAML is read by
``jaxgrpo.grids.load_sweep_spec``.

One module a job: ``mesh`` (devices, sharding, placement, ``resolve_vmap_size``), ``runner``
(the compiled program of one compilation, cached in ``jaxgrpo.compiled``), ``result``
(``SweepResult``), ``processes`` (multi-process agreement), ``checkpoints`` (preemption-safe
sweeps) and ``driver`` (``sweep``).
"""
from ..checks import check_count
from ..grids import expand_grid, grid_configs
from .driver import StaticSweepWarning, sweep
from ..cores import OneCoreWarning, usable_cores, use_cpu_cores
from .mesh import resolve_vmap_size, run_mesh, shard_runs
from .processes import agree, describe
from .result import SweepResult
from .runner import last_valid_row

__all__ = ["sweep", "SweepResult", "StaticSweepWarning", "OneCoreWarning", "use_cpu_cores",
           "usable_cores", "shard_runs", "run_mesh",
           "resolve_vmap_size", "agree", "describe", "expand_grid", "grid_configs",
           "last_valid_row", "check_count"]
