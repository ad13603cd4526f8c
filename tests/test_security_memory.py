"""Memory under attack: zip bombs inflate by streaming with caps, and a real server stays in budget.

The unit tests build their bombs in memory with low limits, so they run in milliseconds. The
server tests start `streamlit run` with a small memory budget (HOUNSFIELD_MEMORY_MB) and read
the server's resident memory (VmRSS, VmHWM) from /proc while each bomb is sent.
"""

from __future__ import annotations

import bz2
import concurrent.futures
import gc
import io
import os
import random
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from core.memory import MB, MemoryBudget, budget_from_env
from core.sources import ZipLimits, ZipMemberError, expand_sources
from tests.bombs import Visitor, deflate_bomb, nested_zip_bomb, proc_mb, reset_peak, rle_bomb


def _zip(members: list[tuple[str, bytes]], *, method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=method) as zf:
        for name, data in members:
            zf.writestr(name, data)
    return buf.getvalue()


def _noise(n: int, seed: int = 0) -> bytes:
    """Bytes that do not compress (a seeded RNG), so no ratio limit gets in the way."""
    return random.Random(seed).randbytes(n)


def _lying_sizes(data: bytes, name: str, *, declared: int) -> bytes:
    """Rewrite the declared inflated size of member ``name`` (local and central headers)."""
    out = bytearray(data)
    raw = name.encode()
    for sig, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        pos = 0
        while (pos := out.find(sig, pos)) >= 0:
            n = struct.unpack_from("<H", out, pos + (26 if sig == b"PK\x03\x04" else 28))[0]
            start = pos + (30 if sig == b"PK\x03\x04" else 46)
            if bytes(out[start:start + n]) == raw:
                struct.pack_into("<I", out, pos + offset, declared)
            pos += 4
    return bytes(out)


class TestZipStreamingCaps:
    def test_members_read_back_for_every_method(self):
        payload = bytes(range(256)) * 400
        payload = bytes(b ^ (i * 7919 % 251) for i, b in enumerate(payload))  # compresses less than 250:1
        for method in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA):
            entries, skipped = expand_sources([("a.zip", _zip([("x.dcm", payload)], method=method))])
            assert skipped == []
            assert [e.name for e in entries] == ["a.zip/x.dcm"]
            assert entries[0].read() == payload

    def test_nested_zip_members_read_back(self):
        inner = _zip([("one.dcm", b"1" * 1000), ("two.dcm", b"2" * 1000)])
        entries, skipped = expand_sources([("outer.zip", _zip([("inner.zip", inner)]))])
        assert skipped == []
        assert {e.name: e.read() for e in entries} == {"outer.zip/inner.zip/one.dcm": b"1" * 1000,
                                                       "outer.zip/inner.zip/two.dcm": b"2" * 1000}

    def test_nested_zip_bomb_refused_by_the_total_before_inflating(self):
        # The 1 GB inner zip of the report, scaled down: an inner zip of 2 MB whose ratios are
        # all under the limit, with a total limit of 1 MB.
        inner = _zip([("noise.dcm", _noise(2 * MB))], method=zipfile.ZIP_STORED)
        bomb = _zip([("inner.zip", inner)])
        entries, skipped = expand_sources([("bomb.zip", bomb)], limits=ZipLimits(max_total_bytes=1 * MB))
        assert entries == []
        assert skipped == [("bomb.zip", skipped[0][1])]
        assert "would unpack to 2 MB, more than the 1 MB this upload may still unpack" in skipped[0][1]

    def test_total_counts_nested_members_too(self):
        # Each level fits alone; the inner zip's members push the call over its total.
        inner = _zip([("a.dcm", _noise(600_000))], method=zipfile.ZIP_STORED)
        outer = _zip([("inner.zip", inner)])
        entries, skipped = expand_sources([("o.zip", outer)], limits=ZipLimits(max_total_bytes=1_000_000))
        assert entries == []
        assert skipped[0][0] == "o.zip/inner.zip" and "would unpack to" in skipped[0][1]

    def test_depth_is_bounded(self):
        deep = _zip([("a.zip", _zip([("b.zip", _zip([("c.dcm", b"x")]))]))])
        entries, skipped = expand_sources([("deep.zip", deep)], limits=ZipLimits(max_depth=2))
        assert entries == []
        assert skipped == [("deep.zip/a.zip/b.zip", "refused: zip archives nested more than 2 deep")]
        _, skipped = expand_sources([("deep.zip", deep)], limits=ZipLimits(max_depth=1))
        assert skipped == [("deep.zip/a.zip", "refused: zip archives nested more than 1 deep")]

    @pytest.mark.parametrize("method", [zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA, zipfile.ZIP_STORED])
    def test_declared_size_not_trusted_inflating_stops_there(self, method):
        # Declares 1,000 bytes, holds 8 MB: inflating stops one byte past the declared size
        # (the standard library's bzip2/LZMA readers inflate a whole chunk first).
        data = _lying_sizes(_zip([("liar.dcm", bytes(8 * MB))], method=method), "liar.dcm", declared=1000)
        entries, skipped = expand_sources([("liar.zip", data)], limits=ZipLimits(max_ratio=1e12))
        assert skipped == []
        with pytest.raises(ZipMemberError, match="more than its declared size"):
            entries[0].read()

    def test_bzip2_bomb_inflates_in_bounded_steps(self, monkeypatch):
        # 64 MB of zeros is 50 bytes of bzip2: every step must ask for at most what is left.
        calls = []
        real = bz2.BZ2Decompressor

        class Spy:
            def __init__(self):
                self._d = real()

            def __getattr__(self, name):
                return getattr(self._d, name)

            def decompress(self, data, max_length=-1):
                calls.append(max_length)
                return self._d.decompress(data, max_length)

        monkeypatch.setattr(bz2, "BZ2Decompressor", Spy)
        data = _lying_sizes(_zip([("z.dcm", bytes(64 * MB))], method=zipfile.ZIP_BZIP2), "z.dcm", declared=4096)
        entries, _ = expand_sources([("z.zip", data)], limits=ZipLimits(max_ratio=1e12))
        with pytest.raises(ZipMemberError):
            entries[0].read()
        assert calls and all(0 < m <= 4097 for m in calls)

    def test_truncated_and_damaged_members(self):
        good = _zip([("a.dcm", bytes(range(256)) * 100)], method=zipfile.ZIP_STORED)
        longer = _lying_sizes(good, "a.dcm", declared=30_000)  # says more than it holds
        entries, _ = expand_sources([("t.zip", longer)], limits=ZipLimits(max_ratio=1e12))
        with pytest.raises(ZipMemberError, match="truncated"):
            entries[0].read()
        damaged = bytearray(good)
        damaged[damaged.find(bytes(range(10, 20)))] ^= 0xFF
        entries, _ = expand_sources([("d.zip", bytes(damaged))])
        with pytest.raises(ZipMemberError, match="CRC"):
            entries[0].read()

    def test_zip_on_disk_is_read_member_by_member(self, tmp_path):
        path = tmp_path / "study.zip"
        a, b = _noise(5000, 1), _noise(7000, 2)
        path.write_bytes(_zip([("a.dcm", a), ("b.dcm", b)]))
        entries, skipped = expand_sources([path])
        assert skipped == []
        assert [(e.name, e.size, e.read()) for e in entries] == [("study.zip/a.dcm", 5000, a),
                                                                 ("study.zip/b.dcm", 7000, b)]


class TestZipReservations:
    def test_total_limited_to_the_session_share(self):
        memory = MemoryBudget(total_bytes=10 * MB, session_bytes=1 * MB)
        data = _zip([("a.dcm", _noise(2 * MB))])
        entries, skipped = expand_sources([("a.zip", data)], memory=memory, owner="s1")
        assert entries == [] and "more than the 1 MB this upload may still unpack" in skipped[0][1]

    def test_nested_zip_reserved_until_its_entries_are_gone(self):
        memory = MemoryBudget(total_bytes=10 * MB, session_bytes=5 * MB)
        payload = _noise(1 * MB)
        inner = _zip([("a.dcm", payload)], method=zipfile.ZIP_STORED)
        entries, skipped = expand_sources([("o.zip", _zip([("inner.zip", inner)]))], memory=memory, owner="s1")
        assert skipped == []
        assert memory.used("s1") == len(inner)
        assert entries[0].read() == payload
        assert memory.used("s1") == len(inner)  # a member's read is reserved only while it inflates
        del entries
        gc.collect()
        assert memory.used() == 0

    def test_nested_zip_refused_when_the_server_is_busy(self):
        memory = MemoryBudget(total_bytes=3 * MB, session_bytes=3 * MB)
        memory.reserve(2 * MB + MB // 2, owner="someone else", what="their study")
        inner = _zip([("a.dcm", _noise(1 * MB))], method=zipfile.ZIP_STORED)
        entries, skipped = expand_sources([("o.zip", _zip([("inner.zip", inner)]))], memory=memory, owner="s1")
        assert entries == []
        assert skipped[0][0] == "o.zip/inner.zip" and skipped[0][1].startswith("the server is busy")
        assert memory.used("s1") == 0

    def test_budget_reaches_zips_through_load_series(self):
        from core import load_series

        memory = MemoryBudget(total_bytes=3 * MB, session_bytes=3 * MB)
        memory.reserve(2 * MB + MB // 2, owner="someone else", what="their study")
        inner = _zip([("a.dcm", _noise(1 * MB))], method=zipfile.ZIP_STORED)
        res = load_series([("o.zip", _zip([("inner.zip", inner)]))], memory=memory, owner="s1",
                          zip_limits=ZipLimits(memory=memory, owner="s1"))
        assert res.volumes == []
        assert res.skipped[0][0] == "o.zip/inner.zip" and res.skipped[0][1].startswith("the server is busy")

    def test_member_read_refused_in_words_when_over_budget(self):
        from core.memory import OverBudget

        memory = MemoryBudget(total_bytes=4 * MB, session_bytes=4 * MB)
        entries, _ = expand_sources([("a.zip", _zip([("a.dcm", _noise(2 * MB))]))], memory=memory, owner="s1")
        memory.reserve(3 * MB, owner="s2", what="x")
        with pytest.raises(OverBudget, match="the server is busy: unpacking a file from the zip"):
            entries[0].read()
        assert memory.used("s1") == 0


def test_lying_sizes_helper_rewrites_both_headers():
    data = _lying_sizes(_zip([("a.dcm", b"x" * 100)]), "a.dcm", declared=7)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert zf.getinfo("a.dcm").file_size == 7
    assert zlib.crc32(b"x" * 100) == zipfile.ZipFile(io.BytesIO(data)).getinfo("a.dcm").CRC


class TestBudgetFromEnv:
    def test_defaults_fit_a_community_cloud_host(self):
        b = budget_from_env({})
        assert (b.total_bytes, b.session_bytes) == (1700 * MB, 700 * MB)

    def test_total_and_session_from_the_environment(self):
        b = budget_from_env({"HOUNSFIELD_MEMORY_MB": "6000"})
        assert (b.total_bytes, b.session_bytes) == (6000 * MB, 2400 * MB)  # 40% of a bigger host
        b = budget_from_env({"HOUNSFIELD_MEMORY_MB": "500"})
        assert (b.total_bytes, b.session_bytes) == (500 * MB, 500 * MB)
        b = budget_from_env({"HOUNSFIELD_MEMORY_MB": "1000", "HOUNSFIELD_SESSION_MEMORY_MB": "250"})
        assert (b.total_bytes, b.session_bytes) == (1000 * MB, 250 * MB)

    @pytest.mark.parametrize("value", ["lots", "1.5", "-3", "0"])
    def test_bad_values_named(self, value):
        with pytest.raises(ValueError, match="HOUNSFIELD_MEMORY_MB must be"):
            budget_from_env({"HOUNSFIELD_MEMORY_MB": value})


# -- A real server under attack ----------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]
BUDGET_MB, SESSION_MB = 400, 200  # the server's budget in these tests (HOUNSFIELD_MEMORY_MB)
MARGIN_MB = 150  # what the budget does not count: Streamlit's buffers, a copy in flight, allocator slack


def wait_for(condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.25) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f} s: {what}")
        time.sleep(interval)


@dataclass
class Server:
    url: str
    pid: int
    log: Any

    def rss(self) -> float:
        return proc_mb(self.pid, "VmRSS")

    def peak(self) -> float:
        return proc_mb(self.pid, "VmHWM")


@pytest.fixture(scope="module")
def server():
    """`streamlit run` with a 400 MB budget (200 MB per session), as an operator would set it."""
    from tests.browser import free_port as _free_port

    if not Path("/proc/self/status").exists():
        pytest.skip("reads the server's memory from /proc")
    port = _free_port()
    log = tempfile.TemporaryFile()
    env = dict(os.environ, HOUNSFIELD_MEMORY_MB=str(BUDGET_MB), HOUNSFIELD_SESSION_MEMORY_MB=str(SESSION_MB))
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "streamlit_app.py"),
         "--server.address", "127.0.0.1", "--server.port", str(port), "--server.headless", "true",
         "--server.fileWatcherType", "none", "--browser.gatherUsageStats", "false"],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env,
    )
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        if proc.poll() is not None:
            log.seek(0)
            pytest.fail(f"streamlit exited early:\n{log.read().decode(errors='replace')}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    wait_for(healthy, 60, "streamlit answers its health check")
    yield Server(url, proc.pid, log)
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.seek(0)
    output = log.read().decode(errors="replace")
    assert "Traceback" not in output, output[-4000:]


def settled_rss(server: Server, seconds: float = 2.0) -> float:
    """The server's resident memory once it has stopped moving (lowest of a short window)."""
    samples = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        samples.append(server.rss())
        time.sleep(0.1)
    return min(samples)


class TestUploadEndpoint:
    def test_uploads_sent_straight_are_refused_past_the_session_share(self, server):
        first = Visitor(server.url)  # the page has run once in this process
        base = settled_rss(server)
        reset_peak(server.pid)
        attacker = Visitor(server.url)
        blob = _noise(60 * MB)
        statuses = [attacker.put(f"f{i}", blob) for i in range(6)]  # 360 MB against a 200 MB share
        # Each file is held twice while it arrives: a third needs 120 MB beside the 120 MB kept.
        assert statuses == [204, 204, 413, 413, 413, 413], statuses
        print(f"6 x 60 MB sent straight: peak {server.peak() - base:.0f} MB above {base:.0f} MB")
        assert 100 < server.peak() - base < SESSION_MB + MARGIN_MB  # the two accepted files, no more
        held = server.rss()
        attacker.close()
        first.close()
        # The sessions end (Streamlit keeps them 30 s for a reconnect): their uploads go too.
        t = time.monotonic()
        wait_for(lambda: server.rss() - base < 40, 60, f"memory back near {base:.0f} MB (was {held:.0f} MB)", 1.0)
        print(f"sessions closed with {held - base:.0f} MB of uploads: back to {server.rss():.0f} MB "
              f"in {time.monotonic() - t:.0f} s")

    def test_concurrent_uploads_refused_before_they_are_read(self, server):
        attackers = [Visitor(server.url) for _ in range(6)]  # each has run the page
        base = settled_rss(server)
        reset_peak(server.pid)
        blob = _noise(80 * MB)  # 160 MB each while arriving: at most two at once in a 400 MB budget
        with concurrent.futures.ThreadPoolExecutor(len(attackers)) as pool:
            statuses = list(pool.map(lambda v: v.put("big", blob), attackers))
        assert 413 in statuses and 204 in statuses, statuses
        print(f"6 x 80 MB at once: {statuses}, peak {server.peak() - base:.0f} MB above {base:.0f} MB")
        assert server.peak() - base < BUDGET_MB + MARGIN_MB
        for v in attackers:
            v.close()
        wait_for(lambda: server.rss() - base < 40, 60, f"memory back near {base:.0f} MB", 1.0)


# -- Bombs uploaded through the page (a browser) ------------------------------------------------

IDLE = '[data-testid="stApp"][data-test-script-state="notRunning"]'


def upload_through_the_page(browser, url: str, paths: list[Path]):
    """Open the app in a new session, upload ``paths`` in the first uploader; the page once the load is over."""
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = ctx.new_page()
    page.set_default_timeout(180_000)
    page.goto(url)
    page.wait_for_selector(IDLE)
    page.locator('[data-testid="stFileUploader"] input[type="file"]').first.set_input_files([str(p) for p in paths])
    done = '[data-testid="stAlert"], [data-testid="stCaptionContainer"]:has-text("uploaded file")'
    page.locator(done).first.wait_for()
    page.wait_for_selector(IDLE)
    return ctx, page


@pytest.mark.browser
class TestBombsThroughThePage:
    """Each bomb in its own session; the server's peak (VmHWM, reset before each) stays in budget."""

    def _peak_during(self, server, browser, paths, what: str) -> tuple[float, str]:
        """Upload ``paths`` in a new session: the server's peak above its settled memory, and the page's text."""
        Visitor(server.url).close()  # the page has run once in this process
        base = settled_rss(server)
        reset_peak(server.pid)
        ctx, page = upload_through_the_page(browser, server.url, paths)
        text = page.locator('[data-testid="stMain"]').inner_text()
        peak = server.peak() - base
        ctx.close()
        with urllib.request.urlopen(f"{server.url}/_stcore/health", timeout=10) as r:
            assert r.status == 200  # still serving
        print(f"{what} ({sum(p.stat().st_size for p in paths) / MB:.1f} MB): peak {peak:.0f} MB above {base:.0f} MB")
        return peak, text

    def test_nested_zip_bomb(self, server, browser, tmp_path):
        bomb = nested_zip_bomb(tmp_path / "bomb.zip", inner_mb=300)
        peak, text = self._peak_during(server, browser, [bomb], "nested zip bomb holding a 300 MB zip")
        assert bomb.stat().st_size < 5 * MB
        assert "The upload could not be loaded: refused: the zip would unpack to 300 MB" in text
        assert peak < 50  # refused from the declared sizes: nothing is inflated

    def test_deflate_bomb(self, server, browser, tmp_path):
        # Passes once core/headers.py inflates deflated files by streaming with a cap (the lead's change).
        bomb = deflate_bomb(tmp_path / "deflate.dcm", inflated_mb=600)
        peak, text = self._peak_during(server, browser, [bomb], "deflate bomb inflating to 600 MB")
        assert "could not be loaded" in text or "No image series could be assembled" in text
        assert peak < SESSION_MB + MARGIN_MB

    def test_huge_rle_frames(self, server, browser, tmp_path):
        paths = rle_bomb(tmp_path / "rle", slices=10)  # 320 MB of voxels against a 200 MB share
        peak, text = self._peak_during(server, browser, paths, "10 RLE frames of 4096 x 4096, 320 MB of voxels")
        assert "this session may hold at most" in text or "the server is busy" in text
        assert peak < SESSION_MB + MARGIN_MB

    def test_memory_returns_within_a_minute_of_studies_closing(self, server, browser, tmp_path):
        from tests.factory import write_ct_folder

        paths = write_ct_folder(tmp_path / "ct", slices=80)  # 40 MB of voxels per session
        Visitor(server.url).close()
        base = settled_rss(server)
        sessions = [upload_through_the_page(browser, server.url, paths) for _ in range(3)]
        for _, page in sessions:
            assert "1 series found" in page.locator('[data-testid="stMain"]').inner_text()
        held = server.rss()
        for ctx, _ in sessions:
            ctx.close()
        t = time.monotonic()
        wait_for(lambda: server.rss() - base < 40, 60, f"memory back near {base:.0f} MB (was {held:.0f} MB)", 1.0)
        print(f"3 sessions closed holding {held - base:.0f} MB: back to {server.rss():.0f} MB "
              f"in {time.monotonic() - t:.0f} s")


class TestUploadStoreMetering:
    """The upload store's patch, on a bare MemoryUploadedFileManager (no server)."""

    def _store(self, monkeypatch, budget: MemoryBudget):
        from streamlit.runtime.memory_uploaded_file_manager import MemoryUploadedFileManager
        from streamlit.runtime.uploaded_file_manager import UploadedFileRec

        import core.memory
        from dashboard import streamlit_internals

        monkeypatch.setattr(core.memory, "_SERVER", budget)
        mgr = MemoryUploadedFileManager("/_stcore/upload_file")
        mgr.add_file("early", UploadedFileRec("e1", "early.dcm", "application/dicom", bytes(5 * MB)))
        mgr.add_file("early", UploadedFileRec("e2", "late.dcm", "application/dicom", bytes(5 * MB)))
        streamlit_internals._meter_store(mgr)
        return mgr, UploadedFileRec

    def test_files_reserved_released_and_refused(self, monkeypatch):
        from starlette.exceptions import HTTPException

        budget = MemoryBudget(total_bytes=20 * MB, session_bytes=8 * MB)
        mgr, Rec = self._store(monkeypatch, budget)
        # Stored before the patch: the first fits the session's share, the second is dropped.
        assert budget.used("early") == 5 * MB
        assert list(mgr.file_storage["early"]) == ["e1"]
        mgr.add_file("s1", Rec("a", "a.dcm", "application/dicom", bytes(5 * MB)))
        with pytest.raises(HTTPException) as refused:
            mgr.add_file("s1", Rec("b", "b.dcm", "application/dicom", bytes(5 * MB)))
        assert refused.value.status_code == 413 and "this session may hold at most 8 MB" in refused.value.detail
        assert list(mgr.file_storage["s1"]) == ["a"] and budget.used("s1") == 5 * MB
        mgr.remove_file("s1", "a")
        assert budget.used("s1") == 0
        mgr.remove_session_files("early")
        assert budget.used() == 0
