"""The frame every page starts with: page config, session defaults and the shared sidebar."""

from __future__ import annotations

import contextvars
from pathlib import Path

import streamlit as st

from core import Volume
from core.loader import orientation_name
from core.privacy import MASK, display_description
from dashboard import state
from dashboard.text import md_escape

ROOT = Path(__file__).resolve().parents[1]

# Every page of the app, in sidebar order: (file relative to ROOT, label, icon).
PAGES: list[tuple[str, str, str]] = [
    ("streamlit_app.py", "Load a study", ":material/folder_open:"),
    ("pages/1_Volume_explorer.py", "Volume explorer", ":material/view_in_ar:"),
    ("pages/2_HU_histogram.py", "HU histogram", ":material/bar_chart:"),
    ("pages/3_Isosurface_3D.py", "3D isosurface", ":material/deployed_code:"),
    ("pages/4_Face_detection.py", "Face detection", ":material/face:"),
    ("pages/5_Study_details.py", "Study details and privacy", ":material/shield_person:"),
    ("pages/6_PACS.py", "PACS (DICOMweb)", ":material/cloud_download:"),
]


def keep_uploads_in_memory(limit_bytes: int = 2 * 1024**3) -> None:
    """Stop Streamlit's web server from spooling uploads to temporary files on disk.

    Its upload route parses multipart bodies with Starlette, whose SpooledTemporaryFile
    rolls over to disk past 1 MB; uploaded patient data must stay in memory.
    """
    try:
        from starlette.formparsers import MultiPartParser
    except ImportError:  # an older, Tornado-based Streamlit: it keeps uploads in memory
        return
    if getattr(MultiPartParser, "spool_max_size", 0) < limit_bytes:
        MultiPartParser.spool_max_size = limit_bytes


def share_upload_bytes() -> None:
    """Make the copies Streamlit hands out of uploaded files share the upload's bytes.

    Streamlit deep-copies a widget's value each time the widget is drawn, so every run of the
    first page got its own copy of every uploaded file: for a 300-file CT upload, 158 MB more
    for as long as the run used them, and the loader's per-file release freed only the copy
    (found with tracemalloc while running benchmarks/bench_sessions.py). BytesIO is
    copy-on-write, so a copy that shares the bytes is just as independent of the original.
    """
    try:
        from streamlit.runtime.uploaded_file_manager import UploadedFile, UploadedFileRec
    except ImportError:
        return
    if getattr(UploadedFile, "_shares_bytes_when_copied", False):
        return

    def __deepcopy__(self, memo):  # noqa: N807 - the copy protocol's name
        if self.closed:
            return self
        rec = UploadedFileRec(file_id=self.file_id, name=self.name, type=self.type, data=self.getvalue())
        copy = UploadedFile(rec, self._file_urls)
        copy.seek(self.tell())
        for key, value in self.__dict__.items():
            copy.__dict__.setdefault(key, value)
        memo[id(self)] = copy
        return copy

    UploadedFile.__deepcopy__ = __deepcopy__
    UploadedFile._shares_bytes_when_copied = True


# -- Memory of a shared host: uploads counted against the server's budget, ended sessions freed --
#
# Patches of Streamlit internals, checked with Streamlit 1.67 (its Starlette server) and
# Starlette 1.10. Each is guarded: when an internal is missing (another version), the patch is
# skipped and what is lost is said below; nothing else changes.
#
# Process-wide on purpose: the budget, the upload store and the sessions belong to the server,
# not to one visitor. Nothing here holds a visitor's data.

UPLOAD_STEP = 16 * 1024**2  # bytes reserved at a time while an upload arrives


def meter_uploads() -> None:
    """Count every stored upload against the server's memory budget, for its session.

    Streamlit's upload endpoint stores any file a live session sends (``PUT
    /_stcore/upload_file/<session>/<file_id>``), with no page involved, up to
    ``server.maxUploadSize`` each and with no limit on their number; they stay until the
    session ends. Here each stored file reserves its bytes for its session (refused with HTTP
    413 and the budget's words when the session's share or the server's total would be
    exceeded) and gives them back when the file is removed or its session ends. While the
    body arrives, Starlette holds it in memory twice (its spool, then the bytes Streamlit
    keeps): that is reserved too, in steps, so concurrent uploads are refused before they
    are read rather than after. Lost if it cannot apply: uploads are bounded only by
    ``server.maxUploadSize`` and the session's lifetime.
    """
    try:
        from streamlit.runtime.scriptrunner import get_script_run_ctx
    except ImportError:
        return
    ctx = get_script_run_ctx()
    mgr = getattr(ctx, "uploaded_file_mgr", None)
    if mgr is None or getattr(mgr, "_hounsfield_metered", False):
        return
    if not all(callable(getattr(mgr, name, None)) for name in ("add_file", "remove_file", "remove_session_files")):
        return
    _meter_store(mgr)
    _meter_transit()


def _refusal(exc: Exception) -> Exception:
    """An HTTP 413 carrying the budget's words (Starlette turns it into a response, not a traceback)."""
    try:
        from starlette.exceptions import HTTPException
    except ImportError:
        return exc
    return HTTPException(status_code=413, detail=str(exc))


def _meter_store(mgr) -> None:
    import threading

    from core.memory import OverBudget, Reservation, server_budget

    held: dict[tuple[str, str], Reservation] = {}
    lock = threading.Lock()
    add_file, remove_file, remove_session_files = mgr.add_file, mgr.remove_file, mgr.remove_session_files

    def release(key: tuple[str, str]) -> None:
        with lock:
            res = held.pop(key, None)
        if res is not None:
            res.release()

    def metered_add_file(session_id: str, file) -> None:
        _release_transit()
        try:
            res = server_budget().reserve(len(file.data), owner=session_id, what=f"the upload {file.name!r}")
        except OverBudget as exc:
            REAPER.note_freed()
            REAPER.refused[session_id] = str(exc)
            raise _refusal(exc) from None
        release((session_id, file.file_id))  # a file sent again under the same id replaces the old one
        with lock:
            held[(session_id, file.file_id)] = res
        add_file(session_id, file)

    def metered_remove_file(session_id: str, file_id: str) -> None:
        remove_file(session_id, file_id)
        release((session_id, file_id))

    def metered_remove_session_files(session_id: str) -> None:
        remove_session_files(session_id)
        with lock:
            keys = [k for k in held if k[0] == session_id]
        for key in keys:
            release(key)
        REAPER.refused.pop(session_id, None)

    mgr.add_file, mgr.remove_file = metered_add_file, metered_remove_file
    mgr.remove_session_files = metered_remove_session_files
    mgr._hounsfield_metered = True
    # Files stored before the first page run of this process (the patch installs then): counted
    # now, and dropped when the budget cannot hold them.
    for session_id, files in list(getattr(mgr, "file_storage", {}).items()):
        for file_id, rec in list(files.items()):
            try:
                res = server_budget().reserve(len(rec.data), owner=session_id, what=f"the upload {rec.name!r}")
            except OverBudget:
                remove_file(session_id, file_id)
                REAPER.note_freed()
                continue
            with lock:
                held[(session_id, file_id)] = res


# The upload whose body the current request is reading: (session id, its reservations). A
# context variable: each request runs in its own asyncio task, with its own value.
_ARRIVING: contextvars.ContextVar[tuple[str, list] | None] = contextvars.ContextVar("hounsfield_arriving", default=None)


def _release_transit() -> None:
    arriving = _ARRIVING.get()
    _ARRIVING.set(None)
    for res in arriving[1] if arriving else ():
        res.release()


def _meter_transit() -> None:
    try:
        from starlette.formparsers import MultiPartParser
        from starlette.requests import Request
    except ImportError:  # an older, Tornado-based Streamlit: bodies are not metered while they arrive
        return
    if getattr(MultiPartParser, "_hounsfield_metered", False):
        return
    form, init = Request.form, MultiPartParser.__init__

    def metered_form(self, *args, **kwargs):
        # Only Streamlit's upload route has a session id among its path parameters.
        session_id = (self.scope.get("path_params") or {}).get("session_id")
        if session_id:
            _ARRIVING.set((str(session_id), []))
        return form(self, *args, **kwargs)

    def __init__(self, headers, stream, *args, **kwargs):  # noqa: N807 - the patched method's name
        arriving = _ARRIVING.get()
        if arriving is not None:
            try:
                declared = max(0, int(headers.get("content-length") or 0))
            except ValueError:
                declared = 0
            stream = _metered_body(stream, declared, *arriving)
        init(self, headers, stream, *args, **kwargs)

    Request.form, MultiPartParser.__init__ = metered_form, __init__
    MultiPartParser._hounsfield_metered = True


async def _metered_body(stream, declared: int, session_id: str, held: list):
    """Pass the body through, reserving twice its size (spool + kept bytes) before it is read.

    The declared length is reserved at once, so that concurrent uploads are refused whole
    rather than all stalling half-reserved; bytes past it (or a body without a length) are
    reserved in steps as they arrive. The reservations go when the file is stored (it is then
    reserved as an upload) or when the request ends.
    """
    import asyncio
    import weakref

    from core.memory import OverBudget, server_budget

    task = asyncio.current_task()
    if task is not None:
        weakref.finalize(task, lambda: [res.release() for res in held])

    def reserve(nbytes: int) -> None:
        try:
            held.append(server_budget().reserve(nbytes, owner=session_id, what="an upload arriving"))
        except OverBudget as exc:
            REAPER.note_freed()
            REAPER.refused[session_id] = str(exc)
            raise _refusal(exc) from None

    received = reserved = 0
    if declared:
        reserve(2 * declared)
        reserved = 2 * declared
    async for chunk in stream:
        received += len(chunk)
        while 2 * received > reserved:
            reserve(UPLOAD_STEP)
            reserved += UPLOAD_STEP
        yield chunk


class _Reaper:
    """Gives the memory of ended sessions and refused uploads back within a minute.

    A daemon thread, one per process, wakes every ``interval`` seconds. On Streamlit's event
    loop (where its session manager must be used) it shuts down disconnected sessions whose
    reconnect window (``server.disconnectedSessionTTL``) has passed: Streamlit only forgets
    them when another session is stored, and never shuts them down, so their uploads stayed
    in the upload store. It drops uploads of sessions that no longer exist. Then, when a
    session has ended or an upload was refused since the last pass, it runs a full
    ``gc.collect()`` (``runner.postScriptGC`` is off: study volumes caught in reference cycles
    waited for someone else's full collection) and ``malloc_trim(0)``.
    Lost if Streamlit's internals differ: ended sessions still free their memory, but only
    when Streamlit and Python get to it (minutes, as measured before).
    """

    def __init__(self, interval: float = 5.0) -> None:
        import threading

        self.interval = interval
        self.refused: dict[str, str] = {}  # session id -> why its last upload was refused
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()
        self._freed = 0
        self.passes = self.collections = 0

    def note_freed(self) -> None:
        """Something large was just dropped (a refused upload): collect on the next pass, now."""
        with self._lock:
            self._freed += 1
        self._wake.set()

    def start(self) -> None:
        import threading

        with self._lock:
            if self._thread is not None:
                return
            try:
                from streamlit import runtime

                if not runtime.exists():
                    return
            except ImportError:
                return
            self._thread = threading.Thread(target=self._run, name="hounsfield-memory-reaper", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import concurrent.futures
        import gc

        from streamlit import runtime

        live: set[str] = set()
        pending = 0  # passes that still collect after an ending (late script threads)
        while True:
            self._wake.wait(self.interval)
            self._wake.clear()
            try:
                rt = runtime.get_instance()
                loop = rt._get_async_objs().eventloop
                fut: concurrent.futures.Future = concurrent.futures.Future()
                loop.call_soon_threadsafe(_end_expired_sessions, rt, fut)
                now = fut.result(timeout=60)
            except concurrent.futures.TimeoutError:  # the event loop is busy: try again next pass
                continue
            except Exception:  # noqa: BLE001 - an internal changed or the server is stopping: stop reaping
                return
            with self._lock:
                freed, self._freed = self._freed, 0
            if live - now or freed:
                pending = 2
            live = now
            self.passes += 1
            if pending:
                pending -= 1
                gc.collect()
                state.trim_memory()
                self.collections += 1


def _end_expired_sessions(rt, fut) -> None:
    """On the event loop: shut down sessions past their reconnect window, drop orphaned uploads."""
    try:
        mgr = rt._session_mgr
        storage = mgr._session_storage
        cache = getattr(storage, "_cache", None)
        if cache is not None and hasattr(cache, "expire"):
            for _, info in cache.expire():
                info.session.shutdown()
        live = {i.session.id for i in mgr.list_active_sessions()} | {i.session.id for i in storage.list()}
        uploads = rt.uploaded_file_mgr
        for session_id in list(getattr(uploads, "file_storage", {})):
            if session_id not in live:
                uploads.remove_session_files(session_id)
        fut.set_result(live)
    except Exception as exc:  # noqa: BLE001 - reported to the reaper, which stops
        fut.set_exception(exc)


REAPER = _Reaper()


def start_memory_reaper() -> None:
    """Start the process's reaper thread once (see :class:`_Reaper`)."""
    forget_ended_sessions_state()
    REAPER.start()


def forget_ended_sessions_state() -> None:
    """When Streamlit shuts a session down, drop its session state and fragments at once.

    Streamlit's runtime loop keeps the last session it flushed messages to in a loop variable
    (``for active_session_info in ...`` in ``Runtime._loop_coroutine``) while it waits for the
    next message: when no other visitor is active, the last session to end, with its study,
    stayed in memory until someone else's page ran (found with gc.get_referrers on a leftover
    Volume; it is why a closed tab's 600 MB stayed minutes). A shut-down session is never used
    again, so it gets empty state objects; a script thread still finishing keeps its own
    references until it ends. Checked with Streamlit 1.67; lost if it cannot apply: the last
    session's memory waits for the next visitor.
    """
    try:
        from streamlit.runtime.app_session import AppSession
        from streamlit.runtime.fragment import MemoryFragmentStorage
        from streamlit.runtime.state import SessionState
    except ImportError:
        return
    if getattr(AppSession, "_hounsfield_forgets_state", False) or not callable(getattr(AppSession, "shutdown", None)):
        return
    shutdown = AppSession.shutdown

    def forgetting_shutdown(self) -> None:
        shutdown(self)
        if hasattr(self, "_session_state"):
            self._session_state = SessionState()
        if hasattr(self, "_fragment_storage"):
            self._fragment_storage = MemoryFragmentStorage()
        REAPER.note_freed()

    AppSession.shutdown = forgetting_shutdown
    AppSession._hounsfield_forgets_state = True


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
    keep_uploads_in_memory()
    share_upload_bytes()
    meter_uploads()
    start_memory_reaper()
    state.init()
    keep_widget_state()
    volume = state.current_volume()
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
    """
    from dashboard import details_ui, explorer, faces_ui, histogram_ui, iso_ui, pacs_ui

    for key in (*explorer.PERSISTENT, *histogram_ui.PERSISTENT, *iso_ui.PERSISTENT, *details_ui.PERSISTENT,
                *faces_ui.PERSISTENT, *pacs_ui.PERSISTENT):
        if key in st.session_state:
            st.session_state[key] = st.session_state[key]


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
        dz, dy, dx = volume.spacing
        facts = {
            "Modality": volume.modality,
            "Voxels": " x ".join(str(n) for n in volume.shape),
            "Spacing (mm)": f"{dz:g} x {dy:g} x {dx:g}",
            "Orientation": orientation_name(volume.normal),
            "Values": f"{volume.voxels.dtype}, {volume.units or 'stored units'}",
            "Source": study.source,
        }
        if len(study.volumes) > 1:
            facts["Series in study"] = str(len(study.volumes))
        header = volume.header
        if header is not None:
            for keyword, label in (("PatientName", "Patient"), ("PatientID", "Patient ID"), ("StudyDate", "Study date")):
                value = header.get(keyword, "")
                facts[label] = (str(value) or "—") if show else MASK
        st.markdown("\n".join(f"- **{k}**: {md_escape(v)}" for k, v in facts.items()))
        if volume.warnings:
            st.warning(f"{len(volume.warnings)} geometry note(s): see **Load a study**.", icon=":material/warning:")
    st.session_state[state.SHOW_PHI_WIDGET] = state.show_phi()
    st.toggle(
        "Show patient information (PHI)",
        key=state.SHOW_PHI_WIDGET,
        on_change=_sync_phi,
        help="Names, IDs, dates and descriptions (DICOM PS3.15 Annex E), and the names of uploaded files, stay "
        "hidden unless you reveal them, for this browser session only.",
    )
