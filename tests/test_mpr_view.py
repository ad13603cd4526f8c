"""The explorer's views component: how planes travel to the browser and how it windows them."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from core.windowing import window
from dashboard.mpr_view import encode_plane, pack

JS = Path(__file__).resolve().parents[1] / "dashboard" / "mpr_view.js"


def _decode(code: str, blob: bytes, raw: int, shape: tuple[int, int]) -> np.ndarray:
    k = 2 if code == "i2" else 4
    planes = np.frombuffer(blob[:raw] + zlib.decompress(blob[raw:]), np.uint8).reshape(k, -1).T.copy()
    return planes.view("<i2" if k == 2 else "<f4").reshape(shape)


@pytest.mark.parametrize(("values", "code"), [
    (np.array([[-1024, 0], [3071, -32768]], np.int16), "i2"),
    (np.array([[0, 255], [7, 1]], np.uint8), "i2"),
    (np.array([[0, 4095], [32767, 12]], np.uint16), "i2"),  # fits int16
    (np.array([[0, 65535], [40000, 12]], np.uint16), "f4"),  # does not
    (np.array([[-1000.25, 0.5], [12.75, 3e4]], np.float32), "f4"),
])
def test_planes_arrive_with_their_exact_values(values, code):
    got_code, blob, raw = encode_plane(values)
    assert got_code == code and raw == values.size * (2 if code == "i2" else 4) // 2
    np.testing.assert_array_equal(_decode(got_code, blob, raw, values.shape), values)


def test_planes_the_browser_waits_for_go_uncompressed():
    plane = np.array([[-1024, 7], [3071, 0]], np.int16)
    assert encode_plane(plane, compress=False) == ("i2", plane.astype("<i2").tobytes(), 8)
    assert encode_plane(np.array([[0.5]], np.float32), compress=False) == ("f4", np.array([0.5], "<f4").tobytes(), 4)


def test_byte_shuffling_makes_ct_planes_small():
    from core import sample_ct

    plane = sample_ct().voxels[60]
    _, blob, raw = encode_plane(plane)
    assert len(blob) < 0.55 * plane.nbytes  # the high bytes of CT values nearly vanish
    assert len(blob) - raw < 0.1 * raw


def test_pack_puts_the_header_first_and_blobs_at_their_offsets():
    header = {"slices": [{"axis": 0}, {"axis": 1}], "rev": 3}
    data = pack(header, [b"abc", b"de"])
    n = struct.unpack("<I", data[:4])[0]
    got = json.loads(data[4:4 + n])
    assert got == {"slices": [{"axis": 0, "offset": 0, "length": 3}, {"axis": 1, "offset": 3, "length": 2}], "rev": 3}
    assert data[4 + n:] == b"abcde"


@pytest.mark.browser
def test_browser_windowing_equals_core_window(page):
    """The component's windowing, run in Chromium, against core.windowing.window on the same values."""
    page.set_content("<html><body></body></html>")
    rng = np.random.default_rng(5)
    ints = np.concatenate([np.arange(-1200, 1300), rng.integers(-32768, 32767, 2000)]).astype(np.float64)
    floats = np.concatenate([rng.normal(0, 500, 3000), np.arange(-300, 300) + 0.5])
    cases = [(40, 400, False), (-600, 1500, False), (480, 2500, True), (0.5, 1, False), (40.5, 2, False),
             (100, 255, False), (-3.25, 17.5, True)]
    got = page.evaluate(
        """async ([src, ints, floats, cases]) => {
          const url = URL.createObjectURL(new Blob([src], {type: 'text/javascript'}));
          const m = await import(url);
          return cases.map(([c, w, inv]) => [ints.map((x) => m.windowValue(x, c, w, inv)),
                                             floats.map((x) => m.windowValue(x, c, w, inv))]);
        }""",
        [JS.read_text(), ints.tolist(), floats.tolist(), cases],
    )
    for (c, w, inv), (gi, gf) in zip(cases, got, strict=True):
        np.testing.assert_array_equal(np.array(gi), window(ints.astype(np.int16), c, w, invert=inv), err_msg=f"{c}/{w}")
        np.testing.assert_array_equal(np.array(gf), window(floats, c, w, invert=inv), err_msg=f"{c}/{w}")
