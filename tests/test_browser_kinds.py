"""Loops, projections and galleries in a real Chromium: playback timing, inversion, lengths, the gallery."""

from __future__ import annotations

import re
import time

import numpy as np
import pytest
from playwright.sync_api import expect

from tests.browser import no_exception, wait_idle
from tests.kinds_factory import image_file, loop_pixels, uid

pytestmark = pytest.mark.browser

FRAME_MS = 50.0


def _upload(page, app_url, tmp_path, files: dict[str, bytes], found: str) -> None:
    paths = []
    for name, data in files.items():
        path = tmp_path / name
        path.write_bytes(data)
        paths.append(str(path))
    page.goto(app_url)
    wait_idle(page)
    page.locator('[data-testid="stFileUploader"] input[type="file"]').first.set_input_files(paths)
    page.get_by_text(found).wait_for(timeout=60_000)
    wait_idle(page)
    no_exception(page)


def _explorer(page) -> None:
    page.locator('[data-testid="stSidebar"]').get_by_role("link", name="Volume explorer").click()
    page.wait_for_function("t => document.title === t", arg="Volume explorer · Hounsfield")
    wait_idle(page)
    page.wait_for_selector('.hf-img[data-ready="1"]', timeout=60_000)
    no_exception(page)


def _pixel(page, fx: float, fy: float) -> list[int]:
    """The canvas pixel at a fraction of its width and height (RGBA)."""
    return page.locator(".hf-img-canvas").evaluate(
        """(c, [fx, fy]) => Array.from(
            c.getContext('2d').getImageData(Math.floor(c.width * fx), Math.floor(c.height * fy), 1, 1).data)""",
        [fx, fy],
    )


def test_a_thirty_frame_loop_plays_at_its_frame_time(page, app_url, tmp_path):
    data = image_file(loop_pixels(30), modality="US", extra={"FrameTime": FRAME_MS})
    _upload(page, app_url, tmp_path, {"loop.dcm": data}, "1 uploaded file: 1 series found")
    _explorer(page)
    page.get_by_text("A loop of 30 frames").wait_for()
    page.get_by_text("20 frames per second, as acquired").wait_for()
    page.evaluate("() => { window.__hfImagePaints.length = 0; }")
    page.locator('.hf-img button[data-action="play"]').click()
    # Two passes and a bit: the loop wraps around.
    page.wait_for_function("() => window.__hfImagePaints.length >= 70", timeout=60_000)
    page.locator('.hf-img button[data-action="play"]').click()  # pause
    paints = page.evaluate("() => window.__hfImagePaints.slice()")
    frames = np.array([p["frame"] for p in paints])
    times = np.array([p["t"] for p in paints])
    unwrapped = frames + 30 * np.concatenate([[0], np.cumsum(np.diff(frames) < 0)])
    assert np.all(np.diff(unwrapped) >= 1)  # always forward, wrapping from 30 to 1
    assert (np.diff(frames) < 0).sum() >= 2
    # Frame f is painted at t0 + f x 50 ms: the slope of frame against time, and each paint within
    # 2 frames of its schedule (a busy machine delays paints, never the schedule).
    slope, intercept = np.polyfit(unwrapped, times, 1)
    assert abs(slope - FRAME_MS) < 0.1 * FRAME_MS
    late = times - (times[0] + (unwrapped - unwrapped[0]) * FRAME_MS)
    assert np.median(np.abs(late)) < FRAME_MS and np.all(late > -FRAME_MS)
    # Paused, the canvas shows the frame it says: the bright bar of frame f is at column 2 f of 64.
    assert page.locator(".hf-img").get_attribute("data-playing") == "0"
    shown = int(page.locator(".hf-img-stage").get_attribute("data-frame"))
    assert _pixel(page, (2 * shown + 0.5) / 64, 0.5)[0] > 200
    assert _pixel(page, (2 * shown + 8.5) / 64 % 1, 0.5)[0] < 50
    # The arrow keys step one frame; the slider follows (frames are counted from 1).
    page.locator(".hf-img-stage").focus()
    page.keyboard.press("ArrowRight")
    expect(page.locator(".hf-img-stage")).to_have_attribute("data-frame", str((shown + 1) % 30))
    expect(page.locator(".hf-img-frame")).to_have_text(f"Frame {(shown + 1) % 30 + 1} of 30")
    no_exception(page)


def test_monochrome1_cr_is_inverted_and_measured_in_mm_at_the_detector(page, app_url, tmp_path):
    pixels = np.zeros((40, 60), np.uint16)
    pixels[:, 30:] = 1000
    data = image_file(pixels, modality="CR", photometric="MONOCHROME1",
                      extra={"ImagerPixelSpacing": [0.2, 0.2], "WindowCenter": 500, "WindowWidth": 1000})
    _upload(page, app_url, tmp_path, {"cr.dcm": data}, "1 uploaded file: 1 series found")
    _explorer(page)
    page.get_by_text("Lengths in mm at the detector").wait_for()
    # Stored 0 at the left, 1000 at the right; MONOCHROME1: the low values are bright.
    assert _pixel(page, 0.25, 0.5)[:3] == [255, 255, 255]
    assert _pixel(page, 0.75, 0.5)[:3] == [0, 0, 0]
    # A line across the whole width: 60 pixels of 0.2 mm.
    page.locator('.hf-img button[data-tool="measure"]').click()
    box = page.locator(".hf-img-stage").bounding_box()
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + 1, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] / 2, y, steps=4)
    page.mouse.move(box["x"] + box["width"] - 1, y, steps=4)
    page.mouse.up()
    expect(page.locator(".hf-img")).to_have_attribute("data-measures", re.compile("mm"))
    measures = page.locator(".hf-img").get_attribute("data-measures")
    length = float(measures.split('"')[1].split()[0])
    assert abs(length - 12.0) < 0.3
    page.locator('.hf-img button[data-action="clear"]').click()
    # Window/level with the right button: narrower and higher, the right half (1000) turns grey.
    readout = page.locator(".hf-img-readout")
    expect(readout).to_contain_text("window width 1000, centre 500 stored units")
    x, y = box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.5
    page.mouse.move(x, y)
    page.mouse.down(button="right")
    page.mouse.move(x - 100, y - 100, steps=5)
    page.mouse.up(button="right")
    text = readout.inner_text()
    width, center = (float(v) for v in re.search(r"window width (\S+), centre (\S+)", text).groups())
    assert center > 500 and width < 1000
    assert _pixel(page, 0.75, 0.5)[:3] != [0, 0, 0]
    # The wheel zooms toward the pointer: the pixel under it stays the same image pixel.
    page.locator('.hf-img button[data-action="reset"]').click()
    page.locator('.hf-img button[data-action="clear"]').click()
    # The zoom is the true display scale: the 60 x 40 image fitted to the view is shown enlarged.
    fitted = f"Zoom {round(min(box['width'] / 60, box['height'] / 40) * 100)}%"
    assert fitted != "Zoom 100%"
    expect(readout).to_contain_text(fitted)
    page.mouse.move(box["x"] + box["width"] * 0.25, y)
    page.mouse.wheel(0, -400)
    expect(readout).not_to_contain_text(fitted)
    assert _pixel(page, 0.25, 0.5)[:3] == [255, 255, 255]
    assert _pixel(page, 0.45, 0.5)[:3] == [255, 255, 255]  # the left half now spans most of the view
    no_exception(page)


def test_secondary_captures_form_a_gallery(page, app_url, tmp_path):
    series = uid()
    files = {
        "page1.dcm": image_file(np.full((30, 40, 3), (200, 30, 30), np.uint8), photometric="RGB", series_uid=series),
        "page2.dcm": image_file(np.full((20, 50, 3), (30, 30, 200), np.uint8), photometric="RGB", series_uid=series,
                                instance=2),
    }
    _upload(page, app_url, tmp_path, files, "2 uploaded files: 1 series found")
    _explorer(page)
    page.get_by_text("A gallery of 2 images in colour").wait_for()
    assert _pixel(page, 0.5, 0.5)[:3] == [200, 30, 30]
    page.get_by_role("button", name="Image 2").click()
    wait_idle(page)
    page.get_by_text("Image 2 of 2").wait_for()
    deadline = time.monotonic() + 30
    while _pixel(page, 0.5, 0.5)[:3] != [30, 30, 200]:
        assert time.monotonic() < deadline, "the second image was not painted"
    no_exception(page)


def test_the_files_voi_lut_is_the_first_display(page, app_url, tmp_path):
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    item = Dataset()
    item.LUTDescriptor = [2, 0, 8]  # stored 0 -> 50, 1 and above -> 200 (8-bit outputs)
    item.LUTData = np.array([50, 200], "<u2").tobytes()
    pixels = np.zeros((40, 60), np.uint16)
    pixels[:, 30:] = 1
    data = image_file(pixels, modality="DX", extra={"VOILUTSequence": Sequence([item]), "PixelSpacing": [0.1, 0.1]})
    _upload(page, app_url, tmp_path, {"dx.dcm": data}, "1 uploaded file: 1 series found")
    _explorer(page)
    readout = page.locator(".hf-img-readout")
    expect(readout).to_contain_text("the file's VOI LUT")
    assert _pixel(page, 0.25, 0.5)[:3] == [50, 50, 50]
    assert _pixel(page, 0.75, 0.5)[:3] == [200, 200, 200]
    page.get_by_text("Lengths in mm from the image's pixel spacing, calibrated at the patient.").wait_for()
    # A window drag leaves the LUT for a linear window; Reset view returns to it.
    box = page.locator(".hf-img-stage").bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] / 2 + 30, box["y"] + box["height"] / 2, steps=3)
    page.mouse.up()
    expect(readout).to_contain_text("window width")
    page.locator('.hf-img button[data-action="reset"]').click()
    expect(readout).to_contain_text("the file's VOI LUT")
    assert _pixel(page, 0.75, 0.5)[:3] == [200, 200, 200]


def test_the_series_table_fits_a_1400_px_window(page, app_url, tmp_path):
    """No column behind a sideways scroll, with patient information hidden or shown (then with dates)."""
    assert page.viewport_size == {"width": 1400, "height": 1000}
    colour_loop = np.stack([np.full((24, 32, 3), (10 * f, 30, 30), np.uint8) for f in range(4)])
    files = {"loop.dcm": image_file(colour_loop, modality="US", photometric="RGB", extra={"FrameTime": 40.0}),
             "cr.dcm": image_file(np.zeros((40, 60), np.uint16), modality="CR", series_uid=uid())}
    _upload(page, app_url, tmp_path, files, "2 uploaded files: 2 series found")
    grid = page.locator('[data-testid="stDataFrame"]').first
    for shown in (False, True):  # a wider description, or the dates
        if shown:
            page.locator('[data-testid="stSidebar"]').get_by_text("Show patient information (PHI)").click()
            wait_idle(page)
        # The grid's accessible copy of its headers (hidden: the grid is drawn on a canvas).
        dates = grid.locator('[role="columnheader"]').filter(has_text=re.compile(r"^Date$"))
        expect(dates).to_have_count(1 if shown else 0)
        grid.locator(".dvn-scroller").wait_for()
        widths = grid.locator(".dvn-scroller").evaluate("s => [s.scrollWidth, s.clientWidth]")
        assert widths[0] <= widths[1], f"the table scrolls sideways: {widths[0]} px of content in {widths[1]} px"
    no_exception(page)
