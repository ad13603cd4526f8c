"""The fenced patches of Streamlit's internals: they apply on the tested versions, say so when they cannot."""

from __future__ import annotations

import logging

import pytest

from dashboard import streamlit_internals as internals


@pytest.fixture
def fresh_warnings(monkeypatch):
    """Forget which warnings this process has given, for one test."""
    monkeypatch.setattr(internals, "_warned", set())


def _warnings_when_called_twice(call, caplog) -> list[str]:
    with caplog.at_level(logging.WARNING, logger=internals.__name__):
        call()
        call()
    return [r.getMessage() for r in caplog.records]


class TestVersions:
    def test_installed_versions_are_the_tested_ones(self):
        assert internals.untested_versions() == []

    def test_requirements_pin_streamlit_to_the_tested_minors(self):
        from pathlib import Path

        line = next(ln for ln in (Path(__file__).resolve().parents[1] / "requirements.txt").read_text().splitlines()
                    if ln.startswith("streamlit>="))
        assert line.split("#")[0].strip() == "streamlit>=1.67,<1.68"
        assert internals.TESTED["streamlit"] == ("1.67",)

    def test_an_untested_version_is_said_once(self, monkeypatch, fresh_warnings, caplog):
        import importlib.metadata

        real = importlib.metadata.version
        monkeypatch.setattr(importlib.metadata, "version",
                            lambda name: "1.99.0" if name == "streamlit" else real(name))
        messages = _warnings_when_called_twice(internals.check_versions, caplog)
        assert len(messages) == 1
        assert "streamlit 1.99.0 (tested: 1.67)" in messages[0]


class TestPatchesApply:
    def test_every_patch_applies_without_a_warning(self, caplog):
        from starlette.formparsers import MultiPartParser
        from streamlit.runtime.app_session import AppSession
        from streamlit.runtime.uploaded_file_manager import UploadedFile

        with caplog.at_level(logging.WARNING, logger=internals.__name__):
            internals.keep_uploads_in_memory()
            internals.share_upload_bytes()
            internals.forget_ended_sessions_state()
        assert caplog.records == []
        assert MultiPartParser.spool_max_size == internals.SPOOL_MAX
        assert UploadedFile._shares_bytes_when_copied is True
        assert AppSession._hounsfield_forgets_state is True

    def test_a_patch_that_cannot_apply_says_so_once(self, monkeypatch, fresh_warnings, caplog):
        from starlette.formparsers import MultiPartParser

        monkeypatch.delattr(MultiPartParser, "spool_max_size")
        messages = _warnings_when_called_twice(internals.keep_uploads_in_memory, caplog)
        assert len(messages) == 1
        assert "'keep_uploads_in_memory' cannot apply (MultiPartParser has no spool_max_size)" in messages[0]
        assert "written to the temporary folder" in messages[0]

    def test_a_failing_read_says_so_and_does_not_raise(self, monkeypatch, fresh_warnings, caplog):
        def moved():
            raise AttributeError("'SessionState' object has no attribute '_old_state'")

        monkeypatch.setattr(internals, "_uploaded_files_in_state", moved)
        with caplog.at_level(logging.WARNING, logger=internals.__name__):
            assert internals.upload_instances() == {}
        assert "'upload_instances' cannot apply (AttributeError" in caplog.records[0].getMessage()


# -- The spooling patch, in a real server ---------------------------------------------------------

# Runs `streamlit run` with keep_uploads_in_memory made a no-op: the control that shows the test
# below sees a spooled upload when there is one. Test code only: the app has no such switch.
UNPATCHED = ("import sys; from dashboard import streamlit_internals as s; "
             "s.keep_uploads_in_memory = lambda *a, **k: None; "
             "from streamlit.web.cli import main; sys.exit(main())")


def _wait_for(condition, timeout: float, what: str) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f} s: {what}")
        time.sleep(0.05)


@pytest.fixture(params=[True, False], ids=["patched", "unpatched-control"])
def tmpdir_server(request, tmp_path):
    """`streamlit run` with TMPDIR a fresh folder: (url, pid, folder, patched)."""
    from pathlib import Path

    from tests.browser import streamlit_server

    if not Path("/proc/self/fd").exists():
        pytest.skip("reads the server's open files from /proc")
    folder = tmp_path / "tmp"
    folder.mkdir()
    launch = None if request.param else ["-c", UNPATCHED]
    with streamlit_server(env={"TMPDIR": str(folder)}, python_args=launch) as (url, proc):
        yield url, proc.pid, folder, request.param


def _open_into(pid: int, folder) -> list[str]:
    """The server's open file descriptors that point into ``folder`` (a deleted temp file shows as '#N (deleted)')."""
    import os

    out = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:  # closed meanwhile
            continue
        if target.startswith(str(folder)):
            out.append(target)
    return out


def _unread_bytes(client_port: int, server_port: int) -> int:
    """Bytes our connection has sent that the server process has not read yet (loopback, /proc/net/tcp)."""
    total, seen = 0, 0
    for line in open("/proc/net/tcp").read().splitlines()[1:]:
        fields = line.split()
        local, remote = (int(a.split(":")[1], 16) for a in fields[1:3])
        tx, rx = (int(n, 16) for n in fields[4].split(":"))
        if (local, remote) == (client_port, server_port):
            total, seen = total + tx, seen + 1  # sent, not yet taken by the server's kernel side
        elif (local, remote) == (server_port, client_port):
            total, seen = total + rx, seen + 1  # received by the kernel, not yet read by the server
    assert seen == 2, "the upload's connection was not found in /proc/net/tcp"
    return total


def test_an_upload_over_1_mb_never_touches_the_temp_folder(tmpdir_server):
    """A 3 MB upload, held open before its last bytes: no file in TMPDIR, no descriptor into it.

    Starlette spools multipart files in a SpooledTemporaryFile of 1 MB: past that it rolls over to
    an unnamed temporary file in TMPDIR (O_TMPFILE: nothing shows in the folder, but the server
    holds a descriptor '<TMPDIR>/#N (deleted)'). The control run, without the patch, sees it.
    """
    import http.client
    import random
    import urllib.parse

    from tests.bombs import Visitor

    url, pid, folder, patched = tmpdir_server
    visitor = Visitor(url)  # one page run: the frame installs the patches
    try:
        boundary = "hounsfield-spool-test"
        head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.dcm\"\r\n"
                "Content-Type: application/octet-stream\r\n\r\n").encode()
        data = random.Random(3).randbytes(3 * 1024**2)
        tail = f"\r\n--{boundary}--\r\n".encode()
        host = urllib.parse.urlsplit(url)
        conn = http.client.HTTPConnection(host.hostname, host.port, timeout=60)
        conn.putrequest("PUT", f"/_stcore/upload_file/{visitor.session_id}/big")
        conn.putheader("Content-Type", f"multipart/form-data; boundary={boundary}")
        conn.putheader("Content-Length", str(len(head) + len(data) + len(tail)))
        conn.putheader("X-Xsrftoken", visitor.xsrf)
        conn.putheader("Cookie", "; ".join(f"{k}={v}" for k, v in visitor.http.cookies.items()))
        conn.endheaders()
        conn.send(head + data)  # all but the closing boundary: the request stays open
        client_port = conn.sock.getsockname()[1]
        _wait_for(lambda: _unread_bytes(client_port, host.port) == 0, 60, "the server has read the 3 MB sent")
        if patched:
            midway = _open_into(pid, folder), sorted(p.name for p in folder.iterdir())
        else:
            _wait_for(lambda: _open_into(pid, folder), 30, "the unpatched server spools the upload into TMPDIR")
            midway = _open_into(pid, folder), []
        conn.send(tail)
        response = conn.getresponse()
        assert response.status == 204, (response.status, response.read())
        conn.close()
    finally:
        visitor.close()
    if patched:
        assert midway == ([], []), f"the upload reached the temp folder: {midway}"
        assert list(folder.iterdir()) == []
    else:
        assert midway[0] and all("(deleted)" in target for target in midway[0]), midway
