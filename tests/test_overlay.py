"""core.overlay: label maps from the sample, the lungs, DICOM SEG and NIfTI; their statistics and exports."""

from __future__ import annotations

import gzip
import io
import tracemalloc

import highdicom as hd
import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from core import load_series
from core.export import nifti_affine
from core.overlay import (
    LabelMap,
    OverlayError,
    label_stats,
    looks_like_nifti,
    lung_labels,
    match_segmentation,
    nifti_label_bytes,
    nifti_labelmap,
    palette,
    sample_tissue_labels,
    seg_bytes,
    segmentation_header,
    segmentation_labelmap,
)
from tests.factory import segmentable_series, segmentation_file

SPACING = (2.5, 0.7, 0.9)
SHAPE = (6, 20, 24)
BIG = 1 << 30


def _series(*, series_uid: str, frame_uid: str, origin=(-10.0, 5.0, 30.0), seed: int = 0) -> list[tuple[str, bytes]]:
    hu = np.random.default_rng(seed).integers(-1000, 1000, SHAPE).astype(np.int16)
    return segmentable_series(hu, spacing=SPACING, origin=origin, series_uid=series_uid, frame_uid=frame_uid)


def _mask() -> np.ndarray:
    mask = np.zeros(SHAPE, np.uint8)
    mask[1:4, 3:9, 2:7] = 1
    mask[2:6, 12:18, 15:22] = 2
    mask[3, 0, 0] = 2  # a corner voxel: the placement is exact to the pixel
    return mask


def _seg_file(files: list[tuple[str, bytes]], mask: np.ndarray, *, kind: str = "BINARY",
              reverse: bool = False) -> bytes:
    """A DICOM SEG of ``mask`` on ``files``, made by highdicom from the image files themselves."""
    return segmentation_file(files, mask, {1: "Nodule", 2: "Vessel"}, kind=kind, reverse=reverse,
                             colors={1: (60.0, 40.0, 20.0), 2: (50.0, -30.0, 10.0)}, description="Nodules and vessels")


@pytest.fixture(scope="module")
def study():
    frame = generate_uid()
    files = _series(series_uid=generate_uid(), frame_uid=frame)
    other = _series(series_uid=generate_uid(), frame_uid=generate_uid(), origin=(0.0, 0.0, 200.0), seed=1)
    return files, other, frame


def _volume(files):
    result = load_series(files)
    assert len(result.volumes) == 1
    return result.volumes[0]


class TestSegmentationLabelmap:
    @pytest.mark.parametrize("kind", ["BINARY", "LABELMAP", "FRACTIONAL"])
    @pytest.mark.parametrize("reverse", [False, True])
    def test_loads_with_the_study_onto_its_series_at_the_right_voxels(self, study, kind, reverse):
        files, other, _ = study
        seg = _seg_file(files, _mask(), kind=kind, reverse=reverse)
        result = load_series(other + files + [("seg.dcm", seg)])
        assert len(result.volumes) == 2 and result.skipped == []
        assert result.segmentations == [("seg.dcm", seg)]
        header = segmentation_header(seg, max_bytes=BIG)
        index = match_segmentation(header, result.volumes)
        vol = result.volumes[index]
        assert vol.series_uid == pydicom.dcmread(io.BytesIO(files[0][1])).SeriesInstanceUID
        lm = segmentation_labelmap(seg, vol, max_bytes=BIG)
        np.testing.assert_array_equal(lm.labels, _mask())
        assert lm.names == {1: "Nodule", 2: "Vessel"}
        assert lm.colors[1] == hd.color.CIELabColor(60.0, 40.0, 20.0).to_rgb(clip=True)
        assert lm.colors[2] == hd.color.CIELabColor(50.0, -30.0, 10.0).to_rgb(clip=True)
        assert lm.source == "DICOM SEG"  # its description is PHI

    def test_the_loader_keeps_segmentations_up_to_its_limit(self, study, monkeypatch):
        import core.loader

        files, _, _ = study
        seg = _seg_file(files, _mask())
        monkeypatch.setattr(core.loader, "MAX_SEGMENTATION_BYTES", len(seg) + 10)
        result = load_series(files + [("a.dcm", seg), ("b.dcm", seg)])
        assert len(result.volumes) == 1 and [n for n, _ in result.segmentations] == ["a.dcm"]
        assert result.skipped == [("b.dcm", f"refused: a segmentation of {len(seg) / 2**20:,.1f} MB (at most 0 MB "
                                            "of segmentations are kept)")]

    def test_a_seg_without_preamble_and_file_meta_is_read(self, study):
        files, _, _ = study
        data = _seg_file(files, _mask())
        meta_length = int.from_bytes(data[140:144], "little")  # (0002,0000) UL: the file meta group's length
        bare = data[144 + meta_length:]  # no preamble, no file meta: the dataset alone
        assert bare[:2] == b"\x08\x00" and bare[128:132] != b"DICM"
        vol = _volume(files)
        assert match_segmentation(segmentation_header(bare, max_bytes=BIG), [vol]) == 0
        np.testing.assert_array_equal(segmentation_labelmap(bare, vol, max_bytes=BIG).labels, _mask())

    def test_seg_of_another_series_matches_none_in_words(self, study):
        files, other, _ = study
        seg = _seg_file(other, _mask())
        header = segmentation_header(seg, max_bytes=BIG)
        with pytest.raises(OverlayError, match="matches none of the loaded series"):
            match_segmentation(header, [_volume(files)])

    def test_matched_through_the_frame_of_reference_when_the_series_differs(self, study):
        files, _, frame = study
        seg = _seg_file(files, _mask())
        # The same images re-sent as another series (a new UID) in the same frame of reference.
        copy = _series(series_uid=generate_uid(), frame_uid=frame)
        vol = _volume(copy)
        assert match_segmentation(segmentation_header(seg, max_bytes=BIG), [vol]) == 0
        np.testing.assert_array_equal(segmentation_labelmap(seg, vol, max_bytes=BIG).labels, _mask())

    def test_same_frame_of_reference_elsewhere_is_refused_with_the_reason(self, study):
        files, _, frame = study
        seg = _seg_file(files, _mask())
        shifted = _volume(_series(series_uid=generate_uid(), frame_uid=frame, origin=(-10.0, 5.0, 31.0)))
        with pytest.raises(OverlayError, match=r"matches none of the loaded series: Frame 1 .* off the series"):
            match_segmentation(segmentation_header(seg, max_bytes=BIG), [shifted])

    @pytest.mark.parametrize("kind", ["LABELMAP", "BINARY"])
    def test_export_round_trips_and_refers_to_the_series(self, study, kind):
        files, _, _ = study
        vol = _volume(files)
        lm = LabelMap(labels=_mask(), names={1: "Nodule", 2: "Vessel"}, colors={1: (200, 30, 30), 2: (20, 90, 250)},
                      source="test")
        data = seg_bytes(vol, lm, segmentation_type=kind)
        seg = hd.seg.segread(io.BytesIO(data))
        assert str(seg.segmentation_type.value) == kind
        compressed = pydicom.uid.RLELossless if kind == "LABELMAP" else pydicom.uid.ExplicitVRLittleEndian
        assert seg.file_meta.TransferSyntaxUID == compressed
        assert [s.SeriesInstanceUID for s in seg.ReferencedSeriesSequence] == [vol.series_uid]
        referenced = {uid for _, _, uid in seg.get_source_image_uids()}
        assert referenced == {h.SOPInstanceUID for h in vol.slice_headers}
        assert seg.FrameOfReferenceUID == vol.slice_headers[0].FrameOfReferenceUID
        by_position = {tuple(np.round(p, 3)): h.SOPInstanceUID for p, h in zip(vol.positions, vol.slice_headers,
                                                                               strict=True)}
        for frame in seg.PerFrameFunctionalGroupsSequence:  # each frame names the slice it lies on
            position = tuple(np.round([float(x) for x in frame.PlanePositionSequence[0].ImagePositionPatient], 3))
            source = frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
            assert source == by_position[position]
        assert seg.PatientID == vol.slice_headers[0].PatientID
        assert seg.StudyInstanceUID == vol.slice_headers[0].StudyInstanceUID
        back = segmentation_labelmap(data, vol, max_bytes=BIG)
        np.testing.assert_array_equal(back.labels, lm.labels)
        assert back.names == lm.names
        for v, rgb in lm.colors.items():  # through CIELab and back: within rounding
            assert np.max(np.abs(np.subtract(back.colors[v], rgb))) <= 1
        # highdicom's own reading places every labelled voxel at the same patient position
        hv = seg.get_volume(combine_segments=True)
        ours = np.argwhere(lm.labels)[:, [2, 1, 0]]  # (col, row, slice) for the volume's affine
        theirs = np.argwhere(hv.array)
        pos_ours = ours @ vol.affine[:3, :3].T + vol.affine[:3, 3]
        pos_theirs = theirs @ hv.affine[:3, :3].T + hv.affine[:3, 3]
        key = lambda p: sorted(map(tuple, np.round(p, 3)))  # noqa: E731
        assert key(pos_ours) == key(pos_theirs)

    def test_binary_export_numbers_segments_from_one(self, study):
        vol = _volume(study[0])
        labels = _mask() * 3  # values 3 and 6
        lm = LabelMap(labels=labels, names={3: "Three", 6: "Six"}, colors={3: (250, 0, 0), 6: (0, 0, 250)},
                      source="test")
        back = segmentation_labelmap(seg_bytes(vol, lm, segmentation_type="BINARY"), vol, max_bytes=BIG)
        np.testing.assert_array_equal(back.labels, _mask())
        assert back.names == {1: "Three", 2: "Six"}
        lm_back = segmentation_labelmap(seg_bytes(vol, lm), vol, max_bytes=BIG)  # LABELMAP keeps the values
        np.testing.assert_array_equal(lm_back.labels, labels)
        assert lm_back.names == {3: "Three", 6: "Six"}

    def test_empty_label_map_is_not_exported(self, study):
        vol = _volume(study[0])
        with pytest.raises(OverlayError, match="empty"):
            seg_bytes(vol, LabelMap(labels=np.zeros(SHAPE, np.uint8), names={}, colors={}, source="x"))


class TestHostileSegmentation:
    def _with(self, study, **changes) -> bytes:
        ds = pydicom.dcmread(io.BytesIO(_seg_file(study[0], _mask())))
        for keyword, value in changes.items():
            setattr(ds, keyword, value)
        buf = io.BytesIO()
        ds.save_as(buf)
        return buf.getvalue()

    def test_absurd_frame_count_is_refused_before_decoding(self, study):
        data = self._with(study, NumberOfFrames=5_000_000)
        with pytest.raises(OverlayError, match="declares 5,000,000 frames"):
            segmentation_header(data, max_bytes=BIG)

    def test_frames_beyond_the_memory_left_are_refused(self, study):
        data = self._with(study, NumberOfFrames=60_000, Rows=4096, Columns=4096)
        with pytest.raises(OverlayError, match="more than this session may hold"):
            segmentation_header(data, max_bytes=BIG)

    def test_frame_count_disagreeing_with_its_description_is_refused(self, study):
        data = self._with(study, NumberOfFrames=3)
        with pytest.raises(OverlayError, match="declares 3 frames but describes"):
            segmentation_header(data, max_bytes=BIG)

    def test_deflated_file_is_refused_unread(self, study):
        ds = pydicom.dcmread(io.BytesIO(_seg_file(study[0], _mask())))
        ds.file_meta.TransferSyntaxUID = pydicom.uid.DeflatedExplicitVRLittleEndian
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        with pytest.raises(OverlayError, match="Deflated"):
            segmentation_header(buf.getvalue(), max_bytes=BIG)

    def test_an_image_or_junk_is_not_a_segmentation(self, study):
        with pytest.raises(OverlayError, match="not a segmentation"):
            segmentation_header(study[0][0][1], max_bytes=BIG)
        with pytest.raises(OverlayError, match="not a DICOM file"):
            segmentation_header(b"\0" * 300, max_bytes=BIG)


    @pytest.mark.parametrize("kind", ["BINARY", "LABELMAP"])
    @pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom warns about the invalid values it reads
    def test_damaged_files_are_refused_in_words_only(self, study, kind):
        """Bytes changed at random (seeded): the file is read, or refused with an OverlayError; nothing else."""
        files = study[0]
        vol = _volume(files)
        seg = _seg_file(files, _mask(), kind=kind)
        rng = np.random.default_rng(7)
        for t in range(120):
            data = bytearray(seg)
            for _ in range(int(rng.integers(1, 8))):
                data[int(rng.integers(132, 6000 if t % 2 else len(data)))] = int(rng.integers(0, 256))
            try:
                header = segmentation_header(bytes(data), max_bytes=BIG)
                match_segmentation(header, [vol])
                segmentation_labelmap(bytes(data), vol, max_bytes=BIG)
            except OverlayError as exc:
                assert "Error" not in str(exc)


class TestNiftiLabelmap:
    def test_told_apart_from_dicom(self, study):
        vol = _volume(study[0])
        nifti = nifti_label_bytes(vol, LabelMap(labels=_mask(), names={}, colors={}, source="x"), compress=False)
        assert looks_like_nifti(nifti) and looks_like_nifti(gzip.compress(nifti))
        assert not looks_like_nifti(_seg_file(study[0], _mask())) and not looks_like_nifti(study[0][0][1])

    def test_matching_affine_loads_exactly(self, study):
        vol = _volume(study[0])
        lm = LabelMap(labels=_mask(), names={}, colors={}, source="x")
        for compress in (True, False):
            back = nifti_labelmap(nifti_label_bytes(vol, lm, compress=compress), vol, max_bytes=BIG)
            np.testing.assert_array_equal(back.labels, _mask())
            assert back.names == {1: "Label 1", 2: "Label 2"}

    def test_written_like_the_series_export(self, study):
        vol = _volume(study[0])
        img = nib.Nifti1Image.from_bytes(gzip.decompress(nifti_label_bytes(vol, LabelMap(
            labels=_mask(), names={}, colors={}, source="x"))))
        np.testing.assert_allclose(img.affine, nifti_affine(vol), atol=1e-4)
        assert img.get_data_dtype() == np.uint8
        np.testing.assert_array_equal(np.asarray(img.dataobj).transpose(2, 1, 0), _mask())

    def _nifti(self, arr: np.ndarray, affine: np.ndarray) -> bytes:
        return nib.Nifti1Image(arr, affine).to_bytes()

    def test_wrong_affine_is_refused_in_words(self, study):
        vol = _volume(study[0])
        affine = nifti_affine(vol).copy()
        affine[2, 3] += 1.0  # one mm along z
        data = self._nifti(_mask().transpose(2, 1, 0).copy(), affine)
        with pytest.raises(OverlayError, match="affine does not match this series"):
            nifti_labelmap(data, vol, max_bytes=BIG)

    def test_within_the_tolerance_is_accepted(self, study):
        vol = _volume(study[0])
        affine = nifti_affine(vol).copy()
        affine[0, 3] += 0.01
        data = self._nifti(_mask().transpose(2, 1, 0).copy(), affine)
        np.testing.assert_array_equal(nifti_labelmap(data, vol, max_bytes=BIG).labels, _mask())

    def test_wrong_shape_and_non_labels_are_refused(self, study):
        vol = _volume(study[0])
        with pytest.raises(OverlayError, match="belongs to another series"):
            nifti_labelmap(self._nifti(np.zeros((24, 20, 5), np.uint8), nifti_affine(vol)), vol, max_bytes=BIG)
        floats = _mask().transpose(2, 1, 0).astype(np.float32) + 0.5
        with pytest.raises(OverlayError, match="whole numbers from 0 to 255"):
            nifti_labelmap(self._nifti(floats, nifti_affine(vol)), vol, max_bytes=BIG)
        with pytest.raises(OverlayError, match="not a NIfTI-1 image"):
            nifti_labelmap(b"junk" * 100, vol, max_bytes=BIG)

    def test_gzip_bomb_is_inflated_only_as_far_as_its_header_declares(self, study):
        vol = _volume(study[0])
        head = self._nifti(_mask().transpose(2, 1, 0).copy(), nifti_affine(vol))
        bomb = gzip.compress(head + b"\0" * (512 * 2**20), compresslevel=9)  # 512 MB more than declared
        assert len(bomb) < 1_000_000
        tracemalloc.start()
        lm = nifti_labelmap(bomb, vol, max_bytes=BIG)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        np.testing.assert_array_equal(lm.labels, _mask())
        assert peak < 8 * 2**20

    def test_declared_size_beyond_the_budget_is_refused_before_inflating(self, study):
        vol = _volume(study[0])
        data = gzip.compress(self._nifti(_mask().transpose(2, 1, 0).astype(np.float64), nifti_affine(vol)))
        with pytest.raises(OverlayError, match="more than this session may hold"):
            nifti_labelmap(data, vol, max_bytes=10_000)


class TestLabelStats:
    def test_equals_numpy_with_padding_left_out(self):
        from core.sample import sample_ct

        vol = sample_ct()
        lm = sample_tissue_labels(vol)
        pad = vol.padding_mask()
        for value in (4, 6, 25):
            s = label_stats(vol, lm, value)
            ref = vol.voxels[(lm.labels == value) & ~pad].astype(np.float64)
            assert (s.n, s.mean, s.sd, s.min, s.max) == (ref.size, ref.mean(), ref.std(), ref.min(), ref.max())
            assert s.volume_ml == pytest.approx(ref.size * 2.5 * 1.4 * 1.4 / 1000, rel=1e-12)
        empty = label_stats(vol, lm, 200)
        assert empty.n == 0 and np.isnan(empty.mean)


    def test_float_volume_and_a_map_of_another_shape(self):
        from core.volume import Volume

        rng = np.random.default_rng(3)
        voxels = rng.normal(0, 1, (3, 5, 7)).astype(np.float32)
        vol = Volume(voxels=voxels, spacing=(2.0, 0.5, 0.5), series_uid="1", modality="MR")
        labels = (rng.random((3, 5, 7)) > 0.5).astype(np.uint8)
        s = label_stats(vol, LabelMap(labels=labels, names={1: "a"}, colors={1: (1, 2, 3)}, source="x"), 1)
        ref = voxels[labels == 1].astype(np.float64)
        assert (s.n, s.mean, s.sd, s.min, s.max) == (ref.size, ref.mean(), ref.std(), ref.min(), ref.max())
        assert s.volume_ml == ref.size * 0.5 / 1000
        with pytest.raises(ValueError, match=r"label map of shape \(3, 5, 6\) does not fit"):
            label_stats(vol, LabelMap(labels=np.zeros((3, 5, 6), np.uint8), names={}, colors={}, source="x"), 1)


class TestSources:
    def test_sample_labels_keep_every_tissue_but_air(self):
        from core.sample import sample_ct, sample_labels

        lm = sample_tissue_labels(sample_ct())
        raw = sample_labels()
        np.testing.assert_array_equal(lm.labels, np.where(raw > 1, raw, 0))
        assert lm.names[6] == "Lung" and 1 not in lm.names
        assert len(set(lm.colors.values())) == len(lm.colors)

    def test_two_lungs_are_named_by_side(self):
        from core.volume import Volume

        hu = np.full((8, 40, 60), 40, np.int16)  # soft tissue, air all around
        hu[:, :, :2] = hu[:, :, -2:] = -1000
        hu[:, :2, :] = hu[:, -2:, :] = -1000
        hu[1:7, 10:30, 8:25] = -850  # columns 8..24: small x, the patient's right (LPS)
        hu[1:7, 10:30, 35:55] = -850  # larger x: the patient's left
        vol = Volume(voxels=hu, spacing=(2.0, 1.0, 1.0), series_uid="1.2", modality="CT", units="HU")
        lm = lung_labels(vol)
        assert lm.names == {1: "Right lung", 2: "Left lung"}
        assert np.all(lm.labels[1:7, 10:30, 8:25] == 1) and np.all(lm.labels[1:7, 10:30, 35:55] == 2)
        assert np.count_nonzero(lm.labels) == 6 * 20 * 17 + 6 * 20 * 20

    def test_not_ct_is_refused_in_words(self):
        from core.volume import Volume

        vol = Volume(voxels=np.zeros((3, 4, 4), np.int16), spacing=(1.0, 1.0, 1.0), series_uid="1", modality="MR")
        with pytest.raises(OverlayError, match="No lungs found"):
            lung_labels(vol)

    def test_palette_is_distinct(self):
        colours = palette(64)
        assert len(set(colours)) == 64
