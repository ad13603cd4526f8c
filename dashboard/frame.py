"""The frame every page starts with: page config, session defaults and the shared sidebar."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from core import Volume
from core.privacy import MASK, display_description
from dashboard import kinds, state, streamlit_internals
from dashboard.text import count, md_escape, unit_label, value_kind

ROOT = Path(__file__).resolve().parents[1]

# Every page of the app, in sidebar order: (file relative to ROOT, label, icon).
PAGES: list[tuple[str, str, str]] = [
    ("streamlit_app.py", "Load a study", ":material/folder_open:"),
    ("pages/1_Volume_explorer.py", "Volume explorer", ":material/view_in_ar:"),
    ("pages/2_HU_histogram.py", "HU histogram", ":material/bar_chart:"),
    ("pages/3_Isosurface_3D.py", "3D isosurface", ":material/deployed_code:"),
    ("pages/4_Face_detection.py", "Face detection", ":material/face:"),
    ("pages/5_Study_details.py", "Study details and privacy", ":material/shield_person:"),
    ("pages/6_PACS.py", "PACS", ":material/cloud_download:"),  # DICOMweb and DIMSE; the tab says "PACS"
    ("pages/7_Cohort.py", "Cohort", ":material/groups:"),
]


def existing_pages() -> list[tuple[str, str, str]]:
    return [p for p in PAGES if (ROOT / p[0]).exists()]


def page_frame(title: str, *, needs_volume: bool = False) -> Volume | None:
    """Set up a page: config, session defaults, sidebar. Returns the current volume.

    Parameters
    ----------
    title : str
        The page's title, shown in the browser tab.
    needs_volume : bool
        When True and no series is loaded, say so kindly and stop the page here.
    """
    st.set_page_config(page_title=f"{title} · Hounsfield", page_icon="🩻", layout="wide")
    streamlit_internals.install()
    state.init()
    keep_widget_state()
    volume = state.current_volume()
    reload_guard_ui(on_load_page=title == "Load a study")
    with st.sidebar:
        _sidebar(volume)
    if needs_volume and volume is None:
        st.info("No series is loaded yet. Open **Load a study** to upload DICOM files or load the built-in sample.")
        st.page_link(str(ROOT / "streamlit_app.py"), label="Load a study", icon=":material/folder_open:")
        st.stop()
    return volume


def keep_widget_state() -> None:
    """Keep the pages' settings when the user visits another page and comes back.

    Streamlit drops a widget's value when a run does not draw the widget; values the
    script itself assigned are kept, so every settings key is re-assigned on each run.
    Widgets also pass ``persist_state="session"`` (Streamlit 1.67): this re-assignment alone
    lost values after the explorer's fragment reruns in a real browser (docs/CONTRIBUTING.md).
    """
    for key in state.persistent_keys():  # each page's UI module registers its own
        if key in st.session_state:
            st.session_state[key] = st.session_state[key]


# The browser's side of the reload warning: fixed code, no text from a file or a visitor in it. A study
# loaded here lives in this session's server memory only, and a reload starts a new session. While one
# is held, the page asks the browser to confirm leaving (browsers show their own words, and only after
# the person has interacted with the page) and notes it in sessionStorage, which survives the reload;
# a new session that finds the note says the study is gone, once.
_RELOAD_GUARD = """
<div id="hf-study-gone" role="status" hidden style="padding:0.75rem 1rem;border-radius:0.5rem;
background:rgba(255,189,69,0.15);color:inherit;margin-bottom:0.5rem">
The study you had loaded is no longer open: reloading or closing the page ends its session, and loaded files
are kept only in that session's memory. %s</div>
<script>
(() => {
  const MODE = "%s", KEY = "hounsfield-study-held";
  const w = window.parent && window.parent !== window ? window.parent : window;
  const warn = (e) => { e.preventDefault(); e.returnValue = ""; return ""; };
  if (w.__hfWarn) { w.removeEventListener("beforeunload", w.__hfWarn); w.__hfWarn = null; }
  if (MODE === "held") {
    w.sessionStorage.setItem(KEY, "1");
    w.__hfWarn = warn;
    w.addEventListener("beforeunload", warn);
  } else {
    if (MODE === "fresh" && w.sessionStorage.getItem(KEY) === "1") {
      document.getElementById("hf-study-gone").hidden = false;
    }
    w.sessionStorage.removeItem(KEY);
  }
})();
</script>
"""


# Where to load the study again: below on the Load page, there from any other page.
_LOAD_AGAIN = {True: "Load it again below.", False: "Load it again on <b>Load a study</b>, first in the sidebar."}


def reload_guard_ui(*, on_load_page: bool) -> None:
    """Warn before a reload drops a loaded study, and say so after one did (see ``_RELOAD_GUARD``)."""
    study = state.study()
    held = study is not None and not study.is_sample
    if held:
        st.session_state[state.HELD_A_STUDY] = True
    mode = "held" if held else ("released" if st.session_state.get(state.HELD_A_STUDY) else "fresh")
    st.html(_RELOAD_GUARD % (_LOAD_AGAIN[on_load_page], mode), unsafe_allow_javascript=True)


def _sync_phi() -> None:
    st.session_state[state.SHOW_PHI] = st.session_state[state.SHOW_PHI_WIDGET]


def _sidebar(volume: Volume | None) -> None:
    st.markdown("### Hounsfield")
    for path, label, icon in existing_pages():
        st.page_link(str(ROOT / path), label=label, icon=icon)
    st.divider()
    study = state.study()
    if volume is None or study is None:
        st.caption("No series loaded.")
    else:
        show = state.show_phi()
        idx = state.current_index()
        st.markdown("**Current series**")
        st.caption(md_escape(display_description(volume, idx, show_phi=show)))
        facts = {
            "Modality": volume.modality,
            "Kind": kinds.kind_label(volume),
            "Values": f"{value_kind(volume.voxels.dtype)}, {unit_label(volume.units)}",
            **kinds.facts(volume),
            "Source": study.source,
        }
        if len(study.volumes) > 1:
            facts["Series in study"] = str(len(study.volumes))
        header = volume.header
        if header is not None:
            shown = (("PatientName", "Patient"), ("PatientID", "Patient ID"), ("StudyDate", "Study date"))
            for keyword, label in shown:
                value = header.get(keyword, "")
                facts[label] = (str(value) or "—") if show else MASK
        st.markdown("\n".join(f"- **{k}**: {md_escape(v)}" for k, v in facts.items()))
        if volume.warnings:
            st.warning(f"{count(len(volume.warnings), 'geometry note')}: see **Load a study**.",
                       icon=":material/warning:")
    st.session_state[state.SHOW_PHI_WIDGET] = state.show_phi()
    st.toggle(
        "Show patient information (PHI)",
        key=state.SHOW_PHI_WIDGET, persist_state="session",
        on_change=_sync_phi,
        help="Names, IDs, dates and descriptions (DICOM PS3.15 Annex E), and the names of uploaded files, stay "
        "hidden unless you reveal them, for this browser session only.",
    )
