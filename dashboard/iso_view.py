"""The 3D page's view: the surface drawn with WebGL in the browser (a Streamlit v2 component).

Plotly's ``st.plotly_chart`` sent a 300,000-triangle surface as 7 MB of JSON, which the page
parsed, copied through JSON twice more (its theme), and handed to Plotly's 3D scene, built anew
on every change because the chart's identity is a hash of its figure: 5 to 6 s from a click to
a surface on a CPU-only browser, and the camera back at the front view each time. Here the
vertices and triangles go as little-endian float32 and uint16/uint32 bytes, straight into
WebGL buffers, the component keeps its identity (a key), and the camera lives in the browser
per series, so it stays where the user left it when the surface or its settings change.
"""

from __future__ import annotations

import hashlib
import json
import struct

import numpy as np

from core import Volume
from core.isosurface import Mesh, patient_positions
from dashboard.components import local_component

__all__ = ["KEY", "mesh_payload", "view_ui", "volume_bounds"]

KEY = "iso_view"
HEIGHT = 620  # pixels: the page's main element, above the fold on a 1000-pixel-tall window

COMPONENT = local_component("hounsfield_iso", __file__, root_class="hf-iso")


def volume_bounds(vol: Volume) -> list[list[float]]:
    """The volume's box in patient LPS mm: ``[[xmin, ymin, zmin], [xmax, ymax, zmax]]`` of its corners."""
    s, r, c = (n - 1 for n in vol.shape)
    corners = np.array([[k, j, i] for k in (0, s) for j in (0, r) for i in (0, c)], dtype=np.float64)
    lps = patient_positions(vol, corners)
    return [lps.min(axis=0).round(3).tolist(), lps.max(axis=0).round(3).tolist()]


def _raw(a: np.ndarray) -> memoryview:
    """The bytes of a C-contiguous array, without a copy."""
    return a.reshape(-1).view(np.uint8).data


def mesh_payload(mesh: Mesh, *, scene: str, color: str, bounds: list[list[float]], height: int = HEIGHT) -> bytes:
    """The surface as the browser reads it.

    ``uint32`` header length (little endian), the JSON header, then the vertices as (V, 3)
    float32 and the triangles as (F, 3) uint16 (fewer than 65,536 vertices) or uint32, each
    block starting at a multiple of 4 bytes. The header's ``id`` names the surface by its
    content, so the browser uploads a surface it already shows only once.
    """
    vertices = np.ascontiguousarray(mesh.vertices, dtype="<f4")
    index = "u2" if len(vertices) < 65_536 else "u4"
    faces = np.ascontiguousarray(mesh.faces, dtype="<u2" if index == "u2" else "<u4")
    digest = hashlib.blake2b(_raw(vertices), digest_size=8)  # no copy
    digest.update(_raw(faces))
    header = {"scene": scene, "id": digest.hexdigest(), "color": color, "bounds": bounds, "height": int(height),
              "nv": len(vertices), "nf": len(faces), "index": index, "vertices": 0, "faces": 0}
    # Offsets depend on the header's length, which depends on the offsets: repeat until they agree.
    text = b""
    while True:
        text = json.dumps(header, separators=(",", ":")).encode()
        start = 4 + len(text) + (-(4 + len(text)) % 4)
        if header["vertices"] == start:
            break
        header["vertices"], header["faces"] = start, start + vertices.nbytes  # float32: a multiple of 4
    pad = b"\0" * (start - 4 - len(text))
    return b"".join([struct.pack("<I", len(text)), text, pad, _raw(vertices),
                     _raw(faces)])


def view_ui(vol: Volume, mesh: Mesh, color: str, *, height: int = HEIGHT) -> None:
    """Draw ``mesh`` in the page's 3D view (the camera kept per series in the browser)."""
    COMPONENT(data=mesh_payload(mesh, scene=vol.key, color=color, bounds=volume_bounds(vol), height=height),
              key=KEY, width="stretch", height=height)
