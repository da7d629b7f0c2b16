"""The errors jaxgrpo raises for bad input, at the bottom of the import graph (no JAX), so that
any module, and the command line, can raise and catch them without importing what raises them.

A ``ValueError`` from building a config or reading a file is bad input too; these two name
what a config's validation cannot see: the state of folders and checkpoints on disk.
"""
from __future__ import annotations


class RunError(ValueError):
    """Bad input for a run (existing results, not a run folder, mismatched resume, ...)."""


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable, corrupt or belongs to another run/config."""
