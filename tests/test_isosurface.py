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
from core.lungs import LungStats, check_lungs, lung_statistics, segment_lungs
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


def _sample_indices(mesh: Mesh) -> np.ndarray:
    """Nearest voxel (slice, row, column) of each vertex of a surface of the sample (axis-aligned)."""
    vol = sample_ct()
    origin = vol.positions[0]
    dz, dy, dx = vol.spacing
    p = mesh.vertices.astype(np.float64)
    kji = np.rint(np.stack([(p[:, 2] - origin[2]) / dz, (p[:, 1] - origin[1]) / dy, (p[:, 0] - origin[0]) / dx], 1))
    return np.clip(kji.astype(int), 0, np.array(vol.shape) - 1)


def _share_on(mesh: Mesh, names) -> float:
    """The share of the surface's vertices within one voxel of the sample's ``names`` labels."""
    from scipy import ndimage

    near = ndimage.binary_dilation(np.isin(sample_labels(), [LABELS[n] for n in names]))
    k, j, i = _sample_indices(mesh).T
    return float(near[k, j, i].mean())


VESSELS = ("left ventricle", "right ventricle", "left atrium", "right atrium", "aorta", "pulmonary artery",
           "superior vena cava", "pulmonary vessel")
BONE = ("vertebral body", "cortical bone", "cancellous bone")


class TestSmoothing:
    def test_noise_specks_go(self):
        # A ball of 100 in noise of SD 30 around a level of 50: unsmoothed, the noise outside
        # crosses the level in specks; a Gaussian of sigma 1 leaves the ball alone.
        rng = np.random.default_rng(0)
        z, y, x = np.mgrid[:40, :40, :40]
        ball = ((z - 20) ** 2 + (y - 20) ** 2 + (x - 20) ** 2 <= 10**2) * 100.0
        vol = Volume(voxels=(ball + rng.normal(0, 30, ball.shape)).astype(np.float32), spacing=(1.0, 1.0, 1.0),
                     series_uid="1", modality="OT")
        noisy = extract_isosurface(vol, 50.0, max_triangles=10**7)
        smooth = extract_isosurface(vol, 50.0, max_triangles=10**7, smooth=1.0)
        assert _parts(noisy) > 20 and _parts(smooth) == 1
        # The ball's volume (4.19 mL at 1 mm voxels) is kept within 5 %.
        assert smooth.enclosed_ml == pytest.approx(4 / 3 * np.pi * 10**3 / 1000, rel=0.05)

    def test_coarser_sampling_averages(self):
        from core.isosurface import _block_mean

        v = np.arange(3 * 5 * 4, dtype=np.int16).reshape(3, 5, 4)
        got = _block_mean(v, (2, 2, 3))
        want = np.array([[[v[a:a + 2, b:b + 2, c:c + 3].mean() for c in (0, 3)] for b in (0, 2, 4)] for a in (0, 2)])
        assert got.dtype == np.float32 and got.shape == (2, 3, 2)
        np.testing.assert_allclose(got, want, rtol=1e-6)

    def test_thin_bone_stays_whole_when_sampled_coarser(self):
        # The sample's ribs at the page's default budget (every second row and column): averaged
        # then smoothed, they break into no more pieces than unsmoothed (picking every second
        # voxel then smoothing broke them into twice as many).
        plain = extract_isosurface(sample_ct(), 400.0, max_triangles=150_000)
        smooth = extract_isosurface(sample_ct(), 400.0, max_triangles=150_000, smooth=1.0)
        assert smooth.step == plain.step == (1, 2, 2)
        assert _parts(smooth) <= _parts(plain)

    def test_not_crossed_once_smoothed(self):
        vox = np.zeros((9, 9, 9), np.float32)
        vox[4, 4, 4] = 100.0  # a single voxel over 50: a Gaussian of sigma 1 brings it to 6
        vol = Volume(voxels=vox, spacing=(1.0, 1.0, 1.0), series_uid="1", modality="OT")
        with pytest.raises(ValueError, match="once smoothed"):
            extract_isosurface(vol, 50.0, smooth=1.0)


def _parts(mesh: Mesh) -> int:
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    f = mesh.faces
    n = len(mesh.vertices)
    graph = coo_matrix((np.ones(2 * len(f)), (np.r_[f[:, 0], f[:, 1]], np.r_[f[:, 1], f[:, 2]])), shape=(n, n))
    return int(connected_components(graph, directed=False)[0])


class TestPresetsOnTheSample:
    """The page's presets against the sample's label map: each surface lies on what its name says."""

    def test_vessels_lie_on_vessels_and_heart(self):
        from dashboard.iso_ui import PRESETS, SMOOTH_SIGMA
        from dashboard.iso_ui import VESSELS as NAME

        preset = PRESETS[NAME]
        mesh = extract_isosurface(sample_ct(), preset.level, max_triangles=150_000, smooth=SMOOTH_SIGMA,
                                  upper=preset.upper)
        assert _share_on(mesh, VESSELS) > 0.8
        assert _share_on(mesh, BONE) < 0.2
        # Without leaving bone out, a threshold alone shows mostly bone (the old preset).
        plain = extract_isosurface(sample_ct(), 200.0, max_triangles=150_000)
        assert _share_on(plain, VESSELS) < 0.4 and _share_on(plain, BONE) > 0.6

    def test_bone_lies_on_bone(self):
        from dashboard.iso_ui import BONE as NAME
        from dashboard.iso_ui import PRESETS, SMOOTH_SIGMA

        mesh = extract_isosurface(sample_ct(), PRESETS[NAME].level, max_triangles=150_000, smooth=SMOOTH_SIGMA)
        assert _share_on(mesh, BONE) > 0.95


class TestCheckLungs:
    def test_the_sample_has_lungs(self):
        vol = sample_ct()
        check_lungs(lung_statistics(vol, segment_lungs(vol)))  # no error

    def test_air_around_a_head_is_not_lungs(self):
        # A head (water, 40 HU) in a head holder: a closed box of plastic around air, inside the
        # field of view. The largest air space inside the "body" is the holder's air, -1000 HU.
        vox = np.full((40, 96, 96), -1000, np.int16)
        vox[:, 8:88, 8:88] = 100  # the holder's wall
        vox[:, 10:86, 10:86] = -1000  # its air
        vox[:, 30:66, 30:66] = 40  # the head
        vol = Volume(voxels=vox, spacing=(3.0, 1.0, 1.0), series_uid="1", modality="CT", units="HU")
        stats = lung_statistics(vol, segment_lungs(vol))
        assert stats.volume_ml > 100
        with pytest.raises(ValueError, match="no lungs found: .* is 78 % air"):
            check_lungs(stats)

    def test_too_small(self):
        with pytest.raises(ValueError, match="no lungs found: .* holds 40 mL"):
            check_lungs(LungStats(volume_ml=40.0, emphysema_index=0.0, mean_hu=-850.0, air_share=1.0))
