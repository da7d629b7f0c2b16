"""The ``jaxgrpo`` command (also ``python -m jaxgrpo``).

    jaxgrpo train [--algo grpo|ppo] [--env ID|text:NAME] [--preset [ENV]] [--seeds N]
                  [--total-timesteps N] [--config FILE.yaml] [--set key=value ...] [--out DIR]
                  [--seed N] [--checkpoint-every N] [--resume DIR [--step N]] [--quiet] ...
    jaxgrpo sft [--env text:NAME] [--steps N] [--seeds N] [--set key=value ...] [--out DIR]
    jaxgrpo eval RUN_DIR [--episodes N] [--gif OUT.gif]   (text runs: [--prompts N] [--samples N])
    jaxgrpo plot DIR [DIR ...] --out FILE.png
    jaxgrpo sweep SWEEP.yaml [--out DIR] [--overwrite]
    jaxgrpo export RUN_DIR --out DIR [--seed I]      (text runs: a Hugging Face checkpoint)
    jaxgrpo sample RUN_DIR --prompt TEXT [--num N] [--greedy]

Bad input (an unknown env or field, a value of the wrong type, an unreadable file, a path that
is a file or a folder that already holds results) prints one line ``jaxgrpo CMD: error: ...``
on stderr and exits with code 2, before anything is compiled. No command replaces an existing
result unless told to with ``--overwrite`` (or continues a run, with ``--resume``). JAX is
imported only after the arguments are parsed, so ``--help`` is instant; ``train``, ``sft`` and
``sweep`` then give it one CPU device per core (``jaxgrpo.cores``) before anything starts it.

Modules: ``parsers`` (the argparse parsers; help defaults read from the config classes),
``build`` (configs from the arguments), one module per command (``train``: train and sft,
``evaluate``, ``plot``, ``sweep``), ``tables`` (what the commands print), ``distributed``
(joining a multi-process sweep), ``usage`` (bad input and exit codes).
"""
from __future__ import annotations

import sys
from typing import Sequence

from .build import build_config
from .evaluate import cmd_eval
from .export import cmd_export, cmd_sample
from .parsers import (PARSERS, eval_parser, main_parser, plot_parser, sweep_parser,
                      train_parser)
from .plot import cmd_plot
from .sweep import cmd_sweep
from .tables import result_table
from .train import cmd_sft, cmd_train
from .usage import EXIT_INTERRUPTED, EXIT_PREEMPTED, EXIT_USAGE, UsageError

__all__ = ["main", "COMMANDS", "PARSERS", "UsageError", "EXIT_USAGE", "EXIT_INTERRUPTED",
           "EXIT_PREEMPTED",
           "build_config", "result_table", "train_parser", "eval_parser", "plot_parser",
           "sweep_parser", "main_parser"]

COMMANDS = {"train": cmd_train, "sft": cmd_sft, "eval": cmd_eval, "plot": cmd_plot,
            "sweep": cmd_sweep, "export": cmd_export, "sample": cmd_sample}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: returns the exit code (0; 2 for bad input, with one line on stderr; 143
    when a signal stopped train, sft or sweep with a checkpoint (``jaxgrpo.preemption``);
    130 when interrupted otherwise)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    prog = "jaxgrpo"
    try:
        if not argv or argv[0] in ("-h", "--help"):
            main_parser().print_help()
            return 0 if argv else EXIT_USAGE
        cmd, rest = argv[0], argv[1:]
        if cmd not in COMMANDS:
            raise UsageError(f"unknown command {cmd!r}; commands: {', '.join(COMMANDS)} "
                             "(see jaxgrpo --help)")
        prog = f"jaxgrpo {cmd}"
        return COMMANDS[cmd](rest)
    except UsageError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except SystemExit as e:              # --help
        return e.code if isinstance(e.code, int) else 0
