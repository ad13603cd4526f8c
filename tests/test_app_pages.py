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
from tests.helpers import APP, PAGE_FILES, ROOT, app_test, page_test, page_text, table_with, upload_files

# tests/test_pacs.py still imports these two from here; the lead moves it to tests.helpers.


class TestFirstPage:
    def test_opens_on_the_sample(self):
        at = app_test().run()
        assert not at.exception
        study = at.session_state["study"]
        assert study.source == "Built-in sample" and study.volumes[0].shape == (120, 256, 256)
        table = table_with(at, "Images")
        assert list(table["Images"]) == ["120 slices"] and list(table["Kind"]) == ["CT volume"]
        # Spacing and geometry are under the table, for the chosen series (the table fits a 1400 px window).
        assert list(table.columns) == ["Preview", "#", "Kind", "Series number", "Description", "Slice thickness",
                                       "Kernel", "Body part", "Contrast", "Images"]
        assert "- Spacing: 2.5 x 1.4 x 1.4 mm" in page_text(at) and "- Geometry: regular" in page_text(at)
        assert table["Preview"][0].startswith("data:image/png;base64,")
        assert "Synthetic chest CT" in at.selectbox(key="load_pick").options[0]

    def test_upload_files_two_series_and_a_text_file(self):
        at = app_test().run()
        files = (upload_files(4, "1.2.3.1") + upload_files(6, "1.2.3.2", prefix="b", seed=1)
                 + [("notes.txt", b"hi", "text/plain")])
        at.file_uploader(key="load_files_0").set_value(files).run()
        assert not at.exception
        study = at.session_state["study"]
        assert [v.shape[0] for v in study.volumes] == [6, 4]
        assert study.skipped == [("notes.txt", "not a DICOM file (no DICM marker and no DICOM header at the start)")]
        assert list(table_with(at, "Images")["Images"]) == ["6 slices", "4 slices"]
        skipped = table_with(at, "Reason")
        assert list(skipped["File"]) == ["file 1 of the upload"]  # file names are PHI too
        assert "notes.txt" not in page_text(at)
        at.toggle(key="sidebar_show_phi").set_value(True).run()
        assert list(table_with(at, "Reason")["File"]) == ["notes.txt"]
        # The uploaders were reset after loading, so their bytes are released.
        assert at.session_state["load_upload_nonce"] == 1

    def test_upload_zip(self):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            for name, data, _ in upload_files(5):
                zf.writestr(f"study/series/{name}", data)
        at = app_test().run()
        at.file_uploader(key="load_files_0").set_value([("study.zip", buf.getvalue(), "application/zip")]).run()
        assert not at.exception
        vol = at.session_state["study"].volumes[0]
        np.testing.assert_array_equal(vol.voxels, ramp_volume((5, 16, 12), seed=0))

    def test_upload_folder(self):
        at = app_test().run()
        uploader = at.file_uploader(key="load_folder_0")
        assert uploader.accept_directory
        uploader.set_value(upload_files(3)).run()
        assert at.session_state["study"].volumes[0].shape[0] == 3

    def test_nothing_usable_keeps_the_previous_study(self):
        at = app_test().run()
        at.file_uploader(key="load_files_0").set_value([("a.txt", b"x" * 200, "text/plain")]).run()
        assert not at.exception
        assert at.error and "No image series could be assembled" in at.error[0].value
        assert at.session_state["study"].source == "Built-in sample"
        assert list(table_with(at, "Reason")["File"]) == ["file 1 of the upload"]  # names are PHI too
        # The failed upload is cleared from the uploader: a new, empty one, and the report stays.
        assert at.session_state["load_upload_nonce"] == 1
        assert at.file_uploader(key="load_files_1").value in (None, [])
        at.run()
        assert at.error and "No image series could be assembled" in at.error[0].value

    def test_series_of_one_scan_told_apart_with_phi_hidden(self):
        """Two 1 mm kernels of one head scan, as a Philips scanner writes them; one description names the patient."""
        def series(uid, prefix, number, kernel, description):
            return [(name, data, "application/dicom") for name, data in ct_series(
                ramp_volume((3, 16, 12)), series_uid=uid, patient_name="DOE^JANE", names=lambda k: f"{prefix}{k}.dcm",
                extra={"SeriesNumber": number, "ConvolutionKernel": kernel, "SliceThickness": 1.0,
                       "BodyPartExamined": "HEAD", "SeriesDescription": description, "StudyDate": "20240115"})]

        at = app_test().run()
        files = series("1.2.3.1", "a", 3, "UB", "Brain 1.0") + series("1.2.3.2", "b", 4, "YC", "Bone DOE 1.0")
        at.file_uploader(key="load_files_0").set_value(files).run()
        assert not at.exception
        assert at.selectbox(key="load_pick").options == ["#1 Series 3 (Brain 1.0) — head, kernel UB, 1 mm, CT 3x16x12",
                                                         "#2 Series 4 — head, kernel YC, 1 mm, CT 3x16x12"]
        table = table_with(at, "Kernel")
        assert list(table["Kernel"]) == ["UB", "YC"] and "Date" not in table.columns
        assert "DOE" not in page_text(at) and "2024" not in page_text(at)
        at.toggle(key="sidebar_show_phi").set_value(True).run()
        assert at.selectbox(key="load_pick").options[1] == (
            "#2 Series 4 (Bone DOE 1.0) — head, kernel YC, 1 mm, 2024-01-15, CT 3x16x12")
        assert list(table_with(at, "Kernel")["Date"]) == ["2024-01-15"] * 2

    def test_a_link_to_the_explorer(self):
        at = app_test().run()
        links = [link for link in at.get("page_link") if link.proto.label.startswith("Next")]
        assert [(link.proto.label, link.proto.page) for link in links] == [
            ("Next: explore this series in three planes", "Volume_explorer")]

    def test_pick_series_sets_the_current_one(self):
        at = app_test().run()
        files = upload_files(4, "1.2.3.1") + upload_files(6, "1.2.3.2", prefix="b")
        at.file_uploader(key="load_files_0").set_value(files).run()
        at.selectbox(key="load_pick").set_value(1).run()
        assert not at.exception
        assert at.session_state["current_series"] == 1
        assert "4 x 16 x 12" in page_text(at)

    def test_phi_hidden_by_default_and_revealed_on_request(self):
        at = app_test().run()
        at.file_uploader(key="load_files_0").set_value(upload_files(3, patient="SECRET^PATIENTNAME")).run()
        text = page_text(at)
        assert "SECRET" not in text and "generated" not in text  # name and SeriesDescription
        at.toggle(key="sidebar_show_phi").set_value(True).run()
        assert not at.exception
        text = page_text(at)
        assert "SECRET^PATIENTNAME" in text and "generated" in text

    def test_corrected_geometry_for_a_tilted_series(self):
        tilt = np.tan(np.radians(20))
        positions = np.array([[0, k * 2.0 * tilt, k * 2.0] for k in range(6)])
        files = [(n, d, "application/dicom") for n, d in ct_series(ramp_volume((6, 16, 12)), positions=positions)]
        at = app_test().run()
        at.file_uploader(key="load_files_0").set_value(files).run()
        assert any("Gantry tilt" in w.value for w in at.warning)
        at.toggle(key="load_corrected_0").set_value(True).run()
        assert not at.exception
        study = at.session_state["study"]
        assert 0 in study.use_corrected and study.corrected[0].is_regular
        assert any("gantry tilt of 20.0° removed" in c.value for c in at.caption)
        # The sidebar shows the corrected series in the same run: its shape and its own notes.
        corrected = study.corrected[0]
        sidebar = " ".join(m.value for m in at.sidebar.markdown)
        assert " x ".join(str(n) for n in corrected.shape) in sidebar
        assert corrected.shape != study.volumes[0].shape
        assert [w.value for w in at.sidebar.warning] == ["1 geometry note: see **Load a study**."]
        assert corrected.warnings != study.volumes[0].warnings and len(corrected.warnings) == 1

    def test_close_and_reload_sample(self):
        at = app_test().run()
        at.button(key="load_close").click().run()
        assert not at.exception and at.session_state["study"] is None
        assert any("Nothing is loaded" in i.value for i in at.info)
        at.button(key="load_sample").click().run()
        assert at.session_state["study"].source == "Built-in sample"


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
        # Pages that need a series say so; the others (face detection on photos, PACS) work without one.
        asks_for_a_series = any("No series is loaded" in i.value for i in at.info)
        assert asks_for_a_series == ("needs_volume=True" in page.read_text())


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


def test_series_facts_read_as_text():
    at = app_test().run()
    facts = " ".join(m.value for m in at.markdown)
    assert "- Spacing: 2.5 x 1.4 x 1.4 mm" in facts and "(2.5, 1.4, 1.4)" not in facts
    assert "CT, 120 slices of 256 x 256, 2.5 x 1.4 x 1.4 mm" in facts


@pytest.mark.parametrize("page,words", [
    (None, "Load it again below."),
    (ROOT / "pages" / "2_HU_histogram.py", "Load it again on <b>Load a study</b>, first in the sidebar."),
])
def test_the_note_after_a_reload_says_where_to_load_again(page, words):
    """The note a reload shows (the browser unhides it): "below" only where the uploader is."""
    at = (app_test() if page is None else page_test(page)).run()
    notes = [h.proto.body for h in at.get("html") if "hf-study-gone" in h.proto.body]
    assert len(notes) == 1 and f"session's memory. {words}</div>" in notes[0]
    assert "below" not in notes[0] or page is None
