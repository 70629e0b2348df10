"""Reading the JSON files gmdrit writes (and users may edit or damage): :func:`loads`.

Python's reader turns any integer literal into an int, however long; one of 400 digits passes every check for
a finite number and then overflows where a float or a C integer is made of it (a traceback far from the file).
Here an integer outside the 64-bit range is a ``ValueError``, like any other malformed JSON, so each reader
treats it as the damage it is.
"""

from __future__ import annotations

import json
from typing import Any

_LIMIT = 2**63


def _bounded_int(text: str) -> int:
    value = int(text)
    if not -_LIMIT <= value < _LIMIT:
        raise ValueError(f"integer of {len(text)} digits: outside the 64-bit range")
    return value


def loads(text: str | bytes) -> Any:
    """``json.loads`` whose integers fit in 64 bits (else ``ValueError``)."""
    return json.loads(text, parse_int=_bounded_int)
