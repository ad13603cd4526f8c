"""The 3D isosurface page: settings, cached surfaces and lungs, the Plotly mesh, exports."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from core import Volume
from core.isosurface import Mesh, extract_isosurface, mesh_bytes
from core.lungs import LungStats, lung_statistics, segment_lungs
from dashboard import state
from dashboard.text import md_escape

PRESET, LEVEL, BUDGET, KEEP, CROP, SHOW = "iso_preset", "iso_level", "iso_budget", "iso_keep", "iso_crop", "iso_show"
PERSISTENT = (PRESET, LEVEL, BUDGET, KEEP, CROP, SHOW)
LUNGS = "Lungs (segmented)"
PRESETS: dict[str, float | None] = {
    "Bone (400 HU)": 400.0,
    "Skin (-300 HU)": -300.0,
    "Soft tissue (40 HU)": 40.0,
    "Contrast-filled vessels (200 HU)": 200.0,
    LUNGS: None,
    "Custom": None,
}
COLORS = {"Bone (400 HU)": "#f2efe4", "Skin (-300 HU)": "#e0ac8c", "Soft tissue (40 HU)": "#d46a6a",
          "Contrast-filled vessels (200 HU)": "#e04848", LUNGS: "#7fb8e6", "Custom": "#c8c8c8"}


@dataclass(frozen=True)
class Settings:
    preset: str
    level: float
    budget: int
    keep: int
    crop: tuple[int, int]


def init(vol: Volume) -> None:
    ct = vol.units == "HU"
    st.session_state.setdefault(PRESET, "Bone (400 HU)" if ct else "Custom")
    if LEVEL not in st.session_state:
        st.session_state[LEVEL] = 400.0 if ct else float(np.percentile(vol.voxels[::4, ::4, ::4], 75))
    st.session_state.setdefault(BUDGET, 300_000)
    st.session_state.setdefault(KEEP, 0)
    st.session_state.setdefault(SHOW, False)
    if CROP not in st.session_state or st.session_state[CROP][1] > vol.shape[0]:
        st.session_state[CROP] = (0, vol.shape[0])


def _apply_preset() -> None:
    level = PRESETS.get(st.session_state[PRESET])
    if level is not None:
        st.session_state[LEVEL] = level
    if st.session_state[PRESET] == LUNGS:
        st.session_state[KEEP] = 0


def settings_ui(vol: Volume) -> Settings:
    ct = vol.units == "HU"
    names = list(PRESETS) if ct else ["Custom"]
    unit = md_escape("HU" if ct else (vol.units or "value"))  # labels render Markdown
    c1, c2 = st.columns([1, 2])
    preset = c1.selectbox("Surface", names, key=PRESET, on_change=_apply_preset)
    lo, hi = (-1000.0, 3000.0) if ct else vol.value_range
    level = c2.slider(f"Threshold ({unit})", lo, hi, step=10.0 if ct else max((hi - lo) / 400, 1e-3), key=LEVEL,
                      disabled=preset == LUNGS, help="Marching cubes finds where the volume crosses this value.")
    d1, d2, d3 = st.columns(3)
    budget = d1.number_input("Triangle budget", 10_000, 2_000_000, step=50_000, key=BUDGET,
                             help="The sampling step is chosen to meet it; past that the mesh is decimated.")
    keep = d2.number_input("Keep the largest parts (0 = all)", 0, 50, key=KEEP,
                           help="1 or 2 drops the table, loose specks and noise.")
    n = vol.shape[0]
    crop = d3.slider("Slices used", 0, n, key=CROP) if n > 1 else (0, n)
    return Settings(preset, float(level), int(budget), int(keep), (int(crop[0]), int(crop[1])))


@st.cache_resource(scope="session", max_entries=2, show_spinner=False)
def lungs_for(_vol: Volume, key: tuple) -> tuple[np.ndarray, LungStats]:
    mask = segment_lungs(_vol)
    return mask, lung_statistics(_vol, mask)


@st.cache_resource(scope="session", max_entries=4, show_spinner=False)
def mesh_for(_vol: Volume, key: tuple, settings: Settings) -> Mesh:
    crop = (slice(settings.crop[0], settings.crop[1]), slice(None), slice(None))
    if settings.preset == LUNGS:
        mask, _ = lungs_for(_vol, key)
        # A uint8 view of the mask (no copy of the volume): the surface is its 0.5 level.
        lung_vol = _vol.with_changes(voxels=mask.view(np.uint8), warnings=[], padding=None)
        return extract_isosurface(lung_vol, 0.5, max_triangles=settings.budget, crop=crop,
                                  keep_largest=settings.keep)
    return extract_isosurface(_vol, settings.level, max_triangles=settings.budget, crop=crop,
                              keep_largest=settings.keep)


def figure(mesh: Mesh, color: str) -> go.Figure:
    """A lit Plotly mesh in millimetres; the camera survives reruns (uirevision)."""
    v = mesh.vertices
    f = mesh.faces
    fig = go.Figure(go.Mesh3d(
        x=v[:, 0], y=v[:, 1], z=v[:, 2], i=f[:, 0], j=f[:, 1], k=f[:, 2],
        color=color, flatshading=False, hoverinfo="skip",
        lighting=dict(ambient=0.35, diffuse=0.8, specular=0.25, roughness=0.55, fresnel=0.1),
        lightposition=dict(x=0, y=-1e5, z=1e5),
    ))
    axis = dict(showbackground=False, gridcolor="#333", zerolinecolor="#444", color="#aaa")
    fig.update_layout(
        height=650, margin=dict(l=0, r=0, t=0, b=0), template="plotly_dark", uirevision="iso",
        scene=dict(aspectmode="data", xaxis=dict(title="x (mm, R→L)", **axis), yaxis=dict(title="y (mm, A→P)", **axis),
                   zaxis=dict(title="z (mm, I→S)", **axis),
                   camera=dict(eye=dict(x=0.0, y=-2.0, z=0.3), up=dict(x=0, y=0, z=1))),
    )
    return fig


def facts_ui(mesh: Mesh, lungs: LungStats | None) -> None:
    cols = st.columns(4 if lungs is None else 6)
    cols[0].metric("Triangles", f"{mesh.n_triangles:,}")
    cols[1].metric("Surface area", f"{mesh.area_mm2 / 100:,.1f} cm²")
    cols[2].metric("Enclosed volume", f"{mesh.enclosed_ml:,.1f} mL" if mesh.enclosed_ml is not None else "open")
    cols[3].metric("Sampling step", "x".join(str(s) for s in mesh.step) + (" + decimated" if mesh.decimated else ""))
    if lungs is not None:
        cols[4].metric("Lung volume", f"{lungs.volume_ml:,.0f} mL")
        cols[5].metric("Emphysema index", f"{lungs.emphysema_index:.1f} %", help="% of lung voxels below -950 HU")


def downloads_ui(mesh: Mesh, settings: Settings) -> None:
    idx = state.current_index()
    name = settings.preset.split(" (")[0].lower().replace(" ", "_")
    base = f"series{idx + 1}_{name}"
    c1, c2, c3 = st.columns(3)
    c1.download_button("STL (binary)", lambda: mesh_bytes(mesh, "stl"), f"{base}.stl", "model/stl",
                       key="iso_dl_stl", icon=":material/download:", help="For 3D printing.")
    c2.download_button("PLY", lambda: mesh_bytes(mesh, "ply"), f"{base}.ply", "application/octet-stream",
                       key="iso_dl_ply", icon=":material/download:", help="For 3D Slicer, MeshLab.")
    c3.download_button("OBJ", lambda: mesh_bytes(mesh, "obj"), f"{base}.obj", "model/obj",
                       key="iso_dl_obj", icon=":material/download:")
