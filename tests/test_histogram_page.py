"""AppTest of the HU histogram page, every scope, by widget keys."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from core import LABELS, sample_ct, sample_labels
from core.histogram import hu_histogram, value_counts
from core.numbers import decimal
from core.sample import LUNG_LABELS
from dashboard.histogram_ui import figure
from tests.helpers import page_test, table_with

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "pages" / "2_HU_histogram.py"


@pytest.fixture
def at():
    at = page_test(PAGE).run()
    assert not at.exception
    return at


def _caption(at):
    return next(c.value for c in at.caption if "voxels counted" in c.value)


def test_whole_volume_counts_and_padding(at):
    lab = sample_labels()
    n_pad = int((lab == LABELS["outside scan circle"]).sum())
    assert _caption(at) == (f"{lab.size - n_pad:,} voxels counted; {n_pad:,} padding voxels "
                            "(outside the scan circle) left out.")
    bands = table_with(at, "Band").set_index("Band")
    vox = sample_ct().voxels
    assert bands.loc["Lung", "Voxels"] == int(((vox >= -950) & (vox < -500) & (lab != 0)).sum())
    # Partial volume: the band holds the lung's voxels out of the blur's reach, and a few at edges.
    pure = ndimage.minimum_filter(lab, 3) == ndimage.maximum_filter(lab, 3)
    lungish = np.isin(lab, [LABELS[n] for n in ("lung", "ground-glass nodule")])
    assert (pure & lungish).sum() <= bands.loc["Lung", "Voxels"] <= lungish.sum() + (~pure).sum()


@pytest.mark.parametrize("scope,expected", [("Current slice", 1), ("Slab of slices", 11)])
def test_slice_and_slab_scopes(at, scope, expected):
    at.radio(key="histogram_scope").set_value(scope).run()
    assert not at.exception
    lab = sample_labels()
    per_slice = lab[0].size
    k = 60
    inside = int((lab[k - expected // 2:k + expected // 2 + 1] != 0).sum())
    assert _caption(at).startswith(f"{inside:,} voxels counted")
    assert inside <= expected * per_slice


def test_roi_scope_uses_the_explorer_box(at):
    at.radio(key="histogram_scope").set_value("Explorer ROI").run()
    assert any("No ROI yet" in i.value for i in at.info)
    from core.annotations import Measurement

    key = at.session_state["study"].volumes[0].key  # a rectangle drawn on the explorer's axial slice 60:
    rect = Measurement("rectangle", 0, 60, ((100.0, 120.0), (109.0, 124.0)))  # rows 100-109, columns 120-124
    at.session_state["explorer_mpr_store"] = {key: {"measurements": [rect], "ui": {}, "selected": ""}}
    at.run()
    assert not at.exception
    assert _caption(at).startswith("50 voxels counted")
    assert "Explorer rectangle on axial slice 61: the pixels the explorer measures." in [c.value for c in at.caption]


def test_roi_scope_of_an_ellipse_counts_the_ellipse_as_the_explorer_does(at):
    from core.annotations import Measurement, measure, region_mask

    vol = at.session_state["study"].volumes[0]
    # Selected: the ellipse (not the rectangle drawn after it), on the coronal slice 129, over padding too.
    ellipse = Measurement("ellipse", 1, 128, ((40.3, 0.2), (80.6, 60.9)), id="e")
    rect = Measurement("rectangle", 0, 60, ((100.0, 120.0), (109.0, 124.0)), id="r")
    at.session_state["explorer_mpr_store"] = {vol.key: {"measurements": [ellipse, rect], "ui": {}, "selected": "e"}}
    at.radio(key="histogram_scope").set_value("Explorer ROI").run()
    assert not at.exception
    assert "Explorer ellipse on coronal slice 129: the pixels the explorer measures." in [c.value for c in at.caption]
    exact = measure(vol, ellipse)
    inside = region_mask("ellipse", ellipse.points, (vol.shape[0], vol.shape[2]))
    box = int(np.ptp(np.flatnonzero(inside.any(1))) + 1) * int(np.ptp(np.flatnonzero(inside.any(0))) + 1)
    assert exact["n"] < box  # the box around it would count more
    pad = vol.padding_plane(1, 128)
    n_pad = int((inside & pad).sum())
    assert n_pad > 0
    assert _caption(at) == (f"{int(exact['n']):,} voxels counted; {n_pad:,} padding voxels (outside the scan "
                            "circle) left out.")
    stats = table_with(at, "Statistic")
    assert stats.loc[stats["Statistic"] == "Mean", "Value"].item() == f"{decimal(exact['mean'], places=1)} HU"


def test_bins_range_and_classic(at):
    at.number_input(key="histogram_bin_width").set_value(10.0).run()
    at.slider(key="histogram_range").set_value((-1000.0, 1000.0)).run()
    at.toggle(key="histogram_log").set_value(True).run()
    at.toggle(key="histogram_cumulative").set_value(True).run()
    assert not at.exception
    assert at.session_state["histogram_bin_width"] == 10.0
    at.button(key="histogram_classic").click().run()
    assert not at.exception
    assert at.session_state["histogram_bin_width"] == 25.0  # (1000 - -1000) / 80
    assert "80 bins of 25 HU, from -1000 to 1000 HU." in [c.value for c in at.caption]
    at.slider(key="histogram_range").set_value((-1100.0, 2000.0)).run()
    at.button(key="histogram_classic").click().run()
    assert at.session_state["histogram_bin_width"] == 50.0  # a round width, not 38.75
    assert "62 bins of 50 HU, from -1100 to 2000 HU." in [c.value for c in at.caption]


def test_opens_on_the_whole_range_scanners_store(at):
    assert at.slider(key="histogram_range").value == (-1100.0, 3100.0)  # 12-bit CT stores up to 3071 HU
    stats = table_with(at, "Statistic")
    assert list(stats["Statistic"]) == ["Count", "Mean", "Median", "SD", "Minimum", "Maximum", "1st percentile",
                                        "5th percentile", "25th percentile", "75th percentile", "95th percentile",
                                        "99th percentile"]


def test_a_click_on_a_bar_sets_the_window_and_the_band_picker():
    from streamlit.testing.v1 import AppTest

    def script():
        import streamlit as st

        from dashboard import histogram_ui

        if st.button("click", key="click"):
            st.session_state[histogram_ui.CHART] = {"selection": {"points": [{"x": -700.0}]}}
            histogram_ui._clicked()
        histogram_ui.band_window_ui()

    at = AppTest.from_function(script).run()
    at.button(key="click").click().run()
    assert not at.exception
    assert at.selectbox(key="histogram_band_pick").value == "Lung"
    assert (at.session_state["explorer_center"], at.session_state["explorer_width"]) == (-725.0, 450.0)


def test_band_sets_the_explorer_window(at):
    at.selectbox(key="histogram_band_pick").set_value("Lung").run()
    at.button(key="histogram_band_apply").click().run()
    assert (at.session_state["explorer_center"], at.session_state["explorer_width"]) == (-725.0, 450.0)
    assert at.session_state["explorer_preset"] == "Custom"


class TestFigure:
    def test_payload_is_pre_binned_and_small(self):
        vol = sample_ct()
        vc = value_counts(vol.voxels, padding=vol.padding)
        counts, edges = hu_histogram(vc, bin_width=1, hu_range=(-1100, 3100))
        fig = figure(counts, edges, log=True, cumulative=False, bands=True, window=(40, 400), unit="HU",
                     overlay=("other", counts))
        payload = fig.to_json()
        assert len(payload.encode()) <= 100_000
        data = json.loads(payload)["data"]
        assert len(data[0]["y"]["bdata"] if isinstance(data[0]["y"], dict) else data[0]["y"]) > 0
        assert len(fig.layout.shapes) == 9  # eight bands and the window

    def test_counts_in_the_figure_are_the_histogram(self):
        counts = np.array([3, 0, 5])
        edges = np.array([0.0, 10, 20, 30])
        fig = figure(counts, edges, log=False, cumulative=True, bands=False, window=None, unit="HU")
        assert list(fig.data[0].y) == [3, 3, 8]
        assert list(fig.data[0].x) == [5, 15, 25] and fig.data[0].width == 10


def test_lungs_scope_counts_the_segmented_lungs(at):
    at.radio(key="histogram_scope").set_value("Segmented lungs").run()
    assert not at.exception
    lab = sample_labels()
    truth = int(np.isin(lab, [LABELS[n] for n in LUNG_LABELS]).sum())
    n = int(_caption(at).split()[0].replace(",", ""))
    assert abs(n - truth) / truth < 0.01
    bands = table_with(at, "Band").set_index("Band")
    # The lung band holds at least the parenchyma out of the blur's reach (vessels, airways, the
    # bulla and nodules make up the rest).
    pure = ndimage.minimum_filter(lab, 3) == ndimage.maximum_filter(lab, 3)
    assert bands.loc["Lung", "Fraction (%)"] >= 100 * int((pure & (lab == LABELS["lung"])).sum()) / truth
    assert bands.loc["Air", "Fraction (%)"] > 100 * int((lab == LABELS["emphysema"]).sum()) / truth * 0.9


def test_lungs_scope_without_lungs_says_so():
    import numpy as np

    from core import load_series
    from dashboard.state import Study
    from tests.factory import ct_series, ramp_volume

    vol = load_series(ct_series(ramp_volume((6, 16, 16)))).volumes[0]  # no air inside a body
    at = page_test(PAGE)
    at.session_state["study"] = Study(volumes=[vol], skipped=[], source="t")
    at.run()
    at.radio(key="histogram_scope").set_value("Segmented lungs").run()
    assert not at.exception
    assert any(i.value.startswith("No lungs to count") for i in at.info)
    assert np.isfinite(float(_caption(at).split()[0].replace(",", "")))


@pytest.mark.browser
def test_a_bar_click_moves_the_window_box_and_the_band_picker_in_chromium(page, app_url):
    """One state shown the same everywhere: after a click on a lung bar, the chart's window box spans the
    lung band and the band picker says "Lung", in the run the click started."""
    from playwright.sync_api import expect

    from tests.browser import no_exception, wait_idle

    page.goto(app_url + "/HU_histogram")
    wait_idle(page)
    page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot .bars path').length > 100")
    pos = page.evaluate("""() => {
        const gd = document.querySelector('.js-plotly-plot');
        const r = gd.querySelector('.nsewdrag').getBoundingClientRect();
        return {x: r.left + gd._fullLayout.xaxis.l2p(-855), y: r.bottom - 8};
    }""")
    page.mouse.click(pos["x"], pos["y"])
    page.get_by_text("Explorer window set to the lung band").wait_for(timeout=30_000)
    wait_idle(page)
    no_exception(page)
    expect(page.get_by_role("combobox", name="Set the explorer's window to a band")).to_have_value("Lung")
    page.wait_for_function("""() => {
        const gd = document.querySelector('.js-plotly-plot');
        const box = (gd.layout.shapes || []).find(s => s.line && s.line.dash === 'dash');
        return box && box.x0 === -950 && box.x1 === -500;
    }""")


def test_the_slices_counted_are_numbered_from_one(at):
    at.radio(key="histogram_scope").set_value("Current slice").run()
    assert "Axial slice 61 of 120, around the explorer's slice 61." in [c.value for c in at.caption]
    at.radio(key="histogram_scope").set_value("Slab of slices").run()
    at.number_input(key="histogram_slab_slices").set_value(5).run()
    assert "Axial slices 59 to 63 of 120, around the explorer's slice 61." in [c.value for c in at.caption]
