"""Isosurfaces, lung segmentation and mesh export against known answers."""

from __future__ import annotations

import io

import numpy as np
import pytest
import scipy.special as sps
import trimesh
from skimage.draw import ellipsoid

from core import LABELS, Volume, sample_ct, sample_labels
from core.isosurface import Mesh, extract_isosurface, keep_largest_parts, mesh_bytes
from core.lungs import lung_statistics, segment_lungs
from core.sample import LUNG_LABELS

A, B, C = 24.0, 30.0, 18.0
SPACING = (1.5, 0.5, 0.8)


@pytest.fixture(scope="module")
def ellipsoid_volume():
    lev = ellipsoid(A, B, C, spacing=SPACING, levelset=True).astype(np.float32)
    return Volume(voxels=-lev, spacing=SPACING, series_uid="1", modality="OT")


def _ellipsoid_area(a, b, c):
    return 4 * np.pi * a * b * c * sps.elliprg(1 / a**2, 1 / b**2, 1 / c**2)


class TestExtractIsosurface:
    def test_ellipsoid_extent_area_and_volume(self, ellipsoid_volume):
        mesh = extract_isosurface(ellipsoid_volume, 0.0, max_triangles=10**7)
        extent = np.ptp(mesh.vertices, axis=0)  # x = columns (C), y = rows (B), z = slices (A)
        np.testing.assert_allclose(extent, [2 * C, 2 * B, 2 * A], rtol=0.02)
        assert mesh.area_mm2 == pytest.approx(_ellipsoid_area(A, B, C), rel=0.02)
        assert mesh.enclosed_ml == pytest.approx(4 / 3 * np.pi * A * B * C / 1000, rel=0.02)
        assert mesh.is_closed and not mesh.decimated and mesh.step == (1, 1, 1)

    def test_budget_is_respected(self, ellipsoid_volume):
        full = extract_isosurface(ellipsoid_volume, 0.0, max_triangles=10**7)
        mesh = extract_isosurface(ellipsoid_volume, 0.0, max_triangles=full.n_triangles // 10)
        assert 0 < mesh.n_triangles <= full.n_triangles // 10
        assert mesh.area_mm2 == pytest.approx(full.area_mm2, rel=0.03)

    def test_vertices_in_patient_coordinates(self):
        vox = np.zeros((10, 10, 10), np.int16)
        vox[3:7, 3:7, 3:7] = 1000
        vol = Volume(voxels=vox, spacing=(2.0, 1.0, 1.0), series_uid="1", modality="CT",
                     positions=np.array([[100.0, 50.0, 10 + 2.0 * k] for k in range(10)]))
        mesh = extract_isosurface(vol, 500)
        lo, hi = mesh.vertices.min(axis=0), mesh.vertices.max(axis=0)
        # The cube spans voxels 3..6: its surface sits half-way to the neighbours, at 2.5 and 6.5.
        np.testing.assert_allclose(lo, [102.5, 52.5, 15.0], atol=1e-4)
        np.testing.assert_allclose(hi, [106.5, 56.5, 23.0], atol=1e-4)

    def test_level_not_crossed(self, ellipsoid_volume):
        with pytest.raises(ValueError, match="not crossed"):
            extract_isosurface(ellipsoid_volume, 1e6)

    def test_keep_largest_parts(self):
        vox = np.zeros((20, 20, 20), np.int16)
        vox[2:10, 2:10, 2:10] = 1000
        vox[14:16, 14:16, 14:16] = 1000
        vol = Volume(voxels=vox, spacing=(1.0, 1.0, 1.0), series_uid="1", modality="CT")
        both = extract_isosurface(vol, 500)
        one = extract_isosurface(vol, 500, keep_largest=1)
        assert one.n_triangles < both.n_triangles
        assert one.enclosed_ml == pytest.approx(8**3 / 1000, rel=0.05)
        v, f = keep_largest_parts(both.vertices, both.faces, 5)
        assert len(f) == both.n_triangles


class TestExport:
    @pytest.mark.parametrize("kind", ["stl", "ply", "obj"])
    def test_round_trip(self, ellipsoid_volume, kind):
        mesh = extract_isosurface(ellipsoid_volume, 0.0, max_triangles=20_000)
        data = mesh_bytes(mesh, kind)
        back = trimesh.load(io.BytesIO(data), file_type=kind, process=False)
        assert len(back.faces) == mesh.n_triangles
        assert back.area == pytest.approx(mesh.area_mm2, rel=1e-4)
        if kind == "stl":
            assert data[80:84] == np.uint32(mesh.n_triangles).tobytes()  # binary STL header count

    def test_unknown_type(self):
        with pytest.raises(ValueError, match="file_type"):
            mesh_bytes(Mesh(np.zeros((3, 3), np.float32), np.array([[0, 1, 2]], np.int32)), "vrml")


class TestLungs:
    def test_sample_lungs_match_the_label_map(self):
        vol, lab = sample_ct(), sample_labels()
        lungs = segment_lungs(vol)
        truth = np.isin(lab, [LABELS[n] for n in LUNG_LABELS])  # vessels, bronchi, nodules lie inside the lungs
        dice = 2 * np.count_nonzero(lungs & truth) / (lungs.sum() + truth.sum())
        assert dice >= 0.97
        stats = lung_statistics(vol, lungs)
        assert stats.volume_ml == pytest.approx(truth.sum() * np.prod(vol.spacing) / 1000, rel=0.01)
        assert not lungs[lab == LABELS["trachea"]].any()  # the trachea is not lung
        assert not lungs[lab == LABELS["stomach gas"]].any()  # nor the gas under the diaphragm

    def test_emphysema_index(self):
        vox = np.full((6, 40, 40), 40, np.int16)
        vox[:, 10:30, 10:30] = -850
        vox[:, 10:15, 10:30] = -980  # a quarter of the lung below -950
        vol = Volume(voxels=vox, spacing=(1.0, 1.0, 1.0), series_uid="1", modality="CT", units="HU")
        lungs = segment_lungs(vol)
        assert lungs.sum() == 6 * 20 * 20
        stats = lung_statistics(vol, lungs)
        assert stats.emphysema_index == pytest.approx(25.0) and stats.volume_ml == pytest.approx(2.4)

    def test_needs_ct(self):
        vol = Volume(voxels=np.zeros((2, 4, 4), np.int16), spacing=(1, 1, 1), series_uid="1", modality="MR")
        with pytest.raises(ValueError, match="CT in HU"):
            segment_lungs(vol)


class TestPlanIsosurface:
    @pytest.mark.parametrize("level, budget", [(400.0, 300_000), (-300.0, 50_000), (400.0, 10**7)])
    def test_memory_bound_holds_and_step_is_the_one_used(self, level, budget):
        import tracemalloc

        from core import sample_ct
        from core.isosurface import plan_isosurface

        vol = sample_ct()
        plan = plan_isosurface(vol, level, max_triangles=budget)
        tracemalloc.start()
        try:
            mesh = extract_isosurface(vol, level, max_triangles=budget, plan=plan)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert mesh.step == plan.step
        assert peak <= plan.nbytes, (peak, plan.nbytes)
        assert plan.nbytes < 4 * peak  # an upper bound, not a refusal of everything
