"""The running app in headless Chromium, used the way a person would."""

from __future__ import annotations

import re

import cv2
import numpy as np
import pytest

from tests.browser import enter_text
from tests.browser import no_exception as _no_exception
from tests.browser import wait_idle as _wait_idle
from tests.factory import ct_series, ramp_volume

pytestmark = pytest.mark.browser


def _is_not_blank(png: bytes) -> bool:
    img = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_GRAYSCALE)
    return img is not None and float(img.std()) > 10.0


def _eventually(condition, message: str, timeout: float = 30.0) -> None:
    """Wait until ``condition()`` is true (checked again as soon as it returns), or fail."""
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, message


def test_opens_on_the_sample_with_an_image(page, app_url):
    page.goto(app_url)
    page.get_by_role("heading", name="Hounsfield").first.wait_for()
    _wait_idle(page)
    _no_exception(page)
    assert page.get_by_text("Built-in sample: 1 series found").is_visible()
    img = page.locator('[data-testid="stImage"] img').first
    img.wait_for()
    assert page.evaluate("(el) => el.complete && el.naturalWidth > 0", img.element_handle())
    assert _is_not_blank(img.screenshot())
    sidebar = page.locator('[data-testid="stSidebar"]')
    assert "120 x 256 x 256" in sidebar.inner_text()


def test_upload_generated_files_and_pick_a_series(page, app_url, tmp_path):
    a = ct_series(ramp_volume((4, 32, 24), seed=1), series_uid="1.2.3.1", names=lambda k: f"a{k}.dcm",
                  patient_name="BROWSER^SECRET")
    b = ct_series(ramp_volume((7, 32, 24), seed=2), series_uid="1.2.3.2", names=lambda k: f"b{k}.dcm",
                  patient_name="BROWSER^SECRET")
    paths = []
    for name, data in a + b:
        p = tmp_path / name
        p.write_bytes(data)
        paths.append(str(p))
    junk = tmp_path / "readme.txt"
    junk.write_text("not an image")
    paths.append(str(junk))

    page.goto(app_url)
    _wait_idle(page)
    page.locator('[data-testid="stFileUploader"] input[type="file"]').first.set_input_files(paths)
    page.get_by_text("12 uploaded files: 2 series found").wait_for(timeout=60_000)
    _wait_idle(page)
    _no_exception(page)
    assert page.get_by_text("1 file not used, and why").is_visible()
    # PHI is hidden by default: the patient's name is nowhere on the page.
    assert "BROWSER^SECRET" not in page.content()

    page.locator('[data-testid="stSelectbox"]').first.click()
    page.get_by_role("option", name=re.compile(r"^#2 Series")).click()
    _wait_idle(page)
    sidebar = page.locator('[data-testid="stSidebar"]')
    page.wait_for_function(
        "() => document.querySelector('[data-testid=\"stSidebar\"]').innerText.includes('4 x 32 x 24')")
    assert "4 x 32 x 24" in sidebar.inner_text()
    _no_exception(page)


def test_every_page_renders(page, app_url):
    from dashboard.frame import existing_pages

    page.goto(app_url)
    _wait_idle(page)
    for _, label, _ in existing_pages():
        page.locator('[data-testid="stSidebar"]').get_by_role("link", name=label).click()
        # The page's own run has started (it sets the tab's title), then it has finished.
        page.wait_for_function("title => document.title === title", arg=f"{label} · Hounsfield")
        _wait_idle(page)
        _no_exception(page)


def _slider(page, label):
    return page.locator('[data-testid="stSlider"]').filter(has_text=label).get_by_role("slider")


def _canvas(page, axis):
    return page.locator(f'.hf-view[data-axis="{axis}"] canvas')


def _pixels(page, axis) -> np.ndarray:
    """The view's canvas as (rows, cols, RGB), read back from the browser."""
    canvas = _canvas(page, axis)
    data = canvas.evaluate(
        "c => { const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
        " let s = ''; for (let i = 0; i < d.length; i += 4) s += String.fromCharCode(d[i], d[i + 1], d[i + 2]);"
        " return [c.height, c.width, btoa(s)]; }")
    import base64

    rows, cols, b64 = data
    return np.frombuffer(base64.b64decode(b64), np.uint8).reshape(rows, cols, 3)


def _wait_canvas(page, axis, *, index=None, window=None) -> None:
    from playwright.sync_api import expect

    canvas = _canvas(page, axis)
    expect(canvas).to_have_attribute("data-painted", re.compile(r"\d+"), timeout=30_000)
    if index is not None:
        expect(canvas).to_have_attribute("data-index", str(index), timeout=30_000)
    if window is not None:
        expect(canvas).to_have_attribute("data-window", window, timeout=30_000)


def _shown(page, axis, expected_hu, center, width):
    """The canvas shows exactly core.windowing.window of the expected plane, grey."""
    from core.windowing import window

    got = _pixels(page, axis)
    want = window(expected_hu, center, width)
    assert got.shape[:2] == want.shape
    np.testing.assert_array_equal(got[..., 0], want)
    np.testing.assert_array_equal(got[..., 1], want)


def test_explorer_scroll_window_and_click(page, app_url):
    from playwright.sync_api import expect

    from core import sample_ct

    vol = sample_ct().voxels
    page.goto(app_url + "/Volume_explorer")
    _wait_idle(page)
    page.get_by_text("At the crosshair:").wait_for()
    _no_exception(page)
    for axis in (0, 1, 2):
        _wait_canvas(page, axis)
    assert page.locator(".hf-overlay line").count() == 12  # two lines, each in two pieces, per view
    # Windowed in the browser, pixel for pixel as core.windowing.window; reformats head up.
    _shown(page, 0, vol[60], 40, 400)
    _shown(page, 1, vol[:, 128, :][::-1], 40, 400)
    _shown(page, 2, vol[:, :, 128][::-1], 40, 400)

    # Scroll the axial slice with the keyboard: the picture and the readout change.
    page.get_by_role("slider", name="Axial slice").focus()
    for _ in range(20):
        page.keyboard.press("ArrowRight")
    _wait_canvas(page, 0, index=80)
    page.get_by_text("voxel (slice 81,").wait_for()
    _shown(page, 0, vol[80], 40, 400)

    # The mouse wheel over a view scrolls it too.
    stage = page.locator('.hf-view[data-axis="0"] .hf-stage')
    stage.hover()
    for _ in range(3):
        page.mouse.wheel(0, 100)
    _wait_canvas(page, 0, index=83)
    page.get_by_text("voxel (slice 84,").wait_for()

    # The window slider of the views: the preset becomes Custom on the server.
    page.get_by_role("slider", name="Window center (HU)").focus()
    for _ in range(10):
        page.keyboard.press("ArrowLeft")
    _wait_canvas(page, 0, window="30/400")
    _shown(page, 0, vol[83], 30, 400)
    expect(page.get_by_role("combobox", name="Window preset")).to_have_value("Custom")

    # A preset chosen on the page reaches the views.
    page.locator('[data-testid="stSelectbox"]').filter(has_text="Window preset").click()
    page.get_by_role("option", name="Lung").click()
    _wait_canvas(page, 0, window="-600/1500")
    _shown(page, 0, vol[83], -600, 1500)

    # A click on the axial view moves the crosshair: the sagittal view goes to that column.
    _wait_idle(page)
    box = stage.bounding_box()
    page.mouse.click(box["x"] + box["width"] * 0.25, box["y"] + box["height"] * 0.5)
    _wait_canvas(page, 2, index=64)
    _wait_canvas(page, 1, index=128)
    page.get_by_text("voxel (slice 84, row 129, column 65)").wait_for()
    _shown(page, 2, vol[:, :, 64][::-1], -600, 1500)

    # The value under the pointer shows in the view's corner.
    page.mouse.move(box["x"] + box["width"] * 0.75 + 1, box["y"] + box["height"] * 0.25 + 1)
    expect(page.locator('.hf-view[data-axis="0"] .hf-probe')).to_have_text(f"{vol[83, 64, 192]} HU")

    # Dragging on a view sets the window, as in desktop viewers.
    page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.5)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.5 + 40, box["y"] + box["height"] * 0.5 - 20, steps=5)
    page.mouse.up()
    expect(_canvas(page, 0)).not_to_have_attribute("data-window", "-600/1500")
    shown_window = _canvas(page, 0).get_attribute("data-window")
    assert shown_window != "-600/1500"
    c, w = map(float, shown_window.split("/"))
    assert c > -600 and w > 1500  # up raises the center, right widens
    expect(page.get_by_role("combobox", name="Window preset")).to_have_value("Custom")

    _no_exception(page)


def test_explorer_downloads(page, app_url, tmp_path):
    import gzip

    import nibabel as nib

    from core import sample_ct

    page.goto(app_url + "/Volume_explorer")
    _wait_idle(page)
    _wait_canvas(page, 0)  # the views have mounted: the page below them no longer moves
    with page.expect_download() as dl:
        page.get_by_role("button", name="Download the series as NIfTI (.nii.gz)").click()
    path = tmp_path / dl.value.suggested_filename
    dl.value.save_as(path)
    assert path.name == "CT_series1.nii.gz"
    img = nib.Nifti1Image.from_bytes(gzip.decompress(path.read_bytes()))
    np.testing.assert_array_equal(np.asarray(img.dataobj), sample_ct().voxels.transpose(2, 1, 0))
    # Scroll, and download as soon as the page knows the new slice: the views are still
    # fetching planes (reruns of their fragment), which must not cancel the download.
    page.get_by_role("slider", name="Axial slice").focus()
    for _ in range(5):
        page.keyboard.press("ArrowRight")
    page.get_by_text("voxel (slice 66,").wait_for()
    with page.expect_download() as dl:
        page.get_by_role("button", name="Download the current view as PNG").click()
    png = tmp_path / "view.png"
    dl.value.save_as(png)
    im = cv2.imread(str(png), cv2.IMREAD_GRAYSCALE)
    assert im.shape[0] == im.shape[1] and _is_not_blank(png.read_bytes())
    from core.windowing import window

    small = cv2.resize(im, (256, 256), interpolation=cv2.INTER_AREA).astype(float)
    diff = {k: np.abs(small - window(sample_ct().voxels[k], 40, 400)).mean() for k in (60, 65, 70)}
    assert min(diff, key=diff.get) == 65, diff  # the slice shown when clicked


def test_histogram_renders_and_a_click_sets_the_window(page, app_url):
    page.goto(app_url + "/HU_histogram")
    _wait_idle(page)
    plot = page.locator(".js-plotly-plot").first
    plot.wait_for()
    page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot .bars path').length > 100")
    _no_exception(page)
    # Click the bar centred at -855 HU (lung): plotly's own axis maps HU to pixels.
    pos = page.evaluate("""() => {
        const gd = document.querySelector('.js-plotly-plot');
        const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis;
        const r = gd.querySelector('.nsewdrag').getBoundingClientRect();
        return {x: r.left + xa.l2p(-855), y: r.bottom - 8};
    }""")
    page.mouse.click(pos["x"], pos["y"])
    page.get_by_text("Explorer window set to the lung band").wait_for(timeout=30_000)
    _no_exception(page)


def test_isosurface_renders(page, app_url):
    page.goto(app_url + "/Isosurface_3D")
    _wait_idle(page)
    page.locator(".hf-iso[data-drawn]").wait_for(timeout=60_000)  # the sample's surface, drawn on arrival
    _wait_idle(page)
    _no_exception(page)
    assert page.get_by_text("Triangles", exact=True).is_visible()
    plot = page.locator(".hf-iso").first
    _eventually(lambda: _is_not_blank(plot.screenshot()), "the 3D plot stayed blank")


def test_details_page_hides_the_patient_name(page, app_url, tmp_path):
    paths = []
    for name, data in ct_series(ramp_volume((3, 16, 12)), patient_name="HIDDEN^PATIENTNAME"):
        p = tmp_path / name.replace("/", "_")
        p.write_bytes(data)
        paths.append(str(p))
    page.goto(app_url)
    _wait_idle(page)
    page.locator('[data-testid="stFileUploader"] input[type="file"]').first.set_input_files(paths)
    page.get_by_text("3 uploaded files: 1 series found").wait_for(timeout=60_000)
    page.locator('[data-testid="stSidebar"]').get_by_role("link", name="Study details and privacy").click()
    page.get_by_role("heading", name="Tags").wait_for()
    _wait_idle(page)
    _no_exception(page)
    assert "HIDDEN" not in page.content()
    page.locator('[data-testid="stSidebar"]').get_by_text("Show patient information (PHI)").click()
    _wait_idle(page)
    page.get_by_text("Patient: HIDDEN^PATIENTNAME").wait_for()


def test_face_detection_page(page, app_url):
    page.goto(app_url + "/Face_detection")
    _wait_idle(page)
    page.get_by_text("1 face found").wait_for()
    _no_exception(page)
    img = page.locator('[data-testid="stImage"] img').first
    assert _is_not_blank(img.screenshot())
    page.get_by_role("button", name="Check this CT for a recognisable face").click()
    page.get_by_text("Not checked: no head in this volume").wait_for(timeout=30_000)
    _no_exception(page)


def test_pacs_search_and_retrieve(page, app_url, orthanc):
    from tests.orthanc import PASSWORD, USER

    orthanc.clear()
    hu = ramp_volume((4, 32, 24), seed=3)
    orthanc.store(ct_series(hu, series_uid="1.2.826.0.3.1", patient_name="BROWSER^PACS"))
    page.goto(app_url + "/PACS")
    _wait_idle(page)
    enter_text(page, page.get_by_role("textbox", name="DICOMweb address"), orthanc.dicomweb)
    page.get_by_text("User and password").click()
    _wait_idle(page)
    enter_text(page, page.get_by_label("User", exact=True), USER)
    enter_text(page, page.get_by_role("textbox", name="Password"), PASSWORD)
    page.get_by_role("button", name="Search studies").click()
    page.get_by_text("1 study found").wait_for(timeout=30_000)
    assert "BROWSER^PACS" not in page.content()
    page.get_by_role("button", name="Retrieve this series").click()
    page.get_by_text("Retrieved 4 images: 1 series loaded").wait_for(timeout=30_000)
    _no_exception(page)
    assert "4 x 32 x 24" in page.locator('[data-testid="stSidebar"]').inner_text()


def test_hostile_corpus_through_the_real_server(page, app_url, tmp_path):
    import urllib.request
    import warnings

    from core import load_series
    from tests.hostile import corpus

    cases = corpus()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = load_series([(n, d) for n, d, _ in cases])
    paths = []
    for n, (name, data, _) in enumerate(cases):
        p = tmp_path / f"{n:02d}_{name}"
        p.write_bytes(data)
        paths.append(str(p))
    page.goto(app_url)
    _wait_idle(page)
    page.locator('[data-testid="stFileUploader"] input[type="file"]').first.set_input_files(paths)
    page.get_by_text(f"{len(paths)} uploaded files: {len(expected.volumes)} series found").wait_for(timeout=120_000)
    _wait_idle(page)
    _no_exception(page)
    assert page.get_by_text(f"{len(expected.skipped)} files not used, and why").is_visible()
    with urllib.request.urlopen(f"{app_url}/_stcore/health", timeout=5) as r:
        assert r.status == 200
    # Markup in a description stays text, even with PHI shown.
    page.locator('[data-testid="stSidebar"]').get_by_text("Show patient information (PHI)").click()
    _wait_idle(page)
    assert page.locator('a[href^="javascript"]').count() == 0
    assert page.locator("script", has_text="alert(1)").count() == 0


def test_two_sessions_never_share_a_study(browser, app_url, tmp_path):
    paths = []
    for name, data in ct_series(ramp_volume((5, 16, 12)), patient_name="SESSION^ONE", series_uid="1.2.3.901"):
        p = tmp_path / name.replace("/", "_")
        p.write_bytes(data)
        paths.append(str(p))
    a = browser.new_context().new_page()
    b = browser.new_context().new_page()
    try:
        a.goto(app_url)
        _wait_idle(a)
        a.locator('[data-testid="stFileUploader"] input[type="file"]').first.set_input_files(paths)
        a.get_by_text("5 uploaded files: 1 series found").wait_for(timeout=60_000)
        b.goto(app_url)
        _wait_idle(b)
        b.get_by_text("Built-in sample: 1 series found").wait_for()
        assert "5 x 16 x 12" not in b.locator("body").inner_text()
        b.locator('[data-testid="stSidebar"]').get_by_text("Show patient information (PHI)").click()
        _wait_idle(b)
        assert "SESSION" not in b.content()
        # Session A still has its own study.
        assert "5 x 16 x 12" in a.locator('[data-testid="stSidebar"]').inner_text()
    finally:
        a.context.close()
        b.context.close()


def test_upload_a_zip_larger_than_the_spool_threshold(page, app_url, tmp_path):
    import io
    import zipfile

    rng = np.random.default_rng(5)
    hu = rng.integers(-1000, 1000, (8, 512, 512)).astype(np.int16)  # 4 MB, incompressible
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, data in ct_series(hu, series_uid="1.2.3.777"):
            zf.writestr(name, data)
    path = tmp_path / "study.zip"
    path.write_bytes(buf.getvalue())
    assert path.stat().st_size > 4 * 1024**2
    page.goto(app_url)
    _wait_idle(page)
    page.locator('[data-testid="stFileUploader"] input[type="file"]').first.set_input_files(str(path))
    page.get_by_text("1 uploaded file: 1 series found").wait_for(timeout=60_000)
    _no_exception(page)
    assert "8 x 512 x 512" in page.locator('[data-testid="stSidebar"]').inner_text()
