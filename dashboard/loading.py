"""Widgets of the first page: upload, progress, the series table and the skipped list."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from core import LoadResult, Volume, load_series
from core.privacy import display_description
from dashboard import state
from dashboard.text import md_escape
from dashboard.images import middle_slice_preview, thumbnail_data_url


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


def release_uploads(files: list[Any]) -> None:
    """Drop uploaded bytes from Streamlit's upload store (and close the files).

    Streamlit frees uploads only when the user removes them in the widget or the session
    ends; without this, each upload-and-replace would keep the previous upload in memory.
    Called per file while loading, as soon as the loader is done with it.
    """
    try:
        from streamlit.runtime.scriptrunner import get_script_run_ctx

        ctx = get_script_run_ctx()
        for f in files:
            file_id = getattr(f, "file_id", None)
            if ctx is not None and file_id:
                ctx.uploaded_file_mgr.remove_file(session_id=ctx.session_id, file_id=file_id)
            if hasattr(f, "close"):
                f.close()
    except (AttributeError, ImportError, KeyError):  # an internal API: never let it break loading
        return


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
    result = load_series(files, progress=progress, release_source=lambda n: release_uploads([files[n]]))
    bar.empty()
    return result


def series_table(study: state.Study, *, show_phi: bool) -> pd.DataFrame:
    rows = []
    for i, vol in enumerate(study.volumes):
        dz, dy, dx = vol.spacing
        rows.append(
            {
                "Preview": thumbnail_data_url(vol, (vol.series_uid, vol.shape, i, study.source)),
                "Series": display_description(vol, i, show_phi=show_phi).split(" — ")[0],
                "Modality": vol.modality,
                "Slices": vol.shape[0],
                "Matrix": f"{vol.shape[1]} x {vol.shape[2]}",
                "Spacing (mm)": f"{dz:.3g} x {dy:.3g} x {dx:.3g}",
                "Geometry": " ".join(w.split(":")[0] + "." for w in vol.warnings) or "Regular",
            }
        )
    return pd.DataFrame(rows)


def show_series_table(study: state.Study, *, show_phi: bool) -> None:
    st.dataframe(
        series_table(study, show_phi=show_phi),
        hide_index=True,
        column_config={
            "Preview": st.column_config.ImageColumn("Preview", width="small"),
            "Slices": st.column_config.NumberColumn(format="%d"),
        },
        row_height=64,
        key="load_series_table",
    )


def pick_series_ui(study: state.Study, *, show_phi: bool) -> int:
    """A select box of the series; returns the chosen index (also stored as the current one)."""
    options = list(range(len(study.volumes)))
    st.session_state["load_pick"] = state.current_index()

    def _changed() -> None:
        st.session_state[state.CURRENT] = st.session_state["load_pick"]

    return st.selectbox(
        "Current series",
        options,
        format_func=lambda i: display_description(study.volumes[i], i, show_phi=show_phi),
        key="load_pick",
        on_change=_changed,
    )


def geometry_ui(study: state.Study, index: int) -> None:
    """The current series' warnings, and the corrected-geometry choice where it applies."""
    vol = study.volumes[index]
    for w in vol.warnings:
        st.warning(w, icon=":material/warning:")
    if vol.shape[0] > 1 and not vol.is_regular:
        key = f"load_corrected_{index}"

        def _changed() -> None:
            (study.use_corrected.add if st.session_state[key] else study.use_corrected.discard)(index)

        st.session_state[key] = index in study.use_corrected
        st.toggle(
            "Use corrected geometry (resample onto a regular grid at true patient positions)",
            key=key,
            on_change=_changed,
            help="Each slice is placed by its own Image Position (Patient), so gantry tilt and uneven spacing no "
            "longer distort distances, reformats or 3D. The raw stack stays available: switch this off.",
        )
        if index in study.use_corrected:
            if index not in study.corrected:
                with st.spinner("Resampling onto a regular grid…"):
                    study.corrected[index] = vol.corrected()
            st.caption(study.corrected[index].warnings[0])


def skipped_ui(skipped: list[tuple[str, str]], *, expanded: bool = False) -> None:
    if not skipped:
        return
    n = len(skipped)
    with st.expander(f"{n} file{'s' if n != 1 else ''} not used, and why", expanded=expanded):
        st.dataframe(pd.DataFrame(skipped, columns=["File", "Reason"]), hide_index=True, key="load_skipped_table")


def describe_volume(vol: Volume) -> str:
    dz, dy, dx = vol.spacing
    return f"{vol.modality}, {vol.shape[0]} slices of {vol.shape[1]} x {vol.shape[2]}, {dz:g} x {dy:g} x {dx:g} mm"


def preview_ui(vol: Volume) -> None:
    """The chosen series' middle slice, windowed, beside its facts."""
    left, right = st.columns([1, 2])
    with left:
        st.image(middle_slice_preview(vol, size=320), caption="Middle slice, default window", width=320)
    with right:
        st.markdown(f"**{describe_volume(vol)}**")
        st.markdown("\n".join(f"- {k}: {md_escape(v)}" for k, v in vol.summary.items()
                               if k not in ("Slices", "Rows", "Columns")))
