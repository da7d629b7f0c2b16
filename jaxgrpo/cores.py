"""One CPU device per core, so that a sweep, or a run of several seeds, trains on all of a
CPU's cores.

This module imports nothing of jaxgrpo and JAX only when called (no gymnax, no model code):
``use_cpu_cores`` has to run before anything starts JAX's backends, and importing gymnax does.
"""
from __future__ import annotations

import math
import os
import sys
import warnings
from pathlib import Path


class OneCoreWarning(UserWarning):
    """Several runs or seeds on one CPU device of a machine with more cores: XLA:CPU runs a
    program on about one core, so the others stay idle (``use_cpu_cores``)."""


def _cgroup_cpus() -> int | None:
    """The CPUs a cgroup quota allows this process (cgroup v2 ``cpu.max``, v1
    ``cpu.cfs_quota_us``), rounded up; None without a quota."""
    read = lambda path: Path(path).read_text()
    try:
        quota, period = read("/sys/fs/cgroup/cpu.max").split()[:2]
        return None if quota == "max" else max(1, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):
        pass
    try:
        quota = int(read("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"))
        period = int(read("/sys/fs/cgroup/cpu/cpu.cfs_period_us"))
        return None if quota <= 0 else max(1, math.ceil(quota / period))
    except (OSError, ValueError):
        return None


def usable_cores() -> int:
    """The logical CPUs this process may run on: its affinity mask (``os.cpu_count()`` where
    there is none), capped by a cgroup CPU quota (a container's ``--cpus``)."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:               # not Linux
        n = os.cpu_count() or 1
    quota = _cgroup_cpus()
    return min(n, quota) if quota else n


def cpu_devices_chosen() -> bool:
    """Whether the number of CPU devices is already chosen: ``JAX_NUM_CPU_DEVICES`` or
    ``jax.config.update("jax_num_cpu_devices", n)``, or
    ``XLA_FLAGS=--xla_force_host_platform_device_count=n``."""
    if os.environ.get("JAX_NUM_CPU_DEVICES") or \
            "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", ""):
        return True
    jax = sys.modules.get("jax")          # not imported: nothing set in this process
    return jax is not None and jax.config.jax_num_cpu_devices >= 0


def use_cpu_cores(n: int | None = None) -> int:
    """Give JAX ``n`` CPU devices (default: one per core, ``usable_cores()``), so that a sweep,
    or a run of several seeds, trains on every core of a CPU. Returns ``n``.

    XLA:CPU runs one compiled program of these networks' sizes on about one core
    (benchmarks/FINDINGS.md, "Vmapped seeds"). A sweep shards its runs over ``jax.devices()``
    and ``run_training`` its seeds, and separate devices execute at once, so with one CPU
    device per core each core trains its share (16 GRPO seeds on 2 cores: 1.90x as fast as the
    same seeds one after the other, where vmapping them on one device gives 1.14x;
    benchmarks/README.md, "Seeds"). ``jaxgrpo sweep`` and ``jaxgrpo train`` do this themselves
    unless the count is already chosen (``cpu_devices_chosen``) or the sweep joins several
    processes.

    Call it before JAX starts (before any JAX computation; in a notebook, right after the
    imports); ``JAX_NUM_CPU_DEVICES=n`` in the environment does the same. It sets
    ``jax_num_cpu_devices``, which only the CPU backend reads: on a GPU or TPU machine
    ``jax.devices()`` is still the accelerators. One seed, or ``jax.jit(make_train(...))``,
    still runs on one device. ``RuntimeError`` when JAX has already started with another
    number of CPU devices.
    """
    n = usable_cores() if n is None else n
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"use_cpu_cores: n must be an int >= 1, got {n!r}")
    import jax
    try:
        jax.config.update("jax_num_cpu_devices", n)
    except RuntimeError:                 # JAX has started
        have = len(jax.devices("cpu"))
        if have != n:
            raise RuntimeError(
                f"use_cpu_cores({n}): JAX has already started with {have} CPU device"
                f"{'s' if have > 1 else ''}; call it before any JAX computation, or start "
                f"Python with JAX_NUM_CPU_DEVICES={n}") from None
    return n


def cpu_cores_by_default() -> int | None:
    """``use_cpu_cores()`` unless the CPU device count is already chosen
    (``cpu_devices_chosen``) or JAX has started; the count it set, or None."""
    if cpu_devices_chosen():
        return None
    try:
        return use_cpu_cores()
    except RuntimeError:
        return None


def warn_idle_cores(who: str, what: str, devices) -> None:
    """``OneCoreWarning`` when ``what`` (e.g. "24 runs") go to ``devices`` = one CPU device of
    a single-process job on a machine with more cores, unless the CPU device count was
    chosen (``cpu_devices_chosen``: the user asked for one). ``who``: the public function
    calling this (the warning points at its caller)."""
    import jax
    cores = usable_cores()
    if len(devices) == 1 and devices[0].platform == "cpu" and cores > 1 \
            and jax.process_count() == 1 and not cpu_devices_chosen():
        warnings.warn(f"{who}: {what} on 1 CPU device, but this machine has {cores} cores "
                      "and XLA:CPU runs a program on about one of them; "
                      "jaxgrpo.use_cpu_cores() before JAX starts (or JAX_NUM_CPU_DEVICES="
                      f"{cores}) gives one device per core and spreads them over the cores",
                      OneCoreWarning, stacklevel=3)
