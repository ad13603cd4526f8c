"""The explorer's segmentation overlay: which label map to lay over the views, and how."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import streamlit as st

from core import Volume
from core.overlay import LabelMap
from dashboard import state

SOURCE, OPACITY, OUTLINE = "explorer_overlay_source", "explorer_overlay_opacity", "explorer_overlay_outline"
state.persist(SOURCE, OPACITY, OUTLINE)
NONE = "None"


@dataclass(frozen=True)
class Overlay:
    """A label map and how to paint it."""

    labels: LabelMap
    opacity: float  # 0..1
    outline: bool  # only the edges of each label


@st.cache_resource(scope="session", max_entries=4)
def _sample_labels(_vol: Volume, key: str) -> LabelMap:
    from core.phantom_chest import LABELS
    from core.sample import sample_labels

    rng = np.random.default_rng(7)
    names = {v: n for n, v in LABELS.items() if v > 1}
    colors = {v: tuple(int(c) for c in rng.integers(40, 256, 3)) for v in names}
    labels = np.where(sample_labels() > 1, sample_labels(), 0).astype(np.uint8)
    return LabelMap(labels=labels, names=names, colors=colors, source="Sample tissue labels")  # type: ignore[arg-type]


def overlay_ui(vol: Volume) -> Overlay | None:
    """The overlay chooser (source, opacity, outline); the chosen overlay, or None."""
    s = state.study()
    sources = [NONE]
    if s is not None and s.is_sample and vol.shape == (120, 256, 256):
        sources.append("Sample tissue labels")
    c1, c2, c3 = st.columns([2, 2, 1])
    choice = c1.selectbox("Segmentation overlay", sources, key=SOURCE, persist_state="session")
    opacity = c2.slider("Overlay opacity", 0.0, 1.0, 0.4, step=0.05, key=OPACITY, persist_state="session")
    outline = c3.toggle("Outline only", key=OUTLINE, persist_state="session")
    if choice == NONE:
        return None
    return Overlay(_sample_labels(vol, vol.key), float(opacity), bool(outline))
