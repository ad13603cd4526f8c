"""Label maps laid over a volume: the segmentations the explorer paints on its views."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

import numpy as np

__all__ = ["LabelMap"]


@dataclass(frozen=True, eq=False)
class LabelMap:
    """A label map on one volume's voxel grid.

    Parameters
    ----------
    labels : (S, R, C) uint8 ndarray
        The same shape as the volume's voxels; 0 is "no label". Read-only.
    names : dict of int to str
        A name for every label value present (1..255).
    colors : dict of int to (r, g, b)
        A colour (0-255 each) for every label value present.
    source : str
        Where it came from, in words ("Sample tissue labels", "Lungs (computed)",
        "DICOM SEG: <series description>", "NIfTI label map").
    """

    labels: np.ndarray
    names: dict[int, str]
    colors: dict[int, tuple[int, int, int]]
    source: str
    key: str = field(init=False, repr=False, compare=False)
    """A random name, new for every label map: the identity the browser's cache uses."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", secrets.token_hex(8))
        if self.labels.ndim != 3 or self.labels.dtype != np.uint8:
            raise ValueError(f"labels must be a 3-D uint8 array, got {self.labels.dtype} of shape {self.labels.shape}")
        self.labels.flags.writeable = False
