"""Every use of private Streamlit (and Starlette) APIs, fenced here: why, for which versions, what is lost.

Nothing else in the app reaches past Streamlit's public API (two reads aside, named below the
table); callers import from here. Checked
with Streamlit 1.67.0 (its Starlette server, Starlette 1.10.0). :func:`install` checks the
versions once per process and logs a warning when they are not the tested ones; each patch or
read logs one warning (once per process) when it cannot apply, and the app then goes on without
it: no patch is needed for a page to work.

==================================  ======================================  ============  ============================
Patch or read                       Why it exists                           Checked on    Lost if it cannot apply
==================================  ======================================  ============  ============================
keep_uploads_in_memory:             Streamlit's upload route parses         Streamlit     Uploads over 1 MB are
MultiPartParser.spool_max_size      multipart bodies with Starlette, whose  1.67.0,       written to the temp folder
(starlette.formparsers), raised to  spooled temporary file rolls over to    Starlette     while they arrive (privacy,
2 GB                                disk past 1 MB                          1.10.0        not a crash). Tested by a
                                                                                          real 3 MB upload

share_upload_bytes:                 Streamlit deep-copies a widget's value  Streamlit     Memory only: every run
UploadedFile.__deepcopy__           each time it is drawn: every run held   1.67.0        copies every upload again
(replaced),                         its own copy of every upload (158 MB
UploadedFile._file_urls,            more for a 300-file CT)
UploadedFileRec

meter_uploads: uploaded_file_mgr    The upload endpoint stores any file a   Streamlit     Uploads are bounded only by
add_file, remove_file,              live session sends, unlimited in        1.67.0,       server.maxUploadSize and the
remove_session_files (wrapped),     number, until the session ends: each    Starlette     session's lifetime
file_storage; Request.form,         file reserves its bytes in core.memory  1.10.0
MultiPartParser.__init__ (wrapped)  (HTTP 413 past the budget), and bodies
                                    are reserved while they arrive

Reaper: runtime.get_instance(),     Streamlit forgets disconnected          Streamlit     Ended sessions free their
._get_async_objs().eventloop,       sessions only when another is stored    1.67.0        memory only when Streamlit
_session_mgr, _session_storage      and never shuts them down: the reaper                 and Python get to it
._cache.expire(),                   ends them after                                       (minutes)
list_active_sessions(),             disconnectedSessionTTL, drops orphaned
uploaded_file_mgr.file_storage      uploads, then gc.collect() and
                                    malloc_trim

forget_ended_sessions_state:        The runtime loop keeps the last         Streamlit     The last session's study
AppSession.shutdown (wrapped),      session it served in a loop variable:   1.67.0        waits for the next visitor
_session_state, _fragment_storage,  a closed tab's 600 MB stayed until
SessionState,                       another visitor came
MemoryFragmentStorage

release_uploads,                    Streamlit frees uploads only when the   Streamlit     Memory only: uploads stay
forget_stale_uploads:               user removes them or the session ends;  1.67.0        until the session ends
get_script_run_ctx(),               the loader frees each file once read,
uploaded_file_mgr.remove_file,      and files left in a replaced uploader
file_storage                        go

upload_instances:                   Finds every UploadedFile object the     Streamlit     Memory only: about 800 MB
get_session_state()._state, its     widget state holds (the previous run's  1.67.0        held with three 300-file
_old_state and                      too), so that all are closed and the                  uploads; nothing stale
_new_widget_state.states            bytes freed                                           removed
==================================  ======================================  ============  ============================

Names in the first column are this module's. Left outside it: ``get_script_run_ctx().session_id``
in ``dashboard/owner.py`` and ``dashboard/pacs_ui.py`` (the owner of a session's memory
reservations; ``get_script_run_ctx`` is importable from ``streamlit.runtime.scriptrunner`` but not
documented), and ``st.components.v2.component`` in ``dashboard/components.py`` (for ``mpr_view``, ``image_view``
and ``iso_view``; public, but new).

Process-wide on purpose: the patches, the budget, the upload store and the sessions belong to the
server, not to one visitor. Nothing here holds a visitor's data.
"""

from __future__ import annotations

import contextvars
import logging
import threading
from collections import defaultdict
from typing import Any

from dashboard import state

log = logging.getLogger(__name__)

# The minor versions every patch here was checked on (see the table above).
TESTED = {"streamlit": ("1.67",), "starlette": ("1.10",)}

UPLOAD_STEP = 16 * 1024**2  # bytes reserved at a time while an upload arrives
SPOOL_MAX = 2 * 1024**3  # above server.maxUploadSize: no upload rolls over to a file

_warned: set[str] = set()
_lock = threading.Lock()


def _cannot_apply(name: str, why: str, lost: str) -> None:
    """Log once per process that the patch ``name`` did not apply, why, and what is lost."""
    with _lock:
        if name in _warned:
            return
        _warned.add(name)
    log.warning("Hounsfield: the Streamlit patch %r cannot apply (%s); lost: %s. Checked on %s.",
                name, why, lost, ", ".join(f"{k} {'/'.join(v)}" for k, v in TESTED.items()))


def untested_versions() -> list[str]:
    """The installed packages among :data:`TESTED` whose minor version was not tested, in words."""
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for package, minors in TESTED.items():
        try:
            installed = version(package)
        except PackageNotFoundError:
            out.append(f"{package} is not installed (tested: {', '.join(minors)})")
            continue
        if ".".join(installed.split(".")[:2]) not in minors:
            out.append(f"{package} {installed} (tested: {', '.join(minors)})")
    return out


def check_versions() -> None:
    """Warn once per process when Streamlit or Starlette are not the tested minors."""
    with _lock:
        if "versions" in _warned:
            return
        _warned.add("versions")
    untested = untested_versions()
    if untested:
        log.warning("Hounsfield: the patches of Streamlit's internals were not checked on %s; each one that "
                    "cannot apply says so. See dashboard/streamlit_internals.py.", "; ".join(untested))


def install() -> None:
    """Apply every patch once per process (called by each page's frame; later calls cost little)."""
    check_versions()
    keep_uploads_in_memory()
    share_upload_bytes()
    meter_uploads()
    start_memory_reaper()


# -- Uploads kept in memory -----------------------------------------------------------------------

def keep_uploads_in_memory(limit_bytes: int = SPOOL_MAX) -> None:
    """Stop Streamlit's web server from spooling uploads to temporary files on disk.

    Its upload route parses multipart bodies with Starlette, whose SpooledTemporaryFile
    rolls over to disk past 1 MB; uploaded patient data must stay in memory.
    """
    lost = "uploads over 1 MB are written to the temporary folder while they arrive"
    try:
        from starlette.formparsers import MultiPartParser
    except ImportError:
        _cannot_apply("keep_uploads_in_memory", "starlette.formparsers.MultiPartParser is missing", lost)
        return
    if not isinstance(getattr(MultiPartParser, "spool_max_size", None), int):
        _cannot_apply("keep_uploads_in_memory", "MultiPartParser has no spool_max_size", lost)
        return
    if MultiPartParser.spool_max_size < limit_bytes:
        MultiPartParser.spool_max_size = limit_bytes


def share_upload_bytes() -> None:
    """Make the copies Streamlit hands out of uploaded files share the upload's bytes.

    Streamlit deep-copies a widget's value each time the widget is drawn, so every run of the
    first page got its own copy of every uploaded file: for a 300-file CT upload, 158 MB more
    for as long as the run used them, and the loader's per-file release freed only the copy
    (found with tracemalloc while running benchmarks/bench_sessions.py). BytesIO is
    copy-on-write, so a copy that shares the bytes is just as independent of the original.
    """
    lost = "each run holds its own copy of every uploaded file"
    try:
        from streamlit.runtime.uploaded_file_manager import UploadedFile, UploadedFileRec
    except ImportError:
        _cannot_apply("share_upload_bytes", "UploadedFile or UploadedFileRec moved", lost)
        return
    if getattr(UploadedFile, "_shares_bytes_when_copied", False):
        return
    try:
        probe = UploadedFile(UploadedFileRec(file_id="probe", name="probe", type="", data=b""), None)  # type: ignore[arg-type]  # a probe: its URLs are never read
        probe._file_urls  # noqa: B018 - the attribute the copy passes on
    except (AttributeError, TypeError) as exc:
        _cannot_apply("share_upload_bytes", f"UploadedFile changed: {exc}", lost)
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

    UploadedFile.__deepcopy__ = __deepcopy__  # type: ignore[attr-defined]  # patching a private API, see the table
    UploadedFile._shares_bytes_when_copied = True  # type: ignore[attr-defined]  # our marker on Streamlit's class


# -- Uploads counted against the server's budget ----------------------------------------------------

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
    lost = "uploads are bounded only by server.maxUploadSize and the session's lifetime"
    try:
        from streamlit.runtime.scriptrunner import get_script_run_ctx
    except ImportError:
        _cannot_apply("meter_uploads", "get_script_run_ctx moved", lost)
        return
    ctx = get_script_run_ctx()
    if ctx is None:  # outside a run: nothing to meter yet
        return
    mgr = getattr(ctx, "uploaded_file_mgr", None)
    if mgr is not None and getattr(mgr, "_hounsfield_metered", False):
        return
    if mgr is None or not all(callable(getattr(mgr, name, None))
                              for name in ("add_file", "remove_file", "remove_session_files")):
        _cannot_apply("meter_uploads", "the uploaded-file manager changed", lost)
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
    except ImportError:
        _cannot_apply("meter_uploads (bodies arriving)", "starlette's Request or MultiPartParser moved",
                      "upload bodies are not counted while they arrive, only once stored")
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

    Request.form, MultiPartParser.__init__ = metered_form, __init__  # type: ignore[method-assign]  # patching Starlette, see the table
    MultiPartParser._hounsfield_metered = True  # type: ignore[attr-defined]  # our marker on Starlette's class


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


# -- Ended sessions freed ---------------------------------------------------------------------------

REAPER_LOST = "ended sessions free their memory only when Streamlit and Python get to it (minutes)"


class Reaper:
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
        with self._lock:
            if self._thread is not None:
                return
            try:
                from streamlit import runtime

                if not runtime.exists():  # bare mode (AppTest, a test calling page code): no server
                    return
            except ImportError:
                _cannot_apply("memory reaper", "streamlit.runtime moved", REAPER_LOST)
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
            loop = None
            try:
                rt = runtime.get_instance()
                loop = rt._get_async_objs().eventloop
                fut: concurrent.futures.Future = concurrent.futures.Future()
                loop.call_soon_threadsafe(_end_expired_sessions, rt, fut)
                now = fut.result(timeout=60)
            except concurrent.futures.TimeoutError:  # the event loop is busy: try again next pass
                continue
            except Exception as exc:  # noqa: BLE001 - an internal changed or the server is stopping: stop reaping
                if loop is None or not loop.is_closed():
                    _cannot_apply("memory reaper", f"{type(exc).__name__}: {exc}", REAPER_LOST)
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


REAPER = Reaper()


def start_memory_reaper() -> None:
    """Start the process's reaper thread once (see :class:`Reaper`)."""
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
    references until it ends. Lost if it cannot apply: the last session's memory waits for the
    next visitor.
    """
    lost = "the last session's memory waits for the next visitor"
    try:
        from streamlit.runtime.app_session import AppSession
        from streamlit.runtime.fragment import MemoryFragmentStorage
        from streamlit.runtime.state import SessionState
    except ImportError:
        _cannot_apply("forget_ended_sessions_state", "AppSession, MemoryFragmentStorage or SessionState moved", lost)
        return
    if getattr(AppSession, "_hounsfield_forgets_state", False):
        return
    if not callable(getattr(AppSession, "shutdown", None)):
        _cannot_apply("forget_ended_sessions_state", "AppSession has no shutdown", lost)
        return
    shutdown = AppSession.shutdown

    def forgetting_shutdown(self) -> None:
        shutdown(self)
        if hasattr(self, "_session_state"):
            self._session_state = SessionState()
        if hasattr(self, "_fragment_storage"):
            self._fragment_storage = MemoryFragmentStorage()
        REAPER.note_freed()

    AppSession.shutdown = forgetting_shutdown  # type: ignore[method-assign]  # patching a private API, see the table
    AppSession._hounsfield_forgets_state = True  # type: ignore[attr-defined]  # our marker on Streamlit's class


# -- This session's uploads: released as soon as they are read -------------------------------------

UPLOADS_LOST = "uploaded bytes stay in memory until the session ends"


def release_uploads(files: list[Any], *, others: dict[str, list[Any]] | None = None) -> None:
    """Drop uploaded bytes from Streamlit's upload store and close every object that holds them.

    Streamlit frees uploads only when the user removes them in the widget or the session
    ends; without this, each upload-and-replace would keep the previous upload in memory.
    Called per file while loading, as soon as the loader is done with it. ``others`` are the
    other objects of the same uploads (see :func:`upload_instances`): the bytes are freed only
    once all of them are closed.
    """
    try:
        from streamlit.runtime.scriptrunner import get_script_run_ctx

        ctx = get_script_run_ctx()
        for f in files:
            file_id = getattr(f, "file_id", None)
            if ctx is not None and file_id:
                _remove_upload(ctx, file_id)
            for g in [f, *((others or {}).get(file_id, ()) if file_id else ())]:
                if hasattr(g, "close"):
                    g.close()
    except (AttributeError, ImportError, KeyError) as exc:  # an internal API: never let it break loading
        _cannot_apply("release_uploads", f"{type(exc).__name__}: {exc}", UPLOADS_LOST)


def _uploaded_files_in_state() -> list[tuple[str, Any]]:
    """(widget id, UploadedFile) for every uploaded-file object this session's widget state holds."""
    from streamlit.runtime.state.session_state_proxy import get_session_state
    from streamlit.runtime.uploaded_file_manager import UploadedFile

    inner = get_session_state()._state
    pools = [list(inner._old_state.items()),
             [(k, getattr(w, "value", None)) for k, w in list(inner._new_widget_state.states.items())]]
    out = []
    for pool in pools:
        for key, value in pool:
            for f in value if isinstance(value, (list, tuple)) else [value]:
                if isinstance(f, UploadedFile):
                    out.append((str(key), f))
    return out


def upload_instances() -> dict[str, list[Any]]:
    """Every UploadedFile object this session's widget state holds, by file id.

    Streamlit makes new UploadedFile objects each time it reads an uploader's value and keeps
    the previous run's as well; each shares the upload's bytes. Measured with three 300-file
    uploads at once: the copies kept about 800 MB alive while the loader had released them.
    """
    found: dict[str, list[Any]] = defaultdict(list)
    try:
        for _, f in _uploaded_files_in_state():
            found[f.file_id].append(f)
    except (AttributeError, ImportError, KeyError, RuntimeError) as exc:  # internal API: only a memory saving
        _cannot_apply("upload_instances", f"{type(exc).__name__}: {exc}", UPLOADS_LOST)
        return {}
    return found


def forget_stale_uploads() -> int:
    """Remove this session's stored uploads that no widget but the load uploaders refers to.

    Called after a study has loaded, when the load uploaders are about to be reset. Files
    picked while the page was redrawing can land in an uploader that is then replaced; Streamlit
    would keep them until the session ends (seen as 120 orphaned files every few cycles of
    benchmarks/bench_sessions.py). Returns how many were removed.
    """
    try:
        from streamlit.runtime.scriptrunner import get_script_run_ctx

        ctx = get_script_run_ctx()
        if ctx is None:
            return 0
        kept = {f.file_id for key, f in _uploaded_files_in_state()
                if "load_files_" not in key and "load_folder_" not in key}
        stored = getattr(ctx.uploaded_file_mgr, "file_storage", {}).get(ctx.session_id, {})
        stale = [file_id for file_id in list(stored) if file_id not in kept]
        for file_id in stale:
            _remove_upload(ctx, file_id)
        return len(stale)
    except (AttributeError, ImportError, KeyError, RuntimeError) as exc:  # internal API: only a memory saving
        _cannot_apply("forget_stale_uploads", f"{type(exc).__name__}: {exc}", UPLOADS_LOST)
        return 0


def refused_upload_reason(session_id: str) -> str | None:
    """Why the upload endpoint last refused a file of this session (once), or None."""
    return REAPER.refused.pop(session_id, None)


def _remove_upload(ctx: Any, file_id: str) -> None:
    """Drop one upload from the session's store (only the in-memory manager can; others keep it)."""
    from streamlit.runtime.memory_uploaded_file_manager import MemoryUploadedFileManager

    mgr = ctx.uploaded_file_mgr
    if isinstance(mgr, MemoryUploadedFileManager):
        mgr.remove_file(session_id=ctx.session_id, file_id=file_id)
