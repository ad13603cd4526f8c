"""How numbers and units are written for people: one rule for every page, table and label.

A measured length is printed with at most three decimals, trailing zeros dropped, and a space
before its unit: ``0.9765625`` mm reads ``0.977 mm``, ``1.0`` reads ``1 mm``, ``2.5`` reads ``2.5 mm``.
Counts take the plural when they are not one ("1 slice", "3 slices"). See docs/CONTRIBUTING.md.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["count", "decimal", "length_mm", "ordinal", "spacing_mm"]


def decimal(value: float, *, places: int = 3) -> str:
    """``value`` with at most ``places`` decimals and no trailing zeros: ``0.977``, ``1``, ``-2.5``.

    Not a number reads ``"—"``; ``-0`` reads ``0``.
    """
    value = float(value)
    if not math.isfinite(value):
        return "—"
    text = f"{value:.{places}f}".rstrip("0").rstrip(".") if places > 0 else f"{value:.0f}"
    return "0" if text in ("-0", "") else text


def length_mm(value: float) -> str:
    """A length in millimetres: ``"0.977 mm"``."""
    return f"{decimal(value)} mm"


def spacing_mm(spacing: Sequence[float]) -> str:
    """Voxel spacing, in the order given, one unit at the end: ``"1.25 x 0.977 x 0.977 mm"``."""
    return " x ".join(decimal(s) for s in spacing) + " mm"


def count(n: int, noun: str, plural: str | None = None) -> str:
    """``n`` and ``noun`` in the plural unless ``n`` is one: ``"1 slice"``, ``"3 slices"``, ``"2,048 voxels"``."""
    word = noun if n == 1 else (plural or noun + "s")
    return f"{n:,} {word}"


def ordinal(n: int) -> str:
    """``1st``, ``2nd``, ``3rd``, ``4th``, ``11th``, ``21st``, ``99th``."""
    if 10 <= n % 100 <= 20:
        suffix = "th"
    else:
        suffix = {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"
