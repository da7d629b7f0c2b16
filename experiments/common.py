"""Helpers shared by the experiment scripts: machine description, CIs, final returns.

``machine``, ``last_valid`` and ``bootstrap_ci`` live in ``jaxgrpo.runs`` (the CLI's run folders
use them too); they are re-exported here so that there is one implementation."""
from __future__ import annotations

import subprocess

from jaxgrpo.runs import bootstrap_ci, last_valid, machine

__all__ = ["bootstrap_ci", "git_rev", "last_valid", "machine"]


def git_rev() -> str:
    try:
        return subprocess.check_output(["git", "rev-parse", "--short", "HEAD"], text=True).strip()
    except Exception:
        return "unknown"
