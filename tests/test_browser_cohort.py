"""The Cohort page in headless Chromium: a zip of studies run on real Dask processes, looked at and opened."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest

from tests.browser import streamlit_server
from tests.factory import ct_series

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def cohort_app_url():
    """The app as an operator who enabled cohorts runs it (the shared server keeps the defaults: off)."""
    with streamlit_server(env={"HOUNSFIELD_COHORT_RUN": "on", "HOUNSFIELD_COHORT_WORKERS": "2"}) as (url, _):
        yield url


def _wait_idle(page, timeout: int = 60_000) -> None:
    page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]', timeout=timeout)


def _no_exception(page) -> None:
    assert page.locator('[data-testid="stException"]').count() == 0
    assert "Traceback" not in page.content()


def _study(lung_hu: int) -> np.ndarray:
    """24 x 48 x 48 at 1 mm: a body of soft tissue with two box lungs of 8 x 12 x 10 voxels (1.92 mL in all)."""
    vol = np.full((24, 48, 48), -1000, dtype=np.int16)
    vol[:, 6:42, 4:44] = 40
    vol[8:16, 18:30, 8:18] = lung_hu
    vol[8:16, 18:30, 30:40] = lung_hu
    return vol


def _cohort_zip(path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, hu in (("normal", -850), ("emphysema", -980)):
            for member, data in ct_series(_study(hu), spacing=(1.0, 1.0, 1.0), series_uid=f"1.2.826.0.7.{-hu}"):
                zf.writestr(f"{name}/{member}", data)
        zf.writestr("broken/1.dcm", b"not a DICOM file")
    path.write_bytes(buf.getvalue())


def test_running_is_off_on_a_default_server(page, app_url):
    page.goto(app_url + "/Cohort")
    _wait_idle(page)
    _no_exception(page)
    page.get_by_text("Running cohorts is turned off on this server").wait_for()
    assert page.get_by_role("button", name="Run the cohort").count() == 0


def test_run_a_zip_of_studies_look_and_open_one(page, cohort_app_url, tmp_path):
    zipped = tmp_path / "cohort.zip"
    _cohort_zip(zipped)
    page.goto(cohort_app_url + "/Cohort")
    _wait_idle(page)
    uploader = page.locator('[data-testid="stFileUploader"]').filter(has_text="A zip of studies")
    uploader.locator('input[type="file"]').set_input_files(str(zipped))
    _wait_idle(page)
    page.get_by_role("button", name="Run the cohort").click()
    page.get_by_text("Lung volume and emphysema").wait_for(timeout=240_000)
    page.get_by_role("button", name="Open in the explorer").wait_for()
    _wait_idle(page)
    _no_exception(page)
    metrics = page.locator('[data-testid="stMetric"]').all_inner_texts()
    assert [m.split("\n")[-1] for m in metrics] == ["3", "2", "1"]
    charts = page.locator('[data-testid="stPlotlyChart"]')
    charts.nth(1).wait_for()
    assert charts.count() == 2
    charts.first.locator(".main-svg").first.wait_for()
    points = charts.first.locator("path.point")
    assert points.count() == 2  # one point per measured study
    page.locator('[data-testid="stDataFrame"]').last.wait_for()  # drawn on a canvas: its text is not in the page
    # Open the normal study in the explorer.
    box = page.locator('[data-testid="stSelectbox"]').filter(has_text="Study")
    box.locator("input").click()
    page.keyboard.type("normal")
    page.keyboard.press("Enter")
    _wait_idle(page)
    page.get_by_role("button", name="Open in the explorer").click()
    page.wait_for_url("**/Volume_explorer", timeout=60_000)
    _wait_idle(page)
    _no_exception(page)
    sidebar = page.locator('[data-testid="stSidebar"]').inner_text()
    assert "24 x 48 x 48" in sidebar and "Cohort study normal" in sidebar
