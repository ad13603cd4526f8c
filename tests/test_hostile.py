"""Hostile and broken inputs: each costs one line in the skipped list, and the rest still loads."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from core import load_series
from tests.hostile import corpus

CASES = corpus()


@pytest.mark.parametrize("name,data,expected", CASES, ids=[c[0] for c in CASES])
def test_each_case_alone(name, data, expected):
    if name == "duplicate.dcm":
        expected = None  # a duplicate only of the upload it arrives with (see the next test)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = load_series([(name, data)])
    if expected is None:
        assert result.volumes, result.skipped
        return
    reasons = " | ".join(r for _, r in result.skipped)
    assert result.skipped, f"{name} was not refused"
    assert expected.lower() in reasons.lower(), reasons
    assert "Traceback" not in reasons and len(reasons) < 2000


def test_the_whole_corpus_in_one_upload():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = load_series([(n, d) for n, d, _ in CASES])
    good = [v for v in result.volumes if v.series_uid == "1.2.3.55"]
    assert len(good) == 1
    np.testing.assert_array_equal(good[0].voxels, np.arange(128, dtype=np.int16).reshape(2, 8, 8))
    skipped_names = {n.split("/")[0] for n, _ in result.skipped}
    for name, _, expected in CASES:
        if expected is not None:
            assert name in skipped_names, name
    assert ("duplicate.dcm", "duplicate of good0.dcm (same SOP Instance UID)") in result.skipped


def test_study_memory_budget():
    from core import Budget
    from tests.factory import ct_series, ramp_volume

    a = ct_series(ramp_volume((4, 16, 16)), series_uid="1.1", names=lambda k: f"a{k}")
    b = ct_series(ramp_volume((2, 16, 16)), series_uid="1.2", names=lambda k: f"b{k}")
    result = load_series(a + b, budget=Budget(max_study_bytes=4 * 16 * 16 * 2 + 10))
    assert [v.series_uid for v in result.volumes] == ["1.1"]
    assert len(result.skipped) == 2 and all("memory budget" in r for _, r in result.skipped)


def test_markdown_escape():
    from dashboard.text import md_escape

    assert md_escape("[x](javascript:alert(1)) **b** $x$") == (
        "\\[x\\]\\(javascript\\:alert\\(1\\)\\) \\*\\*b\\*\\* \\$x\\$")
