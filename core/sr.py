"""The explorer's measurements as a DICOM Structured Report (TID 1500 measurement report, via highdicom)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from core.annotations import Measurement
    from core.volume import Volume

__all__ = ["measurement_report"]


def measurement_report(volume: Volume, measurements: Sequence[Measurement], values: Sequence[Mapping[str, float]],
                       ) -> bytes:
    """A Comprehensive 3D SR (TID 1500) of ``measurements`` on ``volume``'s series, as DICOM file bytes.

    ``values[i]`` holds the values of ``measurements[i]`` (``core.annotations.VALUE_KEYS``).
    """
    raise NotImplementedError("being written (issue 18)")
