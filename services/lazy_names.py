"""A package whose names load their module when first asked for (PEP 562's module `__getattr__`).

Processes that import a package for one name (the CLI's settings, a door) do not pay for the rest.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_names(package: str, modules: dict[str, str], namespace: dict[str, Any]) -> Callable[[str], Any]:
    """The package's `__getattr__`: `modules` maps each name to its module in `package`; once loaded, a name
    is kept in the package's `namespace` and asked for no more."""
    def __getattr__(name: str) -> Any:
        if name not in modules:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = namespace[name] = getattr(importlib.import_module(f"{package}.{modules[name]}"), name)
        return value
    return __getattr__
