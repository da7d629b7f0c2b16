"""Regenerate the README's figure and train output, and the session shown in docs/command-line.md.

    python docs/make_figures.py        # about 5 minutes on a 2-core CPU

Runs the session of docs/command-line.md (GRPO and PPO on CartPole, 8 seeds each, a plot, an
evaluation with a GIF) in a temporary folder, then copies the plot and the GIF to
docs/cartpole_grpo_vs_ppo.png and docs/cartpole.gif and writes what the commands printed,
with the machine, between the ``session`` markers of docs/command-line.md; the first command's
output and wall time (compilation included) go between the README's ``train`` markers. The GIF needs
pygame (``pip install -e ".[render]"``). Run it inside the project's virtualenv.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from jaxgrpo.provenance import machine

ROOT = Path(__file__).resolve().parent.parent
SESSION = [
    "jaxgrpo train --algo grpo --env CartPole-v1 --seeds 8 --total-timesteps 300000 "
    "--out runs/cartpole-grpo --quiet",
    "jaxgrpo train --algo ppo --env CartPole-v1 --seeds 8 --total-timesteps 500000 "
    "--out runs/cartpole-ppo --quiet",
    "jaxgrpo plot runs/cartpole-grpo runs/cartpole-ppo --out runs/cartpole_grpo_vs_ppo.png",
    "jaxgrpo eval runs/cartpole-grpo --episodes 100 --gif runs/cartpole.gif --gif-stride 2",
]


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="jaxgrpo-figures-"))
    shown, wall = [], []
    for cmd in SESSION:
        t = time.time()
        p = subprocess.run(["bash", "-c", cmd], cwd=work, capture_output=True, text=True)
        wall.append(time.time() - t)
        print(f"{cmd}: exit {p.returncode} ({wall[-1]:.0f} s)", flush=True)
        if p.returncode != 0:
            print(p.stderr, file=sys.stderr)
            return 1
        shown.append(f"$ {cmd.replace(' --quiet', '')}\n{p.stdout.rstrip()}")
    shutil.copy(work / "runs" / "cartpole_grpo_vs_ppo.png", ROOT / "docs")
    shutil.copy(work / "runs" / "cartpole.gif", ROOT / "docs")
    page = ROOT / "docs" / "command-line.md"
    block = ("<!-- session:begin -->\nWhat these commands printed (`python docs/make_figures.py`"
             f"; machine: {machine()}; progress bars left out):\n\n```text\n"
             + "\n".join(shown) + "\n```\n<!-- session:end -->")
    text = re.sub(r"<!-- session:begin -->.*?<!-- session:end -->", lambda _: block,
                  page.read_text(), flags=re.S)
    page.write_text(text)
    readme = ROOT / "README.md"
    block = ("<!-- train:begin -->\n```text\n" + shown[0] + "\n```\n\n"
             f"It took {wall[0]:.0f} s, compilation included (`python docs/make_figures.py`; "
             f"machine: {machine()}).\n<!-- train:end -->")
    text = re.sub(r"<!-- train:begin -->.*?<!-- train:end -->", lambda _: block,
                  readme.read_text(), flags=re.S)
    readme.write_text(text)
    shutil.rmtree(work)
    print("wrote docs/cartpole_grpo_vs_ppo.png, docs/cartpole.gif, docs/command-line.md, "
          "README.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
