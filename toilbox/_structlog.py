"""Import structlog without the two modules it imports for features toilbox never uses.

structlog's package imports every submodule.  Two of them cost a one-shot ``toilbox
run`` more than anything toilbox does itself (about 40 ms and 15 ms on a 2-core machine),
for nothing it uses:

- rich, when installed, draws the console renderer's tracebacks; ``toilbox.log`` turns
  each exception into text before any renderer sees it, and names a plain formatter.
  structlog is imported as if rich were absent (a ``None`` in ``sys.modules`` makes
  ``import rich`` fail), during that import only: a cleanup's progress bar still imports
  rich when it draws one.
- asyncio is used only in the methods of structlog's async loggers, which toilbox does
  not call.  structlog gets a stand-in that imports the real asyncio on its first use;
  everyone else, importing asyncio later, gets the real module.

Imported first by ``toilbox/__init__.py``.  Nothing happens when structlog is already
imported, nor for a module already imported (then there is nothing to save).
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any


class _OnFirstUse(types.ModuleType):
    """Stands in for a module; imports the real one when an attribute is first asked for."""

    def __getattr__(self, name: str) -> Any:
        return getattr(importlib.import_module(self.__name__), name)


def _import_structlog() -> None:
    if "structlog" in sys.modules:
        return
    blocked = [name for name in ("rich",) if name not in sys.modules]
    deferred = [name for name in ("asyncio",) if name not in sys.modules]
    stand_ins = {name: _OnFirstUse(name) for name in deferred}
    sys.modules.update(dict.fromkeys(blocked))  # type: ignore[arg-type]
    sys.modules.update(stand_ins)
    try:
        import structlog  # noqa: F401
    finally:
        for name in blocked:
            if sys.modules.get(name, ...) is None:
                del sys.modules[name]
        for name, stand_in in stand_ins.items():
            if sys.modules.get(name) is stand_in:
                del sys.modules[name]


_import_structlog()
