"""Numbers in problem names (``inpaint-0.5``, ``sr-x2``, ``cs-0.1-noise0.05``): shared by
the families' ``parse``. A module whose name starts with ``_`` registers nothing."""

from __future__ import annotations

import math
import re


def parse_numbers(pattern: re.Pattern[str], name: str) -> dict[str, float] | None:
    """The named groups of ``pattern`` in ``name`` as finite floats.

    None when ``pattern`` does not match all of ``name`` or a group is no finite number
    (``float`` rejects it, e.g. ``0.1.2``, or it is ``inf``/``nan``).
    """
    match = pattern.fullmatch(name)
    if match is None:
        return None
    numbers = {}
    for key, text in match.groupdict().items():
        try:
            value = float(text)
        except (TypeError, ValueError):
            return None
        if not math.isfinite(value):
            return None
        numbers[key] = value
    return numbers
