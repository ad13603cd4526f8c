"""The `Volume` value object: voxels and their patient geometry, carried together."""

from __future__ import annotations

import functools
import secrets
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from core.resample import resample_regular

if TYPE_CHECKING:
    from pydicom import Dataset

__all__ = ["CALIBRATIONS", "KINDS", "Volume"]

KINDS = ("volume", "loop", "projection", "gallery")
"""What a series is: a stack of slices, a multi-frame loop of one position, one projection
image (CR, DX, MG, XA), or a gallery of images without a position (reports, screenshots, photos)."""
CALIBRATIONS = ("", "calibrated", "detector", "pixels")
"""What the in-plane spacing of a 2-D image means: ``""`` (a volume's ordinary Pixel Spacing),
``"calibrated"`` (Pixel Spacing at the patient), ``"detector"`` (Imager Pixel Spacing, at the
detector, not corrected for magnification), ``"pixels"`` (no spacing: distances are in pixels)."""


@dataclass(frozen=True, eq=False)
class Volume:
    """A stack of slices with its geometry, as loaded from one series.

    Parameters
    ----------
    voxels : (S, R, C) ndarray
        Modality values (Hounsfield units for CT), slices ordered along the slice
        normal. ``int16`` when every value is integral and fits, ``float32`` otherwise.
        Read-only: pages share it without copying.
    spacing : (dz, dy, dx) tuple of float
        In mm. ``dz`` is the distance between slice planes measured from
        ImagePositionPatient along the normal (never SliceThickness); ``dy`` is the
        row spacing and ``dx`` the column spacing from PixelSpacing (0028,0030).
    series_uid : str
        SeriesInstanceUID (0020,000E).
    modality : str
        Modality (0008,0060), e.g. ``"CT"``.
    warnings : list of str
        Geometry problems in words, for the page to show.
    positions : (S, 3) ndarray of float64
        ImagePositionPatient of each slice, in patient LPS mm. Left out (empty), the
        slices are stacked along the normal from the origin, ``spacing[0]`` apart.
    row_direction, col_direction : (3,) ndarray of float64
        The two ImageOrientationPatient (0020,0037) direction cosines: along a row
        (increasing column index) and along a column (increasing row index).
    description : str
        SeriesDescription, or a description made from what is known.
    window : (center, width) or None
        The first window stored in the header, in modality units.
    summary : dict
        PHI-free facts about the acquisition (modality, manufacturer, kernel, ...).
    header : pydicom.Dataset or None
        The first slice's header without pixel data, for the tag browser. Holds PHI.
    padding : (S, R, ceil(C / 8)) uint8 ndarray or None
        Where the voxels were padding (outside the scan circle, Pixel Padding Value),
        packed with ``numpy.packbits`` along the last axis; those voxels now hold air.
    invert : bool
        True for MONOCHROME1 data: low values are meant to be displayed bright.
    units : str
        ``"HU"`` for CT, else the unit of the modality values if known, else ``""``.
    source_names : tuple of str
        Name of the file (and frame) each slice came from. May hold PHI.
    slice_headers : tuple of pydicom.Dataset
        The header (no pixel data) each slice came from, for the tag browser and the
        de-identified export; a multi-frame file's header appears once per frame. Holds PHI.
    kind : {"volume", "loop", "projection", "gallery"}
        What the series is (:data:`KINDS`); ``"volume"`` by default. A loop holds its frames
        along axis 0, a projection one image (shape ``(1, R, C)``), a gallery images without a
        position, each padded at the bottom and right to the largest (see ``frame_sizes``).
    rgb : (S, R, C, 3) uint8 ndarray or None
        True colour, for colour images (RGB, YBR, palette); ``voxels`` then holds the
        luminance (ITU-R BT.601, uint8), so that code expecting grey values still works.
    frame_time_ms : float or None
        Time between the frames of a loop, from Frame Time (0018,1063), Cine Rate (0018,0040)
        or Recommended Display Frame Rate (0008,2144); None when the file gives none.
    calibration : str
        What the in-plane spacing of a 2-D image means (:data:`CALIBRATIONS`).
    frame_sizes : tuple of (rows, cols)
        A gallery's images' own sizes (each frame is padded to the largest); empty otherwise.
    voi_lut : (first, table) or None
        The header's VOI LUT (0028,3010): the modality value mapped to ``table[0]``, and the
        grey level (uint8, 0-255) for each value from there on.
    """

    voxels: np.ndarray
    spacing: tuple[float, float, float]
    series_uid: str
    modality: str
    warnings: list[str] = field(default_factory=list)
    positions: np.ndarray = field(default_factory=lambda: np.empty((0, 3)))
    row_direction: np.ndarray = field(default_factory=lambda: np.array([1.0, 0.0, 0.0]))
    col_direction: np.ndarray = field(default_factory=lambda: np.array([0.0, 1.0, 0.0]))
    description: str = ""
    window: tuple[float, float] | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    header: Dataset | None = None
    padding: np.ndarray | None = None
    invert: bool = False
    units: str = ""
    source_names: tuple[str, ...] = ()
    slice_headers: tuple[Dataset, ...] = ()
    kind: str = "volume"
    rgb: np.ndarray | None = None
    frame_time_ms: float | None = None
    calibration: str = ""
    frame_sizes: tuple[tuple[int, int], ...] = ()
    voi_lut: tuple[float, np.ndarray] | None = None
    key: str = field(init=False, repr=False, compare=False)
    """A random name of this volume, new for every Volume (copies made with `with_changes` too):
    the one identity caches and the browser use; nothing of the series goes with it."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", secrets.token_hex(8))
        if self.voxels.ndim != 3:
            raise ValueError(f"voxels must have 3 dimensions (slices, rows, cols), got shape {self.voxels.shape}")
        if len(self.spacing) != 3 or not all(np.isfinite(s) and s > 0 for s in self.spacing):
            raise ValueError(f"spacing must be three positive numbers in mm, got {self.spacing!r}")
        self.voxels.flags.writeable = False
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.calibration not in CALIBRATIONS:
            raise ValueError(f"calibration must be one of {CALIBRATIONS}, got {self.calibration!r}")
        if self.rgb is not None:
            if self.rgb.shape != (*self.voxels.shape, 3) or self.rgb.dtype != np.uint8:
                raise ValueError(f"rgb must be uint8 of shape {(*self.voxels.shape, 3)}, got {self.rgb.dtype} "
                                 f"{self.rgb.shape}")
            self.rgb.flags.writeable = False
        if self.frame_time_ms is not None and not (np.isfinite(self.frame_time_ms) and self.frame_time_ms > 0):
            raise ValueError(f"frame_time_ms must be a positive number of milliseconds, got {self.frame_time_ms!r}")
        if len(self.positions) == 0:
            dz = self.spacing[0]
            n = np.cross(self.row_direction, self.col_direction)
            positions = np.arange(self.voxels.shape[0])[:, None] * dz * n[None, :]
            object.__setattr__(self, "positions", positions)
        object.__setattr__(self, "spacing", tuple(float(s) for s in self.spacing))

    # -- shape and geometry -------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int, int]:
        """(slices, rows, cols)."""
        return tuple(self.voxels.shape)

    @property
    def is_colour(self) -> bool:
        """True when the series holds true colour (``rgb``)."""
        return self.rgb is not None

    @property
    def normal(self) -> np.ndarray:
        """The slice normal: the cross product of the row and column directions."""
        n = np.cross(self.row_direction, self.col_direction)
        return n / np.linalg.norm(n)

    @property
    def origin(self) -> np.ndarray:
        """Patient position (LPS mm) of the centre of voxel (0, 0, 0)."""
        return np.asarray(self.positions[0], dtype=float)

    @property
    def slice_step(self) -> np.ndarray:
        """Mean patient-space step from one slice to the next (mm); oblique when sheared."""
        if self.shape[0] < 2:
            return self.normal * self.spacing[0]
        return (self.positions[-1] - self.positions[0]) / (self.shape[0] - 1)

    @property
    def affine(self) -> np.ndarray:
        """4x4 matrix mapping voxel index ``(i=col, j=row, k=slice, 1)`` to LPS mm.

        For a sheared (gantry tilt) stack the third column follows the true slice
        positions, so the matrix is exact for evenly spaced stacks, tilted or not.
        """
        dz, dy, dx = self.spacing
        a = np.eye(4)
        a[:3, 0] = self.row_direction * dx
        a[:3, 1] = self.col_direction * dy
        a[:3, 2] = self.slice_step
        a[:3, 3] = self.origin
        return a

    @property
    def tilt_degrees(self) -> float:
        """Angle between the stacking direction and the slice normal (0 when not sheared)."""
        step = self.slice_step
        length = float(np.linalg.norm(step))
        if self.shape[0] < 2 or length == 0:
            return 0.0
        cos = min(1.0, abs(float(np.dot(step, self.normal))) / length)
        return float(np.degrees(np.arccos(cos)))

    @property
    def is_regular(self) -> bool:
        """True when slices are evenly spaced and stacked along their normal."""
        if self.shape[0] < 2:
            return True
        s = self.positions @ self.normal
        d = np.diff(s)
        uniform = bool(np.all(np.abs(d - d.mean()) <= max(0.01, 0.01 * abs(d.mean()))))
        return uniform and self.tilt_degrees < 0.05

    def patient_position(self, k: float, j: float, i: float) -> np.ndarray:
        """Patient coordinates (LPS mm) of voxel (slice k, row j, col i).

        Uses each slice's own ImagePositionPatient, so it is exact for sheared and
        unevenly spaced stacks too (``k`` is rounded to the nearest slice).
        """
        kk = int(round(min(max(k, 0), self.shape[0] - 1)))
        dz, dy, dx = self.spacing
        return self.positions[kk] + i * dx * self.row_direction + j * dy * self.col_direction

    def padding_mask(self) -> np.ndarray | None:
        """(S, R, C) bool array of the voxels that were padding, or None if none were."""
        if self.padding is None:
            return None
        return np.unpackbits(self.padding, axis=-1, count=self.shape[2]).astype(bool)

    def padding_plane(self, axis: int, index: int) -> np.ndarray | None:
        """The padding mask of one plane (as :func:`core.mpr.slab` cuts it), or None."""
        if self.padding is None:
            return None
        s, r, c = self.shape
        index = int(np.clip(index, 0, self.shape[axis] - 1))
        if axis == 0:
            return np.unpackbits(self.padding[index], axis=-1, count=c).astype(bool)
        if axis == 1:
            return np.unpackbits(self.padding[:, index, :], axis=-1, count=c).astype(bool)
        return ((self.padding[:, :, index // 8] >> (7 - index % 8)) & 1).astype(bool)

    @functools.cached_property
    def value_range(self) -> tuple[float, float]:
        """(min, max) of the voxels, computed once (the voxels are read-only)."""
        if self.voxels.size == 0:
            return 0.0, 0.0
        return float(self.voxels.min()), float(self.voxels.max())

    def corrected(self, *, spacing: float | None = None) -> Volume:
        """This volume resampled onto a regular grid at true patient positions.

        See :func:`core.resample.resample_regular`.
        """
        return resample_regular(self, slice_spacing=spacing)

    def with_changes(self, **changes: Any) -> Volume:
        """A copy with some fields replaced (voxels are shared, not copied)."""
        return replace(self, **changes)
