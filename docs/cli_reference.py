"""The options reference of docs/command-line.md, written from the parsers of ``jaxgrpo``.

    python docs/cli_reference.py           # rewrite the block between the options markers
    python docs/cli_reference.py --check   # exit 1 when the page is not what the parsers say

tests/test_cli.py checks that the page is current, so an option added to, removed from or
reworded in ``jaxgrpo.cli.parsers`` shows up here or fails the test.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from jaxgrpo.cli import PARSERS

PAGE = Path(__file__).resolve().parent / "command-line.md"
BEGIN, END = "<!-- options:begin -->", "<!-- options:end -->"


def _name(action) -> str:
    if not action.option_strings:
        return action.metavar
    name = ", ".join(action.option_strings)
    if action.nargs == 0:
        return name
    metavar = action.metavar or ("{" + ",".join(action.choices) + "}" if action.choices
                                 else action.dest.upper())
    if action.nargs == "?":
        metavar = f"[{metavar}]"
    elif action.nargs == "+":
        metavar = f"{metavar} [{metavar} ...]"
    return f"{name} {metavar}"


def reference() -> str:
    """One table per command: every option with its help text (defaults included)."""
    parts = []
    for cmd, make in PARSERS.items():
        parser = make()
        fmt = parser._get_formatter()
        rows = [f"| `{_name(a)}` | {' '.join(fmt._expand_help(a).split())} |"
                for a in parser._actions if not isinstance(a, argparse._HelpAction)]
        parts.append(f"### jaxgrpo {cmd}\n\n{' '.join(parser.description.split())}\n\n"
                     "| option | meaning |\n|---|---|\n" + "\n".join(rows).replace("<", "&lt;"))
    return "\n\n".join(parts)


def page_with_reference(text: str) -> str:
    """``text`` (the page) with the block between the markers replaced by ``reference()``."""
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{reference()}\n{END}{tail}"


def main(argv) -> int:
    text = PAGE.read_text()
    new = page_with_reference(text)
    if "--check" in argv:
        return 0 if new == text else 1
    PAGE.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
