"""AppTest of the 3D isosurface page."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core import LABELS, sample_ct, sample_labels
from core.sample import LUNG_LABELS
from tests.helpers import page_test

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
        # The sample's lungs from its label map: the bulla in the left upper lobe is its emphysema.
        lab = sample_labels()
        lungs = np.isin(lab, [LABELS[n] for n in LUNG_LABELS])
        truth_ml = lungs.sum() * np.prod(sample_ct().spacing) / 1000
        truth_index = 100 * (lab == LABELS["emphysema"]).sum() / lungs.sum()
        assert float(m["Lung volume"].split()[0].replace(",", "")) == pytest.approx(truth_ml, rel=0.01)
        assert abs(float(m["Emphysema index"].split()[0]) - truth_index) < 1.0
        assert float(m["Emphysema index"].split()[0]) == pytest.approx(truth_index, rel=0.1)


def test_threshold_and_crop_change_the_mesh():
    at = page_test(PAGE).run()
    at.toggle(key="iso_show").set_value(True).run()
    full = _metrics(at)["Surface area"]
    at.slider(key="iso_crop").set_value((30, 90)).run()
    assert not at.exception and _metrics(at)["Surface area"] != full
    at.slider(key="iso_level").set_value(2900.0).run()
    assert not at.exception
    assert any("No surface" in e.value for e in at.error)


class TestVisitorLimits:
    # Every AppTest runs as "test session id", so each test asks for a surface of its own
    # (slices no other test uses): a mesh cached by an earlier test would be reused.
    def test_triangle_budget_capped_by_the_operator(self, monkeypatch):
        monkeypatch.setenv("HOUNSFIELD_MAX_TRIANGLES", "120000")
        at = page_test(PAGE).run()
        assert at.number_input(key="iso_budget").max == 120_000
        at.number_input(key="iso_budget").set_value(2_000_000).run()
        assert at.number_input(key="iso_budget").value <= 120_000

    @pytest.mark.parametrize("value, cap", [("", 500_000), ("2_000_000", 2_000_000), ("lots", 500_000), ("5", 500_000)])
    def test_the_setting_is_read_in_words(self, monkeypatch, value, cap):
        from dashboard.iso_ui import max_triangles_allowed

        monkeypatch.setenv("HOUNSFIELD_MAX_TRIANGLES", value)
        assert max_triangles_allowed() == cap

    def test_meshing_over_the_memory_budget_is_refused_in_words(self):
        from core.memory import MB, MemoryBudget, server_budget, set_server_budget

        saved = server_budget()
        set_server_budget(MemoryBudget(total_bytes=20 * MB, session_bytes=20 * MB))
        try:
            at = page_test(PAGE).run()
            at.slider(key="iso_crop").set_value((1, 119)).run()
            at.toggle(key="iso_show").set_value(True).run()
        finally:
            set_server_budget(saved)
        assert not at.exception and not at.get("plotly_chart")
        assert any("No surface now" in e.value and "this session may hold at most" in e.value for e in at.error)

    def test_the_mesh_holds_its_reservation_while_cached(self):
        from core.memory import server_budget

        before = server_budget().used()
        at = page_test(PAGE).run()
        at.slider(key="iso_crop").set_value((2, 118)).run()
        at.toggle(key="iso_show").set_value(True).run()
        assert not at.exception
        assert server_budget().used() > before  # the cached mesh's share
