"""Lazy exports: a package names its public API up front but imports each name only when first used.

That keeps `import engine.storage` (or rating, reward, training) from loading SQLAlchemy, numpy,
torch or transformers before something really needs them. A package writes::

    __getattr__ = lazy_exports(__name__, {"HistoryService": "clips", "Rater": "..storage.repository.rating"})

with its names also under `if TYPE_CHECKING:` imports and in `__all__`, so type checkers and
linters see them.
"""
from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(package: str, exports: Mapping[str, str]) -> Callable[[str], Any]:
    """A module-level `__getattr__` for `package`: name -> the module (relative to `package`; a
    plain name means a submodule, ``..x`` climbs up) that defines it. Unknown names raise
    AttributeError as usual; a loaded name is stored in the package, so later look-ups are plain."""

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        target = module if module.startswith(".") else f".{module}"
        value = getattr(importlib.import_module(target, package), name)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__
