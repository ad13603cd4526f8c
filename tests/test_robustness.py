"""No file can end a load, every reason reads well, and every readable image loads (issue 14)."""

from __future__ import annotations

import gc
import io
import logging
import struct
import tracemalloc
import zlib

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.pixels import apply_modality_lut
from pydicom.sequence import Sequence
from pydicom.uid import DeflatedExplicitVRLittleEndian, ImplicitVRLittleEndian

from core import Budget, load_series
from core.headers import MAX_KEPT_ELEMENT, inflate_deflated, quoted
from core.memory import MB, MemoryBudget
from tests.factory import ct_series, ct_slice

GOOD = ct_series(np.arange(2 * 8 * 8, dtype=np.int16).reshape(2, 8, 8) - 64, series_uid="9.9.9",
                 names=lambda k: f"g{k}")


def _load(*items, **kw):
    return load_series([*items, *GOOD], **kw)


def _good_loaded(result) -> bool:
    return any(v.series_uid == "9.9.9" and v.voxels.shape == (2, 8, 8) for v in result.volumes)


def _with_syntax(data: bytes, uid: bytes) -> bytes:
    """The file with its (0002,0010) value replaced by ``uid`` (no validation, as a damaged file)."""
    from core.headers import _file_meta

    start, _, at, _ = _file_meta(data)
    old = struct.unpack_from("<H", data, at + 6)[0]
    out = bytearray(data[:at + 6] + struct.pack("<H", len(uid)) + uid + data[at + 8 + old:])
    struct.pack_into("<I", out, start + 8, struct.unpack_from("<I", out, start + 8)[0] + len(uid) - old)
    return bytes(out)


def _rewrite(data: bytes, **changes) -> bytes:
    ds = pydicom.dcmread(io.BytesIO(data))
    for key, value in changes.items():
        if value is None:
            delattr(ds, key)
        else:
            setattr(ds, key, value)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


class TestPerFileBoundary:
    def test_inconsistent_meta_element_length(self):
        # (0002,0000) UL with a 2-byte value: pydicom raises BytesLengthException, outside the usual families.
        (_, d), = ct_series(np.zeros((1, 4, 4), np.int16), series_uid="1.1")
        i = d.index(b"\x02\x00\x00\x00UL")
        bad = d[:i + 6] + struct.pack("<H", 2) + d[i + 8:i + 10] + d[i + 12:]
        res = _load(("meta.dcm", bad))
        assert res.skipped == [("meta.dcm", "could not be read as DICOM: the file is damaged, or not a DICOM file")]
        assert _good_loaded(res)

    def test_unexpected_exception_becomes_words_and_a_log_line_without_the_name(self, monkeypatch, caplog):
        import core.loader

        class Surprise(Exception):
            pass

        real = core.loader.read_header

        def read_header(data, *, name, **kw):
            if name == "odd.dcm":
                raise Surprise("PATIENT^NAME in a value")
            return real(data, name=name, **kw)

        monkeypatch.setattr(core.loader, "read_header", read_header)
        (_, d), = ct_series(np.zeros((1, 4, 4), np.int16), series_uid="1.2")
        with caplog.at_level(logging.WARNING, logger="core.loader"):
            res = _load(("odd.dcm", d))
        assert res.skipped == [("odd.dcm", "could not be read: an unexpected problem in this file's structure")]
        assert _good_loaded(res)
        logged = " ".join(r.getMessage() for r in caplog.records)
        assert "Surprise" in logged and "test_robustness.py:" in logged
        assert "odd.dcm" not in logged and "PATIENT" not in logged

    def test_unexpected_exception_while_decoding(self, monkeypatch):
        import core.loader

        def boom(*args, **kwargs):
            raise LookupError("x")

        (_, d), = ct_series(np.zeros((1, 4, 4), np.int16), series_uid="1.3")
        real = core.loader._decoded_frames
        monkeypatch.setattr(core.loader, "_decoded_frames",
                            lambda data, header, wanted, base=None: boom() if header.name == "odd.dcm"
                            else real(data, header, wanted, base))
        res = _load(("odd.dcm", d))
        assert res.skipped == [
            ("odd.dcm", "pixel data could not be decoded: an unexpected problem in this file's image data")]
        assert _good_loaded(res)

    def test_no_position_and_non_numeric_slice_thickness(self):
        files = [ct_slice(np.full((4, 4), k, np.int16), position=(0, 0, 0), series_uid="1.4", instance=k + 1,
                          slice_thickness=9.99) for k in range(3)]
        files = [_rewrite(f, ImagePositionPatient=None, ImageOrientationPatient=None) for f in files]
        files = [f.replace(b"9.99", b"abcd") for f in files]
        res = _load(*[(f"s{k}", f) for k, f in enumerate(files)])
        vol = next(v for v in res.volumes if v.series_uid == "1.4")
        assert vol.spacing[0] == 1.0
        assert vol.voxels[:, 0, 0].tolist() == [-1024, -1023, -1022]
        assert _good_loaded(res) and res.skipped == []


class TestReasonsInWords:
    def test_quoted_cuts_and_hides_bytes(self):
        assert quoted("1.2.840.10008.1.2.1\x00\x02\x00") == "'1.2.840.10008.1.2.1???'"
        assert quoted("x" * 256) == "'" + "x" * 64 + "…'"
        assert quoted(b"\xff\x00ab") == "'ÿ?ab'"

    def test_unknown_transfer_syntax_with_raw_bytes(self):
        (_, d), = ct_series(np.zeros((1, 4, 4), np.int16), series_uid="1.5")
        ds = pydicom.dcmread(io.BytesIO(d))
        ds.file_meta.TransferSyntaxUID = "1.2.3.4.5.6.7.8.9.10.11.12.13.14.15.16.17.18.19.20.21.22.23.24.25.26.27.28.29"
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        (_, reason), = load_series([("ts.dcm", buf.getvalue())]).skipped
        assert reason == ("unknown (0002,0010) Transfer Syntax UID "
                          "'1.2.3.4.5.6.7.8.9.10.11.12.13.14.15.16.17.18.19.20.21.22.23.24.2…': "
                          "not a DICOM transfer syntax")

    def test_transfer_syntax_with_control_bytes(self):
        (_, d), = ct_series(np.zeros((1, 4, 4), np.int16), series_uid="1.5")
        bad = _with_syntax(d, b"1.2.840.10008.1.2.1\x00\x02\x00\x01")
        (_, reason), = load_series([("ts.dcm", bad)]).skipped
        assert reason == ("unknown (0002,0010) Transfer Syntax UID '1.2.840.10008.1.2.1????': "
                          "not a DICOM transfer syntax")
        assert reason.isprintable()

    def test_deflated_image_frame_compression_is_unsupported_not_unknown(self):
        (_, d), = ct_series(np.zeros((1, 4, 4), np.int16), series_uid="1.6")
        res = load_series([("dif.dcm", _with_syntax(d, b"1.2.840.10008.1.2.8.1\x00"))])
        assert res.skipped == [("dif.dcm", "unsupported transfer syntax: Deflated Image Frame Compression "
                                           "(1.2.840.10008.1.2.8.1), a DICOM encoding this viewer cannot decode")]

    def test_bad_vr_value_is_named_not_its_exception(self):
        from pydicom.data import get_testdata_file

        res = load_series([get_testdata_file("badVR.dcm")])
        (_, reason), = res.skipped
        assert reason == "invalid (0028,0008) Number of Frames '1A': not a whole number"

    def test_long_values_are_cut(self):
        d = ct_slice(np.zeros((4, 4), np.int16), position=(0, 0, 0), series_uid="1.7", pixel_spacing=(1.5, 1.5))
        old = b"\x28\x00\x30\x00DS\x08\x001.5\\1.5 "
        assert old in d
        d = d.replace(old, b"\x28\x00\x30\x00DS" + struct.pack("<H", 400) + b"1" * 200 + b"\\" + b"x" * 199)
        (_, reason), = load_series([("long.dcm", d)]).skipped
        assert reason == "invalid (0028,0030) Pixel Spacing '" + "1" * 64 + "…': not a list of numbers"

    def test_float_pixel_data_is_unsupported(self):
        d = ct_slice(np.zeros((4, 4), np.int16), position=(0, 0, 0), series_uid="1.8")
        ds = pydicom.dcmread(io.BytesIO(d))
        del ds.PixelData
        ds.FloatPixelData = np.zeros(16, np.float32).tobytes()
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        res = load_series([("float.dcm", buf.getvalue())])
        assert res.skipped == [
            ("float.dcm", "unsupported: float pixel data ((7FE0,0008) or (7FE0,0009)) cannot be shown")]


class TestReadableImagesLoad:
    def test_item_tag_where_an_element_belongs(self):
        # Implicit VR: an item of a sequence holds an element tagged (FFFE,E000), whose dictionary VR
        # is "NONE"; pydicom reads the file (and decodes its pixels) and so must we.
        d = ct_slice(np.arange(16, dtype=np.int16).reshape(4, 4), position=(0, 0, 0), series_uid="2.1",
                     transfer_syntax=ImplicitVRLittleEndian)
        ds = pydicom.dcmread(io.BytesIO(d))
        item = Dataset()
        item.CodeValue = "ABCD"
        ds.ReferencedImageSequence = Sequence([item])
        buf = io.BytesIO()
        ds.save_as(buf, implicit_vr=True, little_endian=True, enforce_file_format=True)
        data = buf.getvalue()
        at = data.index(b"\x08\x00\x00\x01\x04\x00\x00\x00ABCD")
        data = data[:at] + b"\xfe\xff\x00\xe0" + data[at + 4:]
        res = load_series([("none.dcm", data)])
        assert res.skipped == []
        np.testing.assert_array_equal(res.volumes[0].voxels[0], np.arange(16).reshape(4, 4) - 1024)

    def test_zero_pixel_spacing_loads_in_pixels(self):
        d = ct_slice(np.arange(16, dtype=np.int16).reshape(4, 4), position=(0, 0, 0), series_uid="2.2",
                     pixel_spacing=(0, 0), modality="MR", intercept=0.0)
        res = load_series([("cr.dcm", d)])
        assert res.skipped == []
        vol = res.volumes[0]
        assert vol.spacing[1:] == (1.0, 1.0)
        assert ("(0028,0030) Pixel Spacing is 0.0\\0.0, which is no size: 1 mm pixels assumed, so distances "
                "and areas are in pixels, not mm.") in vol.warnings

    def test_modality_lut_sequence_wins_over_rescale(self):
        stored = (np.arange(64, dtype=np.uint16) * 50).reshape(8, 8)
        d = ct_slice(stored, position=(0, 0, 0), series_uid="2.3", slope=2.0, intercept=-1000.0, bits_stored=12)
        ds = pydicom.dcmread(io.BytesIO(d))
        lut = Dataset()
        lut.LUTDescriptor = [4096, 0, 16]
        lut.ModalityLUTType = "HU"
        lut.LUTData = (np.arange(4096, dtype=np.uint16) * 7 % 3000).astype("<u2").tobytes()
        ds.ModalityLUTSequence = Sequence([lut])
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        res = load_series([("lut.dcm", buf.getvalue())])
        ref = pydicom.dcmread(io.BytesIO(buf.getvalue()))
        expected = apply_modality_lut(ref.pixel_array, ref)
        np.testing.assert_array_equal(res.volumes[0].voxels[0], expected)
        assert not np.array_equal(expected, stored * 2.0 - 1000)


def _deflated(ds: Dataset) -> bytes:
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


class TestDeflate:
    def test_deflated_file_loads_exactly(self):
        stored = np.arange(64, dtype=np.int16).reshape(8, 8)
        d = ct_slice(stored, position=(0, 0, 0), series_uid="3.1")
        data = _deflated(pydicom.dcmread(io.BytesIO(d)))
        res = load_series([("def.dcm", data)])
        assert res.skipped == []
        np.testing.assert_array_equal(res.volumes[0].voxels[0], stored - 1024)
        assert res.volumes[0].header.PatientName == "DOE^JANE"

    def test_inflate_rewrites_the_transfer_syntax(self):
        d = ct_slice(np.zeros((4, 4), np.int16), position=(0, 0, 0), series_uid="3.2")
        data = inflate_deflated(_deflated(pydicom.dcmread(io.BytesIO(d))), max_bytes=10 * MB)
        ds = pydicom.dcmread(io.BytesIO(data))
        assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
        assert ds.SeriesInstanceUID == "3.2" and ds.pixel_array.shape == (4, 4)

    def test_bomb_is_refused_before_it_inflates(self):
        d = ct_slice(np.zeros((4, 4), np.int16), position=(0, 0, 0), series_uid="3.3")
        ds = pydicom.dcmread(io.BytesIO(d))
        block = ds.private_block(0x0011, "BOMB", create=True)
        block.add_new(0x01, "OB", bytes(64 * MB))
        bomb = _deflated(ds)
        assert len(bomb) < MB
        tracemalloc.start()
        try:
            res = _load(("bomb.dcm", bomb), budget=Budget(max_inflated_bytes=8 * MB))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert res.skipped == [("bomb.dcm", "refused: this deflated file inflates to more than 8 MB")]
        assert _good_loaded(res)
        assert peak < 24 * MB, peak

    def test_damaged_deflate_stream(self):
        d = ct_slice(np.zeros((4, 4), np.int16), position=(0, 0, 0), series_uid="3.4")
        data = _deflated(pydicom.dcmread(io.BytesIO(d)))
        _, end, _, _ = __import__("core.headers", fromlist=["_file_meta"])._file_meta(data)
        broken = data[:end] + b"\xff" * 40
        (_, reason), = load_series([("broken.dcm", broken)]).skipped
        assert reason == "damaged: the deflated (compressed) content of this file cannot be inflated"

    def test_large_elements_leave_the_kept_header(self):
        d = ct_slice(np.zeros((4, 4), np.int16), position=(0, 0, 0), series_uid="3.5")
        ds = pydicom.dcmread(io.BytesIO(d))
        block = ds.private_block(0x0011, "BIG", create=True)
        block.add_new(0x01, "OB", bytes(MAX_KEPT_ELEMENT + 2))
        block.add_new(0x02, "LO", "kept")
        for data in (_rewrite(ds_bytes(ds)), _deflated(ds)):
            res = load_series([("big.dcm", data)])
            header = res.volumes[0].header
            assert 0x00111001 not in header and header[0x00111002].value == "kept"


def ds_bytes(ds: Dataset) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


class TestServerMemory:
    def test_volume_holds_its_reservation_until_collected(self):
        budget = MemoryBudget(total_bytes=10 * MB, session_bytes=10 * MB)
        res = load_series(GOOD, memory=budget, owner="s1")
        assert budget.used("s1") == 2 * 8 * 8 * 2
        del res
        gc.collect()
        assert budget.used() == 0

    def test_series_over_the_session_share_is_refused_in_words(self):
        budget = MemoryBudget(total_bytes=10 * MB, session_bytes=1000)
        big = ct_series(np.zeros((4, 16, 16), np.int16), series_uid="4.1", names=lambda k: f"b{k}")
        res = load_series(big + GOOD, memory=budget, owner="s2")
        assert [v.series_uid for v in res.volumes] == ["9.9.9"]
        reasons = {r for _, r in res.skipped}
        assert reasons == {"refused: this series (4 slices of 16 x 16) would need 0 MB, and this session may hold "
                           "at most 0 MB (0 MB in use); close the study or load less at once"}
        assert len(res.skipped) == 4

    def test_busy_server(self):
        budget = MemoryBudget(total_bytes=1000, session_bytes=1000)
        held = budget.reserve(900, owner="other", what="x")
        res = load_series(GOOD, memory=budget, owner="s3")
        assert res.volumes == [] and all(r.startswith("the server is busy") for _, r in res.skipped)
        held.release()


def test_zlib_bomb_helper_is_really_small():
    assert len(zlib.compress(bytes(64 * MB), 9)) < MB


class TestExportsKeepGeometry:
    def _uneven(self):
        z = [0.0, 2.0, 4.0, 10.0, 12.0]
        hu = np.full((5, 12, 12), -1000, np.int16)
        hu[:, 3:9, 3:9] = 500
        positions = np.array([[0.0, 0.0, zz] for zz in z])
        return load_series(ct_series(hu, positions=positions, spacing=(2, 1, 1))).volumes[0]

    def test_mesh_vertices_sit_at_each_slice_position(self):
        from core.isosurface import extract_isosurface, patient_positions

        vol = self._uneven()
        kji = np.array([[3.0, 0, 0], [3.5, 2, 1], [-0.5, 0, 0], [4.5, 0, 0]])
        np.testing.assert_allclose(patient_positions(vol, kji)[:, 2], [10.0, 11.0, -1.0, 13.0])
        np.testing.assert_allclose(patient_positions(vol, kji)[1, :2], [1.0, 2.0])
        mesh = extract_isosurface(vol, 0.0)
        # The box spans every slice; its caps close a third of the end step (2 mm) outside the first and
        # last slices (level 0 between -1000 outside and 500 inside).
        assert mesh.vertices[:, 2].min() == pytest.approx(-2 / 3, abs=1e-3)
        assert mesh.vertices[:, 2].max() == pytest.approx(12 + 2 / 3, abs=1e-3)
        assert set(np.round(mesh.vertices[:, 2], 3)) >= {0.0, 2.0, 4.0, 10.0, 12.0}

    def test_even_stack_matches_the_affine(self):
        from core.isosurface import patient_positions

        tilt = np.tan(np.radians(15))
        vol = load_series(ct_series(np.zeros((4, 6, 6), np.int16),
                                    positions=np.array([[1.0, 2.0 + 3 * k * tilt, 3.0 * k] for k in range(4)]),
                                    spacing=(3, 0.5, 0.7))).volumes[0]
        kji = np.array([[1.5, 2.0, 3.0], [0.0, 5.0, 0.0], [3.0, 0.0, 5.0]])
        ijk1 = np.column_stack([kji[:, 2], kji[:, 1], kji[:, 0], np.ones(3)])
        np.testing.assert_allclose(patient_positions(vol, kji), (ijk1 @ vol.affine.T)[:, :3], atol=1e-9)


def _compressed_slice(size: int, syntax: str, series: str, **changes) -> bytes:
    """A ``size`` x ``size`` CT slice compressed by pydicom, then ``changes`` set in its header."""
    ds = pydicom.dcmread(io.BytesIO(ct_slice(np.arange(size * size, dtype=np.int16).reshape(size, size),
                                             position=(0, 0, 0), series_uid=series)))
    ds.compress(syntax)
    for key, value in changes.items():
        setattr(ds, key, value)
    buf = io.BytesIO()
    ds.save_as(buf)
    return buf.getvalue()


class TestFuzzFindings:
    """Reproducers of what the fuzzer (benchmarks/fuzz_loader.py) found, one per kind."""

    def test_rust_decoder_panic_is_one_skipped_line(self):
        # pylibjpeg-rle panics (PanicException, a BaseException) when the segments hold more rows
        # than the header says.
        from pydicom.uid import RLELossless

        res = _load(("rle.dcm", _compressed_slice(8, RLELossless, "5.1", Rows=7)))
        assert res.skipped == [("rle.dcm", "pixel data could not be decoded: an unexpected problem in this file's "
                                           "image data")]
        assert _good_loaded(res)

    @pytest.mark.parametrize("damage", ["crc", "lzma"])
    def test_damaged_zip_member(self, damage):
        import zipfile

        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
            zf.writestr("a.dcm", GOOD[0][1])
        data = bytearray(buf.getvalue())
        c = data.find(b"PK\x01\x02")
        if damage == "crc":
            data[14] ^= 1
            data[c + 16] ^= 1
        else:
            data[8:10] = data[c + 10:c + 12] = (14).to_bytes(2, "little")
        res = load_series([("study.zip", bytes(data)), GOOD[1]])
        assert res.skipped == [("study.zip/a.dcm", "could not be taken out of its zip archive: the archive is damaged "
                                                   "at this file")]

    def test_huge_intercept_loads_as_float(self):
        d = ct_slice(np.arange(4, dtype=np.int16).reshape(2, 2), position=(0, 0, 0), series_uid="5.2", intercept=1e16)
        res = load_series([("big.dcm", d)])
        assert res.skipped == []
        assert res.volumes[0].voxels.dtype == np.float32
        expected = (np.arange(4).reshape(2, 2) + 10**16).astype(np.float32)
        np.testing.assert_array_equal(res.volumes[0].voxels[0], expected)

    def test_vr_damaged_after_the_header_was_read(self):
        # Manufacturer's VR flipped to "LK": converted only when the summary reads it, after decoding.
        d = ct_slice(np.zeros((4, 4), np.int16), position=(0, 0, 0), series_uid="5.3",
                     extra={"Manufacturer": "ACME"}, slice_thickness=1.5)
        d = d.replace(b"\x08\x00\x70\x00LO", b"\x08\x00\x70\x00LK")
        d = d.replace(b"\x18\x00\x50\x00DS", b"\x18\x00\x50\x00DC")
        res = _load(("vr.dcm", d))
        assert res.skipped == [] and len(res.volumes) == 2

    def test_infinite_slice_thickness(self):
        d = ct_slice(np.zeros((4, 4), np.int16), position=(0, 0, 5), series_uid="5.4", slice_thickness=1.5)
        d = d.replace(b"DS\x04\x001.5 ", b"DS\x08\x00Infinity")
        res = _load(("inf.dcm", d))
        vol = next(v for v in res.volumes if v.series_uid == "5.4")
        assert vol.spacing[0] == 1.0 and res.skipped == []

    @pytest.mark.parametrize("syntax", ["1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.80"])
    def test_codestream_declaring_a_huge_image_is_refused_unallocated(self, syntax):
        ds = pydicom.dcmread(io.BytesIO(ct_slice(np.arange(1024, dtype=np.int16).reshape(32, 32), position=(0, 0, 0),
                                                 series_uid="5.5")))
        ds.compress(syntax)
        buf = io.BytesIO()
        ds.save_as(buf)
        data = bytearray(buf.getvalue())
        if syntax.endswith(".90"):
            at = data.find(b"\xff\x4f\xff\x51")
            struct.pack_into(">II", data, at + 8, 8100, 8100)
        else:
            at = data.find(b"\xff\xf7")
            struct.pack_into(">HH", data, at + 5, 8100, 8100)
        tracemalloc.start()
        try:
            res = _load(("huge.dcm", bytes(data)))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert res.skipped == [("huge.dcm", "damaged: the compressed image declares 8100 x 8100 pixels, the header "
                                            "32 x 32")]
        assert _good_loaded(res) and peak < 20 * MB


# One reproducer per kind of finding of the fuzzer's long run (benchmarks/fuzz_loader.py, seed 1),
# kept so that each stays fixed: raw reprs of a damaged transfer syntax and of a sequence where a
# number belongs, the 400 MiB deflate bomb, the JPEG 2000 codestream declaring 8100 x 8100.
# Seeds and families were added since: the seed and family of each case are named, so that the
# same random choices make the same file (its description is checked).
@pytest.mark.parametrize(("index", "label", "family", "description"), [
    (4580, "ct_j2k", "length", "length of element (0002,0010) at 232 (22) set to 65534 (max)"),
    (8134, "pydicom:image_dfl.dcm", "bitflip", "bit flips at 251:4, 252:4, 252:7"),
    (6600, "pydicom:rtplan.dcm", "vr", "(0002,0010) at 246 re-encoded with VR b'OL' (was b'UI')"),
    (7762, "ct_rle", "vr", "VR of (0002,0010) at 232 overwritten b'UI' -> b'OL' (header not re-encoded)"),
    (13740, "pydicom:MR_small_jpeg_ls_lossless.dcm", "vr", "(0002,0010) at 246 re-encoded with VR b'\\xff\\xff' "
                                                             "(was b'UI')"),
    (17828, "ct_implicit_le", "vr", "(0002,0010) at 232 re-encoded with VR b'ob' (was b'UI')"),
    (18192, "enhanced_ct_3_frames", "vr", "VR of (0028,1052) at 1332 overwritten b'DS' -> b'SQ' (header not "
                                          "re-encoded)"),
    (500, None, None, None),
    (1500, None, None, None),
])
def test_long_fuzz_run_reproducers(index, label, family, description):
    from tests.fuzzing import check_case, make_case

    case = make_case(1, index, label=label, mutator=family)
    assert description is None or case.description == description
    assert check_case(case) == []


def _palette_file(segments: list[int], *, series: str = "7.1") -> bytes:
    """A 4 x 4 PALETTE COLOR image whose red palette is ``segments`` (16-bit words); green and
    blue are 256 discrete entries."""
    from tests.kinds_factory import image_file

    flat = np.array([0, 256] + list(range(0, 65536, 256)), "<u2").tobytes()
    extra = {f"{c}PaletteColorLookupTableDescriptor": [256, 0, 16] for c in ("Red", "Green", "Blue")}
    extra.update(SegmentedRedPaletteColorLookupTableData=np.array(segments, "<u2").tobytes(),
                 SegmentedGreenPaletteColorLookupTableData=flat, SegmentedBluePaletteColorLookupTableData=flat)
    return image_file(np.arange(16, dtype=np.uint8).reshape(4, 4), photometric="PALETTE COLOR", series_uid=series,
                      extra=extra)


class TestColourFuzzFindings:
    """What the fuzzer found once it had seeds of colour images, loops and projections (issue 19)."""

    @pytest.mark.parametrize(("segments", "reason"), [
        # 2,000 linear segments of 65,535 entries each: 12 KB of file, 131 million entries (4 GB in
        # pydicom's lists, 15 s)
        ([0, 1, 0] + [1, 0xFFFF, 0xFFFF, 1, 0xFFFF, 0] * 1000, "expands to more than 65,536 entries"),
        # 65,536 entries, then 30 indirect segments each repeating everything before it: 2^46 entries
        ([0, 1, 7, 1, 0xFFFF, 9] + [2, 0xFFFF, 0, 0] * 30, "expands to more than 65,536 entries"),
        # an indirect segment copying the segments from the start, itself included: endless
        ([0, 1, 7, 2, 0xFFFF, 0, 0], "nests indirect segments more than 8 deep (or copies itself)"),
        ([0, 1, 5, 9, 3, 1], "has a segment of unknown type 9"),
    ])
    def test_segmented_palette_is_checked_before_it_expands(self, segments, reason):
        tracemalloc.start()
        try:
            res = _load(("palette.dcm", _palette_file(segments)))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert res.skipped == [("palette.dcm", f"damaged: the segmented palette {reason}")]
        assert _good_loaded(res) and peak < 20 * MB

    def test_segmented_palette_with_indirect_segments_still_loads(self):
        # 1 discrete entry, a linear segment of 127 to 0xFF00, then an indirect segment repeating
        # both: 256 entries, the second half the first again.
        res = _load(("palette.dcm", _palette_file([0, 1, 0, 1, 127, 0xFF00, 2, 2, 0, 0])))
        vol = next(v for v in res.volumes if v.series_uid == "7.1")
        ds = pydicom.dcmread(io.BytesIO(_palette_file([0, 1, 0, 1, 127, 0xFF00, 2, 2, 0, 0])))
        from pydicom.pixels import apply_color_lut

        np.testing.assert_array_equal(vol.rgb[0], apply_color_lut(ds.pixel_array, ds) >> 8)
        assert res.skipped == []

    def test_compressed_file_saying_more_frames_than_it_holds_is_one_line(self):
        # A JPEG 2000 slice whose Number of Frames says 100,000: 100,000 decoding attempts and as
        # many skipped lines (18 s), now one line before any frame is made.
        from pydicom.uid import JPEG2000Lossless

        res = _load(("j2k.dcm", _compressed_slice(32, JPEG2000Lossless, "7.2", NumberOfFrames=100_000)))
        assert res.skipped == [("j2k.dcm", "damaged: (0028,0008) Number of Frames says 100000, the compressed pixel "
                                           "data holds 1 fragment")]
        assert _good_loaded(res)

    def test_a_file_whose_every_frame_fails_alike_is_one_line(self):
        # A colour loop of 5 frames whose transfer syntax is emptied: 5 identical lines, now one.
        from tests.fuzzing import check_case, make_case

        case = make_case(3, 160, label="colour_loop_5_frames", mutator="syntax")
        assert case.description == "transfer syntax set to ''"
        assert check_case(case) == []
        res = _load((case.name, case.data))
        assert res.skipped == [("case.dcm", "pixel data could not be decoded (Explicit VR Little Endian): the pixel "
                                            "values are damaged or do not match what the header describes")]

    def test_frames_failing_alike_beside_good_ones_are_one_line(self, tmp_path):
        # pydicom's 30-frame JPEG loop saying 40 frames, read from disk (its first 64 KiB decide the
        # header, too few to count the fragments): the 30 load, the 10 missing cost one line.
        from pydicom.data import get_testdata_file

        ds = pydicom.dcmread(get_testdata_file("examples_ybr_color.dcm"))
        ds.NumberOfFrames = 40
        ds.save_as(tmp_path / "us.dcm")
        res = load_series([tmp_path / "us.dcm"])
        vol, = res.volumes
        assert vol.shape == (30, 240, 320)
        assert vol.warnings == ["10 frames of this loop could not be decoded and are left out."]
        assert res.skipped == [("us.dcm [frames 31 to 40]", "pixel data could not be decoded (JPEG Baseline "
                                "(Process 1)): the compressed data looks damaged or uses a variant the decoders "
                                "do not support")]

    def test_sop_class_of_the_wrong_value_representation(self):
        # (0008,0016) re-encoded as FL (26 bytes, not a multiple of 4): the check for a SEG raised.
        data = bytearray(ct_slice(np.arange(16, dtype=np.int16).reshape(4, 4), position=(0, 0, 0), series_uid="7.3"))
        at = data.find(b"\x08\x00\x16\x00UI", 132)
        data[at + 4:at + 6] = b"FL"
        res = _load(("vr.dcm", bytes(data)))
        assert _good_loaded(res)
        assert any(v.series_uid == "7.3" for v in res.volumes) or len(res.skipped) == 1


def test_lungs_with_more_air_pockets_than_16_bit_labels_hold():
    # segment_lungs labels in 16 bits and falls back to 32 when noise makes over 65,535 pockets.
    from core import Volume
    from core.lungs import segment_lungs

    hu = np.full((40, 200, 200), 40, np.int16)
    hu[::2, 1:100:2, 1:199:2] = -1000  # 20 x 50 x 99 = 99,000 isolated single-voxel pockets
    lungs = np.zeros(hu.shape, bool)
    lungs[5:35, 120:180, 20:90] = lungs[5:35, 120:180, 110:180] = True
    hu[lungs] = -850
    vol = Volume(voxels=hu, spacing=(1.0, 1.0, 1.0), series_uid="6.1", modality="CT", units="HU")
    np.testing.assert_array_equal(segment_lungs(vol), lungs)
