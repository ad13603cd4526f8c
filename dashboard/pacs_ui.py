"""The PACS page: connection, study search, series list and retrieval into the session."""

from __future__ import annotations

import datetime

import pandas as pd
import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

from core import load_series
from core.dimse import Matches
from core.memory import server_budget
from core.pacs import PacsConnection, PacsError, RetrievedSeries, retrieve_series, search_series, search_studies
from core.privacy import MASK, is_safe_description
from dashboard import hosting, state
from dashboard.text import count, keyword_label

URL, AUTH, USER, PASSWORD, TOKEN = "pacs_url", "pacs_auth", "pacs_user", "pacs_password", "pacs_token"
NAME, MODALITY, ACCESSION = "pacs_name", "pacs_modality", "pacs_accession"
STUDIES, SERIES = "pacs_studies", "pacs_series"
FOUND_AT = "pacs_found_at"  # the address the results in STUDIES came from
LOGIN = "login"  # what _configured_access says when logging in would open the app's own PACS
KIND = "pacs_kind"  # DICOMweb or DIMSE
# The DIMSE side's settings (dashboard.dimse_ui) are kept with these across pages.
DIMSE_PERSISTENT = ("dimse_peer", "dimse_host", "dimse_port", "dimse_aet", "dimse_our_aet", "dimse_timeout",
                    "dimse_name", "dimse_id", "dimse_modality", "dimse_accession", "dimse_method")
PERSISTENT = (URL, AUTH, USER, NAME, "pacs_id", MODALITY, ACCESSION, KIND, *DIMSE_PERSISTENT)
state.persist(*PERSISTENT)
PHI_COLUMNS = ("PatientName", "PatientID", "PatientBirthDate", "StudyDate", "StudyDescription", "AccessionNumber",
               "SeriesDescription")


def settings_or_stop() -> hosting.PacsSettings:
    """The operator's PACS settings; the page stops here with a message when they turned it off."""
    settings = hosting.pacs_settings()
    if not settings.page:
        st.info("The operator of this app has turned the PACS page off.")
        st.stop()
    return settings


def _configured_access(settings: hosting.PacsSettings,
                       pacs: hosting.ConfiguredPacs | hosting.ConfiguredPeer | None) -> tuple[bool, str]:
    """Whether this visitor may use the operator's PACS, and if not, what to tell them ("" for nothing)."""
    if pacs is None or settings.configured_access == "off":
        return False, ""  # a PACS visitors may not use is not mentioned
    if settings.configured_access == "everyone":
        return True, ""
    if not hosting.login_configured():
        return False, ("This app's own PACS is for logged-in users, and login is not set up on this server "
                       "(see \"Hosting safely\" in the README).")
    email = hosting.visitor_email()
    if email is None:
        return False, LOGIN
    if settings.allowed_users and email.lower() not in settings.allowed_users:
        return False, f"The account {email} may not use this app's own PACS: ask the app's operator."
    return True, ""


def init(settings: hosting.PacsSettings) -> None:
    pacs = hosting.configured_pacs()
    granted, _ = _configured_access(settings, pacs)
    st.session_state.setdefault(URL, pacs.url if granted and pacs else "")
    st.session_state.setdefault(AUTH, "None")
    st.session_state.setdefault(USER, "")
    st.session_state.setdefault(STUDIES, None)
    st.session_state.setdefault(SERIES, None)


def connection_ui(settings: hosting.PacsSettings) -> PacsConnection | None:
    """The address and credentials; the operator's stored credentials only ever go to the operator's address."""
    pacs = hosting.configured_pacs()
    granted, note = _configured_access(settings, pacs)
    if note == LOGIN:
        st.info("This app has its own PACS for logged-in users.")
        if st.button("Log in", key="pacs_login", icon=":material/login:"):
            st.login()
    elif note:
        st.caption(note)
    if not granted and not settings.typed_addresses:
        st.info("This app does not connect to other PACS servers for visitors.")
        st.stop()
    reach = ("" if settings.typed_policy.allow_private else
             " This server connects to public addresses only, not to localhost or private networks.")
    url = st.text_input("DICOMweb address", key=URL, persist_state="session", placeholder="https://pacs.example.org/dicom-web",
                        help=f"The DICOMweb root, often ending in /dicom-web.{reach}")
    url = url.strip().rstrip("/")
    if granted and pacs is not None and url == pacs.url:
        st.caption("This app's own PACS, with the credentials its operator stored.")
        return PacsConnection(pacs.url, username=pacs.username, password=pacs.password, token=pacs.token,
                              policy=settings.configured_policy, limits=settings.limits,
                              verify=pacs.ca_bundle or True, configured=True)
    if not settings.typed_addresses:
        st.warning(f"This app connects only to its own PACS, at {pacs.url if pacs else 'its configured address'}.")
        return None
    if granted and url:
        st.caption("This is not the address of this app's own PACS, so its stored credentials are not sent: "
                   "enter this server's own credentials if it needs them.")
    auth = st.radio("Authentication", ["None", "User and password", "Token"], key=AUTH, persist_state="session",
                    horizontal=True)
    user = password = token = None
    if auth == "User and password":
        c1, c2 = st.columns(2)
        user = c1.text_input("User", key=USER, persist_state="session")
        password = c2.text_input("Password", type="password", key=PASSWORD, persist_state="session")
    elif auth == "Token":
        token = st.text_input("Bearer token", type="password", key=TOKEN, persist_state="session")
    st.caption("Credentials stay in this browser session's memory and are never stored.")
    if not url:
        return None
    return PacsConnection(url, username=user or None, password=password or None, token=token or None,
                          policy=settings.typed_policy, limits=settings.limits)


def _owner() -> str:
    """Whose share of the server's memory budget a retrieval counts against: this browser session's."""
    ctx = get_script_run_ctx()
    return ctx.session_id if ctx is not None else "pacs"


def search_form(prefix: str, *, button: str, disabled: bool, name_label: str = "Patient name (prefix)") -> dict | None:
    """The study filters (keys ``<prefix>_name``, ...); once submitted, the search's keyword arguments, else None."""
    with st.form(f"{prefix}_search"):
        c1, c2, c3 = st.columns(3)
        c1.text_input(name_label, key=f"{prefix}_name", persist_state="session")
        c2.text_input("Patient ID", key=f"{prefix}_id", persist_state="session")
        c3.text_input("Accession number", key=f"{prefix}_accession", persist_state="session")
        d1, d2 = st.columns(2)
        dates = d1.date_input("Study date range", value=[], key=f"{prefix}_dates", persist_state="session",
                              min_value=datetime.date(1900, 1, 1))
        d2.selectbox("Modality", ["", "CT", "MR", "PT", "CR", "DX", "US", "NM", "XA", "MG"],
                     key=f"{prefix}_modality", persist_state="session")
        submitted = st.form_submit_button(button, icon=":material/search:", disabled=disabled)
    if not submitted or disabled:
        return None
    date_from = dates[0].strftime("%Y%m%d") if len(dates) >= 1 else ""
    date_to = dates[1].strftime("%Y%m%d") if len(dates) == 2 else date_from
    get = st.session_state.get
    return {"patient_name": get(f"{prefix}_name", ""), "patient_id": get(f"{prefix}_id", ""), "date_from": date_from,
            "date_to": date_to, "modality": get(f"{prefix}_modality", ""), "accession": get(f"{prefix}_accession", "")}


def search_ui(conn: PacsConnection | None) -> None:
    filters = search_form("pacs", button="Search studies", disabled=conn is None)
    if conn is None:
        st.info("Enter the server's DICOMweb address to search it.")
        return
    if filters is not None:
        try:
            with st.spinner("Searching…"):
                st.session_state[STUDIES] = search_studies(conn, **filters, owner=_owner())
            st.session_state[FOUND_AT] = conn.url
            st.session_state[SERIES] = None
        except PacsError as exc:
            st.session_state[STUDIES] = None
            st.error(str(exc))


def _masked(rows: list[dict], show_phi: bool) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    if not show_phi:
        for col in PHI_COLUMNS:
            if col in df:
                df[col] = MASK
    return df.drop(columns=[c for c in df.columns if c.endswith("InstanceUID")]).rename(columns=keyword_label)


def results_ui(conn: PacsConnection | None, *, show_phi: bool) -> None:
    studies = st.session_state.get(STUDIES)
    # Results belong to the server they came from: their UIDs are never sent to another address.
    if studies is None or conn is None or st.session_state.get(FOUND_AT) != conn.url:
        return
    if not studies:
        st.info("No study matches. Widen the search (a shorter name prefix, no dates).")
        return
    i = pick_study("pacs", studies, show_phi=show_phi)
    study_uid = studies[i]["StudyInstanceUID"]
    if st.session_state.get(SERIES) is None or st.session_state[SERIES][0] != study_uid:
        try:
            st.session_state[SERIES] = (study_uid, search_series(conn, study_uid, owner=_owner()))
        except PacsError as exc:
            st.error(str(exc))
            return
    series = st.session_state[SERIES][1]
    j = pick_series("pacs", series, show_phi=show_phi, where="server")
    if j is None:
        return
    if st.button("Retrieve this series", key="pacs_retrieve", icon=":material/download:"):
        retrieve_ui(conn, study_uid, series[j]["SeriesInstanceUID"])


def pick_study(prefix: str, studies: list[dict], *, show_phi: bool) -> int:
    """The studies found (PHI masked unless shown) and the one picked (``<prefix>_study_pick``)."""
    st.markdown(f"**{len(studies)} stud{'y' if len(studies) == 1 else 'ies'} found**")
    if isinstance(studies, Matches) and studies.more:
        st.warning(f"More than {studies.limit} studies match: the search stopped there. Narrow it (a longer name, "
                   f"a patient ID, dates) to see the rest.")
    st.dataframe(_masked(studies, show_phi), hide_index=True, key=f"{prefix}_studies_table")

    def label(i: int) -> str:
        s = studies[i]
        who = f"{s['PatientName']}, {s['StudyDate']}, {s['StudyDescription']}" if show_phi else f"Study {i + 1}"
        return f"{who} ({s['ModalitiesInStudy']}, {s['NumberOfStudyRelatedSeries']} series)"

    return st.selectbox("Study", range(len(studies)), format_func=label, key=f"{prefix}_study_pick",
                        persist_state="session")


def pick_series(prefix: str, series: list[dict], *, show_phi: bool, where: str) -> int | None:
    """A study's series (PHI masked unless shown) and the one picked, or None when there is none."""
    if isinstance(series, Matches) and series.more:
        st.warning(f"More than {series.limit} series match: the list stopped there.")
    st.dataframe(_masked(series, show_phi), hide_index=True, key=f"{prefix}_series_table")
    if not series:
        st.info(f"This study has no series on the {where}.")
        return None

    def slabel(j: int) -> str:
        s = series[j]
        number = str(s.get("SeriesNumber") or "").strip()
        desc = str(s.get("SeriesDescription") or "").strip()
        name = f"Series {number}" if number else f"Series #{j + 1}"
        if desc and (show_phi or is_safe_description(desc)):
            name += f" ({desc})"
        images = str(s.get("NumberOfSeriesRelatedInstances") or "").strip()
        facts = [str(s.get("Modality") or ""), str(s.get("BodyPartExamined") or "").lower(),
                 count(int(images), "image") if images.isdigit() else ""]
        return f"{name}: " + ", ".join(f for f in facts if f)

    return st.selectbox("Series", range(len(series)), format_func=slabel, key=f"{prefix}_series_pick",
                        persist_state="session")


def retrieve_ui(conn: PacsConnection, study_uid: str, series_uid: str) -> None:
    bar = st.progress(0.0, text="Retrieving…")

    def progress(done: int, total: int) -> None:
        bar.progress(done / total if total else 1.0, text=f"Retrieving… {done} of {total} images")

    try:
        files = retrieve_series(conn, study_uid, series_uid, progress=progress, owner=_owner())
    except PacsError as exc:
        bar.empty()
        st.error(str(exc))
        return
    load_retrieved(files, bar, source=f"PACS ({len(files)} images retrieved)", how="")


def load_retrieved(files: RetrievedSeries, bar, *, source: str, how: str) -> None:
    """Read retrieved images into this session's study (within the server's memory budget), then rerun."""
    bar.progress(1.0, text="Reading the images…")
    try:
        result = load_series(files, memory=server_budget(), owner=_owner())
    finally:
        files.release()
    bar.empty()
    if not result.volumes:
        st.error("The retrieved images could not be assembled into a volume; see the reasons below.")
        st.dataframe(pd.DataFrame(result.skipped, columns=["File", "Reason"]), hide_index=True)
        return
    state.set_study(state.Study(volumes=result.volumes, skipped=result.skipped, source=source,
                                segmentations=result.segmentations))
    # Rerun so that the sidebar shows the new series; the message waits in the session.
    st.session_state["pacs_done"] = (f"Retrieved {len(files)} images{how}: {len(result.volumes)} series loaded. "
                                     f"Open the volume explorer to look.")
    st.rerun()


def done_ui() -> None:
    message = st.session_state.pop("pacs_done", None)
    if message:
        st.success(message)
        st.page_link("pages/1_Volume_explorer.py", label="Volume explorer", icon=":material/view_in_ar:")
