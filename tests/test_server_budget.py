"""The server-wide memory budget: per-session and total shares, release on exit and on collection."""

from __future__ import annotations

import gc

import pytest

from core.memory import MB, MemoryBudget, OverBudget


class TestMemoryBudget:
    def test_session_share_refused_in_words(self):
        b = MemoryBudget(total_bytes=100 * MB, session_bytes=40 * MB)
        b.reserve(30 * MB, owner="a", what="the voxels")
        with pytest.raises(OverBudget, match=r"this session may hold at most 40 MB \(30 MB in use\)"):
            b.reserve(11 * MB, owner="a", what="the voxels")
        assert b.used("a") == 30 * MB

    def test_total_refused_as_busy(self):
        b = MemoryBudget(total_bytes=100 * MB, session_bytes=60 * MB)
        b.reserve(60 * MB, owner="a", what="x")
        b.reserve(30 * MB, owner="b", what="x")
        with pytest.raises(OverBudget, match="the server is busy: y would need 20 MB.*leaves 10 MB free"):
            b.reserve(20 * MB, owner="c", what="y")
        assert b.available("c") == 10 * MB
        assert b.used() == 90 * MB

    def test_block_releases_even_on_error(self):
        b = MemoryBudget(total_bytes=100 * MB, session_bytes=100 * MB)
        with pytest.raises(RuntimeError):
            with b.reserved(50 * MB, owner="a", what="x"):
                assert b.used() == 50 * MB
                raise RuntimeError
        assert b.used() == 0

    def test_hold_until_collected_and_release_once(self):
        b = MemoryBudget(total_bytes=100 * MB, session_bytes=100 * MB)

        class Study:
            pass

        s = Study()
        res = b.reserve(70 * MB, owner="a", what="x")
        b.hold(s, res)
        assert b.used("a") == 70 * MB
        del s
        gc.collect()
        assert b.used("a") == 0
        res.release()  # already released by the finaliser: nothing more
        assert b.used() == 0

    def test_over_budget_is_a_memory_error(self):
        assert issubclass(OverBudget, MemoryError)

    def test_rejects_nonpositive(self):
        with pytest.raises(ValueError, match="total_bytes=0"):
            MemoryBudget(total_bytes=0, session_bytes=1)
