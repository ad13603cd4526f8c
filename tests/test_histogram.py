"""hu_histogram, value counts and tissue statistics against numpy and the sample's label map."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest

from core import LABELS, TISSUE_HU, sample_ct, sample_labels
from core.histogram import (
    TISSUE_BANDS,
    array_statistics,
    band_counts,
    bin_edges,
    hu_histogram,
    value_counts,
    value_statistics,
)


def _volume(seed=0, shape=(7, 33, 41)):
    rng = np.random.default_rng(seed)
    return rng.integers(-1500, 2500, size=shape).astype(np.int16)


class TestHuHistogram:
    @pytest.mark.parametrize("bin_width,hu_range", [(10, (-1100, 2000)), (1, (-5, 5)), (7, (-1000, 1001)),
                                                    (38.75, (-1100, 2000)), (0.5, (-3, 3))])
    def test_equals_numpy_on_the_same_edges(self, bin_width, hu_range):
        v = _volume()
        counts, edges = hu_histogram(v, bin_width=bin_width, hu_range=hu_range)
        expected, _ = np.histogram(v, bins=edges)
        np.testing.assert_array_equal(counts, expected)
        assert counts.dtype == np.int64

    def test_last_edge_is_closed_like_numpy(self):
        v = np.array([[[-10, 0, 10, 10, 11]]], dtype=np.int16)
        counts, edges = hu_histogram(v, bin_width=10, hu_range=(-10, 10))
        assert edges.tolist() == [-10, 0, 10] and counts.tolist() == [1, 3]

    def test_mask(self):
        v = _volume(1)
        mask = np.random.default_rng(2).random(v.shape) > 0.5
        counts, edges = hu_histogram(v, mask=mask)
        np.testing.assert_array_equal(counts, np.histogram(v[mask], bins=edges)[0])

    def test_float_volume_falls_back_to_numpy(self):
        v = np.random.default_rng(3).normal(0, 300, (4, 10, 10)).astype(np.float32)
        counts, edges = hu_histogram(v, bin_width=25, hu_range=(-500, 500))
        np.testing.assert_array_equal(counts, np.histogram(v, bins=edges)[0])

    def test_uint16_and_from_value_counts(self):
        v = np.random.default_rng(4).integers(0, 4000, (3, 20, 20)).astype(np.uint16)
        vc = value_counts(v)
        counts, edges = hu_histogram(vc, bin_width=50, hu_range=(0, 4000))
        np.testing.assert_array_equal(counts, np.histogram(v, bins=edges)[0])

    def test_edges(self):
        assert bin_edges(10, (-20, 5)).tolist() == [-20, -10, 0, 5]
        with pytest.raises(ValueError, match="bin_width must be positive"):
            bin_edges(0, (0, 1))
        with pytest.raises(ValueError, match="low < high"):
            bin_edges(1, (5, 5))


class TestValueCounts:
    def test_counts_and_padding(self):
        v = np.array([[[-1024, 5, 5, 300]]], dtype=np.int16)
        pad = np.packbits(np.array([[[True, False, False, False]]]), axis=-1)
        vc = value_counts(v, padding=pad)
        assert vc.total == 3 and vc.counts[5 - vc.offset] == 2 and vc.counts[-1024 - vc.offset] == 0

    def test_large_counts_stay_exact(self):
        # One value in more voxels than float32 can count exactly (2**24 + 3).
        v = np.zeros((1, 1, (1 << 24) + 3), dtype=np.int16)
        assert value_counts(v).total == (1 << 24) + 3

    def test_rejects_float(self):
        with pytest.raises(TypeError, match="integer voxels"):
            value_counts(np.zeros((1, 2, 2), np.float32))


class TestStatistics:
    def test_exact_against_numpy(self):
        v = _volume(5)
        stats = value_statistics(value_counts(v))
        flat = v.astype(np.float64).ravel()
        assert stats["count"] == flat.size
        assert stats["mean"] == pytest.approx(flat.mean(), rel=1e-12)
        assert stats["sd"] == pytest.approx(flat.std(), rel=1e-12)
        for p in (1, 5, 25, 75, 95, 99):
            assert stats[f"p{p}"] == pytest.approx(np.percentile(flat, p), abs=1e-9)
        assert stats["median"] == np.median(flat)
        assert array_statistics(flat) == pytest.approx(stats)

    def test_sample_tissue_volumes_from_its_label_map(self):
        """Each band holds exactly the sample's voxels of its tissues out of the blur's reach, none of
        any other tissue's, and at edges only voxels that neighbour its tissues (partial volume)."""
        from scipy import ndimage

        vol, lab = sample_ct(), sample_labels()
        vc = value_counts(vol.voxels, padding=vol.padding)
        voxel_ml = np.prod(vol.spacing) / 1000
        rows = {r.band.name: r for r in band_counts(vc, float(np.prod(vol.spacing)))}
        inside = lab != LABELS["outside scan circle"]
        interior = ndimage.minimum_filter(lab, 3) == ndimage.maximum_filter(lab, 3)
        cube = np.ones((3, 3, 3), bool)
        lung_low_side = ("air", "emphysema", "trachea", "bronchus", "main bronchus", "stomach gas")
        for band, own, low_side in (("Lung", ("lung", "ground-glass nodule"), lung_low_side),
                                    ("Cortical bone", ("cortical bone",), ())):
            row = rows[band]
            in_band = (vol.voxels >= row.band.low) & (vol.voxels < row.band.high) & inside
            mine = np.isin(lab, [LABELS[n] for n in own])
            assert row.voxels == int(in_band.sum()), band
            assert row.volume_ml == pytest.approx(row.voxels * voxel_ml)
            assert row.fraction == pytest.approx(row.voxels / vc.total)
            assert in_band[interior & mine].all(), band  # every voxel of its own tissues, blur aside
            assert not in_band[interior & ~mine].any(), band  # no voxel of another tissue
            # At an edge a voxel can read in the band only next to a tissue in or beyond the band.
            near = ndimage.binary_dilation(mine | np.isin(lab, [LABELS[n] for n in low_side]), structure=cube)
            assert not in_band[~near].any(), band
            assert int((interior & mine).sum()) <= row.voxels <= int(near.sum())
        # Padding is excluded: every counted voxel is inside the scan circle.
        assert vc.total == int(inside.sum())
        assert sum(r.fraction for r in rows.values()) <= 1.0 + 1e-9
        assert TISSUE_HU["lung"] in range(-950, -500)

    def test_bands_do_not_overlap(self):
        spans = sorted((b.low, b.high) for b in TISSUE_BANDS)
        assert all(a[1] <= b[0] for a, b in pairwise(spans))
