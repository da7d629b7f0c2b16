"""Regenerate every table and figure of README.md and docs/ on the current code, in one go.

    python docs/regenerate.py            # about 2 hours on a 2-core CPU
    python docs/regenerate.py --list     # the commands, without running them

Runs, one after another (each writes its own blocks between ``<!-- NAME:begin/end -->``
markers, with its command and the machine on one line):

- ``python docs/cli_reference.py``: the options reference of docs/command-line.md;
- ``python docs/make_figures.py``: the README's train output and figure, the session of
  docs/command-line.md (needs ``pip install -e ".[render]"`` for the GIF);
- ``python -m experiments.text_targets``: the text targets table of README.md,
  docs/language-models.md and experiments/README.md;
- ``python -m experiments.targets core`` and ``groups``: docs/results.md;
- ``python -m experiments.presets``: docs/presets.md.

Stops at the first command that fails. Run it on a machine doing nothing else: the tables
report seconds.
"""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMMANDS = [
    [sys.executable, "docs/cli_reference.py"],
    [sys.executable, "docs/make_figures.py"],
    [sys.executable, "-m", "experiments.text_targets"],
    [sys.executable, "-m", "experiments.targets", "core"],
    [sys.executable, "-m", "experiments.targets", "groups"],
    [sys.executable, "-m", "experiments.presets"],
]


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    for cmd in COMMANDS:
        shown = " ".join(["python", *cmd[1:]])
        if "--list" in argv:
            print(shown)
            continue
        t = time.time()
        print(f"== {shown}", flush=True)
        if subprocess.run(cmd, cwd=ROOT).returncode:
            print(f"failed: {shown}", file=sys.stderr)
            return 1
        print(f"== {shown}: {time.time() - t:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
