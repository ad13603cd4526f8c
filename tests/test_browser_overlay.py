"""A DICOM SEG uploaded with its study, in headless Chromium: listed, shown on its series, downloaded back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core import load_series
from core.overlay import nifti_labelmap, segmentation_labelmap
from tests.browser import no_exception, wait_idle
from tests.factory import segmentable_series, segmentation_file

pytestmark = pytest.mark.browser

SHAPE = (6, 24, 20)


def _series(n: int, seed: int) -> list[tuple[str, bytes]]:
    hu = np.random.default_rng(seed).integers(-1000, 400, (n, *SHAPE[1:])).astype(np.int16)
    return segmentable_series(hu, spacing=(2.5, 0.6, 0.8), names=lambda k: f"s{seed}_{k:02d}.dcm")


def _mask() -> np.ndarray:
    mask = np.zeros(SHAPE, np.uint8)
    mask[1:5, 4:12, 3:9] = 1
    mask[2:4, 15:20, 10:18] = 2
    return mask


def _seg(files: list[tuple[str, bytes]]) -> bytes:
    return segmentation_file(files, _mask(), {1: "Tumour", 2: "Cyst"})


def test_a_seg_uploaded_with_its_study_is_shown_and_downloaded_back(page, app_url, tmp_path):
    files, other = _series(SHAPE[0], 0), _series(4, 1)  # the SEG's series is the larger: listed first
    paths = []
    for name, data in [*files, *other, ("seg.dcm", _seg(files))]:
        (tmp_path / name).write_bytes(data)
        paths.append(str(tmp_path / name))
    page.goto(app_url)
    wait_idle(page)
    page.locator('[data-testid="stFileUploader"] input[type="file"]').first.set_input_files(paths)
    page.get_by_text("Segmentations in the study (1)").wait_for(timeout=60_000)
    wait_idle(page)
    no_exception(page)
    assert page.get_by_text("DICOM SEG 1: lies on series 1").is_visible()

    page.locator('[data-testid="stSidebar"]').get_by_role("link", name="Volume explorer").click()
    chooser = page.locator('[data-testid="stSelectbox"]').filter(has_text="Segmentation overlay")
    chooser.wait_for()
    wait_idle(page)
    chooser.click()
    page.get_by_role("option", name="DICOM SEG 1").click()
    wait_idle(page)
    no_exception(page)
    page.get_by_text("Labels (legend, volumes, statistics) and downloads").click()
    wait_idle(page)
    legend = page.locator('[data-testid="stDataFrame"]').filter(has_text="Tumour")
    legend.wait_for()

    vol = load_series(files).volumes[0]
    for button, read in (("Download as DICOM SEG", segmentation_labelmap), ("Download as NIfTI", nifti_labelmap)):
        with page.expect_download(timeout=60_000) as download:
            page.get_by_role("button", name=button).click()
        back = read(Path(download.value.path()).read_bytes(), vol, max_bytes=1 << 28)
        np.testing.assert_array_equal(back.labels, _mask())
    no_exception(page)
