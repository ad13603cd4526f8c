"""Attacks on a running server's memory, generated: bombs written as streams, a browserless visitor.

Used by tests/test_security_memory.py and benchmarks/bench_sessions.py. Nothing large is held
by the generators: a 1 GB inner zip or a 1.5 GB deflated element is written chunk by chunk.
"""

from __future__ import annotations

import random
import struct
import zipfile
import zlib
from pathlib import Path

MB = 1024**2


def proc_mb(pid: int, field: str) -> float:
    """A figure of /proc/<pid>/status in MB (VmRSS: resident now; VmHWM: the highest since the last reset)."""
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise KeyError(field)


def reset_peak(pid: int) -> None:
    """Start VmHWM again from the current resident memory (Linux clear_refs 5)."""
    with open(f"/proc/{pid}/clear_refs", "w") as fh:
        fh.write("5")


class Visitor:
    """A Streamlit session without a browser: its websocket (one run of the page) and its XSRF cookie.

    What an attacker needs to send files straight to the upload endpoint.
    """

    def __init__(self, url: str) -> None:
        import requests
        from websockets.sync.client import connect

        self.url, self.http = url, requests.Session()
        self.http.get(url + "/_stcore/health", timeout=30).raise_for_status()  # sets the XSRF cookie
        self.xsrf = self.http.cookies.get("_streamlit_xsrf")
        cookie = "; ".join(f"{k}={v}" for k, v in self.http.cookies.items())
        self.ws = connect(url.replace("http", "ws", 1) + "/_stcore/stream", subprotocols=["streamlit", self.xsrf],
                          additional_headers={"Cookie": cookie, "Origin": url}, max_size=None, open_timeout=30,
                          legacy=True)
        self.session_id = self._run_page()

    def _run_page(self) -> str:
        from streamlit.proto.BackMsg_pb2 import BackMsg
        from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

        back = BackMsg()
        back.rerun_script.query_string = ""
        self.ws.send(back.SerializeToString())
        session_id = None
        while True:
            msg = ForwardMsg()
            msg.ParseFromString(self.ws.recv(timeout=120))
            kind = msg.WhichOneof("type")
            if kind == "new_session":
                session_id = msg.new_session.initialize.session_id
            if kind == "script_finished" and session_id:
                return session_id

    def put(self, file_id: str, data: bytes, name: str = "x.dcm") -> int:
        """PUT one file to the upload endpoint as the page would; returns the HTTP status."""
        r = self.http.put(f"{self.url}/_stcore/upload_file/{self.session_id}/{file_id}",
                          files={"file": (name, data, "application/octet-stream")},
                          headers={"X-Xsrftoken": self.xsrf}, timeout=300)
        return r.status_code

    def close(self) -> None:
        self.ws.close()


def nested_zip_bomb(path: Path, inner_mb: int) -> Path:
    """A small zip holding one inner zip of ``inner_mb`` MB, every ratio under the 250:1 limit.

    Written as a stream (the test never holds the inner zip): the inner zip stores one file
    whose bytes are mostly zeros with one random byte in 512, which deflates about 130:1.
    """
    rng = random.Random(5)
    block = bytearray(MB)
    member = zipfile.ZipInfo("inner.zip")
    member.compress_type = zipfile.ZIP_DEFLATED
    with zipfile.ZipFile(path, "w") as outer:
        with outer.open(member, "w", force_zip64=True) as w:
            with zipfile.ZipFile(w, "w", compression=zipfile.ZIP_STORED) as inner:
                with inner.open(zipfile.ZipInfo("scan.dcm"), "w", force_zip64=True) as f:
                    for _ in range(inner_mb):
                        for i in range(0, MB, 512):
                            block[i] = rng.randrange(256)
                        f.write(block)
    return path


def deflate_bomb(path: Path, inflated_mb: int) -> Path:
    """A Deflated Explicit VR Little Endian file whose private element inflates to ``inflated_mb`` MB."""
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    from tests.hostile import _el, _image_elements, _meta

    z = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    n = inflated_mb * MB
    with open(path, "wb") as fh:
        fh.write(_meta(DeflatedExplicitVRLittleEndian))
        fh.write(z.compress(_el(0x0008, 0x0016, b"UI", b"1.2.840.10008.5.1.4.1.1.2\x00")
                            + _el(0x0009, 0x0010, b"LO", b"BOMB")
                            + struct.pack("<HH", 0x0009, 0x1000) + b"OB\x00\x00" + struct.pack("<I", n)))
        zeros = bytes(MB)
        for _ in range(inflated_mb):
            fh.write(z.compress(zeros))
        fh.write(z.compress(_image_elements(8, 8) + _el(0x7FE0, 0x0010, b"OW", bytes(128))))
        fh.write(z.flush())
    return path


def _rle_zeros_frame(rows: int, cols: int) -> bytes:
    """One 16-bit RLE Lossless frame of zeros: two PackBits segments of 128-byte runs."""
    n = rows * cols
    segment = b"\x81\x00" * (n // 128) + (bytes([0, 0]) if n % 128 == 1 else b"")
    assert n % 128 == 0
    header = struct.pack("<16I", 2, 64, 64 + len(segment), *([0] * 13))
    return header + segment + segment


def rle_bomb(folder: Path, *, slices: int, size: int = 4096) -> list[Path]:
    """``slices`` RLE Lossless CT slices of size x size (0.5 MB each, 32 MB of int16 voxels each)."""
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.encaps import encapsulate
    from pydicom.uid import CTImageStorage, RLELossless, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    frame = encapsulate([_rle_zeros_frame(size, size)])
    paths = []
    for k in range(slices):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
        ds.file_meta.TransferSyntaxUID = RLELossless
        ds.SOPClassUID = CTImageStorage
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.Modality = "1.2.3.4", "1.2.3.4.1", "CT"
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        ds.ImagePositionPatient = [0.0, 0.0, float(k)]
        ds.PixelSpacing = [0.1, 0.1]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.Rows = ds.Columns = size
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleSlope, ds.RescaleIntercept = 1.0, -1024.0
        ds.PixelData = frame
        ds["PixelData"].VR = "OB"
        paths.append(folder / f"rle{k:02d}.dcm")
        pydicom.dcmwrite(paths[-1], ds, enforce_file_format=True)
    return paths
