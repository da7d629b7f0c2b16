"""The import graph of ``jaxgrpo/`` has no cycle, and every module imports only modules of its own
layer or lower ones (``LAYERS``). Imports are read with ``ast`` from the source (module-level
and function-level ones, relative and absolute), nothing is imported."""
from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "jaxgrpo"

# Layers, lowest first. A module may import modules of its own layer or lower ones. A package's
# submodules take the package's layer unless listed ("sweeps" covers "sweeps.driver").
LAYERS = {
    # 0: imports nothing of jaxgrpo
    "errors": 0, "lazy": 0, "checks": 0, "fileio": 0, "stats": 0, "provenance": 0, "keys": 0,
    "preemption": 0, "cores": 0,
    "text.tokenizer": 0,
    # 1: environments and text tasks (what a config names)
    "envs": 1, "rewards": 1, "text": 1, "text.interface": 1, "text.datasets": 1,
    "text.tasks": 1, "text.model": 1,
    # 2: configs (no disk)
    "config": 2, "presets": 2,
    # 3: configs as files: YAML and --set, sweep files and grids
    "configio": 3, "grids": 3,
    # 4: the algorithm core: collect -> score -> learn, the table of algorithms, evaluation
    "networks": 4, "rollout": 4, "stream": 4, "advantages": 4, "losses": 4, "update": 4, "algorithm": 4,
    "grpo": 4, "ppo": 4, "text.grpo": 4, "text.sft": 4, "text.evaluation": 4, "train": 4,
    "evaluation": 4,
    # 5: the workflow's pieces: checkpoints, figures, progress and loggers, GIFs, compiled cache
    "checkpoint": 5, "plots": 5, "loggers": 5, "render": 5, "compiled": 5,
    # 6: run folders and sweep folders on disk
    "rundir": 6, "sweepdir": 6,
    # 7: training runs (train, resume, load, evaluate, SFT)
    "runs": 7,
    # 8: sweeps
    "sweeps": 8,
    # 9: the command line, and the package's lazy front door
    "cli": 9, "__main__": 9, "jaxgrpo": 9,
}


def module_names() -> dict[str, Path]:
    """``{"config": path, "text.tasks": path, "sweeps": path of sweeps/__init__.py, ...}``; the
    package itself is ``"jaxgrpo"``."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts) or "jaxgrpo"] = path
    return out


def _resolve(name: str, is_package: bool, node: ast.ImportFrom) -> str | None:
    """The dotted name (relative to jaxgrpo, "jaxgrpo" for the package) that ``from X import``
    reads from; None outside jaxgrpo."""
    if node.level:
        here = [] if name == "jaxgrpo" else name.split(".")
        base = here if is_package else here[:-1]
        if node.level > 1:
            base = base[:len(base) - (node.level - 1)]
        parts = base + (node.module.split(".") if node.module else [])
        return ".".join(parts) or "jaxgrpo"
    if node.module == "jaxgrpo":
        return "jaxgrpo"
    if node.module and node.module.startswith("jaxgrpo."):
        return node.module[len("jaxgrpo."):]
    return None


def imports_of(name: str, source: str, modules, is_package: bool = False) -> list[tuple]:
    """``[(target, line, level)]``: every jaxgrpo module ``source`` imports (``level``:
    "module-level" or "in a function"); ``from . import x`` names the submodule x."""
    tree = ast.parse(source)
    in_function = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            in_function.update(id(n) for n in ast.walk(node) if n is not node)
    out = []
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "jaxgrpo":
                    targets.append("jaxgrpo")
                elif alias.name.startswith("jaxgrpo."):
                    targets.append(alias.name[len("jaxgrpo."):])
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(name, is_package, node)
            if base is None:
                continue
            for alias in node.names:
                sub = alias.name if base == "jaxgrpo" else f"{base}.{alias.name}"
                targets.append(sub if sub in modules else base)
        level = "in a function" if id(node) in in_function else "module-level"
        out += [(t, node.lineno, level) for t in dict.fromkeys(targets) if t != name]
    return out


@functools.lru_cache(maxsize=1)
def import_graph() -> dict[str, list[tuple]]:
    modules = module_names()
    return {name: imports_of(name, path.read_text(), modules, path.name == "__init__.py")
            for name, path in modules.items()}


def layer(name: str) -> int:
    probe = name
    while probe not in LAYERS:
        if "." not in probe:
            raise KeyError(f"jaxgrpo.{name} has no layer: add it (or its package) to "
                           "tests/test_imports.py's LAYERS")
        probe = probe.rsplit(".", 1)[0]
    return LAYERS[probe]


def cycles(graph) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each as one cycle
    through it, ``[a, b, ..., a]``."""
    index, low, stack, on, comps = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w, _, _ in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                comps.append(comp)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [_cycle_through(graph, set(c), min(c)) for c in comps]


def _cycle_through(graph, comp: set, start: str) -> list[str]:
    """A shortest cycle from ``start`` back to it inside ``comp`` (breadth first)."""
    paths, seen = [[start]], {start}
    while paths:
        nxt = []
        for p in paths:
            for w, _, _ in graph[p[-1]]:
                if w == start:
                    return p + [start]
                if w in comp and w not in seen:
                    seen.add(w)
                    nxt.append(p + [w])
        paths = nxt
    return [start]


def _edge(graph, a, b) -> str:
    line, level = next((line, level) for t, line, level in graph[a] if t == b)
    return f"{a} -> {b} ({a}:{line}, {level})"


def test_the_import_graph_sees_every_kind_of_import():
    modules = {"config": None, "envs": None, "text": None, "text.tasks": None,
               "text.model": None, "runs": None, "jaxgrpo": None}
    src = ("from .envs import make_env\nfrom . import runs\nimport jaxgrpo.text.model\n"
           "from jaxgrpo.text import TOKENIZER\n"
           "def f():\n    from .text.tasks import make_task\n    import os\n")
    got = {(t, level) for t, _, level in imports_of("config", src, modules)}
    assert got == {("envs", "module-level"), ("runs", "module-level"),
                   ("text.model", "module-level"), ("text", "module-level"),
                   ("text.tasks", "in a function")}
    # relative imports from a subpackage and from a package's __init__
    got = {t for t, _, _ in imports_of("text.tasks", "from ..config import x\nfrom .model import y\n"
                                       "from .. import envs\n", modules)}
    assert got == {"config", "text.model", "envs"}
    got = {t for t, _, _ in imports_of("text", "from .tasks import make_task\n", modules,
                                       is_package=True)}
    assert got == {"text.tasks"}
    graph = {"a": [("b", 1, "module-level")], "b": [("c", 2, "in a function")],
             "c": [("a", 3, "module-level")], "d": [("a", 4, "module-level")]}
    assert cycles(graph) == [["a", "b", "c", "a"]]


def test_no_import_cycle():
    graph = import_graph()
    found = cycles(graph)
    report = ["  " + " | ".join(_edge(graph, a, b) for a, b in zip(c, c[1:])) for c in found]
    assert not found, "import cycles in jaxgrpo/:\n" + "\n".join(report)


def test_no_module_is_shadowed_by_a_package():
    """``X.py`` beside a package ``X/`` is never imported (the package wins): dead code that
    this graph would misread."""
    shadowed = [f"jaxgrpo/{p.relative_to(PACKAGE)}" for p in PACKAGE.rglob("*.py")
                if (p.with_suffix("") / "__init__.py").is_file()]
    assert not shadowed, f"modules shadowed by a package of the same name: {shadowed}"


def test_every_module_has_a_layer():
    missing = []
    for name in module_names():
        try:
            layer(name)
        except KeyError as e:
            missing.append(str(e))
    assert not missing, "\n".join(missing)


@pytest.mark.parametrize("name", sorted(module_names()))
def test_no_module_imports_a_higher_layer(name):
    try:
        mine = layer(name)
    except KeyError:
        pytest.skip("no layer (test_every_module_has_a_layer says so)")
    graph = import_graph()
    up = [f"{_edge(graph, name, t)}: layer {layer(t)} above {mine}"
          for t, _, _ in graph[name] if t in graph and layer(t) > mine]
    assert not up, f"jaxgrpo.{name} (layer {mine}) imports upward:\n" + "\n".join(up)
