"""A series' geometry and acquisition facts, without PHI, as JSON."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from core.volume import Volume

__all__ = ["summary_json"]


def summary_json(volume: Volume) -> str:
    """Geometry and acquisition facts of a series, without PHI, as JSON."""
    dz, dy, dx = volume.spacing
    doc = {
        "modality": volume.modality,
        "shape": {"slices": volume.shape[0], "rows": volume.shape[1], "columns": volume.shape[2]},
        "spacing_mm": {"between_slices": dz, "rows": dy, "columns": dx},
        "orientation": {
            "row_direction": [round(float(x), 6) for x in volume.row_direction],
            "column_direction": [round(float(x), 6) for x in volume.col_direction],
        },
        "affine_lps": np.round(volume.affine, 6).tolist(),
        "regular_grid": bool(volume.is_regular),
        "gantry_tilt_degrees": round(volume.tilt_degrees, 3),
        "values": {"dtype": str(volume.voxels.dtype), "units": volume.units,
                   "min": volume.value_range[0], "max": volume.value_range[1]},
        "window": None if volume.window is None else {"center": volume.window[0], "width": volume.window[1]},
        "acquisition": {k: v for k, v in volume.summary.items() if k not in ("slices", "rows", "columns")},
        "geometry_warnings": list(volume.warnings),
    }
    return json.dumps(doc, indent=2, default=str)
