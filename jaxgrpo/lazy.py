"""Names of a package imported on first use (PEP 562), so that importing the package (and
``jaxgrpo --help``) does not import JAX: ``jaxgrpo`` and ``jaxgrpo.text`` use it."""
from __future__ import annotations

import importlib
import sys


def lazy_attributes(package: str, names: dict, modules):
    """``(__getattr__, __dir__)`` for ``package``: ``names`` maps an attribute to the submodule
    that defines it, ``modules`` are submodules served as attributes; each is imported on first
    use and then cached in the package."""
    def __getattr__(name):
        if name in names:
            value = getattr(importlib.import_module(f".{names[name]}", package), name)
        elif name in modules:
            value = importlib.import_module(f".{name}", package)
        else:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        setattr(sys.modules[package], name, value)
        return value

    def __dir__():
        return sorted(set(vars(sys.modules[package])) | set(names) | set(modules))

    return __getattr__, __dir__
