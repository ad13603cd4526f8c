"""Widgets of the first page: upload, progress, the series table and the skipped list."""

from __future__ import annotations

import re
from typing import Any

import pandas as pd
import streamlit as st

from core import LoadResult, Volume, ZipLimits, load_series
from core.memory import server_budget
from core.numbers import spacing_mm
from core.privacy import MASK, display_description, series_identity
from dashboard import kinds, state
from dashboard.owner import session_owner
from dashboard.streamlit_internals import refused_upload_reason, release_uploads, upload_instances
from dashboard.text import count, decimal, md_escape


def upload_ui() -> tuple[list[Any], str]:
    """Draw the two uploaders; return the uploaded files and a short description of them."""
    nonce = st.session_state[state.UPLOAD_NONCE]
    left, right = st.columns(2)
    with left:
        files = st.file_uploader(
            "DICOM files or .zip archives",
            accept_multiple_files=True,
            key=f"load_files_{nonce}",
            help="Select many files at once (Ctrl/Cmd+A in the file dialog), or one or more .zip archives. "
            "Files without an extension are fine: the content decides.",
        )
    with right:
        folder = st.file_uploader(
            "A whole folder",
            accept_multiple_files="directory",
            key=f"load_folder_{nonce}",
            help="Every file in the folder and its subfolders is read; whatever is not DICOM is listed as skipped.",
        )
    chosen = list(files or []) + list(folder or [])
    n = len(chosen)
    return chosen, f"{n} uploaded file{'s' if n != 1 else ''}"


TRIM_EVERY = 24  # uploaded files released between two malloc_trim calls (about 12 MB of CT)


def make_room(files: list[Any]) -> bool:
    """Close the open study when this session's memory share could not hold the new one beside it.

    Uploads are counted against the session's share as they arrive (see
    ``dashboard.streamlit_internals.meter_uploads``), and the loader reserves the new volumes before decoding
    them; with a large study open, a study of the same size would be refused. The uploads'
    size stands for the new voxels (they are close for uncompressed CT). Returns True when the
    study was closed.
    """
    current = state.study()
    if current is None or current.is_sample:
        return False
    need = sum(int(getattr(f, "size", 0) or 0) for f in files)
    if server_budget().available(session_owner()) >= need:
        return False
    state.clear_study()
    return True


# Words of the memory refusals: core.memory's (a session's share, the server's total) and
# core.sources' zip total, which is fitted to a session's share.
MEMORY_REFUSALS = ("the server is busy", "this session may hold at most", "this upload may still unpack")


def memory_refusals(skipped: list[tuple[str, str]]) -> list[str]:
    """The reasons in ``skipped`` that are the memory budget's, not the files' fault."""
    return [reason for _, reason in skipped if any(words in reason for words in MEMORY_REFUSALS)]


def memory_notice_ui(skipped: list[tuple[str, str]]) -> None:
    """Say in the page, not only in the skipped list, when the memory budget refused part of an upload."""
    reasons = memory_refusals(skipped)
    if reasons:
        more = f" ({len(reasons)} files or series in all, listed below)" if len(reasons) > 1 else ""
        st.warning(f"Not everything could be loaded: {reasons[0]}{more}.", icon=":material/memory:")


def refused_upload_ui() -> None:
    """Say why an upload of this session was refused by the memory budget (once)."""
    reason = refused_upload_reason(session_owner())
    if reason:
        st.error(f"An uploaded file was refused: {reason}.", icon=":material/memory:")


def signature(files: list[Any]) -> tuple:
    return tuple((getattr(f, "file_id", None), f.name, getattr(f, "size", None)) for f in files)


def load_with_progress(files: list[Any]) -> LoadResult:
    """Run `load_series` on uploads with a progress bar (updated at most ~50 times)."""
    bar = st.progress(0.0, text="Reading files…")
    last = [-1]

    def progress(done: int, total: int) -> None:
        step = int(50 * done / total) if total else 50
        if step != last[0]:
            last[0] = step
            bar.progress(done / total if total else 1.0, text=f"Reading files… {done} of {total}")

    # Each upload is handed back as soon as it has been read, so the study never sits in
    # memory twice (the uploaded bytes and the volume) for longer than one file.
    others = upload_instances()
    released = [0]

    def release(n: int) -> None:
        release_uploads([files[n]], others=others)
        released[0] += 1
        if released[0] % TRIM_EVERY == 0:  # give the freed uploads back as the volume grows
            state.trim_memory()

    memory, owner = server_budget(), session_owner()
    # Zips may unpack at most one session's share, reserved against the budget as they inflate.
    limits = ZipLimits(max_total_bytes=memory.session_bytes, memory=memory, owner=owner)
    result = load_series(files, progress=progress, release_source=release, memory=memory, owner=owner,
                         zip_limits=limits)
    release_uploads(files, others=others)  # inputs that yielded no file at all
    bar.empty()
    return result


def geometry_label(vol: Volume) -> str:
    """A volume's geometry in a few words: "regular", or each note's name ("Gantry tilt 25.0°")."""
    names = []
    for w in vol.warnings:
        name = w.split(":")[0]
        names.append(f"{name} {vol.tilt_degrees:.1f}°" if name == "Gantry tilt" else name)
    return "; ".join(dict.fromkeys(names)) or "regular"


def series_table(study: state.Study, *, show_phi: bool) -> pd.DataFrame:
    """One row per series: what tells it apart with patient information hidden (core.privacy.series_identity).

    Narrow enough for a 1400 px window: the modality and the kind share one column ("CT volume",
    "US colour loop"); spacing and geometry are in the panel under the table (preview_ui, geometry_ui).
    """
    rows = []
    for i, vol in enumerate(study.volumes):
        ident = series_identity(vol, show_phi=show_phi)
        rows.append(
            {
                "Preview": kinds.preview_data_url(vol),
                "#": i + 1,
                "Kind": f"{vol.modality} {kinds.kind_label(vol)}".strip(),
                "Series number": ident.number or "—",
                "Description": ident.description or ("—" if show_phi else MASK),
                "Slice thickness": ident.thickness or "—",
                "Kernel": ident.kernel or "—",
                "Body part": ident.body_part or "—",
                "Contrast": "yes" if ident.contrast else "—",
                "Images": kinds.image_count(vol),
                "Date": ident.date or "—",
            }
        )
    table = pd.DataFrame(rows)
    # Hidden, every date would read the same: the column is left out.
    return table if show_phi else table.drop(columns=["Date"])


# Column widths in pixels: with the Description's (show_series_table) they add up to 896, within the
# 936 px the table has at a 1400 px wide window with the sidebar open (tests/test_browser_kinds.py
# checks there is no sideways scroll).
SERIES_COLUMNS = {
    "Preview": st.column_config.ImageColumn("Preview", width=64),
    "#": st.column_config.NumberColumn(format="%d", width=36),
    "Kind": st.column_config.TextColumn(width=118),  # "US colour loop" whole
    "Series number": st.column_config.TextColumn("Number", width=64),
    "Slice thickness": st.column_config.TextColumn("Thickness", width=78),
    "Kernel": st.column_config.TextColumn(width=64),
    "Body part": st.column_config.TextColumn(width=76),
    "Contrast": st.column_config.TextColumn(width=70),
    "Images": st.column_config.TextColumn(width=86, help="Slices of a volume, frames of a loop, images of a "
                                          "gallery"),
    "Date": st.column_config.TextColumn(width=90),
}


def show_series_table(study: state.Study, *, show_phi: bool) -> None:
    st.dataframe(
        series_table(study, show_phi=show_phi),
        hide_index=True,
        # The description has the dates' room when they are hidden: "Synthetic chest CT (built-in sample)" whole.
        column_config={**SERIES_COLUMNS, "Description": st.column_config.TextColumn(width=150 if show_phi else 240)},
        row_height=64,
        key="load_series_table",
    )
    if not show_phi:
        st.caption("With patient information hidden, a description is shown when every word of it is a number, a "
                   "scanner code or a word of anatomy or reconstruction; others may hold a name and stay hidden, "
                   "with the dates.")


def next_step_ui(vol: Volume) -> None:
    """The link to the explorer, in words that fit the series (dashboard.kinds.next_step)."""
    st.page_link("pages/1_Volume_explorer.py", label=kinds.next_step(vol), icon=":material/arrow_forward:")


def pick_series_ui(study: state.Study, *, show_phi: bool) -> int:
    """A select box of the series; returns the chosen index (also stored as the current one)."""
    options = list(range(len(study.volumes)))
    st.session_state["load_pick"] = state.current_index()

    def _changed() -> None:
        st.session_state[state.CURRENT] = st.session_state["load_pick"]

    descriptions = [display_description(v, i, show_phi=show_phi) for i, v in enumerate(study.volumes)]
    # The widget keeps its callbacks until the next run: they must not hold the study's volumes.
    return st.selectbox(
        "Current series",
        options,
        format_func=descriptions.__getitem__,
        key="load_pick", persist_state="session",
        on_change=_changed,
    )


def geometry_ui(study: state.Study, index: int) -> None:
    """The current series' warnings, and the corrected-geometry choice where it applies."""
    vol = study.volumes[index]
    for w in vol.warnings:
        st.warning(md_escape(w, max_len=None), icon=":material/warning:")
    if vol.shape[0] > 1 and not vol.is_regular:
        key = f"load_corrected_{index}"

        def _changed() -> None:  # reads the study when called: a callback must not hold its volumes
            current = state.study()
            if current is not None:
                (current.use_corrected.add if st.session_state[key] else current.use_corrected.discard)(index)

        st.session_state[key] = index in study.use_corrected
        st.toggle(
            "Use corrected geometry (resample onto a regular grid at true patient positions)",
            key=key, persist_state="session",
            on_change=_changed,
            help="Each slice is placed by its own Image Position (Patient), so gantry tilt and uneven spacing no "
            "longer distort distances, reformats or 3D. The raw stack stays available: switch this off.",
        )
        if index in study.use_corrected:
            if index not in study.corrected:
                with st.spinner("Resampling onto a regular grid…"):
                    study.corrected[index] = vol.corrected()
            st.caption(md_escape(study.corrected[index].warnings[0], max_len=None))


def masked_skipped(skipped: list[tuple[str, str]], *, show_phi: bool,
                   other_names: tuple[str, ...] = ()) -> list[tuple[str, str]]:
    """The skipped list as shown: file names (PHI too) replaced by "file N of the upload"
    unless PHI is revealed, in the File column and wherever a reason names a file.

    ``other_names`` are files that were used (a reason may name one, "duplicate of ...").
    """
    if show_phi:
        return list(skipped)
    labels: dict[str, str] = {}
    for name in [name for name, _ in skipped] + list(other_names):
        labels.setdefault(name, f"file {len(labels) + 1} of the upload")
    by_length = sorted((n for n in labels if n), key=len, reverse=True)
    pattern = re.compile("|".join(re.escape(n) for n in by_length)) if by_length else None

    def mask(text: str) -> str:
        return pattern.sub(lambda m: labels[m.group(0)], text) if pattern else text

    return [(labels.get(name) or mask(name), mask(reason)) for name, reason in skipped]


def skipped_ui(skipped: list[tuple[str, str]], *, expanded: bool = False) -> None:
    if not skipped:
        return
    n = len(skipped)
    study = state.study()
    used = tuple(name for vol in (study.volumes if study else ()) for name in vol.source_names)
    shown = masked_skipped(skipped, show_phi=state.show_phi(), other_names=used)
    with st.expander(f"{n} file{'s' if n != 1 else ''} not used, and why", expanded=expanded):
        if not state.show_phi():
            st.caption("File names are hidden with the rest of the patient information (see the sidebar).")
        st.dataframe(pd.DataFrame(shown, columns=["File", "Reason"]), hide_index=True, key="load_skipped_table")


def describe_volume(vol: Volume) -> str:
    if vol.kind != "volume":
        return f"{vol.modality}: {kinds.describe(vol)}"
    return (f"{vol.modality}, {count(vol.shape[0], 'slice')} of {vol.shape[1]} x {vol.shape[2]}, "
            f"{spacing_mm(vol.spacing)}")


# The labels of the loader's summary (core keys it by DICOM keyword or a snake_case name), and the
# unit that follows the value.
SUMMARY_LABELS = {
    "Modality": ("Modality", ""),
    "Manufacturer": ("Manufacturer", ""),
    "ManufacturerModelName": ("Model", ""),
    "ConvolutionKernel": ("Reconstruction kernel", ""),
    "KVP": ("Tube voltage", "kVp"),
    "SliceThickness": ("Slice thickness", "mm"),
    "MagneticFieldStrength": ("Field strength", "T"),
    "SequenceName": ("Sequence", ""),
    "ScanningSequence": ("Scanning sequence", ""),
    "spacing_mm": ("Spacing", "mm"),
    "orientation": ("Orientation", ""),
    "transfer_syntax": ("Transfer syntax", ""),
    "BitsStored": ("Bits stored", ""),
    "PhotometricInterpretation": ("Photometric interpretation", ""),
}


def _fact(value: object, unit: str = "") -> str:
    """A summary value as text: numbers written one way ("0.977"), several as "2.5 x 1.4 x 1.4", then the unit."""
    def one(v: object) -> str:
        try:
            return decimal(float(str(v))) if isinstance(v, (int, float, str)) and str(v).strip() else str(v)
        except ValueError:
            return str(v)

    text = " x ".join(one(v) for v in value) if isinstance(value, (tuple, list)) else one(value)
    return f"{text} {unit}" if unit else text


def preview_ui(vol: Volume) -> None:
    """The chosen series' middle slice, windowed, beside its facts."""
    left, right = st.columns([1, 2])
    with left:
        image, caption = kinds.preview(vol, size=320)
        st.image(image, caption=caption, width=320)
    with right:
        st.markdown(f"**{md_escape(describe_volume(vol))}**")
        lines = [f"- {SUMMARY_LABELS[k][0]}: {md_escape(_fact(v, SUMMARY_LABELS[k][1]))}"
                 for k, v in vol.summary.items() if k in SUMMARY_LABELS]
        # What the series table leaves out to fit the page: a volume's geometry, an image's pixel spacing.
        if vol.kind == "volume":
            lines.append(f"- Geometry: {md_escape(geometry_label(vol))}")
        elif "spacing_mm" not in vol.summary:
            lines.append(f"- Pixel spacing: {md_escape(kinds.pixel_spacing(vol))}")
        st.markdown("\n".join(lines))
