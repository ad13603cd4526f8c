"""Study details and privacy: the tag browser, the de-identified export and the JSON summary."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core import Volume
from core.deid import deidentified_zip
from core.dicom_writer import is_resampled
from core.memory import OverBudget, server_budget
from core.summary import summary_json
from core.tags import TagRow, filter_rows, tag_rows
from dashboard import state
from dashboard.owner import session_owner
from dashboard.text import count, md_escape

INSTANCE, SEARCH, NESTED = "details_instance", "details_search", "details_nested"
SHIFT_ON, SHIFT_DAYS, EXPORT = "details_shift_on", "details_shift_days", "details_export"
PERSISTENT = (INSTANCE, SEARCH, NESTED, SHIFT_ON, SHIFT_DAYS)
state.persist(*PERSISTENT)


def init(vol: Volume) -> None:
    st.session_state.setdefault(INSTANCE, 1)
    st.session_state.setdefault(SEARCH, "")
    st.session_state.setdefault(NESTED, True)
    st.session_state.setdefault(SHIFT_ON, False)
    st.session_state.setdefault(SHIFT_DAYS, -100)
    if st.session_state[INSTANCE] > vol.shape[0]:
        st.session_state[INSTANCE] = 1


def header_of(vol: Volume, number: int):
    if len(vol.slice_headers) == vol.shape[0]:
        return vol.slice_headers[number - 1]
    return vol.header


def tag_browser_ui(vol: Volume, *, show_phi: bool) -> None:
    c1, c2, c3 = st.columns([1, 2, 1])
    n = vol.shape[0]
    number = c1.number_input(f"Slice (1 to {n})", 1, n, key=INSTANCE, persist_state="session") if n > 1 else 1
    query = c2.text_input("Search by tag, keyword or value", key=SEARCH, persist_state="session",
                          placeholder="e.g. 0028, Rescale, HU")
    nested = c3.toggle("Show sequence items", key=NESTED, persist_state="session")
    ds = header_of(vol, int(number))
    if ds is None:
        st.info("This series has no DICOM header (it is the built-in synthetic sample).")
        return
    rows = filter_rows(tag_rows(ds, show_phi=show_phi, nested=nested), query)
    st.caption(f"{count(len(rows), 'element')} shown. Private tags are marked; binary and long values are summarised"
               + ("" if show_phi else "; patient information is hidden (see the sidebar)") + ".")
    st.dataframe(tag_table(rows), hide_index=True,
                 key="details_tags", height=480,
                 column_config={"Private": st.column_config.CheckboxColumn(), "Path": None})


def tag_table(rows: list[TagRow]) -> pd.DataFrame:
    """The tag browser's table: sequence items indented under their sequence."""
    return pd.DataFrame([{"Tag": r.tag, "Name": "    " * r.depth + r.name, "VR": r.vr, "Value": r.value,
                          "Private": r.private, "Path": r.path} for r in rows],
                        columns=["Tag", "Name", "VR", "Value", "Private", "Path"])


def export_ui(vol: Volume) -> None:
    """Build the de-identified zip on request, then offer it for download.

    Says whether the files are the slices as acquired or the corrected (resampled) ones.
    """
    resampled = is_resampled(vol)
    if resampled:
        st.info("Corrected geometry is on: the export holds the **resampled** slices (a derived series on the "
                "regular grid, tilt removed), not the slices as acquired. Turn it off on *Load a study* to export "
                "the original slices.", icon=":material/info:")
    else:
        st.caption("The export holds the original slices, as acquired.")
    c1, c2 = st.columns([1, 1])
    shift_on = c1.toggle("Shift dates instead of removing them", key=SHIFT_ON, persist_state="session",
                         help="Keeps intervals between dates (PS3.15 'Retain Longitudinal Temporal Information with "
                         "Modified Dates'). Use the same shift for every series of one patient.")
    days = c2.number_input("Shift by (days)", -36500, 36500, key=SHIFT_DAYS, persist_state="session",
                           disabled=not shift_on)
    settings = (vol.key, bool(shift_on), int(days))
    if st.button("Prepare the de-identified series", key="details_prepare", icon=":material/shield:"):
        st.session_state.pop(EXPORT, None)  # the previous zip goes before the next one is built
        try:
            # Each slice's pixels as written, the DICOM files and the zip: about three times the voxels.
            with server_budget().reserved(3 * vol.voxels.nbytes, owner=session_owner(),
                                          what="building the de-identified series"), st.spinner("De-identifying…"):
                data, report = deidentified_zip(vol, date_shift_days=int(days) if shift_on else None)
            st.session_state[EXPORT] = (settings, data, report)
        except OverBudget as exc:
            st.error(f"Not exported now: {md_escape(exc, max_len=None)}.")
            return
        except (ValueError, TypeError, KeyError, AttributeError, NotImplementedError):
            st.error("The export failed: a header element of this series could not be written. Nothing was "
                     "exported; please report the series' modality and scanner.")
            return
    prepared = st.session_state.get(EXPORT)
    if prepared is None or prepared[0] != settings:
        st.caption("Nothing is written to disk: the zip is built in memory for this session.")
        return
    _, data, report = prepared
    for w in report.warnings:
        st.warning(w, icon=":material/warning:")
    st.success(f"{report.files} files de-identified, {report.content} ({report.method}); "
               f"{report.uids_remapped} UIDs remapped "
               f"consistently" + (f"; dates shifted by {report.date_shift_days} days." if report.date_shift_days
                                  is not None else "; dates removed or emptied."))
    idx = state.current_index()
    what = "resampled" if report.resampled else "original"
    st.download_button(f"Download the de-identified {what} slices (.zip)", data,
                       f"deidentified_series{idx + 1}_{what}_slices.zip",
                       "application/zip", key="details_dl_zip", on_click="ignore", icon=":material/download:")


def summary_ui(vol: Volume) -> None:
    idx = state.current_index()
    text = summary_json(vol)
    st.download_button("Download a JSON summary (geometry and acquisition, no PHI)", text,
                       f"series{idx + 1}_summary.json", "application/json", key="details_dl_json", on_click="ignore",
                       icon=":material/data_object:")
    with st.popover("Preview the summary"):
        st.code(text, language="json")
