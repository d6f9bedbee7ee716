"""Package interfaces loaded on first use: a package's `__init__` can export names from its
modules without importing them (every `govsoc` command imports each package through the
entry points; pySigma or ansible-runner should load only when used)."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from typing import Any


def lazy_exports(package: str, where: dict[str, str], modules: Iterable[str] = ()
                 ) -> Callable[[str], Any]:
    """A module `__getattr__` for `package`: `name` comes from `package.<where[name]>`;
    a name in `modules` is the submodule itself."""
    submodules = frozenset(modules)

    def __getattr__(name: str) -> Any:
        if name in submodules:
            return importlib.import_module(f"{package}.{name}")
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{where[name]}"), name)

    return __getattr__
