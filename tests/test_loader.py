"""load_series on generated series with known answers and on pydicom's bundled files."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.examples import get_path
from pydicom.sequence import Sequence
from pydicom.uid import EnhancedCTImageStorage, ExplicitVRLittleEndian, generate_uid

from core import load_series
from tests.factory import ct_series, ct_slice, ramp_volume

ROOT = Path(__file__).resolve().parents[1]
TEST_FILES = Path(pydicom.__file__).parent / "data" / "test_files"


def _hu(n=5, r=8, c=6, seed=0):
    return ramp_volume((n, r, c), seed=seed)


class TestInputs:
    def test_folder_recursive_with_shuffled_names(self, tmp_path):
        hu = _hu(6)
        files = ct_series(hu, names=lambda k: f"sub{k % 2}/z{(5 - k) * 37 % 11}_{k}.dcm")
        for name, data in files:
            p = tmp_path / "study" / name
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)
        res = load_series([tmp_path / "study"])
        assert res.skipped == []
        assert len(res.volumes) == 1
        np.testing.assert_array_equal(res.volumes[0].voxels, hu)

    def test_zip_with_nested_folders_and_a_text_file(self):
        hu = _hu(4)
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            for name, data in ct_series(hu):
                zf.writestr(f"export/a/b/{name}", data)
            zf.writestr("export/readme.txt", "hello")
        res = load_series([("study.zip", buf.getvalue())])
        np.testing.assert_array_equal(res.volumes[0].voxels, hu)
        assert [name for name, _ in res.skipped] == ["study.zip/export/readme.txt"]
        assert "not a DICOM file" in res.skipped[0][1]

    def test_pairs_and_file_like_objects_mixed(self):
        hu = _hu(4)
        files = ct_series(hu)
        uploads = []
        for name, data in files[:2]:
            f = io.BytesIO(data)
            f.name = name
            uploads.append(f)
        res = load_series(uploads + files[2:])
        np.testing.assert_array_equal(res.volumes[0].voxels, hu)

    def test_progress_reaches_total_monotonically(self):
        files = ct_series(_hu(5)) + [("notes.txt", b"not dicom")]
        calls = []
        load_series(files, progress=lambda done, total: calls.append((done, total)))
        assert calls[0] == (0, 6)
        assert calls[-1] == (6, 6)
        assert [d for d, _ in calls] == sorted(d for d, _ in calls)

    def test_single_path_string(self, tmp_path):
        (name, data), = ct_series(_hu(1))
        p = tmp_path / "one.dcm"
        p.write_bytes(data)
        res = load_series(str(p))
        assert res.volumes[0].shape == (1, 8, 6)


class TestOrderAndSpacing:
    def test_order_from_positions_not_instance_numbers_or_names(self):
        hu = _hu(5)
        files = ct_series(hu, spacing=(3.0, 1.0, 1.0))
        # Reverse the instance numbers and the names: positions alone decide.
        files = [(f"{9 - k}.dcm", data) for k, (_, data) in enumerate(files)]
        rewritten = []
        for k, (name, data) in enumerate(files):
            ds = pydicom.dcmread(io.BytesIO(data))
            ds.InstanceNumber = 100 - k
            buf = io.BytesIO()
            ds.save_as(buf)
            rewritten.append((name, buf.getvalue()))
        vol = load_series(rewritten[::-1]).volumes[0]
        np.testing.assert_array_equal(vol.voxels, hu)
        assert vol.spacing == (3.0, 1.0, 1.0)

    def test_lying_slice_thickness_is_ignored(self):
        hu = _hu(4)
        vol = load_series(ct_series(hu, spacing=(2.0, 0.5, 0.7), slice_thickness=5.0)).volumes[0]
        assert vol.spacing == (2.0, 0.5, 0.7)

    def test_sorted_along_the_normal_for_sagittal_slices(self):
        hu = _hu(4)
        # Sagittal: rows along y, columns along -z; normal is cross((0,1,0),(0,0,-1)) = (-1,0,0).
        iop = (0, 1, 0, 0, 0, -1)
        positions = np.array([[-k * 1.5, 0, 0] for k in range(4)])
        files = ct_series(hu, positions=positions, orientation=iop)
        vol = load_series(files[::-1]).volumes[0]
        np.testing.assert_array_equal(vol.voxels, hu)
        assert vol.spacing[0] == pytest.approx(1.5)
        assert vol.summary["orientation"] == "sagittal"

    def test_non_uniform_spacing_warns(self):
        positions = np.array([[0, 0, z] for z in (0.0, 1.0, 2.0, 3.5, 4.5)])
        vol = load_series(ct_series(_hu(5), positions=positions)).volumes[0]
        assert any(w.startswith("Non-uniform spacing between slices: from 1 to 1.5 mm") for w in vol.warnings)
        assert not vol.is_regular

    def test_missing_slice_warns(self):
        positions = np.array([[0, 0, z] for z in (0.0, 2.0, 4.0, 8.0, 10.0)])
        vol = load_series(ct_series(_hu(5), positions=positions)).volumes[0]
        gap = [w for w in vol.warnings if w.startswith("Missing slices")]
        assert gap and "gap of 4 mm between slices 3 and 4" in gap[0] and "about 1 slice missing" in gap[0]
        assert vol.spacing[0] == 2.0

    def test_single_slice_warns(self):
        vol = load_series(ct_series(_hu(1), slice_thickness=3.0)).volumes[0]
        assert vol.warnings[0].startswith("Single slice")
        assert vol.spacing[0] == 3.0

    def test_gantry_tilt_angle(self):
        tilt = np.radians(15.0)
        positions = np.array([[0, k * 2.0 * np.tan(tilt), k * 2.0] for k in range(6)])
        vol = load_series(ct_series(_hu(6), positions=positions)).volumes[0]
        assert any("Gantry tilt: the stack is sheared by 15.0°" in w for w in vol.warnings)
        assert vol.tilt_degrees == pytest.approx(15.0, abs=1e-3)
        assert vol.spacing[0] == pytest.approx(2.0)


class TestGrouping:
    def test_two_series_mixed_largest_first(self):
        a = ct_series(_hu(3, seed=1), series_uid="1.2.3.1", names=lambda k: f"a{k}")
        b = ct_series(_hu(5, seed=2), series_uid="1.2.3.2", names=lambda k: f"b{k}")
        res = load_series([*a[:2], *b, a[2]])
        assert [v.series_uid for v in res.volumes] == ["1.2.3.2", "1.2.3.1"]
        np.testing.assert_array_equal(res.volumes[1].voxels, _hu(3, seed=1))

    def test_localizer_inside_series_is_kept_apart(self):
        hu = _hu(5)
        files = ct_series(hu)
        loc = ct_slice(np.zeros((8, 6), np.int16), position=(0, 0, 0), orientation=(0, 1, 0, 0, 0, -1),
                       extra={"ImageType": ["ORIGINAL", "PRIMARY", "LOCALIZER"]})
        res = load_series([("loc.dcm", loc), *files])
        assert len(res.volumes) == 2
        np.testing.assert_array_equal(res.volumes[0].voxels, hu)
        assert "localizer" in res.volumes[1].description
        assert any("2 stacks" in w for w in res.volumes[0].warnings)

    def test_matrix_size_splits_stacks(self):
        files = ct_series(_hu(4)) + ct_series(_hu(2, r=10, c=10), names=lambda k: f"big{k}")
        res = load_series(files)
        assert sorted(v.shape for v in res.volumes) == [(2, 10, 10), (4, 8, 6)]

    def test_repeated_positions_split_by_echo(self):
        e1 = ct_series(_hu(3, seed=1), extra={"EchoNumbers": 1}, names=lambda k: f"e1_{k}")
        e2 = ct_series(_hu(3, seed=2), extra={"EchoNumbers": 2}, names=lambda k: f"e2_{k}")
        res = load_series(e1 + e2)
        assert len(res.volumes) == 2 and res.skipped == []
        assert all("split by EchoNumbers into 2 volumes" in " ".join(v.warnings) for v in res.volumes)
        got = sorted(v.voxels.tolist() for v in res.volumes)
        assert got == sorted([_hu(3, seed=1).tolist(), _hu(3, seed=2).tolist()])

    def test_repeated_positions_without_a_key_keep_one(self):
        e1 = ct_series(_hu(3, seed=1), names=lambda k: f"e1_{k}")
        e2 = ct_series(_hu(3, seed=2), names=lambda k: f"e2_{k}")
        res = load_series(e1 + e2)
        assert len(res.volumes) == 1 and res.volumes[0].shape[0] == 3
        assert len(res.skipped) == 3 and all("repeated position" in r for _, r in res.skipped)
        assert any(w.startswith("Repeated positions") for w in res.volumes[0].warnings)

    def test_same_file_twice_is_a_duplicate(self):
        files = ct_series(_hu(3))
        res = load_series(files + [("copy.dcm", files[0][1])])
        assert res.volumes[0].shape[0] == 3
        assert res.skipped == [("copy.dcm", f"duplicate of {files[0][0]} (same SOP Instance UID)")]


class TestValues:
    def test_per_slice_rescale(self):
        files = []
        expected = []
        for k, (slope, intercept) in enumerate([(1, -1024), (2, -1000), (1, 0)]):
            stored = np.arange(12, dtype=np.int16).reshape(3, 4) * (k + 1)
            files.append((f"{k}", ct_slice(stored, position=(0, 0, k), slope=slope, intercept=intercept)))
            expected.append(stored.astype(int) * slope + intercept)
        vol = load_series(files).volumes[0]
        assert vol.voxels.dtype == np.int16
        np.testing.assert_array_equal(vol.voxels, np.array(expected))

    def test_fractional_slope_gives_float32(self):
        stored = np.arange(12, dtype=np.uint16).reshape(3, 4)
        vol = load_series([("a", ct_slice(stored, position=(0, 0, 0), slope=0.5, intercept=-10.25))]).volumes[0]
        assert vol.voxels.dtype == np.float32
        np.testing.assert_allclose(vol.voxels[0], stored * 0.5 - 10.25)

    def test_values_beyond_int16_widen_to_float32(self):
        stored = np.array([[0, 65535]], dtype=np.uint16)
        vol = load_series([("a", ct_slice(stored, position=(0, 0, 0), intercept=0, modality="MR"))]).volumes[0]
        assert vol.voxels.dtype == np.float32
        np.testing.assert_array_equal(vol.voxels[0], [[0, 65535]])

    def test_padding_value_and_scan_circle_become_air(self):
        stored = np.array([[-2000, 0, 1024], [1000, -2000, 2048]], dtype=np.int16)
        data = ct_slice(stored, position=(0, 0, 0), intercept=-1024, extra={"PixelPaddingValue": -2000})
        vol = load_series([("a", data)]).volumes[0]
        np.testing.assert_array_equal(vol.voxels[0], [[-1024, -1024, 0], [-24, -1024, 1024]])
        np.testing.assert_array_equal(vol.padding_mask()[0], [[True, False, False], [False, True, False]])

    def test_ct_below_minus_1500_is_padding_without_the_tag(self):
        stored = np.array([[-3024, 24]], dtype=np.int16)
        vol = load_series([("a", ct_slice(stored, position=(0, 0, 0), intercept=0))]).volumes[0]
        np.testing.assert_array_equal(vol.voxels[0], [[-1024, 24]])
        assert vol.padding_mask().sum() == 1

    def test_monochrome1_is_flagged_for_display(self):
        stored = np.arange(6, dtype=np.uint16).reshape(2, 3)
        data = ct_slice(stored, position=(0, 0, 0), intercept=0, extra={"PhotometricInterpretation": "MONOCHROME1"})
        vol = load_series([("a", data)]).volumes[0]
        assert vol.invert is True
        np.testing.assert_array_equal(vol.voxels[0], stored)

    def test_12_bit_unsigned_ignores_overlay_bits(self):
        stored = np.array([[0x1FFF, 0x0800]], dtype=np.uint16)  # bit 12 set: not part of the value
        data = ct_slice(stored, position=(0, 0, 0), intercept=0, bits_stored=12)
        vol = load_series([("a", data)]).volumes[0]
        np.testing.assert_array_equal(vol.voxels[0], [[0x0FFF, 0x0800]])

    def test_12_bit_signed_is_sign_extended(self):
        stored = np.array([[0x0FFF, 0x07FF]], dtype=np.uint16).view(np.int16)  # -1 and 2047 in 12 bits
        data = ct_slice(stored, position=(0, 0, 0), intercept=0, bits_stored=12, signed=True)
        vol = load_series([("a", data)]).volumes[0]
        np.testing.assert_array_equal(vol.voxels[0], [[-1, 2047]])

    def test_8_bit(self):
        stored = np.array([[0, 255]], dtype=np.uint8)
        vol = load_series([("a", ct_slice(stored, position=(0, 0, 0), intercept=0, modality="MR"))]).volumes[0]
        np.testing.assert_array_equal(vol.voxels[0], [[0, 255]])

    def test_sample_series_roundtrip(self):
        from core import sample_ct, sample_ct_files

        vol = load_series(sample_ct_files()).volumes[0]
        ref = sample_ct()
        np.testing.assert_array_equal(vol.voxels, ref.voxels)
        np.testing.assert_array_equal(vol.padding_mask(), ref.padding_mask())
        np.testing.assert_allclose(vol.affine, ref.affine, atol=1e-4)


class TestBadInput:
    def test_truncated_and_text_files_cost_one_line_each(self):
        files = ct_series(_hu(4))
        name, data = files[1]
        files[1] = (name, data[: len(data) - 20])
        files.append(("notes.txt", b"hello, this is not DICOM"))
        res = load_series(files)
        reasons = dict(res.skipped)
        assert reasons[name].startswith("truncated")
        assert reasons["notes.txt"].startswith("not a DICOM file")
        assert res.volumes[0].shape[0] == 3

    def test_truncated_inside_the_header(self):
        files = ct_series(_hu(2))
        res = load_series([("cut.dcm", files[0][1][:300]), files[1]])
        assert dict(res.skipped)["cut.dcm"].startswith(("truncated", "could not be read", "not a DICOM"))
        assert res.volumes[0].shape[0] == 1

    def test_files_without_pixels_are_explained(self):
        res = load_series([TEST_FILES / "rtplan.dcm", TEST_FILES / "test-SR.dcm",
                           TEST_FILES / "dicomdirtests" / "DICOMDIR"])
        reasons = [r for _, r in res.skipped]
        assert reasons[0] == "no image: a radiotherapy plan (no (7FE0,0010) Pixel Data)"
        assert reasons[1] == "no image: a structured report (no (7FE0,0010) Pixel Data)"
        assert reasons[2].startswith("a DICOMDIR")
        assert res.volumes == []

    def test_undecodable_compressed_file_is_skipped_and_rest_loads(self):
        res = load_series([TEST_FILES / "JPEG2000-embedded-sequence-delimiter.dcm", get_path("ct")])
        assert len(res.volumes) == 1
        # Its codestream declares 3,722,445,056 x 1,024 pixels (pillow and openjpeg agree): refused before decoding.
        assert res.skipped[0][1] == ("damaged: the compressed image declares 3722445056 x 1024 pixels, the header "
                                     "256 x 1024")

    def test_colour_image_loads_in_colour(self):
        # Refused until issue 19; tests/test_kinds.py checks the colours themselves.
        res = load_series([get_path("rgb_color")])
        assert res.skipped == []
        assert res.volumes[0].rgb is not None

    def test_zero_rescale_slope(self):
        data = ct_slice(np.zeros((2, 2), np.int16), position=(0, 0, 0), slope=0.0)
        res = load_series([("a", data)])
        assert res.skipped == [
            ("a", "invalid (0028,1053) Rescale Slope 0.0: values cannot be converted to modality units")]


MR_VARIANTS = [
    "MR_small_implicit.dcm",
    "MR_small_bigendian.dcm",
    "MR_small_expb.dcm",
    "MR_small_RLE.dcm",
    "MR_small_jp2klossless.dcm",
    "MR_small_jpeg_ls_lossless.dcm",
    "MR_small_padded.dcm",
]


class TestEncodings:
    @pytest.mark.parametrize("name", MR_VARIANTS)
    def test_mr_small_variants_match(self, name):
        ref = load_series([TEST_FILES / "MR_small.dcm"]).volumes[0].voxels
        vol = load_series([TEST_FILES / name]).volumes[0]
        assert vol.voxels.dtype == np.int16
        np.testing.assert_array_equal(vol.voxels, ref)

    def test_reference_matches_pydicom(self):
        ds = pydicom.dcmread(TEST_FILES / "MR_small.dcm")
        vol = load_series([TEST_FILES / "MR_small.dcm"]).volumes[0]
        np.testing.assert_array_equal(vol.voxels[0], ds.pixel_array)

    def test_deflated(self):
        ds = pydicom.dcmread(TEST_FILES / "image_dfl.dcm")
        vol = load_series([TEST_FILES / "image_dfl.dcm"]).volumes[0]
        np.testing.assert_array_equal(vol.voxels[0], ds.pixel_array)

    @pytest.mark.parametrize("syntax", ["RLELossless", "JPEG2000Lossless", "JPEGLSLossless"])
    def test_compressed_ct_series_equals_uncompressed(self, syntax):
        import pydicom.uid as uid

        hu = _hu(3, r=64, c=64)
        files = []
        for name, data in ct_series(hu):
            ds = pydicom.dcmread(io.BytesIO(data))
            ds.compress(getattr(uid, syntax))
            buf = io.BytesIO()
            ds.save_as(buf)
            files.append((name, buf.getvalue()))
        vol = load_series(files).volumes[0]
        np.testing.assert_array_equal(vol.voxels, hu)

    def test_htj2k_lossless(self):
        import imagecodecs
        from pydicom.encaps import encapsulate
        from pydicom.uid import HTJ2KLossless

        hu = _hu(2, r=64, c=64)
        files = []
        for name, data in ct_series(hu):
            ds = pydicom.dcmread(io.BytesIO(data))
            ds.PixelData = encapsulate([imagecodecs.htj2k_encode(ds.pixel_array, level=0)])
            ds["PixelData"].VR = "OB"
            ds.file_meta.TransferSyntaxUID = HTJ2KLossless
            buf = io.BytesIO()
            ds.save_as(buf, enforce_file_format=True)
            files.append((name, buf.getvalue()))
        vol = load_series(files).volumes[0]
        np.testing.assert_array_equal(vol.voxels, hu)

    def test_jpeg_extended_matches_pydicom(self):
        ds = pydicom.dcmread(TEST_FILES / "JPGExtended.dcm")
        vol = load_series([TEST_FILES / "JPGExtended.dcm"]).volumes[0]
        np.testing.assert_array_equal(vol.voxels[0], ds.pixel_array)

    def test_ct_small_hu(self):
        ds = pydicom.dcmread(get_path("ct"))
        vol = load_series([get_path("ct")]).volumes[0]
        expected = ds.pixel_array.astype(int) * int(ds.RescaleSlope) + int(ds.RescaleIntercept)
        np.testing.assert_array_equal(vol.voxels[0], expected)

    def test_without_preamble(self):
        (name, data), = ct_series(_hu(1))
        meta_rest = int.from_bytes(data[140:144], "little")  # (0002,0000) group length
        body = data[144 + meta_rest:]
        assert body[:2] == b"\x08\x00" and b"DICM" not in body[:200]
        vol = load_series([("nopreamble", body)]).volumes[0]
        np.testing.assert_array_equal(vol.voxels, _hu(1))

    def test_ct2_series_of_four_files(self):
        res = load_series([TEST_FILES / "dicomdirtests" / "77654033" / "CT2"])
        vol = res.volumes[0]
        assert vol.shape == (4, 16, 16) and res.skipped == []
        files = sorted((pydicom.dcmread(f) for f in (TEST_FILES / "dicomdirtests" / "77654033" / "CT2").iterdir()),
                       key=lambda ds: float(ds.ImagePositionPatient[2]))
        expected = np.stack([ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept) for ds in files])
        np.testing.assert_array_equal(vol.voxels, expected)
        z = vol.positions[:, 2]
        assert list(np.round(z, 2)) == [-99.48, 103.02, 104.27, 105.52]
        assert any(w.startswith("Missing slices") for w in vol.warnings)


def _enhanced_ct(frames_hu, positions, slopes):
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = EnhancedCTImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = EnhancedCTImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.SeriesInstanceUID = "1.2.9"
    ds.Modality = "CT"
    n, r, c = frames_hu.shape
    ds.NumberOfFrames = n
    ds.Rows, ds.Columns = r, c
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    shared = Dataset()
    pm = Dataset()
    pm.PixelSpacing = [0.5, 0.75]
    pm.SliceThickness = 9
    po = Dataset()
    po.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    shared.PixelMeasuresSequence = Sequence([pm])
    shared.PlaneOrientationSequence = Sequence([po])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    per = []
    stored = []
    for k in range(n):
        item = Dataset()
        pp = Dataset()
        pp.ImagePositionPatient = list(positions[k])
        pvt = Dataset()
        pvt.RescaleSlope, pvt.RescaleIntercept, pvt.RescaleType = slopes[k], -1024, "HU"
        item.PlanePositionSequence = Sequence([pp])
        item.PixelValueTransformationSequence = Sequence([pvt])
        per.append(item)
        stored.append(((frames_hu[k].astype(int) + 1024) // slopes[k]).astype(np.int16))
    ds.PerFrameFunctionalGroupsSequence = Sequence(per)
    ds.PixelData = np.array(stored).tobytes()
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()


class TestEnhancedMultiframe:
    def test_per_frame_geometry_and_rescale(self):
        hu = np.array([np.full((3, 4), v) for v in (-1000, 0, 1000)], dtype=np.int16)
        order = [2, 0, 1]  # frames stored out of position order
        positions = [[0, 0, 3.0 * k] for k in order]
        data = _enhanced_ct(hu[order], positions, slopes=[1, 2, 1])
        vol = load_series([("enhanced.dcm", data)]).volumes[0]
        np.testing.assert_array_equal(vol.voxels, hu)
        assert vol.spacing == (3.0, 0.5, 0.75)
        assert vol.source_names[0] == "enhanced.dcm [frame 2]"


def test_core_does_not_import_streamlit():
    # Every module, not only what ``import core`` pulls in (core.png, core.pacs, ... are imported on their own).
    modules = sorted(p.stem for p in (ROOT / "core").glob("*.py") if p.stem != "__init__")
    code = (f"import importlib, sys\nfor m in {modules!r}: importlib.import_module('core.' + m)\n"
            "print('streamlit' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.stdout.strip() == "False"


class TestReleaseSources:
    def test_each_input_released_once_when_done(self):
        hu = _hu(4)
        files = ct_series(hu)
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            for name, data in ct_series(_hu(3, seed=4), series_uid="9.9", names=lambda k: f"z{k}.dcm"):
                zf.writestr(name, data)
        sources = [*files, ("notes.txt", b"not dicom"), ("z.zip", buf.getvalue())]
        released = []
        res = load_series(sources, release_source=released.append)
        assert sorted(released) == list(range(len(sources)))
        assert len(released) == len(set(released))
        np.testing.assert_array_equal(next(v for v in res.volumes if v.series_uid == "1.2.3.4.5.6").voxels, hu)

    def test_released_inputs_are_not_read_again(self):
        files = ct_series(_hu(3))
        uploads = []
        for name, data in files:
            f = io.BytesIO(data)
            f.name = name
            uploads.append(f)
        res = load_series(uploads, release_source=lambda n: uploads[n].close())
        assert all(u.closed for u in uploads)
        np.testing.assert_array_equal(res.volumes[0].voxels, _hu(3))


def test_headers_do_not_keep_the_file_bytes():
    import gc
    import sys

    files = ct_series(_hu(3, r=64, c=64))
    data = files[0][1]
    before = sys.getrefcount(data)
    vol = load_series(files).volumes[0]
    gc.collect()
    assert all(getattr(h, "buffer", None) is None for h in vol.slice_headers)
    assert sys.getrefcount(data) == before  # nothing loaded still points at the upload's bytes


def test_image_cut_short_in_its_header_says_truncated():
    files = ct_series(_hu(1))
    res = load_series([("cut.dcm", files[0][1][:400])])
    assert res.skipped == [("cut.dcm", "truncated: the file ends in the middle of its header")]


def test_complete_header_without_pixels_is_no_image_not_truncated():
    files = ct_series(_hu(1))
    ds = pydicom.dcmread(io.BytesIO(files[0][1]))
    del ds.PixelData
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    res = load_series([("header.dcm", buf.getvalue())])
    assert res.skipped == [("header.dcm", "no image: this CT Image Storage file holds no (7FE0,0010) Pixel Data "
                                          "(only the header; if it should hold an image, it was cut short before "
                                          "its pixels)")]
