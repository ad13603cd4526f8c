"""AppTest of the 3D isosurface page."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core import LABELS, sample_ct, sample_labels
from core.sample import LUNG_LABELS
from dashboard import iso_ui
from dashboard.iso_ui import DEFAULT_TRIANGLES
from tests.helpers import page_test, visits_to_other_pages

PAGE = Path(__file__).resolve().parents[1] / "pages" / "3_Isosurface_3D.py"


def _facts(at) -> dict[str, str]:
    """The figures beside the view: ``**Label**: value`` lines."""
    for md in at.markdown:
        if "**Triangles**" in md.value:
            return dict(line.strip().removeprefix("**").split("**: ", 1) for line in md.value.split("\n"))
    return {}


def _number(text: str) -> float:
    return float(text.split()[0].replace(",", ""))


def test_the_sample_surface_is_built_on_arrival():
    at = page_test(PAGE).run()
    assert not at.exception
    facts = _facts(at)
    assert 0 < _number(facts["Triangles"]) <= DEFAULT_TRIANGLES
    assert facts["Smoothing"] == "Gaussian, σ 1 voxel"
    assert not [t for t in at.toggle if t.key == "iso_show"]  # no click needed


def test_a_large_series_waits_for_a_click(monkeypatch):
    monkeypatch.setattr(iso_ui, "SHOW_ON_ARRIVAL_VOXELS", 1000)
    at = page_test(PAGE).run()
    assert not at.exception and not _facts(at)
    at.toggle(key="iso_show").set_value(True).run()
    assert not at.exception and _facts(at)


@pytest.mark.parametrize("preset", [iso_ui.BONE, iso_ui.SKIN, iso_ui.SOFT, iso_ui.VESSELS, iso_ui.LUNGS])
def test_each_surface_within_budget(preset):
    at = page_test(PAGE).run()
    at.selectbox(key="iso_preset").set_value(preset).run()
    at.number_input(key="iso_budget").set_value(100_000).run()
    assert not at.exception
    m = _facts(at)
    assert 0 < _number(m["Triangles"]) <= 100_000
    if preset == iso_ui.LUNGS:
        # The sample's lungs from its label map: the bulla in the left upper lobe is its emphysema.
        lab = sample_labels()
        lungs = np.isin(lab, [LABELS[n] for n in LUNG_LABELS])
        truth_ml = lungs.sum() * np.prod(sample_ct().spacing) / 1000
        truth_index = 100 * (lab == LABELS["emphysema"]).sum() / lungs.sum()
        assert _number(m["Lung volume"]) == pytest.approx(truth_ml, rel=0.01)
        assert abs(_number(m["Emphysema index"]) - truth_index) < 1.0
    else:
        assert "Lung volume" not in m


def test_smoothing_is_applied_and_said():
    at = page_test(PAGE).run()
    at.slider(key="iso_crop").set_value((20, 100)).run()
    smoothed = _facts(at)
    at.toggle(key="iso_smooth").set_value(False).run()
    plain = _facts(at)
    assert not at.exception
    assert smoothed["Smoothing"] == "Gaussian, σ 1 voxel" and plain["Smoothing"] == "none"
    # Noise and the blocky voxel edges add area: the smoothed bone is smaller.
    assert _number(smoothed["Surface area"]) < _number(plain["Surface area"])
    assert "σ 1 voxel" in at.toggle(key="iso_smooth").label


def test_threshold_and_crop_change_the_mesh():
    at = page_test(PAGE).run()
    full = _facts(at)["Surface area"]
    at.slider(key="iso_crop").set_value((30, 90)).run()
    assert not at.exception and _facts(at)["Surface area"] != full
    at.slider(key="iso_level").set_value(2900.0).run()
    assert not at.exception
    assert any("No surface" in e.value for e in at.error)


def test_no_lungs_in_a_head_ct_is_said():
    # A head (40 HU) in a closed holder full of air: the lungs preset says there are no lungs
    # instead of showing the holder's air as "Lung 908 mL".
    from core import Volume
    from dashboard.state import STUDY, Study

    vox = np.full((40, 96, 96), -1000, np.int16)
    vox[:, 8:88, 8:88] = 100
    vox[:, 10:86, 10:86] = -1000
    vox[:, 30:66, 30:66] = 40
    head = Volume(voxels=vox, spacing=(3.0, 1.0, 1.0), series_uid="1.2.3.head", modality="CT", units="HU")
    at = page_test(PAGE)
    at.session_state[STUDY] = Study(volumes=[head], skipped=[], source="test")
    at.run()
    at.selectbox(key="iso_preset").set_value(iso_ui.LUNGS).run()
    assert not at.exception and not _facts(at)
    assert any("no lungs found" in e.value and "% air" in e.value for e in at.error)


def test_settings_survive_a_visit_to_every_other_page():
    at = page_test(PAGE).run()
    values = {"iso_preset": iso_ui.SKIN, "iso_level": -250.0, "iso_smooth": False, "iso_crop": (10, 110),
              "iso_budget": 60_000, "iso_keep": 2}
    at.selectbox(key="iso_preset").set_value(values["iso_preset"]).run()
    at.slider(key="iso_level").set_value(values["iso_level"]).run()
    at.toggle(key="iso_smooth").set_value(False).run()
    at.slider(key="iso_crop").set_value(values["iso_crop"]).run()
    at.number_input(key="iso_budget").set_value(values["iso_budget"]).run()
    at.number_input(key="iso_keep").set_value(values["iso_keep"]).run()
    assert not at.exception
    for other in visits_to_other_pages(at, PAGE):
        assert not at.exception
        got = {"iso_preset": at.selectbox(key="iso_preset").value, "iso_level": at.slider(key="iso_level").value,
               "iso_smooth": at.toggle(key="iso_smooth").value, "iso_crop": tuple(at.slider(key="iso_crop").value),
               "iso_budget": at.number_input(key="iso_budget").value,
               "iso_keep": at.number_input(key="iso_keep").value}
        assert got == values, other.name


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
        finally:
            set_server_budget(saved)
        assert not at.exception and not at.get("plotly_chart")
        assert any("No surface now" in e.value and "this session may hold at most" in e.value for e in at.error)

    def test_the_mesh_holds_its_reservation_while_cached(self):
        from core.memory import server_budget

        before = server_budget().used()
        at = page_test(PAGE).run()
        at.slider(key="iso_crop").set_value((2, 118)).run()
        assert not at.exception
        assert server_budget().used() > before  # the cached mesh's share


@pytest.mark.parametrize("n_vertices, index", [(4, "u2"), (70_000, "u4")])
def test_the_views_bytes_hold_the_mesh_exactly(n_vertices, index):
    # What the browser reads: uint32 header length, the JSON header, then float32 vertices and
    # uint16/uint32 triangles at the offsets the header gives, each a multiple of 4.
    import json
    import struct

    from core.isosurface import Mesh
    from dashboard.iso_view import mesh_payload

    rng = np.random.default_rng(0)
    mesh = Mesh(rng.normal(0, 100, (n_vertices, 3)).astype(np.float32),
                rng.integers(0, n_vertices, (2 * n_vertices, 3)).astype(np.int32))
    data = mesh_payload(mesh, scene="s", color="#f2efe4", bounds=[[0, 0, 0], [1, 2, 3]], height=500)
    n = struct.unpack("<I", data[:4])[0]
    head = json.loads(data[4:4 + n])
    assert head["index"] == index and head["vertices"] % 4 == 0 and head["faces"] % 4 == 0
    assert (head["nv"], head["nf"], head["height"], head["color"]) == (n_vertices, 2 * n_vertices, 500, "#f2efe4")
    vertices = np.frombuffer(data, "<f4", n_vertices * 3, head["vertices"]).reshape(-1, 3)
    faces = np.frombuffer(data, "<u2" if index == "u2" else "<u4", 2 * n_vertices * 3, head["faces"]).reshape(-1, 3)
    assert np.array_equal(vertices, mesh.vertices) and np.array_equal(faces, mesh.faces)
    assert len(data) == head["faces"] + faces.nbytes
    # The id names the content: the same mesh gives the same id, another mesh another.
    again = mesh_payload(mesh, scene="s", color="#fff", bounds=[[0, 0, 0], [1, 1, 1]])
    assert json.loads(again[4:4 + struct.unpack("<I", again[:4])[0]])["id"] == head["id"]


def test_vessels_are_built_as_finely_as_the_budget_allows():
    # The band's first step is chosen for bone rims and marrow too; once they are left out, the
    # sample's vessels and heart take 62,000 triangles at every voxel, within the default budget.
    at = page_test(PAGE).run()
    at.slider(key="iso_crop").set_value((3, 119)).run()  # a surface no other test caches
    at.selectbox(key="iso_preset").set_value(iso_ui.VESSELS).run()
    facts = _facts(at)
    assert not at.exception
    assert facts["Detail"] == "2.5 x 1.4 x 1.4 mm"
    assert DEFAULT_TRIANGLES // 3 <= _number(facts["Triangles"]) <= DEFAULT_TRIANGLES


def test_the_vessels_upper_limit_is_said():
    at = page_test(PAGE).run()
    assert not any("Up to 400 HU" in c.value for c in at.caption)
    at.selectbox(key="iso_preset").set_value(iso_ui.VESSELS).run()
    assert not at.exception
    assert any(c.value.startswith("Up to 400 HU: values from 400 HU up (bone) are left out") for c in at.caption)
