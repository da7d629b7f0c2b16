"""Run every example of README.md and docs/*.md as written, in a temporary folder.

    python docs/run_examples.py              # all of them (about 10 minutes on a 2-core CPU)
    python docs/run_examples.py --list       # what would run
    python docs/run_examples.py --only docs/sweeps.md --keep

Run it inside the project's virtualenv (the examples call the installed ``jaxgrpo``). Fenced
blocks are handled by their language:

- ``python``: the blocks of one page run in one interpreter, in order (as in a notebook);
- ``bash``: every line runs in ``bash -e``; set-up lines (``python -m venv``, ``pip install``)
  and the test suite (``python -m pytest``) are not run here: CI runs them from a fresh clone;
- ``console``: each ``$ command`` runs, and every line shown after it must appear in its
  output;
- ``yaml`` whose first line is ``# NAME.yaml``: written to ``NAME.yaml`` first.

A block right after ``<!-- not run: REASON -->`` is skipped (regeneration commands that take
long and write the repository's own result files). Each page runs in a fresh temporary
folder of its own, so examples write under its ``runs/``; afterwards the repository must be as
it was (no example writes a tracked file). Exit code 0 when every example ran.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parent.parent
PAGES = ["README.md", "docs/command-line.md", "docs/configs.md", "docs/group-modes.md",
         "docs/sweeps.md", "docs/presets.md", "docs/results.md", "docs/language-models.md",
         "docs/pretrained.md"]
SETUP = ("python -m venv", "pip install", ". .venv/bin/activate", "python -m pytest")
FENCE = re.compile(r"^```(\w*)\s*$")
SKIP = re.compile(r"<!--\s*not run:(.*?)-->")


class Block(NamedTuple):
    page: str
    line: int           # 1-based line of the opening fence
    lang: str
    text: str
    skip: str | None    # the reason, for a block after <!-- not run: ... -->


def blocks(page: str) -> list[Block]:
    """The fenced blocks of ``page`` (a path relative to the repository root)."""
    lines = (ROOT / page).read_text().splitlines()
    out, i, skip = [], 0, None
    while i < len(lines):
        m = FENCE.match(lines[i])
        s = SKIP.search(lines[i])
        if s:
            skip = s.group(1).strip()
        if m:
            start, body = i, []
            i += 1
            while i < len(lines) and not lines[i].startswith("```"):
                body.append(lines[i])
                i += 1
            out.append(Block(page, start + 1, m.group(1), "\n".join(body) + "\n", skip))
            skip = None
        elif lines[i].strip() and not s:
            skip = None              # a skip marker applies to the block right after it
        i += 1
    return out


def commands(block: Block) -> list[str]:
    """The shell lines of a bash block that this script runs (comments and set-up dropped)."""
    out = []
    for line in block.text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if any(part.strip().startswith(SETUP) for part in line.split("&&")):
            continue
        out.append(line)
    return out


def console_steps(block: Block) -> list[tuple[str, list[str]]]:
    """``[(command, expected output lines)]`` of a console block."""
    steps = []
    for line in block.text.splitlines():
        if line.startswith("$ "):
            steps.append((line[2:], []))
        elif steps and line.strip():
            steps[-1][1].append(line.strip())
    return steps


def yaml_name(block: Block) -> str | None:
    first = block.text.splitlines()[0] if block.text.strip() else ""
    m = re.match(r"#\s*([\w.-]+\.ya?ml)\s*$", first)
    return m.group(1) if m else None


def _run(cmd: str, cwd: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-e", "-c", cmd], cwd=cwd, env=env, capture_output=True,
                          text=True)


def git_state() -> str:
    return subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=ROOT,
                          capture_output=True, text=True).stdout


def run_page(page: str, work: Path, env: dict, log) -> list[str]:
    """Run one page's examples in ``work``; returns the failures (empty: all ran)."""
    failures = []
    bs = blocks(page)
    for b in bs:
        if b.lang == "yaml" and yaml_name(b) and not b.skip:
            (work / yaml_name(b)).write_text(b.text)
    python = [b for b in bs if b.lang == "python" and not b.skip]
    for b in bs:
        where = f"{b.page}:{b.line}"
        if b.skip:
            log(f"skip {where} ({b.lang}): {b.skip}")
            continue
        if b.lang == "bash":
            for cmd in commands(b):
                t = time.time()
                p = _run(cmd, work, env)
                log(f"{'ok  ' if p.returncode == 0 else 'FAIL'} {where} {cmd} "
                    f"({time.time() - t:.0f} s)")
                if p.returncode != 0:
                    failures.append(f"{where}: {cmd}: exit {p.returncode}: "
                                    f"{(p.stderr or p.stdout).strip()[-500:]}")
        elif b.lang == "console":
            for cmd, expected in console_steps(b):
                p = _run(cmd, work, env)
                got = [l.strip() for l in (p.stdout + p.stderr).splitlines()]
                missing = [e for e in expected if e not in got]
                log(f"{'FAIL' if missing else 'ok  '} {where} $ {cmd}")
                if missing:
                    failures.append(f"{where}: $ {cmd}: expected {missing[0]!r}, got "
                                    f"{got[-3:]}")
    if python:
        script = "\n".join(f"# --- {b.page}:{b.line}\n{b.text}" for b in python)
        t = time.time()
        p = subprocess.run([sys.executable, "-c", script], cwd=work, env=env,
                           capture_output=True, text=True)
        where = f"{page}: {len(python)} python block(s)"
        log(f"{'ok  ' if p.returncode == 0 else 'FAIL'} {where} ({time.time() - t:.0f} s)")
        if p.returncode != 0:
            failures.append(f"{where}: {p.stderr.strip()[-1500:]}")
    return failures


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", nargs="+", metavar="PAGE", help="pages to run (default: all)")
    ap.add_argument("--list", action="store_true", help="list the examples, run nothing")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = ap.parse_args(argv)
    pages = args.only or PAGES
    if args.list:
        for page in pages:
            for b in blocks(page):
                what = {"bash": lambda: "; ".join(commands(b)),
                        "console": lambda: "; ".join(c for c, _ in console_steps(b)),
                        "python": lambda: f"{len(b.text.splitlines())} lines",
                        "yaml": lambda: yaml_name(b) or "(not a file)"}.get(b.lang,
                                                                            lambda: "(shown)")
                print(f"{page}:{b.line} {b.lang or 'text'}"
                      f"{' SKIP ' + b.skip if b.skip else ''}: {what()}")
        return 0
    before = git_state()
    work = Path(tempfile.mkdtemp(prefix="jaxgrpo-examples-"))
    env = {**os.environ, "PYGAME_HIDE_SUPPORT_PROMPT": "1", "SDL_VIDEODRIVER": "dummy",
           "SDL_AUDIODRIVER": "dummy", "MPLBACKEND": "Agg"}
    log = lambda s: print(s, flush=True)
    log(f"examples of {len(pages)} page(s), in {work}")
    t0 = time.time()
    failures = []
    for page in pages:   # each page in its own folder, as a reader who starts on it would
        folder = work / page.replace("/", "_").removesuffix(".md")
        folder.mkdir()
        failures += run_page(page, folder, env, log)
    after = git_state()
    if after != before:
        failures.append(f"the repository changed: {after.strip() or '(clean now)'}")
    log(f"{'all examples ran' if not failures else f'{len(failures)} failure(s)'} in "
        f"{time.time() - t0:.0f} s" + ("" if args.keep else f"; removing {work}"))
    for f in failures:
        print("FAIL " + f, file=sys.stderr)
    if not args.keep:
        subprocess.run(["rm", "-rf", str(work)])
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
