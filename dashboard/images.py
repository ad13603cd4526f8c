"""Images for the browser: windowed slices as PNG, cached per session."""

from __future__ import annotations

import base64

import cv2
import numpy as np
import streamlit as st

from core import Volume
from core.png import png_bytes
from core.windowing import default_window, window


def middle_slice_preview(volume: Volume, *, size: int = 96) -> np.ndarray:
    """The middle axial slice, windowed and shrunk to fit ``size`` pixels, aspect kept."""
    img = volume.voxels[volume.shape[0] // 2]
    c, w = default_window(volume)
    shown = window(img, c, w, invert=volume.invert)
    _, dy, dx = volume.spacing
    h_mm, w_mm = img.shape[0] * dy, img.shape[1] * dx
    scale = size / max(h_mm, w_mm)
    out_h, out_w = max(1, round(h_mm * scale)), max(1, round(w_mm * scale))
    return cv2.resize(shown, (out_w, out_h), interpolation=cv2.INTER_AREA)


@st.cache_resource(scope="session", max_entries=64, show_spinner=False)
def thumbnail_data_url(_volume: Volume, key: str) -> str:
    """A PNG data URL of the middle slice; ``key`` is the volume's own (``Volume.key``)."""
    return "data:image/png;base64," + base64.b64encode(png_bytes(middle_slice_preview(_volume))).decode()
