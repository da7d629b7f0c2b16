"""Writing files so that an interruption never leaves a half-written one: write to a temporary
name beside the target, then rename it into place in one step."""
from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside ``path`` (same suffix) to write to; on success it is
    renamed onto ``path`` in one step, on any error (or interruption) it is removed and
    ``path`` is left as it was."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text(path, text: str, exclusive: bool = False) -> None:
    """Write ``text`` to ``path`` atomically (see ``atomic_path``). ``exclusive``: only if
    ``path`` does not exist yet, checked in the same step as the write (``FileExistsError``
    otherwise, and ``path`` is left as it was)."""
    if not exclusive:
        with atomic_path(path) as tmp:
            tmp.write_text(text)
        return
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    try:
        tmp.write_text(text)
        os.link(tmp, path)                 # fails if path exists: create-if-absent, atomically
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path, obj) -> None:
    write_text(path, json.dumps(obj, indent=2) + "\n")
