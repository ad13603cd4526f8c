"""The explorer's segmentation overlay: which label map to lay over the views, and how.

Label maps are computed or read when chosen and kept in this browser session only
(``st.session_state``, a few at most), their memory reserved against the server's budget.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from core import Volume
from core.export import on_one_grid
from core.memory import OverBudget, server_budget
from core.numbers import count, decimal
from core.overlay import (
    LabelMap,
    OverlayError,
    label_stats,
    looks_like_nifti,
    lung_labels,
    match_segmentation,
    nifti_label_bytes,
    nifti_labelmap,
    sample_tissue_labels,
    seg_bytes,
    segmentation_description,
    segmentation_header,
    segmentation_labelmap,
)
from dashboard import state
from dashboard.owner import session_owner
from dashboard.text import file_part, md_escape

SOURCE, OPACITY, OUTLINE = "explorer_overlay_source", "explorer_overlay_opacity", "explorer_overlay_outline"
UPLOAD, STATS_LABEL = "explorer_overlay_upload", "explorer_overlay_stats_label"
LABEL_SCOPE = "histogram_overlay_label"  # the histogram page's pick of a label (label_scope_ui)
SEG_TYPE = "explorer_overlay_seg_type"
PERSISTENT = (SOURCE, OPACITY, OUTLINE, STATS_LABEL, LABEL_SCOPE, SEG_TYPE)
state.persist(*PERSISTENT)
NONE = "None"
SAMPLE, LUNGS, UPLOADED = "sample", "lungs", "upload"
_MAPS = "explorer_overlay_maps"  # session_state: {(volume key, source): LabelMap or message}
_CATALOGUE = "explorer_overlay_catalogue"  # session_state: (ids of the study and its SEG files, [SegEntry])
_KEEP = 4  # label maps kept per session


@dataclass(frozen=True)
class Overlay:
    """A label map and how to paint it."""

    labels: LabelMap
    opacity: float  # 0..1
    outline: bool  # only the edges of each label


@dataclass(frozen=True)
class SegEntry:
    """A DICOM SEG of the study: its name, the series it lies on (or why none)."""

    number: int  # 1-based, as shown
    description: str
    series: int | None
    problem: str


# -- the study's segmentations ------------------------------------------------------------------

def study_segmentations(study: state.Study) -> list[SegEntry]:
    """What each DICOM SEG of ``study`` is and which series it matches (parsed once per study)."""
    identity = (id(study), *(id(data) for _, data in study.segmentations))
    cached = st.session_state.get(_CATALOGUE)
    if cached is not None and cached[0] == identity:
        return list(cached[1])
    entries = []
    for n, (_, data) in enumerate(study.segmentations, start=1):
        try:
            header = segmentation_header(data, max_bytes=_room())
            desc = segmentation_description(header)
            entries.append(SegEntry(n, desc, match_segmentation(header, study.volumes), ""))
        except OverlayError as exc:
            entries.append(SegEntry(n, "DICOM SEG", None, str(exc)))
    st.session_state[_CATALOGUE] = (identity, entries)
    return entries


def seg_name(entry: SegEntry) -> str:
    """How a study's SEG is named on the pages (its description is PHI: shown only when revealed)."""
    return f"DICOM SEG {entry.number}" + (f": {entry.description}" if state.show_phi() else "")


def segmentations_ui(study: state.Study) -> None:
    """On the first page: the study's DICOM SEG files and the series each lies on, in words."""
    entries = study_segmentations(study)
    if not entries:
        return
    lines = [f"{seg_name(e)}: " + (f"lies on series {e.series + 1}; show it with the Volume explorer's "
                                  "segmentation overlay" if e.series is not None else e.problem)
             for e in entries]
    st.markdown(f"**Segmentations in the study ({len(entries)})**\n"
                + "\n".join(f"- {md_escape(x, max_len=None)}" for x in lines))


# -- label maps, cached per session --------------------------------------------------------------

def _room() -> int:
    return server_budget().available(session_owner())


def _maps() -> dict[tuple[str, str], LabelMap | str]:
    return st.session_state.setdefault(_MAPS, {})


def _remember(key: tuple[str, str], value: LabelMap | str) -> None:
    maps = _maps()
    maps.pop(key, None)
    maps[key] = value
    while len(maps) > _KEEP:
        maps.pop(next(iter(maps)))


def _made(vol: Volume, source: str, make: Callable[[], LabelMap], *, transient: int = 0) -> LabelMap | str:
    """The label map of ``source`` on ``vol`` (made once, its memory reserved), or a message."""
    key = (vol.key, source)
    if key in _maps():
        return _maps()[key]
    budget, owner = server_budget(), session_owner()
    try:
        with budget.reserved(transient, owner=owner, what="computing the overlay"):
            reservation = budget.reserve(int(np.prod(vol.shape)), owner=owner, what="the overlay's label map")
            try:
                made: LabelMap | str = make()
            except OverlayError as exc:
                reservation.release()
                made = str(exc)
            else:
                budget.hold(made, reservation)
    except OverBudget as exc:  # not remembered: the next run may find the memory free
        return f"The overlay was not made: {exc}."
    _remember(key, made)
    return made


def _sources(vol: Volume) -> dict[str, str]:
    """The sources offered for ``vol``: id -> label."""
    s = state.study()
    out = {NONE: "None"}
    if s is None:
        return out
    from core.sample import SERIES_UID

    if s.is_sample and vol.series_uid == SERIES_UID:
        out[SAMPLE] = "Sample tissue labels"
    if vol.units == "HU":
        out[LUNGS] = "Lungs (computed on demand)"
    index = state.current_index()
    for e in study_segmentations(s):
        if e.series == index:
            out[f"seg{e.number}"] = seg_name(e)
    if (vol.key, UPLOADED) in _maps():
        out[UPLOADED] = "Uploaded label map"
    return out


def _label_map(vol: Volume, source: str) -> LabelMap | str:
    s = state.study()
    if source == SAMPLE:
        return _made(vol, source, lambda: sample_tissue_labels(vol))
    if source == LUNGS:
        with st.spinner("Segmenting the lungs…"):
            return _made(vol, source, lambda: lung_labels(vol), transient=5 * int(np.prod(vol.shape)))
    if source.startswith("seg") and s is not None:
        data = s.segmentations[int(source[3:]) - 1][1]
        with st.spinner("Reading the segmentation…"):
            made = _made(vol, source, lambda: segmentation_labelmap(data, vol, max_bytes=_room()))
        if isinstance(made, str) and vol not in s.volumes:
            made += (" The segmentation lies on the slices as acquired: switch off the corrected geometry on the "
                     "first page to see it.")
        return made
    return _maps().get((vol.key, source), "Nothing to show.")


# -- uploads ---------------------------------------------------------------------------------------

def _uploaded(vol: Volume) -> None:
    """Read the file in the uploader (a DICOM SEG or a NIfTI label map) for ``vol``, once."""
    file = st.session_state.get(UPLOAD)
    if file is None:  # removed from the uploader: its label map goes too
        if st.session_state.pop(f"{UPLOAD}_done", None) is not None:
            _maps().pop((vol.key, UPLOADED), None)
            st.session_state[f"{UPLOAD}_message"] = ""
        return
    if st.session_state.get(f"{UPLOAD}_done") == (vol.key, file.file_id):
        return
    st.session_state[f"{UPLOAD}_done"] = (vol.key, file.file_id)
    _maps().pop((vol.key, UPLOADED), None)
    if file.size > _room():
        st.session_state[f"{UPLOAD}_message"] = "The file is larger than this session may hold now."
        return
    data = file.getvalue()
    made = _made(vol, UPLOADED, lambda: _read_upload(data, vol))
    if isinstance(made, str):
        _maps().pop((vol.key, UPLOADED), None)
        st.session_state[f"{UPLOAD}_message"] = made
    else:
        st.session_state[f"{UPLOAD}_message"] = ""
        st.session_state[SOURCE] = UPLOADED


def _read_upload(data: bytes, vol: Volume) -> LabelMap:
    if looks_like_nifti(data):
        return nifti_labelmap(data, vol, max_bytes=_room())
    header = segmentation_header(data, max_bytes=_room())
    try:
        match_segmentation(header, [vol])
    except OverlayError:
        s = state.study()
        index = match_segmentation(header, s.volumes if s is not None else [])  # says "matches none" in words
        if index == state.current_index():  # the current series, shown on its corrected grid
            raise OverlayError("This segmentation lies on the slices as acquired: switch off the corrected "
                               "geometry on the first page to see it.") from None
        raise OverlayError(f"This segmentation lies on series {index + 1}, not on the current one: pick that "
                           "series on the first page.") from None
    return segmentation_labelmap(data, vol, max_bytes=_room())


def upload_ui(vol: Volume) -> None:
    """The uploader of a label map for the current series, and its message (read by :func:`overlay_ui`)."""
    with st.expander("Add a segmentation for this series (DICOM SEG or NIfTI label map)"):
        st.file_uploader(
            "DICOM SEG (.dcm) or NIfTI label map (.nii, .nii.gz)", key=UPLOAD,
            help="A NIfTI label map must have this series' grid: the same voxels and the same affine as the "
                 "NIfTI export of this series. A DICOM SEG must lie on this series' slices.",
        )
        message = st.session_state.get(f"{UPLOAD}_message")
        if message:
            st.error(message)


# -- the chooser -----------------------------------------------------------------------------------

def _swatch(rgb: tuple[int, int, int]) -> str:
    """A small square of one colour, as a data URL for an image column."""
    import base64

    r, g, b = (int(c) for c in rgb)
    svg = (f"<svg xmlns='http://www.w3.org/2000/svg' width='24' height='16'>"
           f"<rect width='24' height='16' fill='rgb({r},{g},{b})'/></svg>")
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode()


def legend_table(vol: Volume, labels: LabelMap) -> pd.DataFrame:
    """One row per label present: swatch, name, voxels and volume in mL."""
    counts = labels.counts()
    voxel_ml = float(np.prod(vol.spacing)) / 1000.0
    rows = [{"Colour": _swatch(labels.colors.get(v, (255, 255, 255))), "Label": labels.names.get(v, f"Label {v}"),
             "Voxels": int(counts[v]), "Volume (mL)": round(int(counts[v]) * voxel_ml, 1)}
            for v in range(1, 256) if counts[v]]
    return pd.DataFrame(rows, columns=["Colour", "Label", "Voxels", "Volume (mL)"])


def legend_ui(vol: Volume, labels: LabelMap) -> None:
    table = legend_table(vol, labels)
    if table.empty:
        st.info("This label map is empty: no voxel carries a label.")
        return
    st.dataframe(table, hide_index=True, key="explorer_overlay_legend", height=min(300, 36 + 35 * len(table)),
                 column_config={"Colour": st.column_config.ImageColumn("Colour", width="small"),
                                "Voxels": st.column_config.NumberColumn(format="localized")})


def label_options(labels: LabelMap, present: list[int]) -> dict[str, int]:
    """The labels ``present`` by their names, as a picker offers them (a repeated name gets its value added):
    the widget keeps the name, so that its value reads the same wherever it is shown."""
    options: dict[str, int] = {}
    for v in present:
        name = labels.names.get(v) or f"Label {v}"
        options[name if name not in options else f"{name} ({v})"] = v
    return options


def stats_ui(vol: Volume, labels: LabelMap) -> None:
    """Mean, SD, min, max and volume of one label (padding excluded)."""
    present = labels.present()
    if not present:
        return
    options = label_options(labels, present)
    if st.session_state.get(STATS_LABEL) not in options:
        st.session_state[STATS_LABEL] = next(iter(options))
    value = options[st.selectbox("Statistics of the label", list(options), key=STATS_LABEL, persist_state="session")]
    s = _stats(vol, labels, int(value))
    unit = f" {vol.units}" if vol.units else ""
    d = functools.partial(decimal, places=1)
    st.caption(f"Mean {d(s.mean)}{unit}, SD {d(s.sd)}{unit}, minimum {d(s.min)}{unit}, maximum {d(s.max)}{unit}; "
               f"{d(s.volume_ml)} mL in {count(s.n, 'voxel')} (padding left out)." if s.n else
               "No voxel of this label lies inside the scan (all padding).")


@st.cache_resource(scope="session", max_entries=16, show_spinner=False)
def _stats_cached(_vol: Volume, _labels: LabelMap, key: str, value: int) -> Any:
    return label_stats(_vol, _labels, value)


def _stats(vol: Volume, labels: LabelMap, value: int) -> Any:
    return _stats_cached(vol, labels, f"{vol.key}:{labels.key}", value)


SEG_TYPES = {"BINARY": "Binary (read by most viewers)", "LABELMAP": "Label map (smaller; newer viewers)"}


def _reserved(make: Callable[[], bytes], nbytes: int, owner: str) -> Callable[[], bytes]:
    """``make`` run with ``nbytes`` reserved for it: a download's bytes count against the budget."""
    def run() -> bytes:
        with server_budget().reserved(nbytes, owner=owner, what="writing the overlay's file"):
            return make()
    return run


def downloads_ui(vol: Volume, labels: LabelMap) -> None:
    """The shown overlay as DICOM SEG (on the series' images) and as NIfTI (the series' affine)."""
    empty = not labels.counts()[1:].any()
    need, owner = 4 * labels.labels.nbytes, session_owner()
    room = _room() >= need
    seg_ok = bool(vol.slice_headers) and not empty and room
    seg_why = ("The label map is empty: nothing to write." if empty else
               "This series has no images of its own to refer to (a corrected, resampled series): switch off the "
               "corrected geometry on the first page for a DICOM SEG." if not vol.slice_headers else
               "Not enough memory left in this session to write the file now.")
    kind = st.radio("DICOM SEG type", list(SEG_TYPES), key=SEG_TYPE, format_func=SEG_TYPES.__getitem__,
                    persist_state="session",
                    horizontal=True, help="Binary: Segmentation Storage, one 1-bit frame per slice and label, read "
                    "by OHIF and 3D Slicer. Label map: Label Map Segmentation Storage (DICOM 2024), one 8-bit frame "
                    "per slice, much smaller.")
    name = f"{file_part(vol.modality)}_series{state.current_index() + 1}_segmentation"  # no PHI in file names
    c1, c2 = st.columns(2)
    c1.download_button(
        "Download as DICOM SEG", data=_reserved(lambda: seg_bytes(vol, labels, segmentation_type=kind), need, owner),
        file_name=f"{name}.dcm", mime="application/dicom", on_click="ignore", disabled=not seg_ok,
        key="explorer_overlay_seg_download", icon=":material/download:",
        help="A segmentation that refers to this series, so OHIF or 3D Slicer lay it on the same images."
        if seg_ok else seg_why)
    nifti_ok = on_one_grid(vol) and room
    c2.download_button(
        "Download as NIfTI", data=_reserved(lambda: nifti_label_bytes(vol, labels), need, owner),
        file_name=f"{name}.nii.gz", mime="application/gzip", on_click="ignore", disabled=not nifti_ok,
        key="explorer_overlay_nifti_download", icon=":material/download:",
        help="8-bit labels with the same affine as the NIfTI export of this series." if nifti_ok else
        "The slices are not evenly spaced: use the corrected geometry (first page) for a NIfTI file."
        if room else "Not enough memory left in this session to write the file now.")


def overlay_ui(vol: Volume) -> Overlay | None:
    """The overlay chooser (source, opacity, outline, legend, downloads); the chosen overlay, or None."""
    _uploaded(vol)
    sources = _sources(vol)
    if st.session_state.get(SOURCE) not in sources:
        st.session_state[SOURCE] = NONE
    c1, c2, c3 = st.columns([2, 2, 1])
    choice = c1.selectbox("Segmentation overlay", list(sources), key=SOURCE, format_func=sources.__getitem__,
                          persist_state="session")
    st.session_state.setdefault(OPACITY, 40)  # kept across pages: no default given to the widget too
    opacity = c2.slider("Overlay opacity", 0, 100, step=5, key=OPACITY, persist_state="session", format="%d%%") / 100
    outline = c3.toggle("Outline only", key=OUTLINE, persist_state="session")
    upload_ui(vol)
    if choice == NONE:
        return None
    made = _label_map(vol, choice)
    if isinstance(made, str):
        st.error(made)
        return None
    # Collapsed: the views carry their own compact legend, and the page's first screen stays for the images.
    with st.expander("Labels (legend, volumes, statistics) and downloads", expanded=False):
        legend_ui(vol, made)
        stats_ui(vol, made)
        downloads_ui(vol, made)
    return Overlay(made, float(opacity), bool(outline))


# -- other pages: the overlay's labels as a scope ------------------------------------------------------

def shown_labels(vol: Volume) -> LabelMap | None:
    """The label map chosen in the explorer's overlay chooser for ``vol`` (made now if it must be), or None."""
    source = st.session_state.get(SOURCE, NONE)
    if source == NONE or source not in _sources(vol):
        return None
    made = _label_map(vol, source)
    return made if isinstance(made, LabelMap) else None


def label_scope_ui(vol: Volume) -> tuple[str, int] | None:
    """Pick one label of the explorer's overlay; ``(label map key, value)``, or None (with a note)."""
    labels = shown_labels(vol)
    present = [] if labels is None else labels.present()
    if labels is None or not present:
        st.info("No segmentation overlay with labels yet: choose one on the **Volume explorer** (Segmentation "
                "overlay). Showing the whole volume meanwhile.")
        return None
    options = label_options(labels, present)
    if st.session_state.get(LABEL_SCOPE) not in options:
        st.session_state[LABEL_SCOPE] = next(iter(options))
    value = options[st.selectbox("Label", list(options), key=LABEL_SCOPE, persist_state="session")]
    return labels.key, int(value)


def label_mask(vol: Volume, labels_key: str, value: int) -> np.ndarray:
    """Where label ``value`` of the session's label map ``labels_key`` lies on ``vol``: (S, R, C) bool.

    Raises
    ------
    KeyError
        When this session no longer holds that label map.
    """
    for made in _maps().values():
        if isinstance(made, LabelMap) and made.key == labels_key and made.labels.shape == vol.shape:
            return made.labels == value
    raise KeyError(labels_key)
