"""The 3D page in Chromium: the sample's surface drawn on arrival, the camera kept, settings kept."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.browser import no_exception, wait_idle

pytestmark = pytest.mark.browser

VIEW = ".hf-iso"  # Playwright's CSS locators reach into the component's shadow root


def _open(page, app_url):
    page.goto(app_url)
    wait_idle(page)
    page.get_by_role("link", name="3D isosurface").first.click()
    wait_idle(page)


def _drawn(page) -> str:
    view = page.locator(VIEW)
    expect(view).to_have_attribute("data-drawn", re.compile(r"^[0-9a-f]{16}$"), timeout=60_000)
    return view.get_attribute("data-drawn")


def _choose(page, label: str, option: str):
    page.locator('[data-testid="stSelectbox"]').filter(has_text=label).first.click()
    page.get_by_role("option", name=option).click()
    wait_idle(page)


def test_the_sample_surface_is_drawn_on_arrival(page, app_url):
    _open(page, app_url)
    _drawn(page)
    no_exception(page)
    # The canvas shows the bone: light pixels on the dark background, in the middle of the view.
    share = page.locator(VIEW).locator("canvas").evaluate("""(c) => {
        const g = document.createElement('canvas'); g.width = c.width; g.height = c.height;
        const x = g.getContext('2d'); x.drawImage(c, 0, 0);
        const d = x.getImageData(0, 0, c.width, c.height).data;
        let light = 0;
        for (let i = 0; i < d.length; i += 4) if (d[i] > 120 && d[i + 1] > 120 && d[i + 2] > 110) light++;
        return light / (d.length / 4);
    }""")
    assert share > 0.03
    # The view is the page's main element: wide, and whole above the fold of a 1000-pixel window.
    box = page.locator(VIEW).bounding_box()
    assert box["width"] > 0.6 * (page.viewport_size["width"] - 300) and box["y"] + box["height"] < 1000


def test_the_camera_stays_when_the_surface_changes(page, app_url):
    _open(page, app_url)
    first = _drawn(page)
    view = page.locator(VIEW)
    home = view.get_attribute("data-camera")
    box = view.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] / 2 + 120, box["y"] + box["height"] / 2 + 40, steps=8)
    page.mouse.up()
    expect(view).not_to_have_attribute("data-camera", home)
    turned = view.get_attribute("data-camera")
    _choose(page, "Surface", "Skin (-300 HU)")
    expect(view).not_to_have_attribute("data-drawn", first, timeout=60_000)
    assert view.get_attribute("data-camera") == turned
    # And after a visit to another page.
    page.get_by_role("link", name="HU histogram").first.click()
    wait_idle(page)
    page.get_by_role("link", name="3D isosurface").first.click()
    wait_idle(page)
    _drawn(page)
    assert page.locator(VIEW).get_attribute("data-camera") == turned
    no_exception(page)


def test_settings_stay_after_a_visit_to_the_explorer(page, app_url):
    _open(page, app_url)
    _drawn(page)
    _choose(page, "Surface", "Skin (-300 HU)")
    keep = page.get_by_role("spinbutton", name="Largest parts")
    keep.fill("2")
    keep.press("Enter")
    wait_idle(page)
    expect(keep).to_have_value("2")
    page.get_by_role("link", name="Volume explorer").first.click()
    wait_idle(page)
    page.get_by_role("link", name="3D isosurface").first.click()
    wait_idle(page)
    expect(page.get_by_role("combobox", name="Surface")).to_have_value("Skin (-300 HU)")
    expect(page.get_by_role("spinbutton", name="Largest parts")).to_have_value("2")
    no_exception(page)
