"""Query and retrieve from a PACS over DICOMweb (QIDO-RS, WADO-RS) with dicomweb-client, in memory."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pydicom
import requests
from pydicom.dataset import Dataset

__all__ = ["PacsConnection", "PacsError", "retrieve_series", "search_series", "search_studies"]

STUDY_FIELDS = ("PatientName", "PatientID", "PatientBirthDate", "StudyDate", "StudyDescription", "AccessionNumber",
                "ModalitiesInStudy", "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances", "StudyInstanceUID")
SERIES_FIELDS = ("Modality", "SeriesDescription", "SeriesNumber", "NumberOfSeriesRelatedInstances",
                 "SeriesInstanceUID", "BodyPartExamined")


class _Session(requests.Session):
    """A session that sends QIDO wildcards as ``*`` rather than ``%2A``.

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
class PacsConnection:
    """Where the DICOMweb service is and how to authenticate (kept in memory for one session).

    Attributes
    ----------
    url : str
        The DICOMweb root, e.g. ``https://pacs.example.org/dicom-web``.
    username, password : str, optional
        HTTP basic authentication.
    token : str, optional
        A bearer token (used instead of basic authentication when given).
    timeout : float
        Seconds to wait for each answer.
    """

    url: str
    username: str | None = None
    password: str | None = None
    token: str | None = None
    timeout: float = 15.0

    def __repr__(self) -> str:  # never show secrets in logs or tracebacks
        return f"PacsConnection(url={self.url!r}, auth={'token' if self.token else 'basic' if self.username else 'none'})"

    def client(self):
        from dicomweb_client.api import DICOMwebClient

        url = self.url.strip().rstrip("/")
        if not url.startswith(("http://", "https://")):
            raise PacsError(f"The address {url!r} must start with http:// or https:// (e.g. http://host:8042/dicom-web).")
        session = _Session()
        if self.token:
            session.headers["Authorization"] = f"Bearer {self.token}"
        elif self.username:
            session.auth = (self.username, self.password or "")
        client = DICOMwebClient(url, session=session, timeout=self.timeout)
        # Its default retries any failure five times with exponential back-off (about 30 s
        # before saying a server is down); someone is waiting at the page: ask once.
        client.set_http_retry_params(retry=False)
        return client


def _explain(exc: BaseException, conn: PacsConnection) -> PacsError:
    url = conn.url.strip().rstrip("/")
    if isinstance(exc, PacsError):
        return exc
    if isinstance(exc, requests.exceptions.Timeout):
        return PacsError(f"{url} did not answer within {conn.timeout:g} s: the server may be overloaded or "
                         f"unreachable from here. Try again, or check the address.")
    if isinstance(exc, requests.exceptions.ConnectionError):
        return PacsError(f"Could not connect to {url}: check that the server is running and that the address "
                         f"and port are right.")
    if isinstance(exc, requests.exceptions.HTTPError) and exc.response is not None:
        code = exc.response.status_code
        if code == 401:
            return PacsError(f"{url} refused the credentials (HTTP 401): check the user name and password or token.")
        if code == 403:
            return PacsError(f"{url} does not allow this account to search or retrieve (HTTP 403): ask the PACS "
                             f"administrator for access.")
        if code == 404:
            return PacsError(f"No DICOMweb service at {url} (HTTP 404): check the path, often /dicom-web or /wado.")
        if code in (400, 405):
            return PacsError(f"{url} rejected the request (HTTP {code}): the address may not be the DICOMweb root "
                             f"(often ending in /dicom-web).")
        return PacsError(f"{url} answered with an error (HTTP {code}): try again, or ask the PACS administrator.")
    if isinstance(exc, (ValueError, json.JSONDecodeError, KeyError, TypeError)):
        return PacsError(f"{url} answered with something that is not DICOMweb (it could not be read as DICOM JSON "
                         f"or multipart DICOM): check that the address is the DICOMweb root.")
    return PacsError(f"Talking to {url} failed ({type(exc).__name__}): check the address and try again.")


def _value(item: dict, keyword: str) -> Any:
    tag = f"{pydicom.datadict.tag_for_keyword(keyword):08X}"
    entry = item.get(tag)
    if not entry or "Value" not in entry or not entry["Value"]:
        return ""
    values = entry["Value"]
    if entry.get("vr") == "PN":
        values = [v.get("Alphabetic", "") if isinstance(v, dict) else str(v) for v in values]
    return values[0] if len(values) == 1 else "\\".join(str(v) for v in values)


def _rows(items: list[dict], fields: tuple[str, ...]) -> list[dict[str, Any]]:
    if not isinstance(items, list) or any(not isinstance(i, dict) for i in items):
        raise ValueError("not a DICOM JSON array")
    return [{f: _value(item, f) for f in fields} for item in items]


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
) -> list[dict[str, Any]]:
    """Studies matching the filters (QIDO-RS), as plain dicts of :data:`STUDY_FIELDS`.

    Dates are ``YYYYMMDD``; a name matches as a prefix (``*`` wildcards are added).
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
    try:
        items = conn.client().search_for_studies(search_filters=filters, fields=list(STUDY_FIELDS), limit=limit)
        return _rows(items, STUDY_FIELDS)
    except Exception as exc:  # noqa: BLE001 - every failure becomes one clear message
        raise _explain(exc, conn) from None


def search_series(conn: PacsConnection, study_uid: str) -> list[dict[str, Any]]:
    """The series of one study (QIDO-RS), as plain dicts of :data:`SERIES_FIELDS`."""
    try:
        items = conn.client().search_for_series(study_instance_uid=study_uid, fields=list(SERIES_FIELDS))
        return _rows(items, SERIES_FIELDS)
    except Exception as exc:  # noqa: BLE001
        raise _explain(exc, conn) from None


def retrieve_series(
    conn: PacsConnection,
    study_uid: str,
    series_uid: str,
    *,
    progress: Callable[[int, int], Any] | None = None,
) -> list[tuple[str, bytes]]:
    """Every instance of a series (WADO-RS), as ``(name, bytes)`` pairs ready for :func:`core.load_series`.

    Nothing is written to disk. ``progress(done, total)`` is called per instance.
    """
    try:
        client = conn.client()
        instances = client.search_for_instances(study_instance_uid=study_uid, series_instance_uid=series_uid,
                                                fields=["SOPInstanceUID"])
        total = len(instances)
        if progress:
            progress(0, total)
        out = []
        for n, ds in enumerate(client.iter_series(study_uid, series_uid)):
            if not isinstance(ds, Dataset):
                raise ValueError("not a DICOM instance")
            buf = io.BytesIO()
            pydicom.dcmwrite(buf, ds, enforce_file_format=True)
            out.append((f"pacs/{n + 1:05d}.dcm", buf.getvalue()))
            if progress:
                progress(n + 1, max(total, n + 1))
        return out
    except Exception as exc:  # noqa: BLE001
        raise _explain(exc, conn) from None
