"""Text from plugins and their commands, made safe to print on a terminal.

A task's summary, details, metric labels and output come from plugin code and the
programs it runs, and are shown by ``run``, ``history`` and ``explain``.  Printed raw,
an escape sequence in them could retitle the window, rewrite what is on screen, plant
a clickable link (OSC 8), or on some terminals answer back as if typed.  ``printable``
removes every such sequence (CSI and OSC, DCS and the other string sequences, in their
7-bit and 8-bit forms), every other C0 and C1 control except newline and tab, and the
Unicode controls that reorder text on screen.  It is applied to the data just before it
is rendered, so that how a command lays out its output does not matter.  ``--json``
output needs none of this: JSON escapes every control character.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, TypeVar

_UNSAFE = re.compile(
    r"""
      (?:\x1b\[|\x9b) [0-?]* [ -/]* [@-~]?          # CSI ... final byte (SGR colour too)
    | (?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])       # OSC, DCS, SOS, PM, APC: a string
      [^\x07\x1b\x9c]* (?:\x07|\x1b\\|\x9c)?        # up to BEL or ST (or the end)
    | \x1b [ -/]* [0-~]?                            # any other escape sequence
    | [\x00-\x08\x0b-\x1f\x7f-\x9f]                 # other C0 controls, DEL, C1 controls
    | [\u200e\u200f\u202a-\u202e\u2066-\u2069]      # bidirectional overrides and marks
    """,
    re.VERBOSE,
)

T = TypeVar("T")


def printable(value: T) -> T:
    """``value`` with terminal controls removed from every string in it: a string, the
    keys and values of a dict, the items of a list or tuple, the fields of a dataclass."""
    return _clean(value)  # type: ignore[no-any-return]


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return _UNSAFE.sub("", value)
    if isinstance(value, dict):
        return {_clean(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_clean(v) for v in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = [f.name for f in dataclasses.fields(value) if f.init]
        return dataclasses.replace(value, **{name: _clean(getattr(value, name)) for name in fields})
    return value
