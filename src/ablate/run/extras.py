"""Optional extras a logger needs: refused when missing, before Lightning is even imported.

A logger option file in conf/logger/ names its extra with `_extra_:`; a run whose extra is not
installed is refused before anything is written.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping

# In a logger entry: the pyproject extra (and the module) it needs; not a constructor argument.
EXTRA_KEY = "_extra_"


def missing_extras(cfg: Mapping) -> list[str]:
    """One line per logger whose extra is not installed (e.g. logger=mlflow without mlflow)."""
    problems = []
    for name, entry in (cfg.get("logger") or {}).items():
        extra = entry.get(EXTRA_KEY) if isinstance(entry, Mapping) else None
        if extra and not _installed(extra):
            problems.append(
                f"logger={name} needs the {extra} extra, which is not installed: "
                f"make install EXTRAS={extra} (or pip install -e '.[{extra}]')"
            )
    return problems


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a broken install, or a module hidden in sys.modules
        return False
