"""Without Orthanc the PACS tests skip and say how to get them; in CI (CI=true) they fail instead."""

from __future__ import annotations

import pytest

from tests import orthanc


@pytest.fixture
def no_orthanc(monkeypatch):
    monkeypatch.setattr(orthanc, "find_orthanc", lambda: (None, None))


def test_skips_with_how_to_get_them_outside_ci(no_orthanc, monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="sudo apt-get install orthanc orthanc-dicomweb"):
        orthanc.start_orthanc()


@pytest.mark.parametrize("value", ["true", "True", "1"])
def test_fails_in_ci(no_orthanc, monkeypatch, value):
    monkeypatch.setenv("CI", value)
    with pytest.raises(RuntimeError, match="not installed"):
        orthanc.start_orthanc()
