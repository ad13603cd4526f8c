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


def _blobs(at):
    """The views component's header, and each plane's meta with its bytes."""
    (element,) = at.get("bidi_component")
    data = element.proto.bytes
    n = struct.unpack("<I", data[:4])[0]
    header = json.loads(data[4:4 + n])
    return header, [(m, data[4 + n + m["offset"]: 4 + n + m["offset"] + m["length"]]) for m in header["slices"]]


def _payload(at) -> tuple[dict, dict]:
    """The views component's header and its planes, decoded as the browser decodes them."""
    header, blobs = _blobs(at)
    planes = {}
    for meta, blob in blobs:
        if meta["dtype"] in ("u1", "b1"):  # a label plane of the overlay, or padding bits
            continue
        k = 2 if meta["dtype"] == "i2" else 4
        if meta["raw"] < len(blob):  # prefetched: byte planes, the high half compressed
            planes_ = blob[:meta["raw"]] + zlib.decompress(blob[meta["raw"]:])
            raw = np.frombuffer(planes_, np.uint8).reshape(k, -1).T.copy()
        else:  # at the crosshair, awaited: the values as they are
            raw = np.frombuffer(blob, np.uint8)
        values = raw.view("<i2" if k == 2 else "<f4").reshape(meta["rows"], meta["cols"])
        planes[(meta["axis"], meta["index"], meta["render"])] = values
    return header, planes


def _browser_view(at, seq: int, point, center, width, want=(), epoch="tab1", vol=None, edits=None,
                  measurements=None, mrev=0, ui=None, lwant=()):
    """Set the views' state as the browser does after a scroll, a click, a window drag or a measurement.

    ``edits`` counts the user's changes of the crosshair and of the window (by default both
    changed with every state)."""
    vol = vol or at.session_state["explorer_mpr_sync"]["vol"]
    edits = list(edits) if edits is not None else [seq, seq]
    at.session_state["explorer_mpr"] = {"view": {"seq": seq, "epoch": epoch, "vol": vol, "edits": edits,
                                                 "point": list(point), "center": center, "width": width,
                                                 "want": [list(w) for w in want], "lwant": [list(w) for w in lwant],
                                                 "measurements": measurements or [], "mrev": mrev, "ui": ui or {}}}
    return at.run()


def _label_planes(at) -> dict:
    """The overlay's label planes in the views' payload, by (axis, index)."""
    out = {}
    for meta, blob in _blobs(at)[1]:
        if meta["dtype"] == "u1":
            out[(meta["axis"], meta["index"])] = np.frombuffer(zlib.decompress(blob), np.uint8).reshape(
                meta["rows"], meta["cols"])
    return out


def test_three_views_open_at_the_middle_with_their_planes(at):
    from core import sample_ct

    vol = sample_ct().voxels
    assert "voxel (slice 61, row 129, column 129)" in _readout(at)
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
    assert "slice 101" in text and "z 100 mm" in text  # the sample's slice k sits at z = 2.5 k - 150
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
    assert "voxel (slice 61, row 129, column 129)" in _readout(at)
    assert at.session_state["explorer_center"] == 40.0


def test_a_new_mount_of_the_views_gets_its_planes_again(at):
    _browser_view(at, 1, (60, 128, 128), 40, 400)
    _browser_view(at, 1, (60, 128, 128), 40, 400, epoch="tab2")
    assert set(_payload(at)[1]) == {(0, 60, "1"), (1, 128, "1"), (2, 128, "1")}


def test_browser_state_is_clipped_and_bad_state_ignored(at):
    _browser_view(at, 1, (10_000, -5, 128), 1e9, -3, want=[(7, 1), (0, 10_000), (1, 3)])
    assert not at.exception
    assert "voxel (slice 120, row 1, column 129)" in _readout(at)
    assert (at.session_state["explorer_center"], at.session_state["explorer_width"]) == (3000.0, 1.0)
    assert set(_payload(at)[1]) == {(0, 119, "1"), (1, 0, "1"), (2, 128, "1")}
    at.session_state["explorer_mpr"] = {"view": {"seq": "x", "point": "nonsense"}}
    at.run()
    assert not at.exception
    assert "voxel (slice 120, row 1, column 129)" in _readout(at)


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
    assert "voxel (slice 71," in _readout(at)
    _browser_view(at, 3, (70, 128, 128), 100, 2500, edits=(1, 1), want=[(0, 72)])
    assert (at.session_state["explorer_center"], _payload(at)[0]["center"]) == (-600, -600)
    assert not at.exception


def test_slab_and_colormap(at):
    at.slider(key="explorer_slab_mm").set_value(10.0).run()
    at.selectbox(key="explorer_slab_mode").set_value("minip").run()
    # The views get MinIP slabs of 10 mm: 4 slices of 2.5 mm along the axial axis, 7 of 1.4 mm across.
    from core import sample_ct
    from core.mpr import slab

    header, planes = _payload(at)
    assert header["render"] == ["4minip", "7minip", "7minip"]
    assert header["slab"][0] == "MinIP 10 mm"
    np.testing.assert_array_equal(planes[(0, 60, "4minip")], slab(sample_ct().voxels, 0, 60, width=4, mode="minip"))
    assert at.selectbox(key="explorer_cmap").options == ["Grey", "Inverted grey", "Viridis"]  # shown capitalised
    at.selectbox(key="explorer_cmap").set_value("viridis").run()
    assert not at.exception
    assert _payload(at)[0]["cmap"][3 * 255:] == [253, 231, 37]  # viridis ends in yellow (OpenCV's table)


def test_numbers_are_written_the_apps_one_way():
    """core.numbers: at most three decimals, no trailing zeros, a space before the unit."""
    from dashboard.state import Study
    from tests.factory import ct_series, ramp_volume

    files = ct_series(ramp_volume((6, 16, 16), seed=2), spacing=(2.0, 0.9765625, 0.9765625))
    at = page_test(PAGE)
    at.session_state["study"] = Study(volumes=load_series(files).volumes, skipped=[], source="test")
    at.run()
    at.slider(key="explorer_slab_mm").set_value(3.0).run()
    assert not at.exception
    # 3 mm across 0.9765625 mm columns: 3 of them, 2.9296875 mm, written 2.93 mm (not 2.92969).
    assert _payload(at)[0]["slab"] == ["MIP 4 mm", "MIP 2.93 mm", "MIP 2.93 mm"]
    assert "x 7.8, y 7.8, z 6 mm (LPS)" in _readout(at)  # slice 4 of 6 at z = 2 x 3; not "z 6.0"


def _page_of_bundled_file(name: str):
    """The explorer on one of pydicom's bundled files."""
    from dashboard.state import Study

    path = Path(pydicom.__file__).parent / "data" / "test_files" / name
    at = page_test(PAGE)
    at.session_state["study"] = Study(volumes=load_series([path]).volumes, skipped=[], source="test")
    at.run()
    assert not at.exception
    return at, path


def test_mr_single_slice_has_native_units_and_no_hu_presets():
    at, path = _page_of_bundled_file("MR_small.dcm")
    assert "Lung" not in at.selectbox(key="explorer_preset").options
    header, planes = _payload(at)
    assert header["unit"] != "HU"
    assert [v["n"] for v in header["views"]] == [1, 64, 64]
    (axial,) = [v for k, v in planes.items() if k[0] == 0]
    np.testing.assert_array_equal(axial, pydicom.dcmread(path).pixel_array)  # MR_small: rescale 1, 0


def test_a_single_slice_shows_only_its_own_view_and_says_why():
    """A CT localizer's one slice: the coronal and sagittal views would be one pixel tall."""
    at, _ = _page_of_bundled_file("CT_small.dcm")
    header, planes = _payload(at)
    assert header["single"] is True and header["ui"]["layout"] == "0" and header["ui"]["cine"] == 0
    assert {k[0] for k in planes} == {0}
    assert any(c.value.startswith("A single slice: only the axial view") for c in at.caption)
    assert not [s for s in at.slider if s.key == "explorer_slab_mm"]  # no slab across one slice
    # Even when the browser asks for the other planes (a layout kept from another series), none go.
    _browser_view(at, 1, (0, 64, 64), 40, 400, want=[(1, 64), (2, 64), (1, 3)], ui={"layout": "all"})
    assert not at.exception
    header, planes = _payload(at)
    assert header["ui"]["layout"] == "0" and not [k for k in planes if k[0] != 0]
    assert "voxel (slice 1, row 65, column 65)" in _readout(at)


def test_several_slices_keep_three_views(at):
    header, _ = _payload(at)
    assert header["single"] is False
    assert not any(c.value.startswith("A single slice") for c in at.caption)


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


def _uneven_stack_page():
    """The explorer on a 5-slice series with slices at z = 0, 2, 4, 10 and 12 mm (a gap)."""
    from dashboard.state import Study
    from tests.factory import ct_series

    z = [0.0, 2.0, 4.0, 10.0, 12.0]
    hu = np.stack([np.full((6, 6), 100 * k, np.int16) for k in range(5)])
    vol = load_series(ct_series(hu, positions=np.array([[0.0, 0.0, zz] for zz in z]), spacing=(2, 1, 1))).volumes[0]
    at = page_test(PAGE)
    at.session_state["study"] = Study(volumes=[vol], skipped=[], source="test")
    return at.run(), vol


def test_nifti_of_an_uneven_stack_is_offered_on_its_regular_grid():
    import gzip

    import nibabel as nib

    from core.export import nifti_bytes

    at, vol = _uneven_stack_page()
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


def _lung_box():
    from scipy.ndimage import binary_erosion

    lab = sample_labels()[75]
    lung3 = (sample_labels()[74:77] == LABELS["lung"]).all(axis=0)  # lung in this slice and both neighbours
    inner = binary_erosion(lung3, structure=np.ones((11, 11)))  # the box and its blur are all lung
    rows, cols = np.nonzero(inner)
    r0, c0 = int(rows[0]) - 4, int(cols[0]) - 4
    assert (lab[r0:r0 + 8, c0:c0 + 8] == LABELS["lung"]).all()
    return r0, c0


def _lung_rectangle(r0: int, c0: int) -> dict:
    return {"id": "a", "kind": "rectangle", "axis": 0, "index": 75,
            "points": [[r0 - 0.4, c0 - 0.4], [r0 + 7.4, c0 + 7.4]]}


def test_measurements_from_the_views_are_listed_with_exact_values_and_kept_across_pages(at):
    r0, c0 = _lung_box()
    ms = [
        # Pixel centres r0..r0+7 and c0..c0+7: 64 voxels of lung.
        _lung_rectangle(r0, c0),
        # 20 rows of 2.5 mm on the coronal view: 50 mm, whatever the columns' 1.4 mm.
        {"id": "b", "kind": "length", "axis": 1, "index": 128, "points": [[10, 30], [30, 30]]},
        {"id": "c", "kind": "angle", "axis": 0, "index": 60, "points": [[0, 10], [0, 0], [10, 0]]},
        {"id": "d", "kind": "point", "axis": 2, "index": 100, "points": [[50.2, 60.7]]},
        {"id": "bad", "kind": "spiral", "axis": 0, "index": 1, "points": [[0, 0]]},
    ]
    _browser_view(at, 1, (60, 128, 128), 40, 400, measurements=ms)
    assert not at.exception
    table = next(df.value for df in at.dataframe if "Measurement" in df.value.columns)
    assert list(table["Measurement"]) == ["Rectangle 1", "Length 1", "Angle 1", "Point 1"]  # numbered per kind
    assert list(table["Slice"]) == [76, 129, 61, 101]  # counted from 1
    assert list(table["View"]) == ["Axial", "Coronal", "Axial", "Sagittal"]
    from core import sample_ct
    from core.annotations import Measurement, measure
    from core.numbers import decimal

    rect = table.iloc[0]
    exact = measure(sample_ct(), Measurement("rectangle", 0, 75, tuple(map(tuple, ms[0]["points"]))))
    assert rect["Voxels"] == "64" and rect["Area (mm²)"] == decimal(64 * 1.4 * 1.4, places=1)
    assert rect["Mean (HU)"] == decimal(exact["mean"], places=1) and abs(exact["mean"] - TISSUE_HU["lung"]) < 5
    assert table.iloc[1]["Length (mm)"] == "50"  # core.numbers: no trailing zeros
    assert table.iloc[2]["Angle (degrees)"] == "90"
    assert table.iloc[3]["Value (HU)"] == decimal(sample_ct().voxels[50, 61, 100])
    # Cells a kind has no value for are blank (not "None" or "nan").
    assert table.iloc[1]["Mean (HU)"] == "" and table.iloc[0]["Length (mm)"] == ""
    assert not table.isna().any().any()
    assert not table.astype(str).isin(["None", "nan", "NaN"]).any().any()
    store = at.session_state["explorer_mpr_store"]
    (entry,) = store.values()
    assert [m.id for m in entry["measurements"]] == ["a", "b", "c", "d"]
    # To another page and back: the list is still there, and goes back to the browser.
    at.switch_page("pages/2_HU_histogram.py").run()
    assert not at.exception
    at.switch_page("pages/1_Volume_explorer.py").run()
    assert not at.exception
    header, _ = _payload(at)
    assert [m["id"] for m in header["measurements"]] == ["a", "b", "c", "d"]
    assert header["measurements"][1]["points"] == [[10.0, 30.0], [30.0, 30.0]]


def test_the_histogram_scope_is_the_last_roi_drawn(at):
    r0, c0 = _lung_box()
    ms = [_lung_rectangle(r0, c0)]
    _browser_view(at, 1, (60, 128, 128), 40, 400, measurements=ms)
    at.switch_page("pages/2_HU_histogram.py").run()
    at.radio(key="histogram_scope").set_value("Explorer ROI").run()
    assert not at.exception
    assert "No ROI yet" not in "".join(i.value for i in at.info)


def test_delete_all_and_a_stale_list_from_the_browser_does_not_undo_it(at):
    ms = [{"id": "a", "kind": "length", "axis": 0, "index": 60, "points": [[0, 0], [0, 10]]}]
    _browser_view(at, 1, (60, 128, 128), 40, 400, measurements=ms)
    assert _payload(at)[0]["mrev"] == 0
    at.button(key="explorer_clear_measurements").click().run()
    header = _payload(at)[0]
    assert (header["mrev"], header["measurements"]) == (1, [])
    _browser_view(at, 2, (60, 128, 128), 40, 400, measurements=ms, mrev=0)  # sent before it saw the clear
    assert _payload(at)[0]["measurements"] == []
    assert "No measurements yet" in " ".join(c.value for c in at.caption)
    _browser_view(at, 3, (60, 128, 128), 40, 400, measurements=ms, mrev=1)  # drawn again after it
    assert [m["id"] for m in _payload(at)[0]["measurements"]] == ["a"]


def test_the_geometry_switch_is_on_the_explorer():
    at, vol = _uneven_stack_page()
    assert at.toggle(key="load_corrected_0").value is False
    at.toggle(key="load_corrected_0").set_value(True).run()
    assert not at.exception
    header, _ = _payload(at)
    assert header["views"][0]["n"] == vol.corrected().shape[0]  # the views show the regular grid now
    assert at.toggle(key="load_corrected_0").value is True


def test_the_layout_chosen_in_the_views_is_kept(at):
    _browser_view(at, 1, (60, 128, 128), 40, 400, ui={"layout": "1", "tool": "ellipse", "fps": 12, "cine": 2})
    at.switch_page("pages/2_HU_histogram.py").run()
    at.switch_page("pages/1_Volume_explorer.py").run()
    assert _payload(at)[0]["ui"] == {"layout": "1", "tool": "ellipse", "fps": 12, "cine": 2}


def test_the_sample_tissue_overlay_goes_as_label_planes_flipped_like_the_views(at):
    at.selectbox(key="explorer_overlay_source").set_value("Sample tissue labels").run()
    assert not at.exception
    header, _ = _payload(at)
    labels = np.where(sample_labels() > 1, sample_labels(), 0).astype(np.uint8)
    overlay = header["overlay"]
    assert overlay["opacity"] == 0.4 and overlay["outline"] is False
    present = sorted(int(v) for v in np.unique(labels) if v)
    assert [v for v, _ in overlay["legend"]] == present  # only the labels present
    assert set(overlay["colors"]) == {str(v) for v in present}
    planes = _label_planes(at)
    assert set(planes) == {(0, 60), (1, 128), (2, 128)}
    np.testing.assert_array_equal(planes[(0, 60)], labels[60])
    np.testing.assert_array_equal(planes[(1, 128)], labels[:, 128, :][::-1])
    np.testing.assert_array_equal(planes[(2, 128)], labels[:, :, 128][::-1])
    # The browser asks for the label planes it lacks; a slab shows its centre slice's labels.
    at.slider(key="explorer_slab_mm").set_value(10.0).run()
    _browser_view(at, 1, (61, 128, 128), 40, 400, want=[(0, 62)], lwant=[(0, 61), (0, 62)])
    planes = _label_planes(at)
    assert (0, 62) in planes
    np.testing.assert_array_equal(planes[(0, 62)], labels[62])
    assert _payload(at)[0]["render"][0] == "4mip"
    # Nothing is sent again.
    at.run()
    assert _label_planes(at) == {}


@pytest.mark.browser
def test_a_single_slice_in_chromium_shows_one_view_without_layout_or_cine(app_url, page):
    """CT_small (one slice) uploaded: the axial view alone, no Layout/Cine controls, the caption says why."""
    from playwright.sync_api import expect

    from tests.browser import no_exception, wait_idle

    page.goto(app_url)
    wait_idle(page)
    path = Path(pydicom.__file__).parent / "data" / "test_files" / "CT_small.dcm"
    page.locator('[data-testid="stFileUploader"] input[type="file"]').first.set_input_files([str(path)])
    page.get_by_text("1 uploaded file: 1 series found").wait_for(timeout=60_000)
    page.locator('[data-testid="stSidebar"]').get_by_role("link", name="Volume explorer", exact=True).click()
    page.get_by_text("A single slice: only the axial view").wait_for(timeout=60_000)
    wait_idle(page)
    frame = page.locator('.hf-grid').first
    expect(frame.locator('.hf-view[data-axis="0"]')).to_be_visible(timeout=30_000)
    expect(frame.locator('.hf-view[data-axis="1"]')).to_be_hidden()
    expect(frame.locator('.hf-view[data-axis="2"]')).to_be_hidden()
    expect(page.get_by_label("Layout")).to_be_hidden()
    expect(page.get_by_label("Cine view")).to_be_hidden()
    no_exception(page)
