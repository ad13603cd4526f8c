"""Stack analysis and the corrected (regular-grid) geometry, on stacks whose true positions are known."""

from __future__ import annotations

import numpy as np
import pytest

from core import GeometryError, analyse_stack, load_series, slice_normal
from tests.factory import ct_series

CENTRE = np.array([3.0, -4.0, 21.0])  # sphere centre, patient LPS mm
RADIUS = 9.0


def _sphere_series(positions, *, rows=48, cols=40, dy=1.0, dx=1.0, origin_xy=(-20.0, -24.0)):
    """Each slice samples a sphere (1000 HU in -1000 HU) at its pixels' true patient positions."""
    hu = []
    for p in positions:
        jj, ii = np.mgrid[:rows, :cols]
        x = p[0] + ii * dx
        y = p[1] + jj * dy
        z = np.full_like(x, p[2], dtype=float)
        d = np.sqrt((x - CENTRE[0]) ** 2 + (y - CENTRE[1]) ** 2 + (z - CENTRE[2]) ** 2)
        # A smooth edge so interpolation keeps sub-voxel accuracy.
        hu.append(np.clip(1000 - 2000 * (d - RADIUS + 0.5), -1000, 1000).round().astype(np.int16))
    return ct_series(np.array(hu), positions=np.asarray(positions), spacing=(1.0, dy, dx))


def _centroid_mm(vol):
    w = np.clip(vol.voxels.astype(float) + 1000, 0, None)
    k, j, i = np.indices(vol.shape)
    idx = np.stack([i.ravel(), j.ravel(), k.ravel(), np.ones(k.size)])
    pts = vol.affine @ idx
    return (pts[:3] * w.ravel()).sum(axis=1) / w.sum()


class TestSliceNormal:
    def test_axial(self):
        np.testing.assert_array_equal(slice_normal([1, 0, 0, 0, 1, 0]), [0, 0, 1])

    def test_coronal(self):
        np.testing.assert_array_equal(slice_normal([1, 0, 0, 0, 0, -1]), [0, 1, 0])

    def test_parallel_vectors(self):
        with pytest.raises(GeometryError, match=r"\(0020,0037\).*parallel"):
            slice_normal([1, 0, 0, 1, 0, 0])

    def test_wrong_length(self):
        with pytest.raises(GeometryError, match="6 finite numbers"):
            slice_normal([1, 0, 0, 0, 1])


class TestAnalyseStack:
    def test_sorts_and_measures(self):
        pos = np.array([[0, 0, z] for z in (4.0, 0.0, 2.0, 6.0)])
        geo = analyse_stack(pos, np.array([0, 0, 1.0]))
        assert list(geo.order) == [1, 2, 0, 3]
        assert geo.spacing == 2.0 and geo.warnings == [] and geo.tilt_degrees == 0.0

    def test_descending_normal(self):
        pos = np.array([[0, 0, z] for z in (0.0, 1.0, 2.0)])
        geo = analyse_stack(pos, np.array([0, 0, -1.0]))
        assert list(geo.order) == [2, 1, 0]

    def test_tilt_angle(self):
        pos = np.array([[0, k * np.tan(np.radians(20)), k] for k in range(5)], dtype=float)
        geo = analyse_stack(pos, np.array([0, 0, 1.0]))
        assert geo.tilt_degrees == pytest.approx(20.0, abs=1e-6)
        assert geo.warnings[0].startswith("Gantry tilt: the stack is sheared by 20.0°")


class TestCorrectedGeometry:
    def test_tilted_stack_lands_at_true_positions(self):
        tilt = np.radians(25.0)
        dz = 1.5
        positions = [[-20.0, -24.0 + k * dz * np.tan(tilt), k * dz] for k in range(30)]
        vol = load_series(_sphere_series(positions)).volumes[0]
        assert vol.tilt_degrees == pytest.approx(25.0, abs=0.01)
        # The raw stack with its exact (sheared) affine already places the sphere right...
        np.testing.assert_allclose(_centroid_mm(vol), CENTRE, atol=0.3)
        # ...and dropping the shear, as SimpleITK does, misplaces it by centimetres.
        naive = vol.with_changes(positions=np.array([vol.positions[0] + k * dz * vol.normal for k in range(30)]))
        assert np.linalg.norm(_centroid_mm(naive) - CENTRE) > 5.0
        fixed = vol.corrected()
        assert fixed.is_regular and fixed.tilt_degrees == 0.0
        assert fixed.spacing == pytest.approx((dz, 1.0, 1.0))
        np.testing.assert_allclose(_centroid_mm(fixed), CENTRE, atol=0.3)
        # The sphere is round again: its extent in y equals its extent in z.
        mask = fixed.voxels > 0
        k, j, _ = np.nonzero(mask)
        assert (j.max() - j.min()) * 1.0 == pytest.approx((k.max() - k.min()) * dz, abs=2.0)
        assert fixed.warnings[0].startswith("Corrected geometry: gantry tilt of 25.0° removed")

    def test_gapped_stack_is_resampled_evenly(self):
        zs = [float(z) for z in range(0, 40) if z not in (18, 19, 20, 24)]
        positions = [[-20.0, -24.0, z] for z in zs]
        vol = load_series(_sphere_series(positions)).volumes[0]
        assert any(w.startswith("Missing slices") for w in vol.warnings)
        fixed = vol.corrected()
        assert fixed.shape[0] == 40 and fixed.spacing[0] == pytest.approx(1.0)
        np.testing.assert_allclose(fixed.positions[:, 2], np.arange(40.0))
        # Where a slice existed, the value is exactly that slice's.
        np.testing.assert_array_equal(fixed.voxels[5], vol.voxels[5])
        np.testing.assert_allclose(_centroid_mm(fixed), CENTRE, atol=0.3)

    def test_interpolates_linearly_between_planes(self):
        hu = np.array([np.full((4, 4), 0), np.full((4, 4), 100), np.full((4, 4), 300)], dtype=np.int16)
        positions = np.array([[0, 0, 0.0], [0, 0, 1.0], [0, 0, 3.0]])
        vol = load_series(ct_series(hu, positions=positions)).volumes[0]
        fixed = vol.corrected(spacing=1.0)
        assert [int(fixed.voxels[k, 0, 0]) for k in range(4)] == [0, 100, 200, 300]

    def test_regular_volume_reports_regular(self):
        vol = load_series(_sphere_series([[-20.0, -24.0, float(z)] for z in range(5)])).volumes[0]
        assert vol.is_regular and vol.warnings == []


class TestVolumeAffine:
    def test_patient_position_of_a_voxel(self):
        vol = load_series(_sphere_series([[-20.0, -24.0, float(z)] for z in range(5)], dy=0.5, dx=0.8)).volumes[0]
        np.testing.assert_allclose(vol.patient_position(3, 10, 5), [-20 + 5 * 0.8, -24 + 10 * 0.5, 3.0])
        np.testing.assert_allclose((vol.affine @ [5, 10, 3, 1])[:3], [-16.0, -19.0, 3.0])
