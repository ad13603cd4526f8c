"""The views component in Chromium, on generated volumes: zoom, pan, wheel, keys, measurements, overlays.

A small harness page mounts dashboard/mpr_view.js as Streamlit does (its default export called with
``data``, ``parentElement`` and ``setStateValue``) and feeds it the bytes that
``dashboard.mpr_view.payload`` makes for the page, so what is tested is the component itself, with
the planes Python sends. Pixels are read back from the canvas, or from a screenshot where a CSS
zoom is involved.
"""

from __future__ import annotations

import base64
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from core import Volume
from core.annotations import Measurement, measure, region_mask
from core.numbers import decimal
from core.overlay import LabelMap
from core.windowing import window
from dashboard.mpr_view import new_sync, payload

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
JS = (ROOT / "dashboard" / "mpr_view.js").read_text()
CSS = (ROOT / "dashboard" / "mpr_view.css").read_text()

HARNESS = """
async ([src, css]) => {
  document.body.style.margin = '0';
  document.body.style.background = '#fff';
  const style = document.createElement('style');
  style.textContent = css;
  document.head.appendChild(style);
  const host = document.createElement('div');
  host.className = 'hf-root';
  host.style.width = '1200px';
  document.body.appendChild(host);
  const url = URL.createObjectURL(new Blob([src], {type: 'text/javascript'}));
  const mod = await import(url);
  window.__states = [];
  window.__feed = (b64) => {
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    mod.default({data: bytes, parentElement: host, setStateValue: (k, v) => window.__states.push(v)});
  };
  window.__viewer = () => host.__viewer;
  window.__decimal = mod.decimal;
}
"""


def _volume(shape=(20, 40, 50), spacing=(3.0, 0.5, 0.8)) -> Volume:
    """Every voxel a distinct-ish value in 2..252 (windowed 128/256 its grey is the value itself)."""
    k, j, i = np.indices(shape)
    vox = ((7 * j + 3 * i + 11 * k) % 251 + 2).astype(np.int16)
    return Volume(voxels=vox, spacing=spacing, series_uid="1.2.3", modality="CT", units="HU")


def _mount(page, vol: Volume, *, overlay=None, point=None, center=128.0, width=256.0) -> None:
    """Mount the views on ``vol`` and send them every plane (as Python would, a few at a time)."""
    page.set_content("<html><head></head><body></body></html>")
    page.evaluate(HARNESS, [JS, CSS])
    sync = new_sync(vol)
    point = point or {a: n // 2 for a, n in enumerate(vol.shape)}
    kw = dict(point=point, center=center, width=width, colormap="grey", slab_mm=0.0, slab_mode="mip",
              window_range=(-1200.0, 3000.0, 6000.0), unit="HU", overlay=overlay)
    every = [(a, i) for a in (0, 1, 2) for i in range(vol.shape[a])]
    sync["want"], sync["lwant"] = [], []
    first = True
    while first or sync["want"] or sync["lwant"]:
        data = payload(vol, sync, **kw)
        page.evaluate("(b) => window.__feed(b)", base64.b64encode(data).decode())
        first = False
        sync["want"] = [w for w in every if (w[0], w[1], "1") not in sync["sent"]]
        sync["lwant"] = [w for w in every if overlay is not None and (overlay.labels.key, *w) not in sync["lsent"]]
    for axis in (0, 1, 2):
        _wait_index(page, axis, point[axis])


def _q(axis: int, part: str = "canvas") -> str:
    return f'.hf-view[data-axis="{axis}"] {part}'


def _wait_index(page, axis: int, index: int) -> None:
    page.wait_for_function(
        "([sel, i]) => { const c = document.querySelector(sel); return c && c.dataset.index === String(i); }",
        arg=[_q(axis), index])


def _canvas_rgb(page, axis: int) -> np.ndarray:
    flat = page.evaluate("""(sel) => {
        const c = document.querySelector(sel);
        return Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data);
    }""", _q(axis))
    h, w = page.evaluate("(sel) => [document.querySelector(sel).height, document.querySelector(sel).width]", _q(axis))
    return np.array(flat, np.uint8).reshape(h, w, 4)[..., :3]


def _stage(page, axis: int) -> dict:
    stage = page.locator(_q(axis, ".hf-stage"))
    stage.scroll_into_view_if_needed()
    return stage.bounding_box()


def _screen(page, vol: Volume, axis: int, row: float, col: float) -> tuple[float, float]:
    """Page coordinates of the plane point (row, col) (array coordinates) at zoom 1."""
    from dashboard.mpr_view import view_layouts

    v = view_layouts(vol)[axis]
    box = _stage(page, axis)
    drow = v["rows"] - 1 - row if v["flip"] else row
    return box["x"] + (col + 0.5) / v["cols"] * box["width"], box["y"] + (drow + 0.5) / v["rows"] * box["height"]


def _drag(page, vol: Volume, axis: int, a, b) -> None:
    """Press at the plane point ``a`` (row, col) of a view, move to ``b`` in a few steps, release."""
    page.mouse.move(*_screen(page, vol, axis, *a))
    page.mouse.down()
    page.mouse.move(*_screen(page, vol, axis, *b), steps=4)
    page.mouse.up()


def _tool(page, name: str) -> None:
    page.locator(f'button[data-tool="{name}"]').click()


def _measurements(page) -> list[dict]:
    return page.evaluate("() => window.__viewer().measurements")


def _wheel(page, axis: int, dy: float, *, n: int = 1, mode: int = 0, ctrl: bool = False, at=None) -> None:
    box = _stage(page, axis)
    x, y = at or (box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.evaluate("""([sel, x, y, dy, n, mode, ctrl]) => {
        const stage = document.querySelector(sel);
        for (let k = 0; k < n; k++) stage.dispatchEvent(new WheelEvent('wheel', {deltaY: dy, deltaMode: mode,
            ctrlKey: ctrl, clientX: x, clientY: y, bubbles: true, cancelable: true}));
    }""", [_q(axis, ".hf-stage"), x, y, dy, n, mode, ctrl])


def test_trackpad_wheel_events_scroll_by_the_amount_turned(page):
    vol = _volume()
    _mount(page, vol)
    _wheel(page, 0, 4, n=20)  # a trackpad: 80 px in small events is less than one notch
    assert page.locator(_q(0)).get_attribute("data-index") == "10"  # painted at once: nothing moved
    _wheel(page, 0, 4, n=5)  # 100 px in all: one slice
    _wait_index(page, 0, 11)
    _wheel(page, 0, 100, n=3)  # three notches of a mouse wheel: three slices
    _wait_index(page, 0, 14)
    _wheel(page, 0, -3, mode=1)  # three lines (120 px) up: one slice, 20 px left over
    _wait_index(page, 0, 13)
    _wheel(page, 0, 240)  # the other way: what was left over upwards does not count
    _wait_index(page, 0, 15)
    assert page.locator(_q(0, ".hf-slider-head .hf-value")).inner_text() == "16 / 20"  # counted from 1


def test_keyboard_works_after_a_click(page):
    vol = _volume()
    _mount(page, vol)
    x, y = _screen(page, vol, 2, 5, 7)
    page.mouse.click(x, y)  # a click on the sagittal view (Navigate: moves the crosshair too)
    _wait_index(page, 0, 5)
    page.keyboard.press("ArrowDown")
    _wait_index(page, 2, 26)
    page.keyboard.press("PageDown")
    _wait_index(page, 2, 31)  # a tenth of the 50 slices
    page.keyboard.press("End")
    _wait_index(page, 2, 49)
    page.keyboard.press("ArrowUp")
    _wait_index(page, 2, 48)
    page.keyboard.press("Home")
    _wait_index(page, 2, 0)


def test_zoom_toward_the_pointer_and_pan_land_where_expected(page):
    vol = _volume(shape=(4, 40, 50), spacing=(3.0, 1.0, 1.0))
    _mount(page, vol)
    box = _stage(page, 0)
    # Zoom with Ctrl + wheel at the centre of voxel (row 10, col 12): that voxel stays under the pointer.
    px, py = _screen(page, vol, 0, 10, 12)
    _wheel(page, 0, -400, ctrl=True, at=(px, py))
    page.wait_for_function("(sel) => document.querySelector(sel).dataset.zoom !== '1|0|0'", arg=_q(0, ".hf-stage"))
    s, tx, ty = map(float, page.locator(_q(0, ".hf-stage")).get_attribute("data-zoom").split("|"))
    assert s == pytest.approx(math.exp(1.0))
    vx, vy = box["width"] / 50, box["height"] / 40  # one voxel at zoom 1, in page pixels

    def shown_at(x, y) -> int:
        shot = cv2.imdecode(np.frombuffer(page.screenshot(clip={"x": x - 1, "y": y - 1, "width": 3, "height": 3}),
                                          np.uint8), cv2.IMREAD_GRAYSCALE)
        return int(shot[1, 1])

    def voxel_at(x, y) -> tuple[int, int]:
        return int(((y - box["y"] - ty) / s) // vy), int(((x - box["x"] - tx) / s) // vx)

    assert voxel_at(px, py) == (10, 12)
    assert shown_at(px, py) == vol.voxels[2, 10, 12]
    # Elsewhere, each screen point shows the voxel the transform puts there (sampled at voxel centres).
    for row, col in [(8, 9), (12, 15), (10, 10)]:
        x = box["x"] + tx + (col + 0.5) * vx * s
        y = box["y"] + ty + (row + 0.5) * vy * s
        assert shown_at(x, y) == vol.voxels[2, row, col], (row, col)
    # The pointer readout agrees.
    page.mouse.move(box["x"] + tx + 15.5 * vx * s, box["y"] + ty + 12.5 * vy * s)
    assert page.locator(_q(0, ".hf-probe")).inner_text() == f"{vol.voxels[2, 12, 15]} HU"
    # Pan with Shift + drag: the picture moves with the pointer, by whole voxels here.
    start = (box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.keyboard.down("Shift")
    page.mouse.move(*start)
    page.mouse.down()
    page.mouse.move(start[0] + 2 * vx * s, start[1] + 1 * vy * s, steps=4)
    page.mouse.up()
    page.keyboard.up("Shift")
    s2, tx2, ty2 = map(float, page.locator(_q(0, ".hf-stage")).get_attribute("data-zoom").split("|"))
    assert (s2, tx2, ty2) == pytest.approx((s, tx + 2 * vx * s, ty + vy * s), abs=0.51)
    x = box["x"] + tx2 + (12 + 0.5) * vx * s
    y = box["y"] + ty2 + (10 + 0.5) * vy * s
    assert shown_at(x, y) == vol.voxels[2, 10, 12]
    # R resets (after a click in the view, the keys are the view's).
    page.locator(_q(0, ".hf-stage")).focus()
    page.keyboard.press("r")
    page.wait_for_function("(sel) => document.querySelector(sel).dataset.zoom === '1|0|0'", arg=_q(0, ".hf-stage"))


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_a_length_reads_its_distance_in_mm_on_each_view(page, axis):
    vol = _volume()  # 3 mm slices, 0.5 mm rows, 0.8 mm columns
    _mount(page, vol)
    _tool(page, "length")
    a, b = (4.0, 6.0), (12.0, 18.0)  # 8 rows and 12 columns apart
    row_mm, col_mm = {0: (0.5, 0.8), 1: (3.0, 0.8), 2: (3.0, 0.5)}[axis]
    known = math.hypot(8 * row_mm, 12 * col_mm)
    _drag(page, vol, axis, a, b)
    (m,) = _measurements(page)
    assert (m["kind"], m["axis"], m["index"]) == ("length", axis, vol.shape[axis] // 2)
    # The points land within half a screen pixel of the voxel centres aimed at.
    box = _stage(page, axis)
    rows, cols = (vol.shape[d] for d in ((1, 2), (0, 2), (0, 1))[axis])
    tol = (0.6 * rows / box["height"], 0.6 * cols / box["width"])
    for got, want in zip(m["points"], (a, b), strict=True):
        assert abs(got[0] - want[0]) <= tol[0] and abs(got[1] - want[1]) <= tol[1]
    shown = page.evaluate("([id, axis]) => { const v = window.__viewer(); return v.values(v.measurements[0], "
                          "v.views[axis]).length_mm; }", [m["id"], axis])
    exact = measure(vol, Measurement("length", axis, m["index"], tuple(map(tuple, m["points"]))))["length_mm"]
    assert shown == pytest.approx(exact, rel=1e-12)  # the browser's figure is Python's on the same points
    assert shown == pytest.approx(known, abs=math.hypot(tol[0] * row_mm, tol[1] * col_mm) * 2)
    tag = page.locator(_q(axis, ".hf-tag")).inner_text()
    assert tag == f"{decimal(shown)} mm"  # core.numbers: "120 mm", not "120.00 mm"
    # The length stays on its slice: another slice does not show it.
    page.locator(_q(axis, ".hf-stage")).focus()
    page.keyboard.press("ArrowDown")
    _wait_index(page, axis, vol.shape[axis] // 2 + 1)
    assert page.locator(_q(axis, ".hf-tag")).count() == 0


def test_ellipse_statistics_equal_numpy_on_the_same_pixels(page):
    vol = _volume()
    _mount(page, vol)
    _tool(page, "ellipse")
    _drag(page, vol, 1, (3.3, 8.2), (15.6, 30.9))
    (m,) = _measurements(page)
    got = page.evaluate("() => { const v = window.__viewer(); return v.values(v.measurements[0], v.views[1]); }")
    plane = vol.voxels[:, m["index"], :]
    mask = region_mask("ellipse", tuple(map(tuple, m["points"])), plane.shape)
    values = plane[mask].astype(np.float64)
    assert values.size > 100
    assert got["n"] == values.size and got["min"] == values.min() and got["max"] == values.max()
    assert got["mean"] == pytest.approx(values.mean(), rel=1e-12)
    assert got["sd"] == pytest.approx(values.std(), rel=1e-9)
    assert got["area_mm2"] == pytest.approx(values.size * 3.0 * 0.8)
    # Listed under the views with every statistic's unit, numbers as core.numbers writes them.
    assert page.locator(".hf-values").inner_text() == (
        f"mean {decimal(got['mean'], places=1)} HU, SD {decimal(got['sd'], places=1)} HU, "
        f"min {decimal(got['min'], places=1)} HU, max {decimal(got['max'], places=1)} HU, "
        f"{decimal(got['area_mm2'], places=1)} mm²")
    # Move it by a handle, then delete it with the Delete key.
    _drag(page, vol, 1, m["points"][1], (17.0, 33.0))
    (moved,) = _measurements(page)
    assert moved["points"][0] == m["points"][0] and moved["points"][1] != m["points"][1]
    # Named in the list: the name goes with it to the page, and shows on the view.
    page.get_by_label("Label of Ellipse 1").fill("aorta")
    page.get_by_label("Label of Ellipse 1").press("Enter")
    page.wait_for_function("() => window.__states.length && window.__states.at(-1).measurements[0].label === 'aorta'")
    assert page.locator(_q(1, ".hf-tag")).inner_text().startswith("aorta: ")
    page.locator(_q(1, ".hf-stage")).focus()
    page.keyboard.press("Delete")
    page.wait_for_function("() => window.__viewer().measurements.length === 0")
    # What goes back to Python: the list as it is now.
    page.wait_for_function("() => window.__states.length && window.__states.at(-1).measurements.length === 0")


def test_overlay_pixels_are_the_label_colours_at_the_chosen_opacity(page):
    from dashboard.overlay_ui import Overlay

    vol = _volume()
    labels = np.zeros(vol.shape, np.uint8)
    labels[:, 5:15, 10:30] = 1
    labels[8:12, 20:30, 20:40] = 2
    lm = LabelMap(labels=labels, names={1: "Box", 2: "Block"}, colors={1: (255, 0, 0), 2: (10, 200, 90)},
                  source="test")
    a = 0.4
    _mount(page, vol, overlay=Overlay(lm, a, False), point={0: 10, 1: 25, 2: 25})
    for axis, plane, lab in [(0, vol.voxels[10], labels[10]), (1, vol.voxels[:, 25, :], labels[:, 25, :]),
                             (2, vol.voxels[:, :, 25], labels[:, :, 25])]:
        if page.evaluate("(a) => window.__viewer().views[a].flip", axis):  # reformats are shown head up
            plane, lab = plane[::-1], lab[::-1]
        grey = window(plane, 128, 256).astype(np.float64)
        expected = np.repeat(grey[..., None], 3, axis=2)
        for value, rgb in lm.colors.items():
            hit = lab == value
            expected[hit] = np.floor(grey[hit][:, None] * (1 - a) + np.array(rgb, float) * a + 0.5)
        np.testing.assert_array_equal(_canvas_rgb(page, axis), expected.astype(np.uint8), err_msg=f"axis {axis}")
    legend = page.locator(".hf-legend").inner_text()
    assert "Box" in legend and "Block" in legend
    # Outline only: the pixels of a label with a 4-neighbour of another label (or at the plane's edge).
    _mount(page, vol, overlay=Overlay(lm, 1.0, True), point={0: 10, 1: 25, 2: 25})
    lab = labels[10]
    padded = np.pad(lab, 1, constant_values=255)
    inner = np.all([padded[1 + dr:1 + dr + lab.shape[0], 1 + dc:1 + dc + lab.shape[1]] == lab
                    for dr, dc in ((-1, 0), (1, 0), (0, -1), (0, 1))], axis=0)
    grey = window(vol.voxels[10], 128, 256)
    expected = np.repeat(grey[..., None], 3, axis=2)
    for value, rgb in lm.colors.items():
        expected[(lab == value) & ~inner] = rgb
    assert ((lab != 0) & ~inner).sum() > 50 and ((lab != 0) & inner).sum() > 50
    np.testing.assert_array_equal(_canvas_rgb(page, 0), expected)


def test_cine_loops_through_the_slices(page):
    vol = _volume(shape=(5, 20, 20))
    _mount(page, vol, point={0: 3, 1: 10, 2: 10})
    page.locator('select[aria-label="Cine view"]').select_option("0")
    page.locator('input[aria-label="Frames per second"]').fill("30")
    page.locator('input[aria-label="Frames per second"]').dispatch_event("change")
    page.locator('button[data-action="play"]').click()
    _wait_index(page, 0, 4)
    _wait_index(page, 0, 0)  # after the last slice, the first
    _wait_index(page, 0, 1)
    page.locator('button[data-action="play"]').click()  # Stop
    assert page.locator('button[data-action="play"]').inner_text() == "Play"


def test_one_view_large_layout(page):
    vol = _volume(shape=(10, 40, 50))  # the coronal view 40 mm wide, 30 mm high
    _mount(page, vol)
    narrow = _stage(page, 1)["width"]
    page.locator('select[aria-label="Layout"]').select_option("1")
    assert not page.locator('.hf-view[data-axis="0"]').is_visible()
    assert not page.locator('.hf-view[data-axis="2"]').is_visible()
    assert _stage(page, 1)["width"] > 2 * narrow
    assert page.evaluate("() => window.__viewer().ui.layout") == "1"


def test_a_measurement_dragged_by_its_outline_moves_whole(page):
    vol = _volume(shape=(10, 40, 50))
    _mount(page, vol)
    _tool(page, "rectangle")
    _drag(page, vol, 0, (10, 10), (20, 30))
    (before,) = _measurements(page)
    # Grab the top edge half-way along, move 3 rows down and 4 columns right.
    _drag(page, vol, 0, (before["points"][0][0], 20), (before["points"][0][0] + 3, 24))
    (after,) = _measurements(page)
    assert len(_measurements(page)) == 1 and after["id"] == before["id"]
    shift = np.subtract(after["points"], before["points"])
    np.testing.assert_allclose(shift, [[3, 4], [3, 4]], atol=0.1)  # both corners, by the same amount


def test_in_the_app_measurements_and_layout_survive_a_visit_to_another_page(page, app_url):
    from tests.browser import no_exception, wait_idle

    page.goto(app_url + "/Volume_explorer")
    wait_idle(page)
    page.locator('.hf-view[data-axis="0"] canvas[data-painted]').wait_for()
    page.locator('button[data-tool="length"]').click()
    box = page.locator(_q(0, ".hf-stage")).bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.5)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.6, box["y"] + box["height"] * 0.5, steps=4)
    page.mouse.up()
    page.locator('select[aria-label="Layout"]').select_option("0")
    # The page lists it with its exact value once the views have told it.
    table = page.locator('[data-testid="stDataFrame"]').filter(has_text="Length 1")
    table.wait_for()
    wait_idle(page)
    page.locator('[data-testid="stSidebar"]').get_by_role("link", name="HU histogram").click()
    wait_idle(page)
    page.locator('[data-testid="stSidebar"]').get_by_role("link", name="Volume explorer").click()
    wait_idle(page)
    page.locator('.hf-view[data-axis="0"] canvas[data-painted]').wait_for()
    page.locator(_q(0, ".hf-tag")).wait_for()  # drawn again on its slice
    assert page.locator(".hf-table tbody tr").count() == 1
    assert page.locator('select[aria-label="Layout"]').input_value() == "0"
    assert not page.locator('.hf-view[data-axis="1"]').is_visible()
    page.locator('[data-testid="stDataFrame"]').filter(has_text="Length 1").wait_for()
    no_exception(page)


def test_roi_statistics_in_the_browser_leave_padding_out(page):
    pad = np.zeros((20, 40, 50), bool)
    pad[:, :, :12] = True  # the first 12 columns are outside the scan
    k, j, i = np.indices(pad.shape)
    vox = ((7 * j + 3 * i + 11 * k) % 251 + 2).astype(np.int16)
    vol = Volume(voxels=vox, spacing=(3.0, 0.5, 0.8), series_uid="1.2.3", modality="CT", units="HU",
                 padding=np.packbits(pad, axis=-1))
    _mount(page, vol)
    _tool(page, "rectangle")
    _drag(page, vol, 1, (3.0, 5.0), (9.0, 20.0))
    (m,) = _measurements(page)
    got = page.evaluate("() => { const v = window.__viewer(); return v.values(v.measurements[0], v.views[1]); }")
    exact = measure(vol, Measurement("rectangle", 1, m["index"], tuple(map(tuple, m["points"]))))
    assert 0 < exact["n"] < region_mask("rectangle", tuple(map(tuple, m["points"])), (20, 50)).sum()
    assert got["n"] == exact["n"] and got["min"] == exact["min"] and got["max"] == exact["max"]
    assert got["mean"] == pytest.approx(exact["mean"], rel=1e-12)
    page.mouse.move(*_screen(page, vol, 1, 5, 3))
    assert page.locator(_q(1, ".hf-probe")).inner_text() == "outside the scan"
    page.mouse.move(*_screen(page, vol, 1, 5, 30))
    assert page.locator(_q(1, ".hf-probe")).inner_text() == f"{vol.voxels[5, 20, 30]} HU"


def test_numbers_are_written_as_core_numbers_writes_them(page):
    page.set_content("<html><head></head><body></body></html>")
    page.evaluate(HARNESS, [JS, CSS])
    cases = [(0.9765625, 3), (1.0, 3), (2.5, 0), (3.5, 0), (-2.5, 0), (0.0625, 3), (75.25, 1), (-75.25, 1),
             (0.125, 2), (1.0005, 3), (-0.0004, 3), (143.36, 3), (120.0, 3), (-72.05, 1), (331.766, 1), (0.0, 1),
             (1701.28, 1), (float("nan"), 1), (float("inf"), 3)]
    got = page.evaluate("(cases) => cases.map(([v, p]) => window.__decimal(v === null ? NaN : v, p))",
                        [[None if math.isnan(v) else v, p] for v, p in cases])
    assert got == [decimal(v, places=p) for v, p in cases]


def _rect(page, selector: str) -> dict:
    return page.locator(selector).bounding_box()


def _overlap(a: dict, b: dict) -> bool:
    return (a["x"] < b["x"] + b["width"] and b["x"] < a["x"] + a["width"]
            and a["y"] < b["y"] + b["height"] and b["y"] < a["y"] + a["height"])


def test_value_tags_stay_inside_the_view_and_do_not_cover_each_other(page):
    vol = _volume()  # axial plane 40 x 50, about 390 x 195 page pixels
    _mount(page, vol)
    _tool(page, "ellipse")
    _drag(page, vol, 0, (5.0, 30.0), (15.0, 48.0))  # its last point near the right edge
    _tool(page, "rectangle")
    _drag(page, vol, 0, (6.0, 20.0), (16.0, 46.0))  # its tag would start on the ellipse's
    _tool(page, "length")
    _drag(page, vol, 0, (20.0, 10.0), (38.0, 3.0))  # near the bottom left corner
    _tool(page, "ellipse")
    _drag(page, vol, 0, (24.0, 30.0), (37.0, 49.0))  # the bottom right corner
    assert len(_measurements(page)) == 4
    page.wait_for_function("(sel) => document.querySelectorAll(sel).length === 4", arg=_q(0, ".hf-tag"))
    stage = _rect(page, _q(0, ".hf-stage"))
    tags = [page.locator(_q(0, ".hf-tag")).nth(n).bounding_box() for n in range(4)]
    for t in tags:
        assert stage["x"] <= t["x"] and t["x"] + t["width"] <= stage["x"] + stage["width"], (t, stage)
        assert stage["y"] <= t["y"] and t["y"] + t["height"] <= stage["y"] + stage["height"], (t, stage)
    for a in range(4):
        for b in range(a + 1, 4):
            assert not _overlap(tags[a], tags[b]), (a, b, tags[a], tags[b])
        for edge in ("top", "bottom", "left", "right"):  # nor the view's letters
            assert not _overlap(tags[a], _rect(page, _q(0, f".hf-{edge}"))), (a, edge)
    # Numbered within their kind, as the page's table names them.
    names = page.locator(".hf-table tbody tr td:first-child").all_inner_texts()
    assert names == ["Ellipse 1", "Rectangle 1", "Length 1", "Ellipse 2"]


@pytest.mark.parametrize("width", [1200, 760, 520])
def test_pointer_readouts_do_not_cover_the_letters(page, width):
    # Patient positions with long readouts: "x -172.2, y -172.2, z -1000 mm (LPS)".
    positions = np.array([[-172.25, -172.25, -1000.0 - 3 * k] for k in range(20)])
    vol = Volume(voxels=_volume().voxels, spacing=(3.0, 0.5, 0.8), series_uid="1.2.3", modality="CT", units="HU",
                 positions=positions)
    _mount(page, vol)
    page.evaluate("(w) => { document.querySelector('.hf-root').style.width = w + 'px'; }", width)
    for layout in ("all", "0"):
        page.locator('select[aria-label="Layout"]').select_option(layout)
        for axis in (0, 1, 2) if layout == "all" else (0,):
            page.mouse.move(*_screen(page, vol, axis, 1, 1))
            page.locator(_q(axis, ".hf-pos")).wait_for()
            assert page.locator(_q(axis, ".hf-pos")).inner_text().startswith("x -")
            stage = _rect(page, _q(axis, ".hf-stage"))
            probe, pos = _rect(page, _q(axis, ".hf-probe")), _rect(page, _q(axis, ".hf-pos"))
            assert not _overlap(probe, pos)
            for edge in ("top", "bottom", "left", "right"):
                letter = _rect(page, _q(axis, f".hf-{edge}"))
                assert not _overlap(letter, probe) and not _overlap(letter, pos), (layout, axis, edge)
            for r in (probe, pos):
                assert stage["x"] <= r["x"] and r["x"] + r["width"] <= stage["x"] + stage["width"] + 0.5


def test_the_pointer_value_of_a_float_volume_reads_as_the_page_writes_it(page):
    vox = np.full((6, 20, 30), 1.23456, np.float32)
    vol = Volume(voxels=vox, spacing=(3.0, 0.5, 0.8), series_uid="1.2.4", modality="MR", units="")
    _mount(page, vol)
    page.mouse.move(*_screen(page, vol, 0, 5, 5))
    # dashboard.explorer.point_ui writes decimal(value): "1.235", not "1.2".
    expect_text = f"{decimal(float(np.float32(1.23456)))} "
    page.wait_for_function("(sel) => document.querySelector(sel).textContent !== ''", arg=_q(0, ".hf-probe"))
    assert page.locator(_q(0, ".hf-probe")).inner_text().startswith(expect_text)
