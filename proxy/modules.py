"""Optional parts: the server, the admin API and the CLI each load a fixed list of modules
and skip those that are not there, but never hide an import error inside one that is."""
from __future__ import annotations

import importlib
from types import ModuleType


def optional(module: str) -> ModuleType | None:
    """``module`` imported, or None if it (or its package) does not exist."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name == module or module.startswith(str(e.name) + "."):
            return None
        raise
