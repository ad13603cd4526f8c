"""The fenced patches of Streamlit's internals: they apply on the tested versions, say so when they cannot."""

from __future__ import annotations

import io
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


class TestEncodedPNG:
    def test_the_click_component_gets_the_bytes_as_they_are(self):
        from streamlit_image_coordinates import streamlit_image_coordinates  # noqa: F401 - the component it feeds

        buf = io.BytesIO()
        internals.EncodedPNG(b"\x89PNG-bytes").save(buf, format="PNG", compress_level=6)
        assert buf.getvalue() == b"\x89PNG-bytes"

