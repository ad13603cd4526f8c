"""AppTest of the volume explorer, driven by widget keys."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest

from core import LABELS, TISSUE_HU, load_series, sample_labels
from tests.test_app_pages import page_test

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "pages" / "1_Volume_explorer.py"


@pytest.fixture
def at():
    at = page_test(PAGE).run()
    assert not at.exception
    return at


def _readout(at) -> str:
    return next(m.value for m in at.markdown if m.value.startswith("**At the crosshair:**"))


def test_three_views_with_sliders_at_the_middle(at):
    assert [at.slider(key=k).value for k in ("explorer_k", "explorer_j", "explorer_i")] == [60, 128, 128]
    assert len(at.get("image")) == 3
    assert "voxel (slice 60, row 128, column 128)" in _readout(at)


def test_slice_slider_moves_the_crosshair_and_the_value(at):
    at.slider(key="explorer_k").set_value(100).run()
    assert not at.exception
    text = _readout(at)
    assert "slice 100" in text and "z 100.0 mm" in text  # the sample's slice k sits at z = 2.5 k - 150
    # Values are the voxels' HU: (100, 128, 128) in the sample.
    from core import sample_ct

    assert f"{sample_ct().voxels[100, 128, 128]} HU" in text


def test_presets_set_center_and_width(at):
    at.selectbox(key="explorer_preset").set_value("Lung").run()
    assert (at.slider(key="explorer_center").value, at.slider(key="explorer_width").value) == (-600, 1500)
    at.selectbox(key="explorer_preset").set_value("Bone").run()
    assert (at.slider(key="explorer_center").value, at.slider(key="explorer_width").value) == (480, 2500)
    at.slider(key="explorer_center").set_value(100).run()
    assert at.selectbox(key="explorer_preset").value == "Custom"
    assert not at.exception


def test_roi_statistics_of_a_lung_box(at):
    from scipy.ndimage import binary_erosion

    lab = sample_labels()[75]
    inner = binary_erosion(lab == LABELS["lung"], structure=np.ones((9, 9)))
    rows, cols = np.nonzero(inner)
    r0, c0 = int(rows[0]) - 4, int(cols[0]) - 4
    assert (lab[r0:r0 + 8, c0:c0 + 8] == LABELS["lung"]).all()
    at.slider(key="explorer_k").set_value(75).run()
    at.toggle(key="explorer_roi_on").set_value(True).run()
    at.slider(key="explorer_roi_rows").set_value((r0, r0 + 8)).run()
    at.slider(key="explorer_roi_cols").set_value((c0, c0 + 8)).run()
    assert not at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Voxels"] == "64"
    assert abs(float(metrics["Mean"].split()[0]) - TISSUE_HU["lung"]) < 5
    assert metrics["Area"] == f"{64 * 1.4 * 1.4:.1f} mm²"


def test_slab_and_colormap_and_large_view(at):
    at.slider(key="explorer_slab_mm").set_value(10.0).run()
    at.selectbox(key="explorer_slab_mode").set_value("minip").run()
    at.selectbox(key="explorer_cmap").set_value("viridis").run()
    at.selectbox(key="explorer_large").set_value("Coronal").run()
    at.slider(key="explorer_zoom").set_value(3.0).run()
    assert not at.exception
    cache = at.session_state["explorer_png_cache"]
    assert any(key[1] == 1 and key[4] == "minip" and key[7] == "viridis" and key[9] == 3.0 for key in cache)


def test_mr_single_slice_has_native_units_and_no_hu_presets():
    path = Path(pydicom.__file__).parent / "data" / "test_files" / "MR_small.dcm"
    from dashboard.state import Study

    at = page_test(PAGE)
    at.session_state["study"] = Study(volumes=load_series([path]).volumes, skipped=[], source="test")
    at.run()
    assert not at.exception
    assert "Lung" not in at.selectbox(key="explorer_preset").options
    assert "HU" not in at.slider(key="explorer_center").label
