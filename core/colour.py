"""Colour images to 8-bit RGB as pydicom renders them, and their luminance for grey-value code."""

from __future__ import annotations

import struct

import numpy as np
from pydicom.dataset import Dataset
from pydicom.pixels import apply_color_lut

__all__ = ["COLOUR_SAMPLES", "MAX_PALETTE_ENTRIES", "check_segmented_palette", "luminance", "rgb8"]

MAX_PALETTE_ENTRIES = 65536
"""A palette maps at most 2^16 values (PS3.3 C.7.6.3.1.5): a segmented one expanding further is damaged."""
_MAX_SEGMENTS = 1 << 17  # segments expanded in all (indirect segments expand theirs again)
_MAX_INDIRECT_WORK = 50_000_000  # indirect segments x words of data: pydicom copies the data for each

COLOUR_SAMPLES = {"RGB": 3, "YBR_FULL": 3, "YBR_FULL_422": 3, "YBR_ICT": 3, "YBR_RCT": 3, "PALETTE COLOR": 1}
"""The colour photometric interpretations the loader reads, with their samples per pixel."""


def rgb8(decoded: np.ndarray, ds: Dataset, *, photometric: str, bits_stored: int) -> np.ndarray:
    """One decoded frame as 8-bit RGB.

    Parameters
    ----------
    decoded : (R, C, 3) or (R, C) ndarray
        What ``pydicom.pixels.pixel_array(ds, index=...)`` returns: RGB for RGB, YBR_FULL and
        YBR_FULL_422 (pydicom converts them with ``convert_color_space``), YBR_ICT and YBR_RCT
        (the JPEG 2000 decoders undo the colour transform), palette indices for PALETTE COLOR.
    ds : pydicom.Dataset
        The image's header: the palette of a PALETTE COLOR image (segmented or not).
    photometric : str
        (0028,0004) Photometric Interpretation.
    bits_stored : int
        (0028,0101) Bits Stored: 16-bit colour is scaled down to 8 bits by a right shift.

    Returns
    -------
    (R, C, 3) uint8 ndarray
    """
    if photometric == "PALETTE COLOR":
        check_segmented_palette(ds)
        rgb = apply_color_lut(decoded, ds)
        if rgb.dtype.itemsize > 1:
            # 16-bit palette entries (PS3.3 C.7.6.3.1.5): the top 8 bits are the 8-bit colour.
            return (rgb >> 8).astype(np.uint8)
        return rgb.astype(np.uint8, copy=False)
    if decoded.ndim != 3 or decoded.shape[-1] != 3:
        raise ValueError(f"a {photometric} frame must decode to (rows, columns, 3), got {decoded.shape}")
    if decoded.dtype.itemsize > 1:
        shift = max(0, bits_stored - 8)
        return np.clip(decoded.astype(np.uint32) >> shift, 0, 255).astype(np.uint8)
    return decoded.astype(np.uint8, copy=False)


def luminance(rgb: np.ndarray) -> np.ndarray:
    """The grey level of each RGB pixel, ITU-R BT.601 (``0.299 R + 0.587 G + 0.114 B``), rounded.

    Parameters
    ----------
    rgb : (..., 3) uint8 ndarray

    Returns
    -------
    (...) uint8 ndarray
    """
    weights = np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return np.rint(rgb.astype(np.float32) @ weights).clip(0, 255).astype(np.uint8)


def check_segmented_palette(ds: Dataset) -> None:
    """Check a segmented palette (PS3.3 C.7.9.2) expands within bounds, before pydicom expands it.

    A few bytes of segments can ask for billions of entries (linear segments of 65,535 entries
    each, indirect segments repeating everything before them) or loop forever (an indirect segment
    copying itself). This walks the segments as ``pydicom.pixels.apply_color_lut`` does, counting
    entries without making them, and stops at :data:`MAX_PALETTE_ENTRIES` entries, 2^17 segments
    or nesting 8 deep. Palettes that are not segmented pass.

    Raises
    ------
    core.headers.SkipFile
        With the reason in words.
    """
    from core.headers import SkipFile, lenient

    keys = [f"Segmented{c}PaletteColorLookupTableData" for c in ("Red", "Green", "Blue", "Alpha")]
    if "RedPaletteColorLookupTableData" in ds or not any(k in ds for k in keys):
        return
    descriptor = lenient(ds, "RedPaletteColorLookupTableDescriptor")
    try:
        bits = int(descriptor[2])
    except (TypeError, ValueError, IndexError, KeyError):
        raise SkipFile("damaged: the palette's (0028,1101) descriptor is not three numbers") from None
    if bits not in (8, 16):
        raise SkipFile(f"unsupported: a segmented palette of {bits}-bit entries (8 or 16 bits are read)")
    # As pydicom: the transfer syntax's byte order, else the order the dataset was read in.
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if syntax is not None:
        little = syntax != "1.2.840.10008.1.2.2"
    else:
        little = getattr(ds, "original_encoding", (None, True))[1] is not False
    size = bits // 8
    for key in keys:
        seg = lenient(ds, key)
        if not seg:
            continue
        if not isinstance(seg, (bytes, bytearray)):
            raise SkipFile("damaged: the segmented palette data is not binary")
        n = len(seg) // size
        words = struct.unpack(f"{'<' if little else '>'}{n}{'B' if size == 1 else 'H'}", bytes(seg[:n * size]))
        walk = _SegmentWalk(words, size == 1)
        walk.run(0, None, has_last=False, depth=0)


class _SegmentWalk:
    """The count of entries a segmented palette expands to, as pydicom expands it, with limits."""

    def __init__(self, words: tuple[int, ...], byte_entries: bool) -> None:
        self.words = words
        self.byte_entries = byte_entries
        self.entries = 0
        self.segments = 0
        self.indirect_work = 0

    def _fail(self, what: str) -> None:
        from core.headers import SkipFile

        raise SkipFile(f"damaged: the segmented palette {what}")

    def run(self, start: int, nr_segments: int | None, *, has_last: bool, depth: int) -> int:
        """Entries made by the segments from word ``start`` (``nr_segments`` of them, or to the end)."""
        words, n = self.words, len(self.words)
        if depth > 8:
            self._fail("nests indirect segments more than 8 deep (or copies itself)")
        count, offset, read = 0, start, 0
        while offset + 1 < n:
            opcode, length = words[offset], words[offset + 1]
            offset += 2
            if opcode == 0:
                added = max(0, min(length, n - offset))
                offset += length
            elif opcode == 1:
                if count == 0 and not has_last:
                    self._fail("starts with a linear segment")
                if offset >= n:
                    self._fail("ends inside a linear segment")
                added = length
                offset += 1
            elif opcode == 2:
                if count == 0:
                    self._fail("starts with an indirect segment")
                need = 4 if self.byte_entries else 2
                if offset + need > n:
                    self._fail("ends inside an indirect segment")
                if self.byte_entries:
                    b = [words[offset + k] for k in (3, 2, 1, 0)]
                    target = (b[0] << 8 | b[1]) << 16 | (b[2] << 8 | b[3])
                else:
                    target = words[offset + 1] << 16 | words[offset]
                offset += need
                self.indirect_work += n
                if self.indirect_work > _MAX_INDIRECT_WORK:
                    self._fail("repeats its indirect segments too often")
                added = self.run(target, length, has_last=True, depth=depth + 1) if target < n else 0
            else:
                self._fail(f"has a segment of unknown type {opcode}")
            count += added
            if opcode != 2:  # an indirect segment's entries were counted where they were made
                self.entries += added
            self.segments += 1
            if self.entries > MAX_PALETTE_ENTRIES:
                self._fail(f"expands to more than {MAX_PALETTE_ENTRIES:,} entries")
            if self.segments > _MAX_SEGMENTS:
                self._fail(f"has more than {_MAX_SEGMENTS:,} segments")
            read += 1
            if read == nr_segments:
                break
        return count
