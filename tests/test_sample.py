"""The built-in synthetic chest CT: its anatomy, its image formation and its exact label map."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from core import LABELS, TISSUE_HU, sample_ct, sample_labels
from core.lungs import lung_statistics, segment_lungs
from core.phantom_chest import build_chest
from core.sample import LUNG_LABELS, NOISE_SD, _build


@pytest.fixture(scope="module")
def interior():
    """Voxels whose 3 x 3 x 3 neighbourhood holds one label: out of reach of the PSF's blur."""
    lab = sample_labels()
    return ndimage.minimum_filter(lab, 3) == ndimage.maximum_filter(lab, 3)


class TestSampleCT:
    def test_shape_dtype_and_geometry(self):
        vol = sample_ct()
        assert vol.shape == (120, 256, 256)
        assert vol.voxels.dtype == np.int16 and vol.modality == "CT" and vol.units == "HU"
        assert vol.spacing == (2.5, 1.4, 1.4) and vol.is_regular and vol.warnings == []
        assert not vol.voxels.flags.writeable

    def test_cached_and_deterministic(self):
        assert sample_ct() is sample_ct()
        raw, lab = build_chest()  # built afresh: the same bytes
        assert raw.tobytes() == _build()[0].tobytes() and lab.tobytes() == sample_labels().tobytes()
        assert np.array_equal(np.where(lab == 0, -1024, raw), sample_ct().voxels)

    def test_padding_is_the_scan_circle(self):
        vol, lab = sample_ct(), sample_labels()
        np.testing.assert_array_equal(vol.padding_mask(), lab == LABELS["outside scan circle"])
        assert np.all(vol.voxels[lab == 0] == -1024)
        assert np.all(_build()[0][lab == 0] == -2000)
        assert _build()[0][lab != 0].min() >= -1024

    def test_every_structure_is_named_and_present(self):
        assert sorted(LABELS.values()) == list(range(len(LABELS))) and set(TISSUE_HU) == set(LABELS)
        counts = np.bincount(sample_labels().ravel(), minlength=len(LABELS))
        assert len(counts) == len(LABELS) and np.all(counts > 0)
        for name in ("trachea", "bronchus", "bronchial wall", "pulmonary vessel", "aorta", "pulmonary artery",
                     "left ventricle", "right ventricle", "left atrium", "right atrium", "myocardium",
                     "vertebral body", "intervertebral disc", "spinal canal", "costal cartilage", "liver",
                     "spleen", "stomach gas", "solid nodule", "ground-glass nodule", "emphysema"):
            assert name in LABELS, name


class TestAnatomy:
    def test_ribs_are_arcs_not_rings(self):
        """Each slice crosses the ribs in separate arcs, and no closed ring of bone surrounds the lungs."""
        lab = sample_labels()
        rib = np.isin(lab, [LABELS["cortical bone"], LABELS["cancellous bone"]])
        rib[:, :, 100:156] = False  # leave out the spine and the sternum
        for k in range(20, 110):
            assert 2 <= ndimage.label(rib[k])[1] <= 40, k
            assert ndimage.binary_fill_holes(rib[k]).sum() < 1.2 * rib[k].sum() + 100, k

    def test_ribs_fall_from_back_to_front(self):
        """A rib's front end lies lower than its back: on one sagittal plane beside the spine,
        bone behind the lung is found higher than bone in front of it (cartilage included)."""
        lab = sample_labels()
        col = 128 + 50  # 70 mm to the patient's left
        bone = np.isin(lab[:, :, col], [LABELS["cortical bone"], LABELS["cancellous bone"], LABELS["costal cartilage"]])
        back, front = bone[:, 132:], bone[:, :124]  # behind and in front of the rib cage's centre
        top_back = np.nonzero(back.any(axis=1))[0].max()
        top_front = np.nonzero(front.any(axis=1))[0].max()
        assert top_back - top_front >= 16  # 40 mm or more

    def test_vertebrae_alternate_with_discs(self):
        mid = sample_labels()[:, :, 128]  # the midsagittal plane
        row = int(np.argmax((mid == LABELS["vertebral body"]).sum(axis=0)))
        column = mid[:, row]  # top to bottom through the vertebral bodies
        starts = np.flatnonzero(np.diff((column == LABELS["intervertebral disc"]).astype(int)) == 1)
        assert len(starts) >= 11  # a disc every 24 mm over 300 mm
        assert np.all(np.isin(column, [LABELS[n] for n in ("vertebral body", "cortical bone", "intervertebral disc")]))

    def test_lung_apices_and_bases_change_along_the_body(self):
        lung = np.isin(sample_labels(), [LABELS[n] for n in LUNG_LABELS]).sum(axis=(1, 2))
        widest = int(np.argmax(lung))
        assert lung[115] < lung[widest] / 3 and lung[2] < lung[widest] / 3
        assert (sample_labels()[:30] == LABELS["liver"]).any() and (sample_labels()[100:] == LABELS["liver"]).sum() == 0


class TestImageFormation:
    def test_interior_voxels_read_their_tissue_plus_bounded_noise(self, interior):
        vol, lab = sample_ct().voxels, sample_labels()
        for name, value in TISSUE_HU.items():
            if name == "outside scan circle":
                continue
            values = vol[interior & (lab == LABELS[name])].astype(np.float64)
            if values.size == 0:
                continue  # thin layers (skin, disc, airway wall) have no voxel out of the blur's reach
            assert np.all(np.abs(values - value) <= 4 * NOISE_SD + 0.5), name
            if values.size > 2000:
                assert abs(values.mean() - value) < 1.0, name
                assert values.std() == pytest.approx(NOISE_SD, rel=0.06), name

    def test_edges_show_partial_volume(self, interior):
        """At the lung's border with the chest wall, voxels on both sides read between the two
        tissues' means, well outside the noise of either."""
        vol, lab = sample_ct().voxels.astype(np.float64), sample_labels()
        lung, wall = lab == LABELS["lung"], np.isin(lab, [LABELS["muscle"], LABELS["diaphragm"]])
        only_two = ~ndimage.binary_dilation(~(lung | wall), structure=np.ones((3, 3, 3)))  # no third tissue near
        lung_edge = lung & ndimage.binary_dilation(wall) & only_two
        wall_edge = wall & ndimage.binary_dilation(lung) & only_two
        lo, hi = TISSUE_HU["lung"], TISSUE_HU["muscle"]
        assert lung_edge.sum() > 10_000 and wall_edge.sum() > 10_000
        assert lo + 100 < vol[lung_edge].mean() < hi - 500
        assert lo + 500 < vol[wall_edge].mean() < hi - 100
        # Most edge voxels are more than 3 SD of noise away from both means.
        between = (vol > lo + 3 * NOISE_SD) & (vol < hi - 3 * NOISE_SD)
        assert between[lung_edge].mean() > 0.99 and between[wall_edge].mean() > 0.99

    def test_noise_power_spectrum_is_not_flat(self, interior):
        """Noise in 32 x 32 patches of liver: little power at the lowest and highest frequencies,
        most in between (filtered back projection's texture), at NOISE_SD."""
        vol, lab = sample_ct().voxels.astype(np.float64), sample_labels()
        liver = interior & (lab == LABELS["liver"])
        patches = []
        for k in range(40):
            ok = ndimage.minimum_filter(liver[k].astype(np.uint8), 32, mode="constant")
            rows, cols = np.nonzero(ok)
            if rows.size:
                r, c = rows[0] - 16, cols[0] - 16
                p = vol[k, r:r + 32, c:c + 32]
                patches.append(p - p.mean())
        assert len(patches) >= 10
        nps = np.mean([np.abs(np.fft.fft2(p)) ** 2 for p in patches], axis=0)
        f = np.hypot(*np.meshgrid(np.fft.fftfreq(32), np.fft.fftfreq(32), indexing="ij"))  # cycles / pixel
        low, mid, high = nps[(f > 0) & (f < 0.08)].mean(), nps[(f > 0.18) & (f < 0.32)].mean(), nps[f > 0.45].mean()
        assert mid > 4 * low and mid > 2 * high
        assert np.sqrt(nps.sum() / 32**4) == pytest.approx(NOISE_SD, rel=0.15)

    def test_histogram_peaks_where_a_chest_ct_has_them(self):
        vol, lab = sample_ct().voxels, sample_labels()
        counts, edges = np.histogram(vol[lab != 0], bins=np.arange(-1100, 1500, 5))
        centres = (edges[:-1] + edges[1:]) / 2
        for name, mean in (("air", TISSUE_HU["air"]), ("lung", TISSUE_HU["lung"]),
                           ("fat", TISSUE_HU["subcutaneous fat"]), ("soft tissue", TISSUE_HU["muscle"])):
            near = np.abs(centres - mean) <= 100
            peak = centres[near][np.argmax(counts[near])]
            assert abs(peak - mean) <= 20, name
            flanks = counts[(np.abs(centres - (mean - 70)) < 3) | (np.abs(centres - (mean + 70)) < 3)]
            assert counts[near].max() > 1.5 * flanks.max(), name  # a peak, not a slope
        bone = vol[lab == LABELS["vertebral body"]]
        counts, edges = np.histogram(bone, bins=np.arange(0, 600, 5))
        assert abs(edges[np.argmax(counts)] + 2.5 - TISSUE_HU["vertebral body"]) <= 20
        assert (vol[lab == LABELS["cortical bone"]] > 700).sum() > 10_000


class TestLungTruth:
    def test_segmentation_matches_the_label_map(self):
        vol, lab = sample_ct(), sample_labels()
        lungs = segment_lungs(vol)
        truth = np.isin(lab, [LABELS[n] for n in LUNG_LABELS])
        stats = lung_statistics(vol, lungs)
        voxel_ml = float(np.prod(vol.spacing)) / 1000
        assert stats.volume_ml == pytest.approx(truth.sum() * voxel_ml, rel=0.01)
        assert 2 * np.count_nonzero(lungs & truth) / (lungs.sum() + truth.sum()) >= 0.97
        assert not lungs[(lab == LABELS["trachea"]) | (lab == LABELS["stomach gas"])].any()

    def test_emphysema_index_matches_the_label_map(self):
        vol, lab = sample_ct(), sample_labels()
        truth = np.isin(lab, [LABELS[n] for n in LUNG_LABELS])
        index = 100 * np.count_nonzero(lab == LABELS["emphysema"]) / truth.sum()
        stats = lung_statistics(vol, segment_lungs(vol))
        assert 2.0 < index < 4.0  # a patch worth pointing at, as a clinician would see it
        assert abs(stats.emphysema_index - index) < 1.0  # percentage points
        assert stats.emphysema_index == pytest.approx(index, rel=0.1)


class TestHeadSample:
    def test_deterministic_labelled_and_padded(self):
        from core.head_sample import HEAD_LABELS, HEAD_TISSUE_HU, _build_head, head_ct, head_labels

        vol, lab = head_ct(), head_labels()
        assert head_ct() is vol and vol.voxels.dtype == np.int16 and vol.units == "HU"
        assert vol.shape == lab.shape == (96, 192, 192) and vol.spacing == (2.5, 1.2, 1.2)
        _build_head.cache_clear()
        assert _build_head()[0].tobytes() == np.where(lab == 0, -2000, vol.voxels).tobytes()
        assert np.all(np.bincount(lab.ravel(), minlength=len(HEAD_LABELS)) > 0)
        np.testing.assert_array_equal(vol.padding_mask(), lab == HEAD_LABELS["outside scan circle"])
        pure = ndimage.minimum_filter(lab, 3) == ndimage.maximum_filter(lab, 3)
        for name in ("brain grey matter", "brain white matter", "muscle", "eye"):
            values = vol.voxels[pure & (lab == HEAD_LABELS[name])].astype(np.float64)
            assert values.size > 100 and np.all(np.abs(values - HEAD_TISSUE_HU[name]) <= 4 * NOISE_SD + 0.5), name

    def test_the_face_check_finds_its_face(self):
        from core.face_check import has_head, privacy_check
        from core.head_sample import head_ct

        assert has_head(head_ct())[0]
        evidence = privacy_check(head_ct())
        assert evidence.level == "likely"
        assert {d.azimuth for d in evidence.detections if d.frontal_faces and d.eyes} >= {0.0}
