"""Bad input and exit codes: what every command raises and ``main`` turns into one line."""
from __future__ import annotations

from ..errors import CheckpointError, RunError

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class UsageError(Exception):
    """Bad input: one line on stderr, exit code 2."""


def user_errors(config_errors: bool = True) -> tuple:
    """The exceptions that mean bad input (their message is the one line to print): ours, and
    ``ValueError`` from validating configs and files (not around compiling or training, where
    a ``ValueError`` would be a bug to show in full)."""
    return (RunError, CheckpointError) + ((ValueError,) if config_errors else ())
