"""Every page, with series a user may bring: single-slice MR, MR, float values, a tilted stack, its corrected grid."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest

from core import load_series
from dashboard.state import Study
from tests.factory import ct_series, ramp_volume
from tests.helpers import PAGE_FILES, page_test


def _volumes():
    mr_small = load_series([Path(pydicom.__file__).parent / "data" / "test_files" / "MR_small.dcm"]).volumes[0]
    mr = load_series(ct_series(ramp_volume((6, 32, 32)) + 2000, modality="MR", intercept=0.0)).volumes[0]
    flt = load_series(ct_series(ramp_volume((6, 32, 32)), slope=0.5, intercept=-10.25)).volumes[0]
    tilt = load_series(ct_series(ramp_volume((6, 32, 32)),
                                 positions=np.array([[0, k * 0.5, k * 2.0] for k in range(6)]))).volumes[0]
    return {"mr_small": mr_small, "mr": mr, "float": flt, "tilt": tilt, "tilt_corrected": tilt.corrected()}


NAMES = ("float", "mr", "mr_small", "tilt", "tilt_corrected")


@pytest.fixture(scope="module")
def volumes():
    """Built once for this module, when its first test runs (not at import, not at collection)."""
    return _volumes()


def test_every_series_is_built(volumes):
    assert sorted(volumes) == sorted(NAMES)


@pytest.mark.parametrize("page", PAGE_FILES, ids=lambda p: p.name)
@pytest.mark.parametrize("name", NAMES)
def test_page_with_series(page, name, volumes):
    vol = volumes[name]
    at = page_test(page)
    at.session_state["study"] = Study(volumes=[vol], skipped=[], source="test")
    at.run()
    assert not at.exception
    if "Isosurface" in page.name and vol.shape[0] > 1:
        lo, hi = vol.value_range
        at.slider(key="iso_level").set_value(float(round((lo + hi) / 20) * 10)).run()  # a level the values cross
        assert not [t for t in at.toggle if t.key == "iso_show"]  # small series: drawn on arrival
        assert any("**Triangles**: " in md.value and "**Triangles**: 0\n" not in md.value for md in at.markdown)
    elif "HU_histogram" in page.name:
        for scope in ("Current slice", "Slab of slices", "Segmented lungs"):
            at.radio(key="histogram_scope").set_value(scope).run()
            assert not at.exception, scope
            ending = "padding voxels (outside the scan circle) left out."
            assert any(c.value.endswith(ending) for c in at.caption), scope
    elif "Study_details" in page.name:
        at.button(key="details_prepare").click().run()
        assert any("files de-identified" in s.value for s in at.success)
    elif "Volume_explorer" in page.name:
        from core.annotations import Measurement

        box = ((0.0, 0.0), (vol.shape[1] - 1.0, vol.shape[2] - 1.0))  # the whole axial plane, as if drawn
        at.session_state["explorer_mpr_store"][vol.key]["measurements"] = [Measurement("rectangle", 0, 0, box)]
        at.run()
        table = next(df.value for df in at.dataframe if "Voxels" in df.value.columns)
        assert int(table["Voxels"][0]) > 0 and f"Mean ({vol.units or 'stored units'})" in table.columns
    assert not at.exception
