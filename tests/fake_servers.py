"""Small HTTP servers on loopback for the outbound and PACS security tests; each records what it received.

A route is a function ``route(handler)`` that writes one answer. Bodies that are large or slow
are produced lazily, a chunk at a time, and every loop stops when the client goes away or the
server is stopped, so no test leaves a thread behind for long.
"""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

from pydicom.datadict import tag_for_keyword

Route = Callable[[BaseHTTPRequestHandler], None]
CHUNK = 64 * 1024


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class FakeServer:
    """An HTTP/1.0 server (HTTPS with ``tls``) on ``host`` (127.0.0.1 or ::1) and a free port, serving ``routes``.

    The longest route that is a prefix of the request's path (without its query) answers;
    anything else gets a 404. ``requests`` holds ``(path_with_query, headers)`` of every request,
    ``sent`` the bytes of bodies written so far.
    """

    def __init__(self, routes: dict[str, Route] | None = None, *, host: str = "127.0.0.1",
                 tls: ssl.SSLContext | None = None) -> None:
        self.routes = dict(routes or {})
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.sent = 0
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with fake._lock:
                    fake.requests.append((self.path, dict(self.headers.items())))
                path = self.path.split("?", 1)[0]
                matches = [p for p in fake.routes if path.startswith(p)]
                route = fake.routes[max(matches, key=len)] if matches else status(404)
                try:
                    route(self)
                except (BrokenPipeError, ConnectionResetError, OSError):
                    pass  # the client stopped reading: that is what several tests want

            def log_message(self, *args: Any) -> None:
                pass

        class Server(_Server):
            address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

        self._server = Server((host, 0), Handler)
        self._server.fake = self  # type: ignore[attr-defined]
        if tls is not None:
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        self.scheme = "https" if tls is not None else "http"
        self.host = host
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    def count(self, nbytes: int) -> None:
        with self._lock:
            self.sent += nbytes

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def _fake(handler: BaseHTTPRequestHandler) -> FakeServer:
    return handler.server.fake  # type: ignore[attr-defined]


def _head(handler: BaseHTTPRequestHandler, code: int, content_type: str, length: int | None = None,
          extra: dict[str, str] | None = None) -> None:
    handler.send_response(code)
    handler.send_header("Content-Type", content_type)
    if length is not None:
        handler.send_header("Content-Length", str(length))
    for name, value in (extra or {}).items():
        handler.send_header(name, value)
    handler.end_headers()


def body(data: bytes, *, code: int = 200, content_type: str = "application/octet-stream",
         headers: dict[str, str] | None = None) -> Route:
    def route(h: BaseHTTPRequestHandler) -> None:
        _head(h, code, content_type, len(data), headers)
        h.wfile.write(data)
        _fake(h).count(len(data))
    return route


def json_answer(obj: Any, *, code: int = 200, content_type: str = "application/dicom+json") -> Route:
    return body(json.dumps(obj).encode(), code=code, content_type=content_type)


def status(code: int) -> Route:
    return body(f"error {code}".encode(), code=code, content_type="text/plain")


def redirect(location: str, *, code: int = 302) -> Route:
    return body(b"", code=code, headers={"Location": location})


def huge(total: int, *, content_type: str = "application/dicom+json", content_length: bool = False,
         prefix: bytes = b"") -> Route:
    """``total`` bytes made a chunk at a time (``prefix``, then spaces), never all in memory."""
    def route(h: BaseHTTPRequestHandler) -> None:
        fake = _fake(h)
        _head(h, 200, content_type, total if content_length else None)
        h.wfile.write(prefix)
        chunk = b" " * CHUNK
        left = total - len(prefix)
        while left > 0 and not fake.stopping.is_set():
            piece = chunk if left >= CHUNK else chunk[:left]
            h.wfile.write(piece)
            fake.count(len(piece))
            left -= len(piece)
    return route


def trickle(*, interval: float = 0.5, count: int = 600, headers_too: bool = False) -> Route:
    """One byte every ``interval`` seconds (of the body, or of the status line too)."""
    def route(h: BaseHTTPRequestHandler) -> None:
        fake = _fake(h)
        if headers_too:
            data = b"HTTP/1.0 200 OK\r\nContent-Type: application/dicom+json\r\n\r\n" + b" " * count
        else:
            _head(h, 200, "application/dicom+json", count)
            h.wfile.flush()
            data = b" " * count
        for i in range(len(data)):
            if fake.stopping.wait(interval):
                return
            h.wfile.write(data[i:i + 1])
            h.wfile.flush()
            fake.count(1)
    return route


BOUNDARY = "hounsfield-test-boundary"


def multipart(parts: Iterable[bytes]) -> Route:
    """A WADO-RS answer: each part an application/dicom body."""
    def route(h: BaseHTTPRequestHandler) -> None:
        fake = _fake(h)
        _head(h, 200, f'multipart/related; type="application/dicom"; boundary={BOUNDARY}')
        for part in parts:
            data = f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n".encode() + part + b"\r\n"
            h.wfile.write(data)
            fake.count(len(data))
        h.wfile.write(f"--{BOUNDARY}--\r\n".encode())
    return route


def huge_part(total: int) -> Route:
    """A WADO-RS answer whose one part never ends before ``total`` bytes (made lazily)."""
    def route(h: BaseHTTPRequestHandler) -> None:
        fake = _fake(h)
        _head(h, 200, f'multipart/related; type="application/dicom"; boundary={BOUNDARY}')
        h.wfile.write(f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n".encode())
        chunk, left = b"\0" * CHUNK, total
        while left > 0 and not fake.stopping.is_set():
            h.wfile.write(chunk)
            fake.count(CHUNK)
            left -= CHUNK
    return route


def _element(keyword: str, vr: str, value: Any) -> tuple[str, dict]:
    return f"{tag_for_keyword(keyword):08X}", {"vr": vr, "Value": [value]}


def dicomweb_routes(files: list[tuple[str, bytes]], *, study_uid: str, series_uid: str,
                    patient_name: str = "FAKE^PATIENT", root: str = "/dicom-web") -> dict[str, Route]:
    """A DICOMweb service with one study of one series made of ``files``."""
    study = dict([_element("PatientName", "PN", {"Alphabetic": patient_name}), _element("PatientID", "LO", "ID-1"),
                  _element("StudyDate", "DA", "20240101"), _element("StudyInstanceUID", "UI", study_uid),
                  _element("ModalitiesInStudy", "CS", "CT"), _element("NumberOfStudyRelatedSeries", "IS", 1)])
    series = dict([_element("Modality", "CS", "CT"), _element("SeriesInstanceUID", "UI", series_uid),
                   _element("NumberOfSeriesRelatedInstances", "IS", len(files))])
    instances = [dict([_element("SOPInstanceUID", "UI", f"{series_uid}.{n + 1}")]) for n in range(len(files))]
    return {
        f"{root}/studies": json_answer([study]),
        f"{root}/studies/{study_uid}/series": json_answer([series]),
        f"{root}/studies/{study_uid}/series/{series_uid}/instances": json_answer(instances),
        f"{root}/studies/{study_uid}/series/{series_uid}": multipart([data for _, data in files]),
    }


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then closed again)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(condition: Callable[[], bool], *, timeout: float = 10.0) -> bool:
    """Poll ``condition`` until it holds or ``timeout`` passes; whether it held."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.02)
    return condition()
