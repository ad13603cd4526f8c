"""The built-in synthetic chest CT."""

from __future__ import annotations

import numpy as np

from core import LABELS, TISSUE_HU, sample_ct, sample_labels
from core.sample import _build


class TestSampleCT:
    def test_shape_dtype_and_geometry(self):
        vol = sample_ct()
        assert vol.shape[0] >= 120 and vol.shape[1] >= 256 and vol.shape[2] >= 256
        assert vol.voxels.dtype == np.int16 and vol.modality == "CT" and vol.units == "HU"
        assert vol.spacing == (2.5, 1.4, 1.4) and vol.is_regular and vol.warnings == []
        assert not vol.voxels.flags.writeable

    def test_cached_and_deterministic(self):
        assert sample_ct() is sample_ct()
        _build.cache_clear()
        again = _build()[0]
        assert np.array_equal(np.where(sample_labels() == 0, -1024, again), sample_ct().voxels)

    def test_tissue_means_match_labels(self):
        vol, lab = sample_ct().voxels, sample_labels()
        for name in ("air", "fat", "muscle", "lung", "liver", "cortical bone"):
            values = vol[lab == LABELS[name]]
            assert values.size > 1000, name
            assert abs(values.mean() - TISSUE_HU[name]) < 3.0, name

    def test_padding_is_the_scan_circle(self):
        vol, lab = sample_ct(), sample_labels()
        np.testing.assert_array_equal(vol.padding_mask(), lab == LABELS["outside scan circle"])
        assert np.all(vol.voxels[lab == 0] == -1024)
        assert np.all(_build()[0][lab == 0] == -2000)

    def test_every_tissue_is_present(self):
        counts = np.bincount(sample_labels().ravel(), minlength=len(LABELS))
        assert np.all(counts > 0)
