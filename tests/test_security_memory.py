"""Memory under attack: zip bombs inflate by streaming with caps, and a real server stays in budget.

The unit tests build their bombs in memory with low limits, so they run in milliseconds. The
server tests start `streamlit run` with a small memory budget (HOUNSFIELD_MEMORY_MB) and read
the server's resident memory (VmRSS, VmHWM) from /proc while each bomb is sent.
"""

from __future__ import annotations

import bz2
import gc
import io
import random
import struct
import zipfile
import zlib

import pytest

from core.memory import MB, MemoryBudget, budget_from_env
from core.sources import ZipLimits, ZipMemberError, expand_sources


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
        assert [(e.name, e.size, e.read()) for e in entries] == [("study.zip/a.dcm", 5000, a), ("study.zip/b.dcm", 7000, b)]


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
