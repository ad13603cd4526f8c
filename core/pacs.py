"""Query and retrieve from a PACS over DICOMweb (QIDO-RS, WADO-RS) with dicomweb-client, in memory."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pydicom
import requests

from core.memory import MB, OverBudget, Reservation, server_budget
from core.outbound import AddressPolicy, AddressRefused, AnswerTooLarge, DeadlineExceeded, GuardedSession

__all__ = ["PacsConnection", "PacsError", "PacsLimits", "RetrievedSeries", "retrieve_series", "search_series",
           "search_studies"]

STUDY_FIELDS = ("PatientName", "PatientID", "PatientBirthDate", "StudyDate", "StudyDescription", "AccessionNumber",
                "ModalitiesInStudy", "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances", "StudyInstanceUID")
SERIES_FIELDS = ("Modality", "SeriesDescription", "SeriesNumber", "NumberOfSeriesRelatedInstances",
                 "SeriesInstanceUID", "BodyPartExamined")
# No transfer-syntax parameter: the server sends Explicit VR Little Endian (PS3.18 8.7.3.5.2),
# transcoding compressed images that this app's decoders might not read.
WADO_ACCEPT = 'multipart/related; type="application/dicom"'
_UID = re.compile(r"[0-9]+(?:\.[0-9]+)*")
_TAG = re.compile(r"[0-9A-Fa-f]{8}")
# Parsed JSON can take far more memory than its text: 4 MB of "{}," became 100 MB of dicts
# (tracemalloc, CPython 3.11); requests also decodes the text once more before parsing.
JSON_EXPANSION = 32
MAX_SERIES_ROWS = 1000


class _DicomwebSession(GuardedSession):
    """A guarded session that sends QIDO wildcards as ``*`` rather than ``%2A``.

    Both are valid in a query string, but some servers (Orthanc's DICOMweb plugin 1.7 among
    them) do not percent-decode query values and then match nothing.
    """

    def prepare_request(self, request):
        prepared = super().prepare_request(request)
        if prepared.url and "?" in prepared.url:
            base, _, query = prepared.url.partition("?")
            prepared.url = f"{base}?{query.replace('%2A', '*').replace('%2a', '*')}"
        return prepared


class PacsError(RuntimeError):
    """A failure talking to the server, with a message that says what to check."""


@dataclass(frozen=True)
class PacsLimits:
    """How long and how much the server spends on one visitor's PACS request.

    Attributes
    ----------
    search_seconds : float
        Total time for one search answer (connecting, redirects, reading it all).
    retrieve_seconds : float
        Total time for retrieving one series.
    read_timeout : float
        Seconds to wait for the next bytes of an answer.
    answer_bytes : int
        The largest search answer read (QIDO-RS JSON).
    instance_bytes : int
        The largest single image (one part of a WADO-RS answer).
    series_bytes : int
        The largest series (a whole WADO-RS answer); the memory budget may refuse earlier.
    """

    search_seconds: float = 20.0
    retrieve_seconds: float = 300.0
    read_timeout: float = 15.0
    answer_bytes: int = 4 * MB
    instance_bytes: int = 200 * MB
    series_bytes: int = 1000 * MB


@dataclass(frozen=True)
class PacsConnection:
    """Where the DICOMweb service is, how to authenticate, and what the server may do for it.

    Attributes
    ----------
    url : str
        The DICOMweb root, e.g. ``https://pacs.example.org/dicom-web``.
    username, password : str, optional
        HTTP basic authentication.
    token : str, optional
        A bearer token (used instead of basic authentication when given).
    policy : AddressPolicy
        Which non-public addresses may be reached (public only by default).
    limits : PacsLimits
        Deadlines and byte caps.
    verify : bool or str
        Check the server's TLS certificate against the usual authorities (True) or against the
        CA bundle at this path (a hospital's own authority).
    configured : bool
        True for the PACS the operator configured: failures then say exactly what went wrong
        (HTTP 401, 404, connection refused...). For an address a visitor typed they all read
        the same, so that the page cannot be used to probe which ports and paths answer.
    """

    url: str
    username: str | None = None
    password: str | None = None
    token: str | None = None
    policy: AddressPolicy = field(default_factory=AddressPolicy)
    limits: PacsLimits = field(default_factory=PacsLimits)
    verify: bool | str = True
    configured: bool = False

    def __repr__(self) -> str:  # never show secrets in logs or tracebacks
        auth = "token" if self.token else "basic" if self.username else "none"
        return f"PacsConnection(url={self.url!r}, auth={auth})"

    @property
    def root(self) -> str:
        url = self.url.strip().rstrip("/")
        if not url.lower().startswith(("http://", "https://")):
            raise PacsError(f"The address {url!r} must start with http:// or https:// (e.g. http://host:8042/dicom-web).")
        return url

    def session(self, *, deadline: float, max_bytes: int, what: str,
                on_answer: Callable[[int], None] | None = None) -> GuardedSession:
        """A guarded session carrying this connection's credentials, for one kind of answer."""
        session = _DicomwebSession(self.policy, deadline=deadline, read_timeout=self.limits.read_timeout,
                                   max_bytes=max_bytes, what=what, on_answer=on_answer)
        session.verify = self.verify
        if self.token:
            session.headers["Authorization"] = f"Bearer {self.token}"
        elif self.username:
            session.auth = (self.username, self.password or "")
        return session

    def client(self, reserver: _Reserver | None = None):
        """A dicomweb-client for searches, on a session bounded by ``limits.search_seconds`` and ``answer_bytes``.

        With ``reserver``, memory for parsing each answer is reserved before it is parsed.
        """
        from dicomweb_client.api import DICOMwebClient

        on_answer = None if reserver is None else (lambda nbytes: reserver.add(JSON_EXPANSION * nbytes))
        session = self.session(deadline=self.limits.search_seconds, max_bytes=self.limits.answer_bytes,
                               what="a search answer", on_answer=on_answer)
        client = DICOMwebClient(self.root, session=session, timeout=self.limits.read_timeout)
        # Its default retries any failure five times with exponential back-off (about 30 s
        # before saying a server is down); someone is waiting at the page: ask once.
        client.set_http_retry_params(retry=False)
        return client


class NotDicomweb(ValueError):
    """An answer that is not DICOM JSON or multipart DICOM."""


def _explain(exc: BaseException, conn: PacsConnection) -> PacsError:
    url = conn.url.strip().rstrip("/")
    if isinstance(exc, PacsError):
        return exc
    if isinstance(exc, (AddressRefused, AnswerTooLarge, OverBudget)):
        return PacsError(str(exc))
    if not conn.configured:
        # One message for a closed port, a timeout, 401, 404, 500 and a non-DICOMweb answer.
        return PacsError(f"Could not reach or use a DICOMweb service at {url}: check the address (the DICOMweb "
                         f"root, often ending in /dicom-web) and, if the server needs them, the credentials.")
    if isinstance(exc, (requests.exceptions.Timeout, DeadlineExceeded)):
        seconds = exc.seconds if isinstance(exc, DeadlineExceeded) else conn.limits.read_timeout
        return PacsError(f"{url} did not answer within {seconds:g} s: the server may be overloaded or "
                         f"unreachable from here. Try again, or check the address.")
    if isinstance(exc, (requests.exceptions.ConnectionError, ConnectionError)):
        return PacsError(f"Could not connect to {url}: check that the server is running and that the address "
                         f"and port are right.")
    if isinstance(exc, requests.exceptions.HTTPError) and exc.response is not None:
        return PacsError(_http_message(url, exc.response.status_code))
    if isinstance(exc, (ValueError, json.JSONDecodeError, KeyError, TypeError)):
        return PacsError(f"{url} answered with something that is not DICOMweb (it could not be read as DICOM JSON "
                         f"or multipart DICOM): check that the address is the DICOMweb root.")
    return PacsError(f"Talking to {url} failed: check the address and try again.")


def _http_message(url: str, code: int) -> str:
    if code == 401:
        return f"{url} refused the credentials (HTTP 401): check the user name and password or token."
    if code == 403:
        return (f"{url} does not allow this account to search or retrieve (HTTP 403): ask the PACS "
                f"administrator for access.")
    if code == 404:
        return f"No DICOMweb service at {url} (HTTP 404): check the path, often /dicom-web or /wado."
    if code in (400, 405):
        return (f"{url} rejected the request (HTTP {code}): the address may not be the DICOMweb root "
                f"(often ending in /dicom-web).")
    return f"{url} answered with an error (HTTP {code}): try again, or ask the PACS administrator."


def _dicom_json(items: Any) -> list[dict]:
    """``items`` if it is a DICOM JSON array (tags as 8 hex digits, each with a VR), else :class:`NotDicomweb`.

    An address that is not a DICOMweb service (an internal API, a web page) must not have its
    JSON shown on the page.
    """
    if not isinstance(items, list):
        raise NotDicomweb("not a DICOM JSON array")
    for item in items:
        if not isinstance(item, dict) or not all(
                isinstance(k, str) and _TAG.fullmatch(k) and isinstance(v, dict) and isinstance(v.get("vr"), str)
                for k, v in item.items()):
            raise NotDicomweb("not a DICOM JSON data set")
    return items


def _text(value: Any) -> Any:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    if isinstance(value, dict):  # a PN value
        value = value.get("Alphabetic", "")
    return str(value)[:256]


def _value(item: dict, keyword: str) -> Any:
    tag = f"{pydicom.datadict.tag_for_keyword(keyword):08X}"
    entry = item.get(tag)
    if not entry or not isinstance(entry.get("Value"), list) or not entry["Value"]:
        return ""
    values = [_text(v) for v in entry["Value"][:16]]
    return values[0] if len(values) == 1 else "\\".join(str(v) for v in values)


def _rows(items: Any, fields: tuple[str, ...], most: int) -> list[dict[str, Any]]:
    return [{f: _value(item, f) for f in fields} for item in _dicom_json(items)[:most]]


def _uid(value: Any, what: str) -> str:
    if not isinstance(value, str) or len(value) > 64 or not _UID.fullmatch(value):
        raise NotDicomweb(f"{what} {value!r} is not a DICOM UID")
    return value


def search_studies(
    conn: PacsConnection,
    *,
    patient_name: str = "",
    patient_id: str = "",
    date_from: str = "",
    date_to: str = "",
    modality: str = "",
    accession: str = "",
    limit: int = 100,
    owner: str = "pacs",
) -> list[dict[str, Any]]:
    """Studies matching the filters (QIDO-RS), as plain dicts of :data:`STUDY_FIELDS`.

    Dates are ``YYYYMMDD``; a name matches as a prefix (``*`` wildcards are added). The answer
    is read within ``conn.limits`` (time and bytes), parsed within ``owner``'s share of the
    server's memory budget, and must be DICOM JSON; at most ``limit`` rows are returned.
    """
    filters: dict[str, Any] = {}
    if patient_name.strip():
        name = patient_name.strip()
        filters["PatientName"] = name if "*" in name else f"{name}*"
    if patient_id.strip():
        filters["PatientID"] = patient_id.strip()
    if date_from or date_to:
        filters["StudyDate"] = f"{date_from}-{date_to}"
    if modality.strip():
        filters["ModalitiesInStudy"] = modality.strip().upper()
    if accession.strip():
        filters["AccessionNumber"] = accession.strip()
    reserver = _Reserver(owner, "reading a search answer")
    try:
        items = conn.client(reserver).search_for_studies(search_filters=filters, fields=list(STUDY_FIELDS),
                                                         limit=limit)
        return _rows(items, STUDY_FIELDS, limit)
    except Exception as exc:  # noqa: BLE001 - every failure becomes one clear message
        raise _explain(exc, conn) from None
    finally:
        reserver.release()


def search_series(conn: PacsConnection, study_uid: str, *, owner: str = "pacs") -> list[dict[str, Any]]:
    """The series of one study (QIDO-RS), as plain dicts of :data:`SERIES_FIELDS` (at most :data:`MAX_SERIES_ROWS`)."""
    reserver = _Reserver(owner, "reading a search answer")
    try:
        items = conn.client(reserver).search_for_series(study_instance_uid=_uid(study_uid, "the study UID"),
                                                        fields=list(SERIES_FIELDS))
        return _rows(items, SERIES_FIELDS, MAX_SERIES_ROWS)
    except Exception as exc:  # noqa: BLE001
        raise _explain(exc, conn) from None
    finally:
        reserver.release()


class RetrievedSeries(list):
    """``(name, bytes)`` pairs of one retrieved series; their memory stays reserved until released.

    The reservation ends with :meth:`release` (once the images are read into a volume) or when
    the list is garbage collected.
    """

    def __init__(self) -> None:
        super().__init__()
        self._reservations: list[Reservation] = []

    def release(self) -> None:
        """Give the reserved bytes back to the server's budget (idempotent)."""
        for res in self._reservations:
            res.release()
        self._reservations = []


class _Reserver:
    """Reserves a growing number of bytes in the server's budget for ``owner``, a step at a time."""

    STEP = 8 * MB

    def __init__(self, owner: str, what: str) -> None:
        self.owner = owner
        self.what = what
        self.needed = 0
        self.reserved = 0
        self.reservations: list[Reservation] = []

    def ensure(self, nbytes: int) -> None:
        """Hold at least ``nbytes`` in all."""
        self.needed = max(self.needed, nbytes)
        if nbytes <= self.reserved:
            return
        step = -(-(nbytes - self.reserved) // self.STEP) * self.STEP
        self.reservations.append(server_budget().reserve(step, owner=self.owner, what=self.what))
        self.reserved += step

    def add(self, nbytes: int) -> None:
        """Hold ``nbytes`` more."""
        self.ensure(self.needed + nbytes)

    def release(self) -> None:
        for res in self.reservations:
            res.release()
        self.reservations, self.reserved, self.needed = [], 0, 0


def _boundary(content_type: str) -> bytes:
    media_type, *params = [p.strip() for p in content_type.split(";")]
    if media_type.lower() != "multipart/related":
        raise NotDicomweb(f"the answer is {media_type or 'untyped'}, not multipart/related")
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "boundary" and value.strip().strip('"'):
            return value.strip().strip('"').encode("latin-1")
    raise NotDicomweb("a multipart answer without a boundary")


def _parts(response: requests.Response, *, max_part: int, reserver: _Reserver) -> Iterator[bytes]:
    """The bodies of a multipart/related answer, one image at a time, as the bytes arrive.

    At most one part and one chunk are buffered; a part larger than ``max_part`` stops the
    read. ``reserver`` is asked for what is kept (the parts yielded) plus what is buffered.
    A server that sends one bare ``application/dicom`` body instead (some do) gives one part.
    """
    content_type = response.headers.get("Content-Type", "")
    if content_type.lower().startswith("application/dicom"):
        yield _single_part(response, max_part=max_part, reserver=reserver)
        return
    delimiter = b"\r\n--" + _boundary(content_type)
    buf = bytearray(b"\r\n")  # the first delimiter opens the answer without a line break before it
    kept, search_from, preamble = 0, 0, True
    for chunk in response.iter_content(2**16):
        buf += chunk
        reserver.ensure(kept + len(buf))
        while (end := buf.find(delimiter, search_from)) >= 0:
            if not preamble:
                head = buf.find(b"\r\n\r\n", 0, end)
                if head < 0:
                    raise NotDicomweb("a multipart part without headers")
                if end - head - 4 > max_part:
                    raise _too_large(max_part)
                reserver.ensure(kept + len(buf) + end - head)
                with memoryview(buf) as view:
                    body = bytes(view[head + 4:end])
                kept += len(body)
                yield body
            preamble = False
            del buf[:end + len(delimiter)]
            search_from = 0
            if buf.startswith(b"--"):
                return
        if len(buf) > max_part + 2**16:
            raise _too_large(max_part)
        search_from = max(0, len(buf) - len(delimiter) + 1)
    if preamble or not buf.startswith(b"--"):
        raise NotDicomweb("the multipart answer ended in the middle of a part")


def _single_part(response: requests.Response, *, max_part: int, reserver: _Reserver) -> bytes:
    buf = bytearray()
    for chunk in response.iter_content(2**16):
        buf += chunk
        if len(buf) > max_part:
            raise _too_large(max_part)
        reserver.ensure(2 * len(buf))  # the buffer, then its copy
    return bytes(buf)


def _too_large(max_part: int) -> AnswerTooLarge:
    return AnswerTooLarge(f"One image of this series is larger than {max_part / MB:g} MB, the most this app "
                          f"retrieves per image.")


def retrieve_series(
    conn: PacsConnection,
    study_uid: str,
    series_uid: str,
    *,
    progress: Callable[[int, int], Any] | None = None,
    owner: str = "pacs",
) -> RetrievedSeries:
    """Every instance of a series (WADO-RS), as ``(name, bytes)`` pairs ready for :func:`core.load_series`.

    Nothing is written to disk. The answer is streamed: each image is kept as its own bytes
    as soon as it has arrived, within ``conn.limits`` (total time, bytes per image and per
    series) and within ``owner``'s share of the server's memory budget, which stays reserved
    until :meth:`RetrievedSeries.release`. ``progress(done, total)`` is called per instance.
    """
    reserver = _Reserver(owner, "the images of this series as they arrive")
    listing = _Reserver(owner, "reading a search answer")
    try:
        study_uid, series_uid = _uid(study_uid, "the study UID"), _uid(series_uid, "the series UID")
        total = len(_dicom_json(conn.client(listing).search_for_instances(
            study_instance_uid=study_uid, series_instance_uid=series_uid, fields=["SOPInstanceUID"])))
        listing.release()
        if progress:
            progress(0, total)
        session = conn.session(deadline=conn.limits.retrieve_seconds, max_bytes=conn.limits.series_bytes,
                               what="one series")
        out = RetrievedSeries()
        url = f"{conn.root}/studies/{study_uid}/series/{series_uid}"
        with session, session.get(url, headers={"Accept": WADO_ACCEPT}, stream=True) as response:
            response.raise_for_status()
            for n, body in enumerate(_parts(response, max_part=conn.limits.instance_bytes, reserver=reserver)):
                out.append((f"pacs/{n + 1:05d}.dcm", body))
                if progress:
                    progress(n + 1, max(total, n + 1))
        out._reservations, reserver.reservations = reserver.reservations, []
        for res in out._reservations:
            server_budget().hold(out, res)
        return out
    except Exception as exc:  # noqa: BLE001
        reserver.release()
        listing.release()
        raise _explain(exc, conn) from None
