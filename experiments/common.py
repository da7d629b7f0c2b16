"""Helpers shared by the experiment scripts: machine description, CIs, final returns.

``machine`` (``jaxgrpo.provenance``), ``last_valid`` and ``bootstrap_ci`` (``jaxgrpo.stats``)
are the library's own (run folders use them too), re-exported here so there is one
implementation."""
from __future__ import annotations

import subprocess

from jaxgrpo.provenance import machine
from jaxgrpo.stats import bootstrap_ci, last_valid

__all__ = ["bootstrap_ci", "git_rev", "last_valid", "machine"]


def git_rev() -> str:
    try:
        return subprocess.check_output(["git", "rev-parse", "--short", "HEAD"], text=True).strip()
    except Exception:
        return "unknown"
