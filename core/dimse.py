"""DICOM networking as archives speak it (DIMSE with pynetdicom): C-ECHO, C-FIND, C-GET, C-MOVE, C-STORE, in memory.

Every connection goes through the same outbound policy as DICOMweb (:mod:`core.outbound`): the
peer's host is resolved once, every address it names must be allowed, and the association is
opened to exactly the address that was checked. Retrieved instances stay in memory as the
encoded bytes the peer sent (never on disk), reserved in the server's memory budget as they
arrive, and come back as :class:`core.pacs.RetrievedSeries` ready for :func:`core.load_series`.
Failures raise :class:`DimseError` with a message in words (refused, timed out, rejected and
why, aborted).
"""

from __future__ import annotations

import logging
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from pydicom.dataset import Dataset
from pydicom.uid import (
    JPEG2000,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)

from core.memory import MB, OverBudget, server_budget
from core.outbound import AddressPolicy, OutboundError, check_url
from core.pacs import SERIES_FIELDS, STUDY_FIELDS, PacsError, PacsLimits, RetrievedSeries, _Reserver

__all__ = ["DEFAULT_AE_TITLE", "DimseError", "DimsePeer", "Matches", "StoreResult", "echo", "find_series",
           "find_studies", "get_series", "move_series", "store_datasets"]

DEFAULT_AE_TITLE = "HOUNSFIELD"
FIND_LIMIT = 500
_AE_TITLE = re.compile(r"[ -\[\]-~]{1,16}")  # printable ASCII without backslash (PS3.5 AE VR)
_HOST = re.compile(r"[A-Za-z0-9.\-_:\[\]%]{1,253}")
_UID = re.compile(r"[0-9]+(?:\.[0-9]+)*")

# Storage SOP classes asked for when retrieving (C-GET needs one presentation context each,
# with our SCP role; an association holds at most 128): the image objects this app can view.
STORAGE_CLASSES = (
    "1.2.840.10008.5.1.4.1.1.2",      # CT Image
    "1.2.840.10008.5.1.4.1.1.2.1",    # Enhanced CT Image
    "1.2.840.10008.5.1.4.1.1.2.2",    # Legacy Converted Enhanced CT Image
    "1.2.840.10008.5.1.4.1.1.4",      # MR Image
    "1.2.840.10008.5.1.4.1.1.4.1",    # Enhanced MR Image
    "1.2.840.10008.5.1.4.1.1.4.4",    # Legacy Converted Enhanced MR Image
    "1.2.840.10008.5.1.4.1.1.128",    # Positron Emission Tomography Image
    "1.2.840.10008.5.1.4.1.1.130",    # Enhanced PET Image
    "1.2.840.10008.5.1.4.1.1.128.1",  # Legacy Converted Enhanced PET Image
    "1.2.840.10008.5.1.4.1.1.20",     # Nuclear Medicine Image
    "1.2.840.10008.5.1.4.1.1.1",      # Computed Radiography Image
    "1.2.840.10008.5.1.4.1.1.1.1",    # Digital X-Ray Image - For Presentation
    "1.2.840.10008.5.1.4.1.1.1.1.1",  # Digital X-Ray Image - For Processing
    "1.2.840.10008.5.1.4.1.1.1.2",    # Digital Mammography X-Ray Image - For Presentation
    "1.2.840.10008.5.1.4.1.1.6.1",    # Ultrasound Image
    "1.2.840.10008.5.1.4.1.1.3.1",    # Ultrasound Multi-frame Image
    "1.2.840.10008.5.1.4.1.1.12.1",   # X-Ray Angiographic Image
    "1.2.840.10008.5.1.4.1.1.7",      # Secondary Capture Image
    "1.2.840.10008.5.1.4.1.1.7.2",    # Multi-frame Grayscale Byte Secondary Capture Image
    "1.2.840.10008.5.1.4.1.1.7.3",    # Multi-frame Grayscale Word Secondary Capture Image
    "1.2.840.10008.5.1.4.1.1.481.2",  # RT Dose
    "1.2.840.10008.5.1.4.1.1.481.1",  # RT Image
)
# Uncompressed first; then the compressed syntaxes this app's decoders read. No deflate: an
# inflated stream has no size known before it is inflated.
TRANSFER_SYNTAXES = (ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEGLosslessSV1, JPEGBaseline8Bit,
                     JPEGExtended12Bit, JPEGLSLossless, JPEGLSNearLossless, JPEG2000Lossless, JPEG2000, RLELossless)
VERIFICATION = "1.2.840.10008.1.1"
# The largest PDU we accept: larger than pynetdicom's 16 KB default, so a peer that allows it sends
# an image in fewer fragments (fewer Python calls per MB); bounded, as it is buffered whole.
MAX_PDU = 256 * 1024
_FRAMING = MAX_PDU + 64 * 1024  # room for PDU headers, command sets and pending responses around an image's bytes
FIND_MODEL = "1.2.840.10008.5.1.4.1.2.2.1"  # Study Root Query/Retrieve Information Model - FIND
GET_MODEL = "1.2.840.10008.5.1.4.1.2.2.3"   # ... - GET
MOVE_MODEL = "1.2.840.10008.5.1.4.1.2.2.2"  # ... - MOVE

# A-ASSOCIATE-RJ: result source -> reason (PS3.8 9.3.4), in words.
_REJECT_REASONS = {
    1: {1: "no reason given", 2: "application context name not supported",
        3: "calling AE title not recognised", 7: "called AE title not recognised"},
    2: {1: "no reason given", 2: "protocol version not supported"},
    3: {1: "temporary congestion", 2: "local limit exceeded"},
}
_REJECT_HINTS = {
    "calling AE title not recognised": "the peer does not know our AE title: ask its administrator to add it "
                                       "(with this server's address), or use the AE title it knows",
    "called AE title not recognised": "check the peer's AE title (case and spelling count)",
}


# --- The fence: pynetdicom's private APIs, used only here ---------------------------------------
# Why: pynetdicom reads each PDU whole at the length a peer claims, before any handler sees it,
# and has no public hook to bound that or to refuse a connection by address. Versions: 3.0.x
# (requirements pin <4): AssociationSocket.recv, AE._create_socket, AE._servers,
# RequestHandler._create_association. If one changes, what is lost: the PDU bound (the tests
# TestBounded.test_a_huge_pdu and TestMove.test_the_receiving_scp_refuses_a_huge_pdu fail), or
# C-MOVE's receiver (its tests fail); nothing else depends on them.


def _bounded_socket_class():
    """pynetdicom's ``AssociationSocket``, refusing a PDU longer than we accept (see :func:`_bounded_ae`)."""
    from pynetdicom.transport import AssociationSocket

    class BoundedSocket(AssociationSocket):
        def recv(self, nr_bytes: int) -> bytearray:
            if nr_bytes > MAX_PDU + 64 * 1024:  # room for an A-ASSOCIATE-RQ/AC, whose size no limit states
                # Our own marker on pynetdicom's Association (it has no such attribute), read back by
                # _oversize_message for the error the user sees.
                self._assoc.hounsfield_oversize = nr_bytes  # type: ignore[attr-defined]
                return bytearray()
            return super().recv(nr_bytes)

    return BoundedSocket


def _storage_scp(ae_title: str, bind: str, port: int, *, from_address: str, handlers: list, timeout: float):
    """A storage SCP on ``(bind, port)`` that answers only ``from_address``, with bounded PDUs, until shut down.

    A connection from any other address is closed before a byte of it is read. The request
    handler's ``_create_association`` (private, pynetdicom 3.0.x) is extended to bound its
    socket's PDUs as :func:`_bounded_ae` does; without it only that bound is lost.
    """
    from pynetdicom import AE
    from pynetdicom.transport import RequestHandler, ThreadedAssociationServer

    bounded = _bounded_socket_class()

    class OnlyFromPeer(RequestHandler):
        def handle(self) -> None:
            if self.client_address[0] == from_address:
                super().handle()  # anyone else: the connection is closed unanswered

        def _create_association(self):
            assoc = super()._create_association()
            assoc.dul.socket.__class__ = bounded
            return assoc

    scp = AE(ae_title=ae_title)
    scp.require_called_aet = True
    scp.maximum_pdu_size = MAX_PDU
    scp.acse_timeout = scp.dimse_timeout = scp.network_timeout = timeout
    for uid in STORAGE_CLASSES:
        scp.add_supported_context(uid, list(TRANSFER_SYNTAXES))
    server = scp.make_server((bind, port), evt_handlers=handlers, server_class=ThreadedAssociationServer,
                             request_handler=OnlyFromPeer)
    scp._servers.append(server)  # as start_server does: the server's shutdown() removes it from there
    threading.Thread(target=server.serve_forever, name="hounsfield-move-scp", daemon=True).start()
    return server


def _bounded_ae(ae_title: str):
    """A pynetdicom ``AE`` whose associations refuse a PDU longer than :data:`MAX_PDU` before reading it.

    pynetdicom reads a PDU whole, at the length its 6-byte header claims (up to 4 GB), before any
    handler sees a byte: a hostile peer could fill memory with one PDU. ``AE._create_socket``
    (private, pynetdicom 2.0 to 3.0.x; requirements pin <4) is overridden to hand out a socket
    that refuses such a length, which pynetdicom then treats as a closed connection. If a later
    version drops that method, associations work as before without this bound
    (``TestBounded.test_a_huge_pdu`` then fails).
    """
    from pynetdicom import AE

    bounded = _bounded_socket_class()

    class BoundedAE(AE):
        def _create_socket(self, assoc, address, tls_args):
            sock = bounded(assoc, address=address)
            sock.tls_args = tls_args
            return sock

    return BoundedAE(ae_title=ae_title)


def _oversize_message(peer: DimsePeer, assoc: Any) -> str | None:
    n = getattr(assoc, "hounsfield_oversize", 0)
    if not n:
        return None
    return (f"{peer.label} sent one message part (PDU) of {n / MB:,.1f} MB, more than the {MAX_PDU // 1024} KB this "
            f"app accepts: the connection was closed.")


# --- end of the fence ------------------------------------------------------------------------


class DimseError(PacsError):
    """A DIMSE operation that failed or was stopped; ``str()`` says why in words."""


@dataclass(frozen=True)
class DimsePeer:
    """A DIMSE peer (an archive, a PACS, a DICOM node) and what the server may spend on it.

    Attributes
    ----------
    host : str
        Host name or address.
    port : int
        The peer's DICOM port (often 104 or 11112).
    ae_title : str
        The peer's AE title (the called AE title).
    our_ae_title : str
        Ours (the calling AE title), as the peer knows us.
    timeout : float
        Seconds to wait for a connection and for each answer.
    policy : AddressPolicy
        Which non-public addresses may be reached.
    limits : PacsLimits
        Total times and byte caps (the same as DICOMweb's).
    name : str
        The operator's name for a configured peer ("" for one a visitor typed).
    """

    host: str
    port: int
    ae_title: str
    our_ae_title: str = DEFAULT_AE_TITLE
    timeout: float = 30.0
    policy: AddressPolicy = field(default_factory=AddressPolicy)
    limits: PacsLimits = field(default_factory=PacsLimits)
    name: str = ""

    def __repr__(self) -> str:  # the calling AE title a configured peer trusts stays out of logs and tracebacks
        return f"DimsePeer({self.label!r}, name={self.name!r})"

    @property
    def label(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"

    def validate(self) -> None:
        """Raise :class:`DimseError` naming the field that is not valid."""
        if not _HOST.fullmatch(self.host or ""):
            raise DimseError(f"The host {self.host!r} is not a host name or an address.")
        if not isinstance(self.port, int) or not 1 <= self.port <= 65535:
            raise DimseError(f"The port {self.port!r} is not a TCP port (1 to 65535).")
        for what, title in (("peer's AE title", self.ae_title), ("our AE title", self.our_ae_title)):
            if not _AE_TITLE.fullmatch(title or "") or not title.strip():
                raise DimseError(f"The {what} {title!r} is not valid: 1 to 16 printable characters, no backslash.")
        if not self.timeout > 0:
            raise DimseError(f"The timeout {self.timeout!r} must be a positive number of seconds.")


class Matches(list):
    """Rows found by C-FIND; ``more`` is True when the search stopped at its limit."""

    more: bool = False
    limit: int = 0


@dataclass(frozen=True)
class StoreResult:
    """What the peer answered for one instance sent with C-STORE."""

    sop_instance_uid: str
    status: int | None
    words: str

    @property
    def ok(self) -> bool:
        return self.status is not None and (self.status == 0 or self.status >> 12 == 0xB)


def _checked_address(peer: DimsePeer) -> str:
    """The one address to connect to, after the operator's policy allowed every address of the host."""
    peer.validate()
    host = peer.host.strip("[]")
    shown = f"[{host}]" if ":" in host else host
    try:
        target = check_url(f"http://{shown}:{peer.port}/", peer.policy, timeout=peer.timeout)
    except OutboundError as exc:
        raise DimseError(str(exc)) from None
    return str(target.ip)


class _ConnectErrors(logging.Handler):
    """Catches pynetdicom's log line for a failed TCP connection (it keeps the error nowhere else).

    Should the wording change, a refused connection reads "Could not connect" (still true).
    """

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.errors: dict[int | None, str] = {}

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("TCP Initialisation Error"):
            self.errors[record.thread] = message


def _reject_message(peer: DimsePeer, primitive: Any) -> str:
    source = getattr(primitive, "result_source", None)
    diagnostic = getattr(primitive, "diagnostic", None)
    reason = "no reason given"
    if isinstance(source, int) and isinstance(diagnostic, int):
        reason = _REJECT_REASONS.get(source, {}).get(diagnostic, reason)
    permanent = "permanently" if getattr(primitive, "result", None) == 1 else "for now"
    hint = _REJECT_HINTS.get(reason, "try again later, or ask the peer's administrator")
    return f"{peer.label} rejected the association {permanent}: {reason}; {hint}."


def _connect_message(peer: DimsePeer, error: str, elapsed: float) -> str:
    if "refused" in error.lower():
        return (f"{peer.label} refused the connection: nothing listens on port {peer.port} there. Check the host "
                f"and the port.")
    if "timed out" in error.lower() or elapsed >= peer.timeout * 0.9:
        return (f"{peer.label} did not answer within {peer.timeout:g} s: check the host and port, and that a "
                f"firewall lets this server through.")
    return f"Could not connect to {peer.label}: check the host and the port."


def _shut_down(assoc: Any) -> None:
    """End a blocked read on the association's socket at once (as the outbound guard's watchdog does)."""
    sock = getattr(getattr(getattr(assoc, "dul", None), "socket", None), "socket", None)
    if sock is not None:
        try:
            socket.socket.shutdown(sock, socket.SHUT_RDWR)
        except OSError:
            pass


class _AnswerMeter:
    """EVT_DATA_RECV: the bytes a peer sends on an association that only answers (echo, search, send).

    One answer may span many PDUs, which pynetdicom joins in memory: past ``cap`` the socket is
    shut down and the operation ends with a message.
    """

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.received = 0

    def __call__(self, event: Any) -> None:
        self.received += len(event.data)
        if self.received > self.cap:
            event.assoc.hounsfield_overflow = self.cap
            _shut_down(event.assoc)


def _oversize_or_overflow(peer: DimsePeer, assoc: Any) -> str | None:
    cap = getattr(assoc, "hounsfield_overflow", 0)
    if cap:
        return (f"{peer.label} answered with more than {cap / MB:g} MB, the most this app reads for one search or "
                f"answer: the connection was closed. Narrow the search.")
    return _oversize_message(peer, assoc)


@contextmanager
def _association(peer: DimsePeer, contexts: list[tuple[str, tuple[str, ...]]], *, service: str,
                 seconds: float, roles: list | None = None, handlers: list | None = None) -> Iterator[Any]:
    """An established association with ``peer`` for ``service``, aborted when ``seconds`` run out.

    Without ``handlers`` of its own (a retrieval meters what it receives itself), what the peer
    sends is capped at ``peer.limits.answer_bytes``.
    """
    from pynetdicom import evt

    if handlers is None:
        handlers = [(evt.EVT_DATA_RECV, _AnswerMeter(peer.limits.answer_bytes))]

    address = _checked_address(peer)
    ae = _bounded_ae(peer.our_ae_title)
    ae.connection_timeout = ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = peer.timeout
    for abstract, syntaxes in contexts:
        ae.add_requested_context(abstract, list(syntaxes))
    catcher = _ConnectErrors()
    connected = threading.Event()
    handlers = [*(handlers or []), (evt.EVT_CONN_OPEN, lambda event: connected.set())]
    log = logging.getLogger("pynetdicom")
    log.addHandler(catcher)
    start = time.monotonic()
    try:
        assoc = ae.associate(address, peer.port, ae_title=peer.ae_title, max_pdu=MAX_PDU, ext_neg=roles,
                             evt_handlers=handlers)
    finally:
        log.removeHandler(catcher)
    if not assoc.is_established:
        elapsed = time.monotonic() - start
        dul = getattr(assoc, "dul", None)
        error = catcher.errors.get(getattr(dul, "ident", None), "") if dul is not None else ""
        if oversize := _oversize_or_overflow(peer, assoc):
            message = oversize
        elif assoc.is_rejected:
            message = _reject_message(peer, assoc.acceptor.primitive)
        elif not connected.is_set():
            message = _connect_message(peer, error, elapsed)
        elif assoc.acceptor.primitive is not None and not assoc.accepted_contexts:
            message = (f"{peer.label} accepted the connection but not {service}: it may not offer it, or may not "
                       f"allow it for our AE title {peer.our_ae_title!r} (ask its administrator).")
        elif elapsed >= peer.timeout * 0.9:
            message = (f"{peer.label} did not answer the association request within {peer.timeout:g} s: check that "
                       f"it is a DICOM peer (the port may belong to another service).")
        else:
            message = (f"{peer.label} did not complete the association: it closed the connection (aborted). Check "
                       f"that the port is the peer's DICOM port and that it accepts our AE title.")
        ae.shutdown()
        raise DimseError(message)
    expired = threading.Event()

    def expire() -> None:
        expired.set()
        assoc.abort()

    watchdog = threading.Timer(seconds, expire)
    watchdog.daemon = True
    watchdog.start()
    late = DimseError(f"{peer.label} did not finish {service} within {seconds:g} s; it was stopped.")
    try:
        try:
            yield assoc
        except DimseError:
            if expired.is_set():
                raise late from None
            if oversize := _oversize_or_overflow(peer, assoc):
                raise DimseError(oversize) from None
            raise
        if expired.is_set():
            raise late
    finally:
        watchdog.cancel()
        if assoc.is_established:
            assoc.release()
        ae.shutdown()


def echo(peer: DimsePeer) -> float:
    """Verify the connection with C-ECHO; the round trip in seconds.

    Raises
    ------
    DimseError
        Refused, timed out, rejected (with the reason in words), aborted, or a failure status.
    """
    start = time.monotonic()
    with _association(peer, [(VERIFICATION, (ExplicitVRLittleEndian, ImplicitVRLittleEndian))],
                      service="C-ECHO (verification)", seconds=peer.limits.search_seconds) as assoc:
        status = assoc.send_c_echo()
        if not status or status.Status != 0:
            code = getattr(status, "Status", None)
            raise DimseError(f"{peer.label} answered C-ECHO with " + (f"status 0x{code:04X}." if code is not None
                                                                       else "nothing (the association ended)."))
    return time.monotonic() - start


def _value(identifier: Dataset, keyword: str) -> Any:
    """One answer's value as the DICOMweb search gives it: numbers for IS, text (at most 256 characters) otherwise."""
    elem = identifier.data_element(keyword) if keyword in identifier else None
    if elem is None or elem.value is None or elem.value == "":
        return ""
    values = list(elem.value)[:16] if elem.VM > 1 else [elem.value]
    if elem.VR in ("IS", "US", "UL", "SS", "SL") and len(values) == 1:
        try:
            return int(values[0])
        except (TypeError, ValueError):
            return ""
    return "\\".join(str(v) for v in values)[:256]


def _row(identifier: Dataset, fields: tuple[str, ...]) -> dict[str, Any]:
    return {f: _value(identifier, f) for f in fields}


def _query(level: str, fields: tuple[str, ...], **values: str) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    for f in fields:
        setattr(ds, f, "")
    for keyword, value in values.items():
        if value:
            setattr(ds, keyword, value)
    return ds


def _find(peer: DimsePeer, query: Dataset, fields: tuple[str, ...], limit: int) -> Matches:
    rows = Matches()
    rows.limit = limit
    with _association(peer, [(FIND_MODEL, (ExplicitVRLittleEndian, ImplicitVRLittleEndian))],
                      service="C-FIND (search)", seconds=peer.limits.search_seconds) as assoc:
        final = None
        for status, identifier in assoc.send_c_find(query, FIND_MODEL):
            if not status:  # the association ended (aborted, or no answer in time)
                break
            final = status.Status
            if final in (0xFF00, 0xFF01) and identifier is not None:
                if len(rows) >= limit:
                    rows.more = True
                    assoc.abort()  # stop the peer sending the rest
                    return rows
                rows.append(_row(identifier, fields))
        if final in (None, 0xFF00, 0xFF01):  # ended before the final answer: a partial list would look complete
            raise DimseError(f"{peer.label} ended the search without its final answer after {len(rows)} matches "
                             f"(the association was aborted, or no answer came within {peer.timeout:g} s).")
        if final not in (0x0000, 0xFF00, 0xFF01):
            raise DimseError(f"{peer.label} refused the search (C-FIND status 0x{final:04X}): it may not support "
                             f"one of the filters.")
    return rows


def find_studies(peer: DimsePeer, *, patient_name: str = "", patient_id: str = "", date_from: str = "",
                 date_to: str = "", modality: str = "", accession: str = "", limit: int = FIND_LIMIT) -> Matches:
    """Studies matching the filters (C-FIND, study root, STUDY level), as dicts of :data:`core.pacs.STUDY_FIELDS`.

    A name matches as a prefix unless it holds ``*`` or ``?`` wildcards. At most ``limit`` rows:
    past that the search is stopped and ``Matches.more`` says so.
    """
    name = patient_name.strip()
    if name and not any(c in name for c in "*?"):
        name += "*"
    dates = f"{date_from}-{date_to}" if date_from or date_to else ""
    query = _query("STUDY", STUDY_FIELDS, PatientName=name, PatientID=patient_id.strip(), StudyDate=dates,
                   ModalitiesInStudy=modality.strip().upper(), AccessionNumber=accession.strip())
    return _find(peer, query, STUDY_FIELDS, limit)


def _check_uid(value: str, what: str) -> str:
    if not isinstance(value, str) or len(value) > 64 or not _UID.fullmatch(value):
        raise DimseError(f"{what} {value!r} is not a DICOM UID.")
    return value


def find_series(peer: DimsePeer, study_uid: str, *, limit: int = FIND_LIMIT) -> Matches:
    """The series of one study (C-FIND, SERIES level), as dicts of :data:`core.pacs.SERIES_FIELDS`."""
    query = _query("SERIES", SERIES_FIELDS, StudyInstanceUID=_check_uid(study_uid, "The study UID"))
    return _find(peer, query, SERIES_FIELDS, limit)


class _Receiver:
    """Keeps the instances of one series as they arrive, within the budget and the caps.

    Each C-STORE's encoded bytes are kept as they came (no decoding, nothing on disk). Memory is
    reserved for the whole series from the number of instances announced and the first one's
    size, then as each arrives; the bytes read from the socket are counted, and the socket is
    shut down when a peer sends more than one image's or the series' cap.
    """

    def __init__(self, peer: DimsePeer, series_uid: str, *, owner: str, expected: int | None,
                 from_address: str | None = None) -> None:
        self.peer = peer
        self.series_uid = series_uid
        self.expected = expected
        self.from_address = from_address
        self.reserver = _Reserver(owner, "the images of this series as they arrive")
        self.files = RetrievedSeries()
        self.kept = 0
        self.received = 0
        self.since_store = 0
        self.first_size = 0
        self.stopped: str | None = None
        self.lock = threading.Lock()

    def stop(self, reason: str, assoc: Any = None) -> None:
        if self.stopped is None:
            self.stopped = reason
        _shut_down(assoc)

    def on_data(self, event: Any) -> None:
        """EVT_DATA_RECV: count what the peer sends before pynetdicom assembles it in memory."""
        n = len(event.data)
        self.received += n
        self.since_store += n
        limits = self.peer.limits
        if self.since_store > limits.instance_bytes + _FRAMING:
            self.stop(f"one image is larger than {limits.instance_bytes / MB:g} MB, the most this app retrieves "
                      f"per image", event.assoc)
        elif self.received > limits.series_bytes + _FRAMING:
            self.stop(f"the series is larger than {limits.series_bytes / MB:g} MB, the most this app reads for "
                      f"one series", event.assoc)

    def on_store(self, event: Any) -> int:
        """EVT_C_STORE: keep the instance, or refuse it with a failure status."""
        self.since_store = 0
        with self.lock:
            if self.stopped is not None:
                return 0xA700
            if self.from_address is not None and event.assoc.requestor.address != self.from_address:
                return 0x0124  # not authorised: only the peer we asked may send
            try:
                if str(event.dataset.get("SeriesInstanceUID", "")) != self.series_uid:
                    return 0xA900  # not an instance of the series asked for
                data = event.encoded_dataset(include_meta=True)
            except Exception:  # noqa: BLE001 - an instance that cannot be read is refused, not fatal
                return 0xC000
            if self.expected is not None and len(self.files) >= self.expected:
                self.stop(f"the peer sent more than the {self.expected} images it announced", event.assoc)
                return 0xA700
            try:
                self.reserver.ensure(self.kept + len(data))
                if not self.files:
                    self.first_size = len(data)
                    self.reserve_for_all()
            except OverBudget as exc:
                self.stop(str(exc), event.assoc)
                return 0xA700
            self.kept += len(data)
            self.files.append((f"dimse/{len(self.files) + 1:05d}.dcm", data))
        return 0x0000

    def reserve_for_all(self) -> None:
        """Reserve for every announced instance at the first one's size, before the rest arrive."""
        if self.expected and self.first_size:
            self.reserver.ensure(self.first_size * self.expected)

    def result(self) -> RetrievedSeries:
        """The files, holding their reservation until released or collected."""
        out = self.files
        out._reservations, self.reserver.reservations = self.reserver.reservations, []
        for res in out._reservations:
            server_budget().hold(out, res)
        return out

    def release(self) -> None:
        self.reserver.release()
        self.files.clear()


def _progress_of(status: Dataset, received: int) -> tuple[int, int, int]:
    done = int(status.get("NumberOfCompletedSuboperations", received) or 0)
    remaining = int(status.get("NumberOfRemainingSuboperations", 0) or 0)
    failed = int(status.get("NumberOfFailedSuboperations", 0) or 0)
    return done, remaining, failed


def _retrieve_query(study_uid: str, series_uid: str) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = "SERIES"
    ds.StudyInstanceUID = _check_uid(study_uid, "The study UID")
    ds.SeriesInstanceUID = _check_uid(series_uid, "The series UID")
    return ds


def _run_retrieve(peer: DimsePeer, responses: Iterator, receiver: _Receiver, assoc: Any, service: str,
                  progress: Callable[[int, int, int], Any] | None) -> None:
    """Follow the pending responses of a C-GET or C-MOVE until the final one; raise in words."""
    final = None
    for status, _ in responses:
        if not status:  # the association ended without a final response
            final = None
            break
        final = status.Status
        done, remaining, failed = _progress_of(status, len(receiver.files))
        if progress:
            progress(done, remaining, failed)
        if receiver.expected is None and final == 0xFF00:
            receiver.expected = done + remaining + failed
            with receiver.lock:
                try:
                    receiver.reserve_for_all()
                except OverBudget as exc:
                    receiver.stop(str(exc), assoc)
        if receiver.stopped is not None:
            assoc.abort()
            break
    if receiver.stopped is not None:
        raise DimseError(f"The retrieval from {peer.label} was stopped after {len(receiver.files)} images: "
                         f"{receiver.stopped}.")
    if final in (None, 0xFF00):  # no final response: the association ended under it
        raise DimseError(f"{peer.label} aborted the association during {service} after {len(receiver.files)} "
                         f"images (the peer stopped, or did not answer within {peer.timeout:g} s).")
    if final not in (0x0000, 0xB000):
        raise DimseError(f"{peer.label} ended {service} with status 0x{final:04X} after {len(receiver.files)} "
                         f"images: {_retrieve_status_words(final)}.")
    if not receiver.files:
        raise DimseError(f"{peer.label} sent no image of this series ({service}).")


def _retrieve_status_words(code: int) -> str:
    if code == 0xA801:
        return "the peer does not know the move destination (our AE title, with this server's address and port)"
    if code in (0xA701, 0xA702):
        return "the peer is out of resources"
    if code == 0xFE00:
        return "cancelled"
    if code >> 8 == 0xC0 or code == 0xA900:
        return "the peer could not process the request"
    return "a failure"


def get_series(peer: DimsePeer, study_uid: str, series_uid: str, *, expected: int | None = None,
               progress: Callable[[int, int, int], Any] | None = None, owner: str = "pacs") -> RetrievedSeries:
    """Every instance of a series by C-GET (no port opened on our side), as ``(name, bytes)`` pairs.

    Parameters
    ----------
    expected : int, optional
        Instances the series holds (from C-FIND's NumberOfSeriesRelatedInstances); the peer's
        first pending response gives it otherwise. Memory is reserved for that many instances
        of the first one's size before the rest arrive; a peer that sends more is stopped.
    progress : callable(completed, remaining, failed), optional
        Called with each pending response's sub-operation counts.
    owner : str
        Whose share of the server's memory budget the instances use.
    """
    from pynetdicom import build_role, evt

    receiver = _Receiver(peer, series_uid, owner=owner, expected=expected)
    contexts: list[tuple[str, tuple[str, ...]]] = [(GET_MODEL, (ExplicitVRLittleEndian, ImplicitVRLittleEndian))]
    contexts += [(uid, TRANSFER_SYNTAXES) for uid in STORAGE_CLASSES]
    roles = [build_role(uid, scp_role=True) for uid in STORAGE_CLASSES]
    handlers = [(evt.EVT_C_STORE, receiver.on_store), (evt.EVT_DATA_RECV, receiver.on_data)]
    query = _retrieve_query(study_uid, series_uid)
    try:
        with _association(peer, contexts, service="C-GET (retrieve)", seconds=peer.limits.retrieve_seconds,
                          roles=roles, handlers=handlers) as assoc:
            _run_retrieve(peer, assoc.send_c_get(query, GET_MODEL), receiver, assoc, "C-GET", progress)
        return receiver.result()
    except BaseException:
        receiver.release()
        raise


def move_series(peer: DimsePeer, study_uid: str, series_uid: str, *, port: int, bind: str = "0.0.0.0",
                expected: int | None = None, progress: Callable[[int, int, int], Any] | None = None,
                owner: str = "pacs") -> RetrievedSeries:
    """Every instance of a series by C-MOVE to our own short-lived storage SCP on ``port``.

    The SCP listens only while this call runs, answers only connections from the peer's checked
    address that call our AE title, and keeps only instances of this series.
    The peer must know our AE title with this server's address and ``port``.
    """
    from pynetdicom import evt

    address = _checked_address(peer)
    receiver = _Receiver(peer, series_uid, owner=owner, expected=expected, from_address=address)
    try:
        server = _storage_scp(peer.our_ae_title, bind, port, from_address=address, timeout=peer.timeout,
                              handlers=[(evt.EVT_C_STORE, receiver.on_store), (evt.EVT_DATA_RECV, receiver.on_data)])
    except OSError:
        raise DimseError(f"Port {port} for receiving C-MOVE is busy (another retrieval by C-MOVE may be running on "
                         f"this server): try again in a minute, or use C-GET.") from None
    query = _retrieve_query(study_uid, series_uid)
    try:
        with _association(peer, [(MOVE_MODEL, (ExplicitVRLittleEndian, ImplicitVRLittleEndian))],
                          service="C-MOVE (retrieve)", seconds=peer.limits.retrieve_seconds) as assoc:
            _run_retrieve(peer, assoc.send_c_move(query, peer.our_ae_title, MOVE_MODEL), receiver, assoc, "C-MOVE",
                          progress)
        return receiver.result()
    except BaseException:
        receiver.release()
        raise
    finally:
        server.shutdown()


def _store_words(code: int | None) -> str:
    if code is None:
        return "no answer (the association ended)"
    if code == 0:
        return "stored"
    if code >> 12 == 0xB:
        return f"stored with a warning (0x{code:04X})"
    if code >> 8 == 0xA7:
        return f"refused: the peer is out of resources (0x{code:04X})"
    if code == 0x0124:
        return "refused: not authorised"
    if code == 0x0122 or code >> 8 == 0xA9:
        return f"refused: the peer does not accept this kind of image (0x{code:04X})"
    return f"failed (0x{code:04X})"


def store_datasets(peer: DimsePeer, datasets: list[Dataset], *,
                   progress: Callable[[int, int], Any] | None = None) -> list[StoreResult]:
    """Send ``datasets`` with C-STORE; one :class:`StoreResult` per dataset, in order.

    Each dataset must carry its SOP Class UID and its file meta (transfer syntax). One
    refused instance does not stop the others; an ended association does.
    """
    classes = sorted({str(ds.SOPClassUID) for ds in datasets})
    syntaxes = sorted({str(ds.file_meta.TransferSyntaxUID) for ds in datasets} | {ExplicitVRLittleEndian})
    results: list[StoreResult] = []
    with _association(peer, [(uid, tuple(syntaxes)) for uid in classes], service="C-STORE (send)",
                      seconds=peer.limits.retrieve_seconds) as assoc:
        for n, ds in enumerate(datasets):
            try:
                status = assoc.send_c_store(ds) if assoc.is_established else None
            except ValueError:  # no accepted presentation context for this SOP class or transfer syntax
                results.append(StoreResult(str(ds.SOPInstanceUID), None, "refused: the peer does not accept this "
                                           "kind of image in this transfer syntax"))
            else:
                code = int(status.Status) if status else None
                results.append(StoreResult(str(ds.SOPInstanceUID), code, _store_words(code)))
            if progress:
                progress(n + 1, len(datasets))
    return results
