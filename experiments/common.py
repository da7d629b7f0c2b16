"""Helpers shared by the experiment scripts: machine description, CIs, final returns."""
from __future__ import annotations

import os
import platform
import subprocess

import numpy as np


def machine() -> str:
    """One line: CPU model, cores, JAX version and device."""
    import jax
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{cpu}, {os.cpu_count()} cores, jax {jax.__version__}, "
            f"device {jax.devices()[0].device_kind}")


def last_valid(x: np.ndarray, k: int = 1) -> np.ndarray:
    """Mean of the last ``k`` non-NaN entries along the last axis: [..., I] -> [...]."""
    x = np.asarray(x, np.float64)
    flat = x.reshape(-1, x.shape[-1])
    out = np.array([row[~np.isnan(row)][-k:].mean() if (~np.isnan(row)).any() else np.nan
                    for row in flat])
    return out.reshape(x.shape[:-1])


def bootstrap_ci(values, num: int = 10_000, seed: int = 0, level: float = 0.95):
    """Mean and percentile-bootstrap CI of the mean: (mean, low, high)."""
    v = np.asarray(values, np.float64)
    rng = np.random.default_rng(seed)
    means = rng.choice(v, size=(num, v.size), replace=True).mean(1)
    a = (1 - level) / 2
    return float(v.mean()), float(np.quantile(means, a)), float(np.quantile(means, 1 - a))


def git_rev() -> str:
    try:
        return subprocess.check_output(["git", "rev-parse", "--short", "HEAD"], text=True).strip()
    except Exception:
        return "unknown"
