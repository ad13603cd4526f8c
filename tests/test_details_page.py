"""AppTest of the study details and privacy page: PHI never shown unless revealed, export, summary."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np

from core import load_series
from tests.factory import ramp_volume
from tests.helpers import page_test, page_text, upload_files

PAGE = Path(__file__).resolve().parents[1] / "pages" / "5_Study_details.py"


def _loaded():
    at = page_test(PAGE)
    at.switch_page("streamlit_app.py").run()
    at.file_uploader(key="load_files_0").set_value(upload_files(3, patient="SECRET^PATIENTNAME")).run()
    at.switch_page("pages/5_Study_details.py").run()
    assert not at.exception
    return at


def test_sample_tags_with_its_fictitious_patient_masked():
    at = page_test(PAGE).run()
    assert not at.exception
    df = at.dataframe[0].value
    assert len(df) > 30 and "SAMPLE^SYNTHETIC" not in df.to_string()
    at.toggle(key="sidebar_show_phi").set_value(True).run()
    assert "SAMPLE^SYNTHETIC" in at.dataframe[0].value.to_string()


def test_patient_name_appears_nowhere_until_revealed():
    at = _loaded()
    assert "SECRET" not in page_text(at)
    at.text_input(key="details_search").set_value("SECRET").run()
    assert len(at.dataframe[0].value) == 0  # masked values cannot be found by searching
    at.toggle(key="sidebar_show_phi").set_value(True).run()
    assert "SECRET^PATIENTNAME" in page_text(at)


def test_search_and_instances():
    at = _loaded()
    at.text_input(key="details_search").set_value("Image Position").run()
    df = at.dataframe[0].value
    assert list(df["Tag"]) == ["(0020,0032)"] and df["Value"][0] == "0.0\\0.0\\0.0"
    at.number_input(key="details_instance").set_value(3).run()
    assert at.dataframe[0].value["Value"][0] == "0.0\\0.0\\4.0"


def test_export_loads_back_identical():
    at = _loaded()
    at.toggle(key="details_shift_on").set_value(True).run()
    at.button(key="details_prepare").click().run()
    assert not at.exception
    assert any("3 files de-identified" in s.value and "shifted by -100 days" in s.value for s in at.success)
    _, data, _ = at.session_state["details_export"]
    names = zipfile.ZipFile(io.BytesIO(data)).namelist()
    assert names == ["original_slices/IM00001.dcm", "original_slices/IM00002.dcm", "original_slices/IM00003.dcm"]
    assert any("original slices" in s.value for s in at.success)
    assert b"SECRET" not in b"".join(zipfile.ZipFile(io.BytesIO(data)).read(n) for n in names)
    back = load_series([("x.zip", data)]).volumes[0]
    np.testing.assert_array_equal(back.voxels, ramp_volume((3, 16, 12), seed=0))


def test_export_of_a_corrected_series_says_it_holds_resampled_slices():
    from tests.factory import ct_series

    tilt = np.tan(np.radians(12))
    positions = np.array([[0, k * 2 * tilt, 2.0 * k] for k in range(4)])
    files = [(n, d, "application/dicom") for n, d in ct_series(ramp_volume((4, 16, 12)), positions=positions)]
    at = page_test(PAGE)
    at.switch_page("streamlit_app.py").run()
    at.file_uploader(key="load_files_0").set_value(files).run()
    at.toggle(key="load_corrected_0").set_value(True).run()
    at.switch_page("pages/5_Study_details.py").run()
    assert not at.exception
    assert any("resampled" in i.value for i in at.info)
    at.button(key="details_prepare").click().run()
    assert any("resampled slices" in s.value for s in at.success)
    _, data, report = at.session_state["details_export"]
    assert report.resampled
    assert all(n.startswith("resampled_slices/") for n in zipfile.ZipFile(io.BytesIO(data)).namelist())
