"""Lung segmentation on CT: the Data Science Bowl 2017 recipe, with its usual failures fixed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from core import hu

if TYPE_CHECKING:
    from core.volume import Volume

__all__ = ["LungStats", "check_lungs", "lung_statistics", "segment_lungs"]


def segment_lungs(volume: Volume, *, threshold: float = -320.0, min_fraction: float = 0.2) -> np.ndarray:
    """The lungs of a CT volume, vessels and nodules inside them included.

    1. Voxels below ``threshold`` HU (air and lung), padding included as air.
    2. Air connected to the edge of any slice's field of view is outside the body: removed
       in 3D, so a lung touching the top or bottom slice is kept (the classic per-slice
       corner test removes it).
    3. The largest remaining air pockets are kept: the biggest, and a second one when it
       is at least ``min_fraction`` of the biggest (two lungs, or one when they touch);
       the trachea, bowel gas and specks are smaller and dropped.
    4. Holes are filled slice by slice, so vessels and nodules count as lung.

    Parameters
    ----------
    volume : Volume
        A CT volume in HU.
    threshold : float
        HU below which a voxel is air or lung.
    min_fraction : float
        Size of the second lung relative to the first for it to be kept.

    Returns
    -------
    (S, R, C) bool ndarray

    Raises
    ------
    ValueError
        If the volume is not CT, or no air pocket is found inside the body.
    """
    from scipy import ndimage

    if volume.units != "HU":
        raise ValueError(f"lung segmentation needs CT in HU, got modality {volume.modality!r}")
    air = volume.voxels < threshold
    pad = volume.padding_mask()
    if pad is not None:
        air |= pad
    try:  # 16-bit labels take half the memory of scipy's default int32, the largest array here
        labels, n = ndimage.label(air, output=np.uint16)
    except RuntimeError:  # more than 65,535 air pockets (noise): they need 32 bits
        labels, n = ndimage.label(air)
    if n == 0:
        raise ValueError("no voxel below the threshold: no lungs in this volume")
    border = np.unique(np.concatenate([
        labels[:, 0, :].ravel(), labels[:, -1, :].ravel(), labels[:, :, 0].ravel(), labels[:, :, -1].ravel(),
    ]))
    # Counted slice by slice: a whole-volume bincount copies the labels to int64 (4x the int16 CT).
    sizes = np.zeros(n + 1, dtype=np.int64)
    for k in range(labels.shape[0]):
        sizes += np.bincount(labels[k].ravel(), minlength=n + 1)
    sizes[0] = 0
    sizes[border] = 0
    if sizes.max() == 0:
        raise ValueError("no air pocket inside the body: no lungs in this volume")
    order = np.argsort(sizes)[::-1]
    keep = [order[0]]
    if len(order) > 1 and sizes[order[1]] >= min_fraction * sizes[order[0]]:
        keep.append(order[1])
    kept = np.zeros(n + 1, dtype=bool)  # a lookup table: np.isin makes sorted copies of the labels
    kept[keep] = True
    lungs = kept[labels]
    del labels, air
    for k in range(lungs.shape[0]):
        if lungs[k].any():
            lungs[k] = ndimage.binary_fill_holes(lungs[k])
    return lungs


@dataclass(frozen=True)
class LungStats:
    volume_ml: float
    emphysema_index: float  # % of lung voxels below -950 HU
    mean_hu: float
    air_share: float = 0.0  # % of voxels below -975 HU: air rather than lung tissue


def lung_statistics(volume: Volume, lungs: np.ndarray, *, emphysema_hu: float = hu.LOW_ATTENUATION) -> LungStats:
    """Lung volume in mL, emphysema index (% of lung voxels below ``emphysema_hu``), mean HU."""
    n = int(lungs.sum())
    if n == 0:
        return LungStats(0.0, 0.0, float("nan"))
    values = volume.voxels[lungs]
    voxel_ml = float(np.prod(volume.spacing)) / 1000.0
    return LungStats(
        volume_ml=n * voxel_ml,
        emphysema_index=100.0 * float(np.count_nonzero(values < emphysema_hu)) / n,
        mean_hu=float(values.mean()),
        air_share=100.0 * float(np.count_nonzero(values < AIR_HU)) / n,
    )


# Lungs hold tissue and blood: their median is about -850 HU, -930 with severe emphysema. A space
# whose voxels are mostly below -975 HU is air (around a head in its holder, a gas-filled bowel),
# whatever tissue the hole filling took in with it; less than 100 mL is a sinus or an airway.
MIN_LUNG_ML = 100.0
AIR_HU = -975.0
MAX_AIR_SHARE = 50.0


def check_lungs(stats: LungStats) -> None:
    """Raise :class:`ValueError`, in words, when what :func:`segment_lungs` found is not plausibly lungs.

    Parameters
    ----------
    stats : LungStats
        From :func:`lung_statistics` of the segmentation.

    Raises
    ------
    ValueError
        If it holds less than 100 mL, or half of its voxels or more are below -975 HU (air, not lung).
    """
    if stats.volume_ml < MIN_LUNG_ML:
        raise ValueError(f"no lungs found: the largest air space inside the body holds {stats.volume_ml:,.0f} mL, "
                         "too little for lungs")
    if stats.air_share >= MAX_AIR_SHARE:
        raise ValueError(f"no lungs found: the largest air space inside the body is {stats.air_share:.0f} % air "
                         f"(below {AIR_HU:g} HU) rather than lung tissue")
