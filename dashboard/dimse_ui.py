"""The PACS page's DIMSE side: a peer, C-ECHO, C-FIND of studies and series, C-GET or C-MOVE, C-STORE of an export."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core.deid import deidentify, series_datasets
from core.dimse import (
    DEFAULT_AE_TITLE,
    DimseError,
    DimsePeer,
    echo,
    find_series,
    find_studies,
    get_series,
    move_series,
    store_datasets,
)
from core.memory import OverBudget, server_budget
from dashboard import hosting, pacs_ui, state

PEER, HOST, PORT, AET, OUR_AET, TIMEOUT = ("dimse_peer", "dimse_host", "dimse_port", "dimse_aet", "dimse_our_aet",
                                          "dimse_timeout")
STUDIES, SERIES = "dimse_studies", "dimse_series"
FOUND_AT, METHOD, SENT = "dimse_found_at", "dimse_method", "dimse_sent"
TYPED = "Another peer (type it)"
C_GET, C_MOVE = "C-GET", "C-MOVE"


def settings_or_none() -> hosting.DimseSettings | None:
    """The DIMSE settings, or None when the operator turned DIMSE off."""
    settings = hosting.dimse_settings()
    return settings if settings.enabled else None


def init() -> None:
    st.session_state.setdefault(HOST, "")
    st.session_state.setdefault(PORT, 104)
    st.session_state.setdefault(AET, "")
    st.session_state.setdefault(OUR_AET, DEFAULT_AE_TITLE)
    st.session_state.setdefault(TIMEOUT, 30)
    st.session_state.setdefault(STUDIES, None)
    st.session_state.setdefault(SERIES, None)
    st.session_state.setdefault(METHOD, C_GET)


def connection_ui(settings: hosting.PacsSettings, dimse: hosting.DimseSettings) -> DimsePeer | None:
    """The peer: one of the operator's (with its own AE titles) or, where allowed, one the visitor types."""
    peers = hosting.configured_peers()
    granted, note = pacs_ui._configured_access(settings, peers[0] if peers else None)
    if note == pacs_ui.LOGIN:
        st.info("This app has its own DIMSE peers for logged-in users.")
        if st.button("Log in", key="dimse_login", icon=":material/login:"):
            st.login()
    elif note:
        st.caption(note)
    options = [p.name for p in peers] if granted else []
    if dimse.typed_peers:
        options.append(TYPED)
    if not options:
        st.info("This app does not connect to DIMSE peers for visitors: its operator has configured none for you.")
        return None
    choice = st.selectbox("DIMSE peer", options, key=PEER, persist_state="session")
    if choice != TYPED:
        peer = next(p for p in peers if p.name == choice)
        st.caption(f"Configured by this app's operator: {peer.ae_title} at {peer.host}:{peer.port}.")
        # Its AE titles (the one it knows us by is like a credential) go to this peer only.
        return DimsePeer(peer.host, peer.port, peer.ae_title, our_ae_title=peer.our_ae_title, timeout=peer.timeout,
                         policy=settings.configured_policy, limits=settings.limits, name=peer.name)
    reach = ("" if settings.typed_policy.allow_private else
             " This server connects to public addresses only, not to localhost or private networks.")
    c1, c2, c3 = st.columns([3, 1, 2])
    host = c1.text_input("Host", key=HOST, persist_state="session", placeholder="pacs.example.org",
                         help=f"Host name or address.{reach}")
    port = c2.number_input("Port", 1, 65535, key=PORT, persist_state="session",
                           help="The peer's DICOM port (often 104 or 11112).")
    aet = c3.text_input("Peer's AE title", key=AET, persist_state="session", max_chars=16, placeholder="ARCHIVE")
    d1, d2 = st.columns([2, 1])
    our = d1.text_input("Our AE title", key=OUR_AET, persist_state="session", max_chars=16,
                        help="The calling AE title; the peer must know it (with this server's address).")
    timeout = d2.number_input("Timeout (s)", 1, 300, key=TIMEOUT, persist_state="session")
    if not host.strip() or not aet.strip():
        return None
    return DimsePeer(host.strip(), int(port), aet.strip(), our_ae_title=(our or DEFAULT_AE_TITLE).strip(),
                     timeout=float(timeout), policy=settings.typed_policy, limits=settings.limits)


def echo_ui(peer: DimsePeer | None) -> None:
    clicked = st.button("Test connection (C-ECHO)", key="dimse_echo", icon=":material/network_check:",
                        disabled=peer is None)
    if clicked and peer is not None:
        try:
            with st.spinner("C-ECHO…"):
                seconds = echo(peer)
            st.success(f"{peer.label} answered C-ECHO in {seconds * 1000:.0f} ms.")
        except DimseError as exc:
            st.error(str(exc))


def search_ui(peer: DimsePeer | None, dimse: hosting.DimseSettings) -> None:
    filters = pacs_ui.search_form("dimse", button="Search studies (C-FIND)", disabled=peer is None,
                                  name_label="Patient name (prefix, * and ? wildcards)")
    if peer is None:
        st.info("Choose or describe a DIMSE peer to search it.")
        return
    if filters is not None:
        try:
            with st.spinner("Searching…"):
                st.session_state[STUDIES] = find_studies(peer, **filters, limit=dimse.find_limit)
            st.session_state[FOUND_AT] = peer
            st.session_state[SERIES] = None
        except DimseError as exc:
            st.session_state[STUDIES] = None
            st.error(str(exc))


def results_ui(peer: DimsePeer | None, dimse: hosting.DimseSettings, *, show_phi: bool) -> None:
    studies = st.session_state.get(STUDIES)
    # Results belong to the peer they came from: their UIDs are never sent to another one.
    if studies is None or peer is None or st.session_state.get(FOUND_AT) != peer:
        return
    if not studies:
        st.info("No study matches. Widen the search (a shorter name prefix, no dates).")
        return
    i = pacs_ui.pick_study("dimse", studies, show_phi=show_phi)
    study_uid = studies[i]["StudyInstanceUID"]
    if st.session_state.get(SERIES) is None or st.session_state[SERIES][0] != study_uid:
        try:
            st.session_state[SERIES] = (study_uid, find_series(peer, study_uid, limit=dimse.find_limit))
        except DimseError as exc:
            st.error(str(exc))
            return
    series = st.session_state[SERIES][1]
    j = pacs_ui.pick_series("dimse", series, show_phi=show_phi, where="peer")
    if j is None:
        return
    methods = [C_GET, C_MOVE] if dimse.move_port else [C_GET]
    method = st.radio("Retrieve with", methods, key=METHOD, persist_state="session", horizontal=True,
                      help="C-GET needs no port open here. C-MOVE asks the peer to send the images to this app's "
                           f"AE title {peer.our_ae_title}, which the peer must know with this server's address"
                           + (f" and port {dimse.move_port}." if dimse.move_port else "."))
    if st.button("Retrieve this series", key="dimse_retrieve", icon=":material/download:"):
        count = series[j]["NumberOfSeriesRelatedInstances"]
        retrieve_ui(peer, dimse, study_uid, series[j]["SeriesInstanceUID"], method=method if method in methods
                    else C_GET, expected=count if isinstance(count, int) and count > 0 else None)


def retrieve_ui(peer: DimsePeer, dimse: hosting.DimseSettings, study_uid: str, series_uid: str, *, method: str,
                expected: int | None) -> None:
    bar = st.progress(0.0, text=f"Retrieving with {method}…")

    def progress(done: int, remaining: int, failed: int) -> None:
        total = done + remaining + failed
        bar.progress((done + failed) / total if total else 1.0,
                     text=f"Retrieving with {method}… {done} completed, {remaining} remaining, {failed} failed")

    try:
        if method == C_MOVE and dimse.move_port:
            files = move_series(peer, study_uid, series_uid, port=dimse.move_port, bind=dimse.move_bind,
                                expected=expected, progress=progress, owner=pacs_ui._owner())
        else:
            files = get_series(peer, study_uid, series_uid, expected=expected, progress=progress,
                               owner=pacs_ui._owner())
    except DimseError as exc:
        bar.empty()
        st.error(str(exc))
        return
    pacs_ui.load_retrieved(files, bar, source=f"DIMSE {method} ({len(files)} images retrieved)",
                           how=f" with {method}")


def send_ui(peer: DimsePeer | None) -> None:
    """C-STORE of the current series' de-identified export, with the peer's answer per instance."""
    vol = state.current_volume()
    if vol is None or peer is None:
        return
    st.caption("Sends the series shown in the other pages, de-identified as by the Study details page's export "
               "(PS3.15 Basic Profile, dates removed), built in memory.")
    if st.button("Send the current series, de-identified (C-STORE)", key="dimse_send", icon=":material/upload:"):
        bar = st.progress(0.0, text="De-identifying…")
        try:
            with server_budget().reserved(2 * vol.voxels.nbytes, owner=pacs_ui._owner(),
                                          what="the de-identified copy of this series"):
                datasets = series_datasets(vol)
                report = deidentify(datasets)
                results = store_datasets(peer, datasets, progress=lambda d, t: bar.progress(
                    d / t, text=f"Sending… {d} of {t} images"))
        except (DimseError, OverBudget) as exc:
            bar.empty()
            st.error(str(exc))
            return
        except (ValueError, TypeError, KeyError, AttributeError, NotImplementedError) as exc:
            bar.empty()
            st.error(f"The de-identified export failed ({type(exc).__name__}): nothing was sent.")
            return
        bar.empty()
        st.session_state[SENT] = (peer, report.warnings, [(n + 1, r.words, r.ok) for n, r in enumerate(results)])
    sent = st.session_state.get(SENT)
    if sent is None or sent[0] != peer:
        return
    _, warnings, rows = sent
    for w in warnings:
        st.warning(w, icon=":material/warning:")
    ok = sum(1 for *_, good in rows if good)
    (st.success if ok == len(rows) else st.error)(f"{ok} of {len(rows)} images stored by {peer.label}.")
    st.dataframe(pd.DataFrame([(n, words) for n, words, _ in rows], columns=["Image", "Peer's answer"]),
                 hide_index=True, key="dimse_sent_table")
