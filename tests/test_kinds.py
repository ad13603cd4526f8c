"""What a folder holds besides stacks: colour, loops, projections and galleries (issue 19)."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_files
from pydicom.dataset import Dataset
from pydicom.pixels import apply_color_lut, apply_voi_lut, convert_color_space, pixel_array
from pydicom.sequence import Sequence

from core import load_series
from core.colour import luminance
from core.headers import frame_time_ms, spacing_calibration, voi_lut_table
from core.memory import MemoryBudget
from core.volume import Volume
from tests.factory import ct_series, ramp_volume
from tests.kinds_factory import image_file, loop_pixels, uid

MB = 1024**2


def _colour_files() -> list[str]:
    out = []
    for path in sorted(get_testdata_files("*.dcm")):
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except Exception:  # noqa: BLE001 - pydicom's deliberately broken files
            continue
        if str(ds.get("PhotometricInterpretation", "")).strip() in ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT",
                                                                    "YBR_RCT", "PALETTE COLOR"):
            out.append(path)
    return out


COLOUR_FILES = _colour_files()


def _reference_rgb(path: str) -> np.ndarray:
    """pydicom's own rendering: raw decode, then convert_color_space or apply_color_lut, as 8 bits."""
    ds = pydicom.dcmread(path)
    pi = ds.PhotometricInterpretation
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    raw = pixel_array(ds, raw=True)
    if pi == "PALETTE COLOR":
        rgb = apply_color_lut(raw, ds)
        rgb = (rgb >> 8).astype(np.uint8) if rgb.dtype.itemsize > 1 else rgb
        return rgb if frames > 1 else rgb[None]
    if pi in ("YBR_FULL", "YBR_FULL_422") and raw.dtype == np.uint8:
        # pydicom's decoders return YBR untouched with raw=True (JPEG included): convert it here.
        rgb = convert_color_space(raw, "YBR_FULL", "RGB")
    else:
        rgb = raw  # RGB; YBR_ICT/RCT come back as RGB from the JPEG 2000 decoders
    if rgb.dtype.itemsize > 1:
        rgb = (rgb.astype(np.uint32) >> (int(ds.BitsStored) - 8)).astype(np.uint8)
    return rgb if frames > 1 else rgb[None]


class TestColourFromPydicom:
    def test_there_are_colour_files_to_test(self):
        assert len(COLOUR_FILES) >= 30

    @pytest.mark.parametrize("path", COLOUR_FILES, ids=[Path(p).name for p in COLOUR_FILES])
    def test_same_rgb_as_pydicom(self, path):
        res = load_series([path])
        assert res.skipped == []
        vol, = res.volumes
        expected = _reference_rgb(path)
        assert vol.rgb is not None and vol.rgb.shape == expected.shape
        np.testing.assert_array_equal(vol.rgb, expected)
        np.testing.assert_array_equal(vol.voxels, luminance(expected))
        assert vol.window is None


class TestColourGenerated:
    def test_rgb_both_planar_configurations(self):
        rng = np.random.default_rng(1)
        rgb = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
        for planar in (0, 1):
            vol, = load_series([("a.dcm", image_file(rgb, photometric="RGB", planar=planar))]).volumes
            np.testing.assert_array_equal(vol.rgb[0], rgb)
            assert vol.kind == "gallery"

    def test_ybr_full_is_converted_as_pydicom_does(self):
        rng = np.random.default_rng(2)
        ybr = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
        ybr[0, 0] = (128, 128, 128)  # neutral grey stays grey
        vol, = load_series([("a.dcm", image_file(ybr, photometric="YBR_FULL"))]).volumes
        np.testing.assert_array_equal(vol.rgb[0], convert_color_space(ybr, "YBR_FULL", "RGB"))
        assert tuple(vol.rgb[0, 0, 0]) == (128, 128, 128)

    def test_sixteen_bit_rgb_keeps_its_top_eight_bits(self):
        rgb = np.array([[[0, 256, 65535], [4096, 32768, 255]]], dtype=np.uint16)
        vol, = load_series([("a.dcm", image_file(rgb, photometric="RGB"))]).volumes
        np.testing.assert_array_equal(vol.rgb[0], [[[0, 1, 255], [16, 128, 0]]])

    def test_segmented_palette(self):
        # Red: one discrete entry 0, then a linear segment to 65535 over 255 steps: 257 j at index j,
        # whose top 8 bits are j. Green and blue: constant 0x8000 and 0xFFFF (discrete segments).
        index = np.arange(256, dtype=np.uint8).reshape(16, 16)
        extra = {
            "RedPaletteColorLookupTableDescriptor": [256, 0, 16],
            "GreenPaletteColorLookupTableDescriptor": [256, 0, 16],
            "BluePaletteColorLookupTableDescriptor": [256, 0, 16],
            "SegmentedRedPaletteColorLookupTableData": np.array([0, 1, 0, 1, 255, 65535], "<u2").tobytes(),
            "SegmentedGreenPaletteColorLookupTableData": np.array([0, 256] + [0x8000] * 256, "<u2").tobytes(),
            "SegmentedBluePaletteColorLookupTableData": np.array([0, 256] + [0xFFFF] * 256, "<u2").tobytes(),
        }
        data = image_file(index, photometric="PALETTE COLOR", extra=extra)
        vol, = load_series([("p.dcm", data)]).volumes
        np.testing.assert_array_equal(vol.rgb[0, ..., 0], index)
        assert np.all(vol.rgb[0, ..., 1] == 128) and np.all(vol.rgb[0, ..., 2] == 255)
        ds = pydicom.dcmread(pydicom.filebase.DicomBytesIO(data))
        np.testing.assert_array_equal(vol.rgb[0], apply_color_lut(ds.pixel_array, ds) >> 8)

    def test_unknown_colour_encoding_is_explained(self):
        data = image_file(np.zeros((4, 4, 3), np.uint8), photometric="YBR_PARTIAL_420")
        res = load_series([("odd.dcm", data)])
        assert res.volumes == []
        assert res.skipped[0][1].startswith("unsupported colour encoding: (0028,0004) Photometric Interpretation "
                                            "'YBR_PARTIAL_420'")


class TestLoops:
    def test_thirty_frames_of_one_place_are_a_loop_at_their_frame_time(self):
        pixels = loop_pixels(30)
        vol, = load_series([("us.dcm", image_file(pixels, modality="US", extra={"FrameTime": 40.0}))]).volumes
        assert vol.kind == "loop" and vol.shape == (30, 48, 64)
        np.testing.assert_array_equal(vol.voxels, pixels)
        assert vol.frame_time_ms == 40.0
        assert vol.calibration == "pixels"

    @pytest.mark.parametrize(("extra", "ms"), [
        ({"CineRate": 25}, 40.0),
        ({"RecommendedDisplayFrameRate": 10}, 100.0),
        ({"FrameTimeVector": [0, 30, 50]}, 40.0),
        ({}, None),
    ])
    def test_rate_sources(self, extra, ms):
        vol, = load_series([("xa.dcm", image_file(loop_pixels(3), modality="XA", extra=extra))]).volumes
        assert vol.kind == "loop" and vol.frame_time_ms == ms

    def test_colour_loop(self):
        rgb = np.zeros((4, 5, 6, 3), np.uint8)
        rgb[:, :, :, 0] = np.arange(4)[:, None, None] * 60
        vol, = load_series([("c.dcm", image_file(rgb, modality="US", photometric="RGB"))]).volumes
        assert vol.kind == "loop" and vol.rgb.shape == (4, 5, 6, 3)
        np.testing.assert_array_equal(vol.rgb, rgb)

    def test_pydicom_ultrasound_loop(self):
        vol, = load_series([get_testdata_files("examples_ybr_color.dcm")[0]]).volumes
        assert vol.kind == "loop" and vol.shape[0] == 30 and vol.rgb is not None
        assert vol.frame_time_ms == pytest.approx(33.333)

    def test_single_frame_files_at_one_position_are_a_loop_in_trigger_time_order(self):
        # A cardiac cine of one slice: 20 files, one position, Trigger Time 0, 40, ... 760 ms, shuffled.
        hu = ramp_volume((20, 6, 5))
        order = np.random.default_rng(4).permutation(20)
        files = []
        for k in order:
            (name, data), = ct_series(hu[k:k + 1], names=lambda _, k=k: f"cine{k}.dcm",
                                      extra={"TriggerTime": 40.0 * k, "InstanceNumber": 100 - k})
            files.append((name, data))
        res = load_series(files + [("again.dcm", files[0][1])])
        vol, = res.volumes
        assert vol.kind == "loop" and vol.shape == (20, 6, 5) and vol.frame_time_ms == 40.0
        assert res.skipped == [("again.dcm", f"duplicate of {files[0][0]} (same SOP Instance UID)")]
        np.testing.assert_array_equal(vol.voxels, hu)

    def test_dose_grids_stay_volumes(self):
        for name in ("rtdose.dcm", "rtdose_rle.dcm"):
            vol, = load_series([get_testdata_files(name)[0]]).volumes
            assert vol.kind == "volume" and vol.shape == (15, 10, 10)

    def test_ct_stacks_stay_volumes(self):
        vol, = load_series(ct_series(ramp_volume((4, 6, 5)))).volumes
        assert (vol.kind, vol.rgb, vol.frame_time_ms, vol.calibration) == ("volume", None, None, "")


def _cr(pixels: np.ndarray, **extra) -> bytes:
    return image_file(pixels, modality="CR", photometric=extra.pop("photometric", "MONOCHROME2"), extra=extra)


class TestProjections:
    def test_monochrome1_cr_at_the_detector(self):
        pixels = np.arange(12, dtype=np.uint16).reshape(3, 4) * 100
        vol, = load_series([("cr.dcm", _cr(pixels, photometric="MONOCHROME1",
                                           ImagerPixelSpacing=[0.2, 0.15]))]).volumes
        assert vol.kind == "projection" and vol.shape == (1, 3, 4)
        assert vol.invert is True
        assert vol.calibration == "detector" and vol.spacing[1:] == (0.2, 0.15)
        np.testing.assert_array_equal(vol.voxels[0], pixels)

    @pytest.mark.parametrize(("extra", "calibration", "spacing"), [
        ({"PixelSpacing": [0.1, 0.1], "ImagerPixelSpacing": [0.12, 0.12]}, "calibrated", (0.1, 0.1)),
        ({"ImagerPixelSpacing": [0.12, 0.12]}, "detector", (0.12, 0.12)),
        ({}, "pixels", (1.0, 1.0)),
    ])
    def test_calibration_is_stated(self, extra, calibration, spacing):
        vol, = load_series([("dx.dcm", image_file(np.ones((4, 4), np.uint16), modality="DX",
                                                  extra=extra))]).volumes
        assert (vol.calibration, vol.spacing[1:]) == (calibration, spacing)
        ds = pydicom.dcmread(pydicom.filebase.DicomBytesIO(image_file(np.ones((2, 2), np.uint8), extra=extra)))
        assert spacing_calibration(ds) == calibration

    def test_voi_lut_sequence_as_pydicom_applies_it(self):
        item = Dataset()
        item.LUTDescriptor = [256, 100, 12]  # 256 entries from stored value 100, 12-bit outputs
        item.LUTData = np.array([int(4095 * (i / 255) ** 0.5) for i in range(256)], "<u2").tobytes()
        pixels = np.array([[0, 100, 150], [228, 355, 600]], dtype=np.uint16)
        data = _cr(pixels, VOILUTSequence=Sequence([item]), WindowCenter=300, WindowWidth=400)
        vol, = load_series([("cr.dcm", data)]).volumes
        first, table = vol.voi_lut
        assert first == 100 and table.dtype == np.uint8 and table.shape == (256,)
        ds = pydicom.dcmread(pydicom.filebase.DicomBytesIO(data))
        expected = apply_voi_lut(ds.pixel_array, ds, prefer_lut=True) / 4095 * 255
        shown = table[np.clip(vol.voxels[0].astype(int) - int(first), 0, 255)]
        np.testing.assert_array_equal(shown, np.rint(expected).astype(np.uint8))
        assert vol.window == (300.0, 400.0)
        assert voi_lut_table(Dataset()) is None

    def test_four_thousand_by_three_thousand_within_the_budget(self):
        pixels = np.random.default_rng(3).integers(0, 4096, (3000, 4000), dtype=np.uint16)
        data = _cr(pixels, ImagerPixelSpacing=[0.1, 0.1])
        memory = MemoryBudget(total_bytes=400 * MB, session_bytes=100 * MB)
        tracemalloc.start()
        try:
            res = load_series([("big.dcm", data)], memory=memory, owner="s")
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        vol, = res.volumes
        assert vol.kind == "projection" and vol.shape == (1, 3000, 4000) and vol.voxels.dtype == np.int16
        assert memory.used("s") == 3000 * 4000 * 2  # the voxels, held while the volume lives
        # The file's bytes are the caller's; decoding adds one copy of the stored values at most.
        assert peak < 2.2 * 3000 * 4000 * 2
        small = MemoryBudget(total_bytes=400 * MB, session_bytes=20 * MB)
        refused = load_series([("big.dcm", data)], memory=small, owner="s")
        assert refused.volumes == [] and "this session may hold at most 20 MB" in refused.skipped[0][1]

    def test_frame_time_helper_ignores_nonsense(self):
        ds = Dataset()
        ds.FrameTime = -5
        ds.CineRate = 0
        assert frame_time_ms(ds) is None


class TestGallery:
    def test_secondary_capture_without_position_goes_to_the_gallery(self):
        series = uid()
        a = image_file(np.full((10, 20), 7, np.uint8), modality="CT", secondary_capture=True, series_uid=series)
        b = image_file(np.full((30, 15), 9, np.uint8), modality="CT", secondary_capture=True, series_uid=series,
                       instance=2)
        res = load_series([("dose1.dcm", a), ("dose2.dcm", b)] + ct_series(ramp_volume((3, 6, 5))))
        kinds = sorted(v.kind for v in res.volumes)
        assert kinds == ["gallery", "volume"]
        gallery = next(v for v in res.volumes if v.kind == "gallery")
        assert gallery.frame_sizes == ((10, 20), (30, 15)) and gallery.shape == (2, 30, 20)
        assert np.all(gallery.voxels[0, :10, :20] == 7) and np.all(gallery.voxels[0, 10:] == 0)
        assert np.all(gallery.voxels[1, :30, :15] == 9)
        assert gallery.calibration == "pixels" and gallery.warnings == []
        assert gallery.units == "" and next(v for v in res.volumes if v.kind == "volume").units == "HU"

    def test_grey_and_colour_in_one_gallery(self):
        series = uid()
        grey = image_file(np.array([[0, 255]], np.uint8), series_uid=series)
        colour = image_file(np.full((1, 2, 3), 200, np.uint8), photometric="RGB", series_uid=series, instance=2)
        vol, = load_series([("g.dcm", grey), ("c.dcm", colour)]).volumes
        assert vol.kind == "gallery" and vol.rgb is not None
        np.testing.assert_array_equal(vol.rgb[0, 0], [[0, 0, 0], [255, 255, 255]])
        np.testing.assert_array_equal(vol.rgb[1, 0], [[200] * 3] * 2)


class TestVolumeFields:
    def test_defaults_are_todays_volume(self):
        vol = Volume(np.zeros((2, 2, 2), np.int16), (1.0, 1.0, 1.0), "1", "CT")
        assert (vol.kind, vol.rgb, vol.frame_time_ms, vol.calibration, vol.frame_sizes, vol.voi_lut) == (
            "volume", None, None, "", (), None)
        assert not vol.is_colour

    @pytest.mark.parametrize(("changes", "message"), [
        ({"kind": "movie"}, "kind must be one of volume, loop, projection, gallery, got 'movie'"),
        ({"rgb": np.zeros((2, 2, 2), np.uint8)}, r"rgb must be uint8 of shape \(2, 2, 2, 3\)"),
        ({"frame_time_ms": 0.0}, "frame_time_ms must be a positive number"),
        ({"calibration": "guessed"}, "calibration must be one of"),
    ])
    def test_invalid_fields(self, changes, message):
        with pytest.raises(ValueError, match=message):
            Volume(np.zeros((2, 2, 2), np.uint8), (1.0, 1.0, 1.0), "1", "US", **changes)

    def test_rgb_is_read_only(self):
        vol = Volume(np.zeros((1, 2, 2), np.uint8), (1.0, 1.0, 1.0), "1", "US", kind="gallery",
                     rgb=np.zeros((1, 2, 2, 3), np.uint8))
        with pytest.raises(ValueError):
            vol.rgb[0, 0, 0, 0] = 1


class TestDamagedColour:
    def test_truncated_rgb_is_explained(self):
        data = image_file(np.zeros((8, 8, 3), np.uint8), photometric="RGB")
        res = load_series([("short.dcm", data[:-40])])
        assert res.volumes == []
        assert res.skipped[0][1] == ("truncated: (7FE0,0010) Pixel Data holds 152 bytes, 8 x 8 x 1 frames need 192")

    def test_palette_without_its_palette_is_explained(self):
        data = image_file(np.zeros((4, 4), np.uint8), photometric="PALETTE COLOR")
        res = load_series([("p.dcm", data)])
        assert res.volumes == []
        reason = res.skipped[0][1]
        assert reason.startswith("pixel data could not be decoded") and "Error" not in reason

    def test_wrong_samples_per_pixel(self):
        data = image_file(np.zeros((4, 4), np.uint8), photometric="MONOCHROME2", extra={"SamplesPerPixel": 3})
        res = load_series([("s.dcm", data)])
        assert res.skipped[0][1] == ("invalid: (0028,0004) Photometric Interpretation MONOCHROME2 needs 1 sample "
                                     "per pixel, (0028,0002) Samples per Pixel says 3")

    def test_one_bad_frame_of_a_loop_leaves_the_rest(self):
        rgb = np.zeros((3, 4, 4, 3), np.uint8)
        data = image_file(rgb, modality="US", photometric="RGB")
        res = load_series([("ok.dcm", data), ("bad.dcm", data[:-10])])
        assert [v.kind for v in res.volumes] == ["loop"] and len(res.skipped) == 1

    @pytest.mark.parametrize("photometric", ["RGB", "MONOCHROME2"])
    def test_a_loop_with_a_frame_that_does_not_decode(self, photometric):
        # RLE (pydicom's encoder): each frame its own fragment; the second one's segment table is damaged.
        from pydicom.encaps import encapsulate

        frames = loop_pixels(3, 8, 8)
        if photometric == "RGB":
            frames = np.repeat(frames[..., None], 3, axis=-1)
        ds = pydicom.dcmread(pydicom.filebase.DicomBytesIO(image_file(frames, modality="US", photometric=photometric)))
        ds.compress(pydicom.uid.RLELossless, encoding_plugin="pydicom")
        fragments = list(pydicom.encaps.generate_frames(ds.PixelData, number_of_frames=3))
        fragments[1] = b"\x01\x00\x00\x00" + b"\xff" * 60
        ds.PixelData = encapsulate(fragments)
        buf = pydicom.filebase.DicomBytesIO()
        ds.save_as(buf, enforce_file_format=True)
        res = load_series([("rle.dcm", buf.getvalue())])
        vol, = res.volumes
        assert vol.kind == "loop" and vol.shape == (2, 8, 8)
        np.testing.assert_array_equal(vol.voxels if photometric == "MONOCHROME2" else vol.rgb, frames[[0, 2]])
        assert vol.warnings == ["1 frame of this loop could not be decoded and is left out."]
        assert [name for name, _ in res.skipped] == ["rle.dcm [frame 2]"]
