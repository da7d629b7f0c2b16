"""Bad input and exit codes: what every command raises and ``main`` turns into one line."""
from __future__ import annotations

from ..errors import CheckpointError, RunError

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
# stopped on SIGTERM, SIGINT or SIGUSR1 with a checkpoint (jaxgrpo.preemption): the shell's
# status for "ended by SIGTERM" (128 + 15) whichever signal it was, which schedulers read as
# preempted
EXIT_PREEMPTED = 143


class UsageError(Exception):
    """Bad input: one line on stderr, exit code 2."""


def user_errors(config_errors: bool = True) -> tuple:
    """The exceptions that mean bad input (their message is the one line to print): ours, and
    ``ValueError`` from validating configs and files (not around compiling or training, where
    a ``ValueError`` would be a bug to show in full)."""
    return (RunError, CheckpointError) + ((ValueError,) if config_errors else ())


def preempted_line(command: str, signum: int, kept: str, resume: str) -> str:
    """The one line ``train``, ``sft`` and ``sweep`` print when a signal stopped them."""
    import signal
    return (f"jaxgrpo {command}: stopped by {signal.Signals(signum).name} ({kept}); "
            f"continue with: {resume}")
