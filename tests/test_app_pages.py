"""AppTest: the first page and the shared frame, driven by widget keys."""

from __future__ import annotations

import ast
import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from tests.factory import ct_series, ramp_volume

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "streamlit_app.py"
PAGE_FILES = sorted((ROOT / "pages").glob("*.py")) if (ROOT / "pages").exists() else []


def _app() -> AppTest:
    return AppTest.from_file(str(APP), default_timeout=60)


def _files(n=4, uid="1.2.3.1", patient="DOE^JANE", prefix="a", seed=0):
    return [(name, data, "application/dicom") for name, data in
            ct_series(ramp_volume((n, 16, 12), seed=seed), series_uid=uid, patient_name=patient,
                      names=lambda k: f"{prefix}{k:03d}.dcm")]


def _table(at: AppTest, column: str):
    """The first table on the page that has ``column`` (tables carry no widget key)."""
    for df in at.dataframe:
        if column in df.value.columns:
            return df.value
    raise AssertionError(f"no table with a {column!r} column")


def _page_text(at: AppTest) -> str:
    parts = []
    for kind in ("markdown", "caption", "title", "subheader", "info", "warning", "error", "success", "text"):
        parts += [str(e.value) for e in getattr(at, kind)]
    parts += [str(sb.options) + str(sb.value) for sb in at.selectbox]
    for df in at.dataframe:
        parts.append(df.value.to_string())
    return "\n".join(parts)


class TestFirstPage:
    def test_opens_on_the_sample(self):
        at = _app().run()
        assert not at.exception
        study = at.session_state["study"]
        assert study.source == "Built-in sample" and study.volumes[0].shape == (120, 256, 256)
        table = _table(at, "Slices")
        assert list(table["Slices"]) == [120]
        assert table["Preview"][0].startswith("data:image/png;base64,")
        assert "Synthetic chest CT" in at.selectbox(key="load_pick").options[0]

    def test_upload_files_two_series_and_a_text_file(self):
        at = _app().run()
        files = _files(4, "1.2.3.1") + _files(6, "1.2.3.2", prefix="b", seed=1) + [("notes.txt", b"hi", "text/plain")]
        at.file_uploader(key="load_files_0").set_value(files).run()
        assert not at.exception
        study = at.session_state["study"]
        assert [v.shape[0] for v in study.volumes] == [6, 4]
        assert study.skipped == [("notes.txt", "not a DICOM file (no DICM marker and no DICOM header at the start)")]
        assert list(_table(at, "Slices")["Slices"]) == [6, 4]
        skipped = _table(at, "Reason")
        assert list(skipped["File"]) == ["notes.txt"]
        # The uploaders were reset after loading, so their bytes are released.
        assert at.session_state["load_upload_nonce"] == 1

    def test_upload_zip(self):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            for name, data, _ in _files(5):
                zf.writestr(f"study/series/{name}", data)
        at = _app().run()
        at.file_uploader(key="load_files_0").set_value([("study.zip", buf.getvalue(), "application/zip")]).run()
        assert not at.exception
        vol = at.session_state["study"].volumes[0]
        np.testing.assert_array_equal(vol.voxels, ramp_volume((5, 16, 12), seed=0))

    def test_upload_folder(self):
        at = _app().run()
        uploader = at.file_uploader(key="load_folder_0")
        assert uploader.accept_directory
        uploader.set_value(_files(3)).run()
        assert at.session_state["study"].volumes[0].shape[0] == 3

    def test_nothing_usable_keeps_the_previous_study(self):
        at = _app().run()
        at.file_uploader(key="load_files_0").set_value([("a.txt", b"x" * 200, "text/plain")]).run()
        assert not at.exception
        assert at.error and "No image series could be assembled" in at.error[0].value
        assert at.session_state["study"].source == "Built-in sample"
        assert list(_table(at, "Reason")["File"]) == ["a.txt"]

    def test_pick_series_sets_the_current_one(self):
        at = _app().run()
        at.file_uploader(key="load_files_0").set_value(_files(4, "1.2.3.1") + _files(6, "1.2.3.2", prefix="b")).run()
        at.selectbox(key="load_pick").set_value(1).run()
        assert not at.exception
        assert at.session_state["current_series"] == 1
        assert "4 x 16 x 12" in _page_text(at)

    def test_phi_hidden_by_default_and_revealed_on_request(self):
        at = _app().run()
        at.file_uploader(key="load_files_0").set_value(_files(3, patient="SECRET^PATIENTNAME")).run()
        text = _page_text(at)
        assert "SECRET" not in text and "generated" not in text  # name and SeriesDescription
        at.toggle(key="sidebar_show_phi").set_value(True).run()
        assert not at.exception
        text = _page_text(at)
        assert "SECRET^PATIENTNAME" in text and "generated" in text

    def test_corrected_geometry_for_a_tilted_series(self):
        tilt = np.tan(np.radians(20))
        positions = np.array([[0, k * 2.0 * tilt, k * 2.0] for k in range(6)])
        files = [(n, d, "application/dicom") for n, d in ct_series(ramp_volume((6, 16, 12)), positions=positions)]
        at = _app().run()
        at.file_uploader(key="load_files_0").set_value(files).run()
        assert any("Gantry tilt" in w.value for w in at.warning)
        at.toggle(key="load_corrected_0").set_value(True).run()
        assert not at.exception
        study = at.session_state["study"]
        assert 0 in study.use_corrected and study.corrected[0].is_regular
        assert any("gantry tilt of 20.0° removed" in c.value for c in at.caption)

    def test_close_and_reload_sample(self):
        at = _app().run()
        at.button(key="load_close").click().run()
        assert not at.exception and at.session_state["study"] is None
        assert any("Nothing is loaded" in i.value for i in at.info)
        at.button(key="load_sample").click().run()
        assert at.session_state["study"].source == "Built-in sample"


def page_test(page: Path, *, timeout: int = 120) -> AppTest:
    """An AppTest of ``page`` reached from the entry point, as in the running app."""
    at = AppTest.from_file(str(APP), default_timeout=timeout)
    at.switch_page(str(page.relative_to(ROOT)))
    return at


@pytest.mark.parametrize("page", PAGE_FILES, ids=lambda p: p.name)
class TestEveryPage:
    def test_runs_with_the_sample(self, page):
        at = page_test(page).run()
        assert not at.exception

    def test_runs_with_nothing_loaded(self, page):
        at = page_test(page)
        at.session_state["study"] = None
        at.run()
        assert not at.exception
        if "needs_volume=True" in page.read_text():
            assert any("No series is loaded" in i.value for i in at.info)


def _first_statement_calls_page_frame(path: Path) -> bool:
    tree = ast.parse(path.read_text())
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)) or (
            isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
        ):
            continue
        call = node.value if isinstance(node, (ast.Expr, ast.Assign)) else None
        return isinstance(call, ast.Call) and getattr(call.func, "id", None) == "page_frame"
    return False


@pytest.mark.parametrize("path", [APP, *PAGE_FILES], ids=lambda p: p.name)
def test_every_page_starts_with_the_shared_frame(path):
    assert _first_statement_calls_page_frame(path), f"{path.name} must call page_frame(...) before anything else"


def test_every_page_is_linked_in_the_sidebar():
    from dashboard.frame import existing_pages

    linked = {ROOT / p for p, _, _ in existing_pages()}
    assert {APP, *PAGE_FILES} <= linked


def test_config_hides_tracebacks_and_raises_the_upload_limit():
    import tomllib

    cfg = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert cfg["client"]["showErrorDetails"] == "none"
    # Above Streamlit's 200 MB (a zipped thin-slice study), within one session's memory share (issue 15).
    assert 200 < cfg["server"]["maxUploadSize"] <= 350
    assert cfg["server"]["enableXsrfProtection"] is True
    assert cfg["browser"]["gatherUsageStats"] is False
    assert cfg["theme"]["base"] == "dark"


def test_uploads_are_never_spooled_to_disk():
    from starlette.formparsers import MultiPartParser

    at = AppTest.from_file(str(APP), default_timeout=60).run()
    assert not at.exception
    # Larger than the upload limit in .streamlit/config.toml (1 GB): no upload rolls over to a file.
    assert MultiPartParser.spool_max_size >= 1024**3 + 1024**2
