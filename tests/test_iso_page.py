"""AppTest of the 3D isosurface page."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_app_pages import page_test

PAGE = Path(__file__).resolve().parents[1] / "pages" / "3_Isosurface_3D.py"


def _metrics(at):
    return {m.label: m.value for m in at.metric}


def test_nothing_is_built_until_asked():
    at = page_test(PAGE).run()
    assert not at.exception and not at.metric and not at.get("plotly_chart")


@pytest.mark.parametrize("preset", ["Bone (400 HU)", "Skin (-300 HU)", "Lungs (segmented)"])
def test_each_surface_within_budget(preset):
    at = page_test(PAGE).run()
    at.selectbox(key="iso_preset").set_value(preset).run()
    at.number_input(key="iso_budget").set_value(100_000).run()
    at.toggle(key="iso_show").set_value(True).run()
    assert not at.exception
    m = _metrics(at)
    assert 0 < int(m["Triangles"].replace(",", "")) <= 100_000
    assert len(at.get("plotly_chart")) == 1
    if preset.startswith("Lungs"):
        assert 2600 < float(m["Lung volume"].split()[0].replace(",", "")) < 2800
        assert m["Emphysema index"] == "0.0 %"


def test_threshold_and_crop_change_the_mesh():
    at = page_test(PAGE).run()
    at.toggle(key="iso_show").set_value(True).run()
    full = _metrics(at)["Surface area"]
    at.slider(key="iso_crop").set_value((30, 90)).run()
    assert not at.exception and _metrics(at)["Surface area"] != full
    at.slider(key="iso_level").set_value(2900.0).run()
    assert not at.exception
    assert any("No surface" in e.value for e in at.error)
