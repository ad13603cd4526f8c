"""AppTest of the volume explorer, driven by widget keys and by the views component's state.

The views component reports ``view`` (crosshair, window, planes wanted) as its state; AppTest
sets that state the way the browser does, and reads the planes the page sends back.
"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pydicom
import pytest

from core import LABELS, TISSUE_HU, load_series, sample_labels
from tests.helpers import page_test

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "pages" / "1_Volume_explorer.py"


@pytest.fixture
def at():
    at = page_test(PAGE).run()
    assert not at.exception
    return at


def _readout(at) -> str:
    return next(m.value for m in at.markdown if m.value.startswith("**At the crosshair:**"))


def _payload(at) -> tuple[dict, dict]:
    """The views component's header and its planes, decoded as the browser decodes them."""
    (element,) = at.get("bidi_component")
    data = element.proto.bytes
    n = struct.unpack("<I", data[:4])[0]
    header = json.loads(data[4:4 + n])
    planes = {}
    for meta in header["slices"]:
        blob = data[4 + n + meta["offset"]: 4 + n + meta["offset"] + meta["length"]]
        k = 2 if meta["dtype"] == "i2" else 4
        if meta["raw"] < len(blob):  # prefetched: byte planes, the high half compressed
            planes_ = blob[:meta["raw"]] + zlib.decompress(blob[meta["raw"]:])
            raw = np.frombuffer(planes_, np.uint8).reshape(k, -1).T.copy()
        else:  # at the crosshair, awaited: the values as they are
            raw = np.frombuffer(blob, np.uint8)
        values = raw.view("<i2" if k == 2 else "<f4").reshape(meta["rows"], meta["cols"])
        planes[(meta["axis"], meta["index"], meta["render"])] = values
    return header, planes


def _browser_view(at, seq: int, point, center, width, want=(), epoch="tab1", vol=None, edits=None):
    """Set the views' state as the browser does after a scroll, a click or a window drag.

    ``edits`` counts the user's changes of the crosshair and of the window (by default both
    changed with every state)."""
    vol = vol or at.session_state["explorer_mpr_sync"]["vol"]
    edits = list(edits) if edits is not None else [seq, seq]
    at.session_state["explorer_mpr"] = {"view": {"seq": seq, "epoch": epoch, "vol": vol, "edits": edits,
                                                 "point": list(point), "center": center, "width": width,
                                                 "want": [list(w) for w in want]}}
    return at.run()


def test_three_views_open_at_the_middle_with_their_planes(at):
    from core import sample_ct

    vol = sample_ct().voxels
    assert "voxel (slice 60, row 128, column 128)" in _readout(at)
    header, planes = _payload(at)
    assert header["point"] == [60, 128, 128] and (header["center"], header["width"]) == (40.0, 400.0)
    assert [v["name"] for v in header["views"]] == ["Axial", "Coronal", "Sagittal"]
    assert header["views"][0]["letters"] == {"top": "A", "bottom": "P", "left": "R", "right": "L"}
    # The sample's slices go up (z = 2.5 k - 150): reformats are flipped so the head is at the top.
    assert [v["flip"] for v in header["views"]] == [False, True, True]
    assert set(planes) == {(0, 60, "1"), (1, 128, "1"), (2, 128, "1")}
    np.testing.assert_array_equal(planes[(0, 60, "1")], vol[60])
    np.testing.assert_array_equal(planes[(1, 128, "1")], vol[:, 128, :][::-1])
    np.testing.assert_array_equal(planes[(2, 128, "1")], vol[:, :, 128][::-1])
    assert header["cmap"][:6] == [0, 0, 0, 1, 1, 1] and header["invert"] is False


def test_browser_scroll_moves_the_crosshair_and_gets_the_planes_it_wants(at):
    from core import sample_ct

    vol = sample_ct().voxels
    _browser_view(at, 1, (60, 128, 128), 40, 400)  # the views' first state after they mount
    _browser_view(at, 2, (100, 128, 128), 40, 400, want=[(0, 100), (0, 101), (0, 102)])
    assert not at.exception
    text = _readout(at)
    assert "slice 100" in text and "z 100.0 mm" in text  # the sample's slice k sits at z = 2.5 k - 150
    assert f"{vol[100, 128, 128]} HU" in text
    header, planes = _payload(at)
    assert set(planes) == {(0, 100, "1")}  # a plane the browser lacks at the crosshair goes alone, first
    assert header["slices"][0]["raw"] == header["slices"][0]["length"]  # uncompressed: the browser waits for it
    assert header["rev"] == [1, 1]  # the browser's own change is not sent back as a new revision
    # Then the browser asks again for those it still lacks.
    _browser_view(at, 3, (100, 128, 128), 40, 400, want=[(0, 101), (0, 102)])
    header, planes = _payload(at)
    assert set(planes) == {(0, 101, "1"), (0, 102, "1")}
    assert all(meta["raw"] < meta["length"] for meta in header["slices"])  # prefetched: partly compressed
    np.testing.assert_array_equal(planes[(0, 102, "1")], vol[102])
    # A rerun for another reason sends nothing again.
    at.run()
    assert _payload(at)[1] == {}


def test_a_state_about_another_series_is_ignored(at):
    _browser_view(at, 1, (100, 10, 10), 500, 100, vol="another-series")
    assert "voxel (slice 60, row 128, column 128)" in _readout(at)
    assert at.session_state["explorer_center"] == 40.0


def test_a_new_mount_of_the_views_gets_its_planes_again(at):
    _browser_view(at, 1, (60, 128, 128), 40, 400)
    _browser_view(at, 1, (60, 128, 128), 40, 400, epoch="tab2")
    assert set(_payload(at)[1]) == {(0, 60, "1"), (1, 128, "1"), (2, 128, "1")}


def test_browser_state_is_clipped_and_bad_state_ignored(at):
    _browser_view(at, 1, (10_000, -5, 128), 1e9, -3, want=[(7, 1), (0, 10_000), (1, 3)])
    assert not at.exception
    assert "voxel (slice 119, row 0, column 128)" in _readout(at)
    assert (at.session_state["explorer_center"], at.session_state["explorer_width"]) == (3000.0, 1.0)
    assert set(_payload(at)[1]) == {(0, 119, "1"), (1, 0, "1"), (2, 128, "1")}
    at.session_state["explorer_mpr"] = {"view": {"seq": "x", "point": "nonsense"}}
    at.run()
    assert not at.exception
    assert "voxel (slice 119, row 0, column 128)" in _readout(at)


def test_presets_set_center_and_width_and_reach_the_browser(at):
    at.selectbox(key="explorer_preset").set_value("Lung").run()
    header, _ = _payload(at)
    assert (header["center"], header["width"], header["rev"]) == (-600, 1500, [1, 2])  # the window's only
    at.selectbox(key="explorer_preset").set_value("Bone").run()
    header, _ = _payload(at)
    assert (header["center"], header["width"], header["rev"]) == (480, 2500, [1, 3])
    # A window dragged in the browser: the preset becomes Custom; no new revision goes back.
    _browser_view(at, 1, (60, 128, 128), 100, 2500, edits=(0, 1))
    assert at.selectbox(key="explorer_preset").value == "Custom"
    assert (at.session_state["explorer_center"], _payload(at)[0]["rev"]) == (100.0, [1, 3])
    # A preset chosen, then a state from the browser that only scrolled (or only asked for
    # planes), still with the old window: the scroll is taken, the preset stays.
    at.selectbox(key="explorer_preset").set_value("Lung").run()
    _browser_view(at, 2, (70, 128, 128), 100, 2500, edits=(1, 1), want=[(0, 71)])
    assert at.selectbox(key="explorer_preset").value == "Lung"
    assert (at.session_state["explorer_center"], at.session_state["explorer_width"]) == (-600, 1500)
    assert "voxel (slice 70," in _readout(at)
    _browser_view(at, 3, (70, 128, 128), 100, 2500, edits=(1, 1), want=[(0, 72)])
    assert (at.session_state["explorer_center"], _payload(at)[0]["center"]) == (-600, -600)
    assert not at.exception


def test_roi_statistics_of_a_lung_box(at):
    from scipy.ndimage import binary_erosion

    lab = sample_labels()[75]
    lung3 = (sample_labels()[74:77] == LABELS["lung"]).all(axis=0)  # lung in this slice and both neighbours
    inner = binary_erosion(lung3, structure=np.ones((11, 11)))  # the box and its blur are all lung
    rows, cols = np.nonzero(inner)
    r0, c0 = int(rows[0]) - 4, int(cols[0]) - 4
    assert (lab[r0:r0 + 8, c0:c0 + 8] == LABELS["lung"]).all()
    at.session_state["explorer_k"] = 75
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
    # The views get MinIP slabs of 10 mm: 4 slices of 2.5 mm along the axial axis, 7 of 1.4 mm across.
    from core import sample_ct
    from core.mpr import slab

    header, planes = _payload(at)
    assert header["render"] == ["4minip", "7minip", "7minip"]
    assert header["slab"][0] == "MinIP 10 mm"
    np.testing.assert_array_equal(planes[(0, 60, "4minip")], slab(sample_ct().voxels, 0, 60, width=4, mode="minip"))
    at.selectbox(key="explorer_cmap").set_value("viridis").run()
    at.selectbox(key="explorer_large").set_value("Coronal").run()
    at.slider(key="explorer_zoom").set_value(3.0).run()
    assert not at.exception
    cache = at.session_state["explorer_png_cache"]
    assert any(key[1] == 1 and key[4] == "minip" and key[7] == "viridis" and key[9] == 3.0 for key in cache)
    assert _payload(at)[0]["cmap"][3 * 255:] == [253, 231, 37]  # viridis ends in yellow (OpenCV's table)


def test_mr_single_slice_has_native_units_and_no_hu_presets():
    path = Path(pydicom.__file__).parent / "data" / "test_files" / "MR_small.dcm"
    from dashboard.state import Study

    at = page_test(PAGE)
    at.session_state["study"] = Study(volumes=load_series([path]).volumes, skipped=[], source="test")
    at.run()
    assert not at.exception
    assert "Lung" not in at.selectbox(key="explorer_preset").options
    header, planes = _payload(at)
    assert header["unit"] != "HU"
    assert [v["n"] for v in header["views"]] == [1, 64, 64]
    (axial,) = [v for k, v in planes.items() if k[0] == 0]
    np.testing.assert_array_equal(axial, pydicom.dcmread(path).pixel_array)  # MR_small: rescale 1, 0


def test_each_volume_goes_to_the_browser_under_its_own_random_name(at):
    from dashboard.state import Study

    first = _payload(at)[0]["vol"]
    assert len(first) == 16 and "1.2.826" not in first  # random hex, nothing of the series
    path = Path(pydicom.__file__).parent / "data" / "test_files" / "CT_small.dcm"
    at.session_state["study"] = Study(volumes=load_series([path]).volumes, skipped=[], source="test")
    at.run()
    second = _payload(at)[0]["vol"]
    assert second != first
    assert _payload(at)[0]["point"] == [0, 64, 64]  # the new series opens at its own middle


def test_nifti_of_an_uneven_stack_is_offered_on_its_regular_grid():
    import gzip

    import nibabel as nib

    from core.export import nifti_bytes
    from dashboard.state import Study
    from tests.factory import ct_series

    z = [0.0, 2.0, 4.0, 10.0, 12.0]
    hu = np.stack([np.full((6, 6), 100 * k, np.int16) for k in range(5)])
    vol = load_series(ct_series(hu, positions=np.array([[0.0, 0.0, zz] for zz in z]), spacing=(2, 1, 1))).volumes[0]
    at = page_test(PAGE)
    at.session_state["study"] = Study(volumes=[vol], skipped=[], source="test")
    at.run()
    assert not at.exception
    (button,) = [b for b in at.get("download_button") if b.proto.id.endswith("explorer_dl_nifti")]
    assert button.proto.label == "Download the series as NIfTI on a regular grid (.nii.gz)"
    assert any("not evenly spaced" in c.value and "_regular_grid" in c.value for c in at.caption)
    # What the button sends: the corrected grid, whose affine places the 300 HU slice at z = 10 mm.
    img = nib.Nifti1Image.from_bytes(gzip.decompress(nifti_bytes(vol.corrected())))
    data = np.asarray(img.dataobj)
    k = int(round(np.linalg.solve(img.affine, [0, 0, 10, 1])[2]))
    assert data[0, 0, k] == 300


def test_nifti_of_an_even_stack_is_the_plain_download(at):
    labels = [b.proto.label for b in at.get("download_button")]
    assert "Download the series as NIfTI (.nii.gz)" in labels
