"""Hounsfield's pure-Python core: DICOM reading, geometry and image computations.

Never imports streamlit (a test enforces it).
"""

from __future__ import annotations

from core.geometry import GeometryError, analyse_stack, orientation_name, slice_normal
from core.headers import Budget
from core.loader import LoadResult, load_series
from core.resample import resample_regular
from core.sample import LABELS, TISSUE_HU, sample_ct, sample_ct_files, sample_labels
from core.sources import ZipLimits
from core.volume import Volume

__all__ = [
    "LABELS",
    "TISSUE_HU",
    "Budget",
    "GeometryError",
    "LoadResult",
    "Volume",
    "ZipLimits",
    "analyse_stack",
    "load_series",
    "orientation_name",
    "resample_regular",
    "sample_ct",
    "sample_ct_files",
    "sample_labels",
    "slice_normal",
]
