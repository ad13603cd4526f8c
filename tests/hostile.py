"""A corpus of hostile and broken inputs, generated (nothing large is committed).

Each case is ``(name, bytes, expected)``: ``expected`` is a substring of the reason the
loader must give in its skipped list (case-insensitive), or None when the file should load.
"""

from __future__ import annotations

import io
import struct
import zipfile

import numpy as np
import pydicom
from pydicom.dataset import FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless

from tests.factory import ct_series, ct_slice

PREAMBLE = b"\x00" * 128 + b"DICM"


def _meta(ts: str = ExplicitVRLittleEndian) -> bytes:
    """A minimal explicit-VR-little-endian file meta group with the given transfer syntax."""
    fm = FileMetaDataset()
    fm.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    fm.MediaStorageSOPInstanceUID = "1.2.3.99"
    fm.TransferSyntaxUID = ts
    buf = io.BytesIO()
    pydicom.filewriter.write_file_meta_info(buf, fm, enforce_standard=True)
    return PREAMBLE + buf.getvalue()


def _el(group: int, elem: int, vr: bytes, value: bytes, *, length: int | None = None) -> bytes:
    n = len(value) if length is None else length
    if vr in (b"OB", b"OW", b"SQ", b"UN", b"UT", b"UC", b"UR", b"OF", b"OD", b"OL", b"OV"):
        return struct.pack("<HH", group, elem) + vr + b"\x00\x00" + struct.pack("<I", n) + value
    return struct.pack("<HH", group, elem) + vr + struct.pack("<H", n) + value


def _image_elements(rows: int, cols: int, *, bits: int = 16, stored: int = 16) -> bytes:
    return b"".join([
        _el(0x0008, 0x0060, b"CS", b"CT"),
        _el(0x0020, 0x000E, b"UI", b"1.2.3.77\x00"),
        _el(0x0028, 0x0002, b"US", struct.pack("<H", 1)),
        _el(0x0028, 0x0004, b"CS", b"MONOCHROME2 "),
        _el(0x0028, 0x0010, b"US", struct.pack("<H", rows)),
        _el(0x0028, 0x0011, b"US", struct.pack("<H", cols)),
        _el(0x0028, 0x0100, b"US", struct.pack("<H", bits)),
        _el(0x0028, 0x0101, b"US", struct.pack("<H", stored)),
        _el(0x0028, 0x0103, b"US", struct.pack("<H", 0)),
    ])


def _nested(depth: int, *, defined: bool) -> bytes:
    """A sequence nested ``depth`` levels deep, with defined or undefined lengths."""
    inner = _el(0x0010, 0x0020, b"LO", b"X ")
    for _ in range(depth):
        if defined:
            item = struct.pack("<HHI", 0xFFFE, 0xE000, len(inner)) + inner
            inner = _el(0x0040, 0x0275, b"SQ", item)
        else:
            item = struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF) + inner + struct.pack("<HHI", 0xFFFE, 0xE00D, 0)
            inner = (struct.pack("<HH", 0x0040, 0x0275) + b"SQ\x00\x00" + struct.pack("<I", 0xFFFFFFFF) + item
                     + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0))
    return inner


def _zip(entries: list[tuple[str, bytes]], **kw) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", **kw) as zf:
        for name, data in entries:
            zf.writestr(name, data)
    return buf.getvalue()


def _zip_with(name: str, data: bytes, *, flag_bits: int = 0, attr: int = 0, method: int | None = None) -> bytes:
    info = zipfile.ZipInfo(name)
    info.external_attr = attr
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(info, data)
    raw = bytearray(buf.getvalue())
    if flag_bits or method is not None:
        for sig, off_flags, off_method in ((b"PK\x03\x04", 6, 8), (b"PK\x01\x02", 8, 10)):
            pos = raw.find(sig)
            if flag_bits:
                raw[pos + off_flags:pos + off_flags + 2] = struct.pack("<H", flag_bits)
            if method is not None:
                raw[pos + off_method:pos + off_method + 2] = struct.pack("<H", method)
    return bytes(raw)


def _fake_million_entries() -> bytes:
    data = bytearray(_zip([("a.txt", b"x")]))
    pos = data.rfind(b"PK\x05\x06")
    data[pos + 8:pos + 12] = struct.pack("<HH", 0xFFFF, 0xFFFF)
    # A zip64 end record claiming a million entries.
    z64 = (b"PK\x06\x06" + struct.pack("<Q", 44) + struct.pack("<HHII", 45, 45, 0, 0)
           + struct.pack("<QQQQ", 1_000_000, 1_000_000, 0, 0))
    return bytes(data[:pos]) + z64 + bytes(data[pos:])


def _deep_implicit(depth: int = 30) -> bytes:
    """A real image whose header nests sequences ``depth`` deep, written with implicit VR."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence
    from pydicom.uid import ImplicitVRLittleEndian

    (_, data), = ct_series(np.zeros((1, 8, 8), np.int16), series_uid="1.2.3.56")
    ds = pydicom.dcmread(io.BytesIO(data))
    inner = Dataset()
    inner.CodeValue = "1"
    for _ in range(depth):
        outer = Dataset()
        outer.ContentSequence = Sequence([inner])
        inner = outer
    ds.ContentSequence = inner.ContentSequence
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def corpus() -> list[tuple[str, bytes, str | None]]:
    good = ct_series(np.arange(2 * 8 * 8, dtype=np.int16).reshape(2, 8, 8), series_uid="1.2.3.55",
                     names=lambda k: f"good{k}.dcm")
    one = good[0][1]
    cases: list[tuple[str, bytes, str | None]] = [(n, d, None) for n, d in good]
    png = bytes.fromhex("89504e470d0a1a0a") + b"\x00" * 64
    cases += [
        ("empty.dcm", b"", "not a DICOM file"),
        ("random.dcm", np.random.default_rng(1).integers(0, 256, 5000, dtype=np.uint8).tobytes(), "not a DICOM"),
        ("photo.dcm", png, "not a DICOM file"),
        ("cut_header.dcm", one[:200], ""),
        ("cut_pixels.dcm", one[:-50], "truncated"),
        ("past_eof.dcm", _meta() + _image_elements(8, 8) + _el(0x0008, 0x103E, b"LO", b"AB", length=60000), ""),
        ("huge_length.dcm", _meta() + _image_elements(8, 8) + _el(0x7FE0, 0x0010, b"OW", b"\x00" * 16,
                                                                    length=0xFFFFFFF0), "truncated"),
        ("deep_defined.dcm", _meta() + _nested(3000, defined=True) + _image_elements(8, 8)
         + _el(0x7FE0, 0x0010, b"OW", b"\x00" * 128), ""),
        ("deep_undefined.dcm", _meta() + _nested(3000, defined=False) + _image_elements(8, 8)
         + _el(0x7FE0, 0x0010, b"OW", b"\x00" * 128), ""),
        ("deep_implicit.dcm", _deep_implicit(), "nested more than"),
        ("absurd_size.dcm", _meta() + _image_elements(65535, 65535) + _el(0x7FE0, 0x0010, b"OW", b"\x00" * 16),
         "refused"),
        ("compressed_huge_frame.dcm", _meta(JPEG2000Lossless) + _image_elements(60000, 60000)
         + b"\xe0\x7f\x10\x00OB\x00\x00\xff\xff\xff\xff" + encapsulate([b"\xff\x4f\xff\x51" + b"\x00" * 40])[8:],
         "refused"),
        ("bad_fragments.dcm", _meta(JPEG2000Lossless) + _image_elements(8, 8)
         + b"\xe0\x7f\x10\x00OB\x00\x00\xff\xff\xff\xff" + struct.pack("<HHI", 0xFFFE, 0xE000, 0x7FFFFFF0)
         + b"\x00" * 20, ""),
        ("bits.dcm", _meta() + _image_elements(8, 8, bits=8, stored=16) + _el(0x7FE0, 0x0010, b"OW", b"\x00" * 64),
         "bits stored"),
        ("bogus_ts.dcm", _meta("1.2.3.4.5.6.7") + _image_elements(8, 8) + _el(0x7FE0, 0x0010, b"OW", b"\x00" * 128),
         ""),
        ("bad_vr.dcm", _meta() + b"\x08\x00\x60\x00ZZ\x02\x00CT" + _image_elements(8, 8)
         + _el(0x7FE0, 0x0010, b"OW", b"\x00" * 128), None),  # pydicom reads an unknown VR as UN: fine
        ("nan_slope.dcm", ct_slice(np.zeros((4, 4), np.int16), position=(0, 0, 5), slope=float("nan"),
                                   series_uid="1.2.3.66"), "rescale slope"),
        ("zero_slope.dcm", ct_slice(np.zeros((4, 4), np.int16), position=(0, 0, 5), slope=0.0,
                                    series_uid="1.2.3.66"), "rescale slope"),
        # Loads, with distances in pixels (see test_loader's TestUnusableSpacing).
        ("zero_spacing.dcm", ct_slice(np.zeros((4, 4), np.int16), position=(0, 0, 5), pixel_spacing=(0, 0.5),
                                      series_uid="1.2.3.67"), None),
        ("duplicate.dcm", one, "duplicate of"),
        ("markup.dcm", ct_slice(np.zeros((4, 4), np.int16), position=(0, 0, 0), series_uid="1.2.3.88",
                                extra={"SeriesDescription": "<script>alert(1)</script>[x](javascript:alert(1))"}),
         None),
        ("charset.dcm", ct_slice(np.zeros((4, 4), np.int16), position=(0, 0, 0), series_uid="1.2.3.89",
                                 extra={"SpecificCharacterSet": "ISO_IR 999"}), None),
        ("bomb.zip", _zip([("zeros.dcm", b"\x00" * 20_000_000)], compression=zipfile.ZIP_DEFLATED),
         "compression ratio"),
        ("million.zip", _fake_million_entries(), "entries"),
        ("nested.zip", _zip([("a.zip", _zip([("b.zip", _zip([("c.zip", _zip([("d.dcm", one)]))]))]))]), "nested"),
        ("traversal.zip", _zip([("../../etc/passwd.dcm", one)]), "outside the archive"),
        ("absolute.zip", _zip([("/tmp/x.dcm", one)]), "absolute path"),
        ("backslash.zip", _zip([("a\\b.dcm", one)]), "backslash"),
        ("symlink.zip", _zip_with("link.dcm", b"/etc/passwd", attr=(0o120777 << 16)), "symbolic link"),
        ("encrypted.zip", _zip_with("secret.dcm", one, flag_bits=1), "encrypted"),
        ("method.zip", _zip_with("odd.dcm", one, method=99), "compression method"),
        ("truncated.zip", _zip([("t.dcm", one)])[:-30], "zip"),
    ]
    return cases

