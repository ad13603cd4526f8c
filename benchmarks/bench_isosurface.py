"""Threshold change to mesh ready on a 512x512x300 CT: this pipeline vs full-resolution peers.

Run:  python benchmarks/bench_isosurface.py [--runs 3]

The volume is the built-in sample resampled to 512x512x300 with +-20 HU of noise. For bone
(400 HU) and skin (-300 HU): scikit-image's marching cubes at full resolution, VTK's
vtkFlyingEdges3D at full resolution, and extract_isosurface with its 300k-triangle budget;
median time of --runs (alternating), triangles, and the Plotly Mesh3d payload.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def vtk_flying_edges(vol: np.ndarray, level: float, spacing) -> tuple[np.ndarray, np.ndarray]:
    import vtk
    from vtk.util import numpy_support

    img = vtk.vtkImageData()
    img.SetDimensions(vol.shape[2], vol.shape[1], vol.shape[0])
    img.SetSpacing(spacing[2], spacing[1], spacing[0])
    arr = numpy_support.numpy_to_vtk(vol.ravel(), deep=False)
    img.GetPointData().SetScalars(arr)
    fe = vtk.vtkFlyingEdges3D()
    fe.SetInputData(img)
    fe.SetValue(0, level)
    fe.ComputeNormalsOff()
    fe.ComputeGradientsOff()
    fe.ComputeScalarsOff()
    fe.Update()
    out = fe.GetOutput()
    pts = numpy_support.vtk_to_numpy(out.GetPoints().GetData())
    polys = numpy_support.vtk_to_numpy(out.GetPolys().GetConnectivityArray()).reshape(-1, 3)
    return pts, polys


def payload_mb(vertices: np.ndarray, faces: np.ndarray) -> float:
    from core.isosurface import Mesh
    from dashboard.iso_ui import figure

    return len(figure(Mesh(vertices.astype(np.float32), faces.astype(np.int32)), "#fff").to_json().encode()) / 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()

    from skimage.measure import marching_cubes

    from core import Volume
    from core.isosurface import extract_isosurface
    from tests.factory import sample_at_full_size

    vox = sample_at_full_size(noise=20)
    spacing = (1.0, 0.7, 0.7)
    vol = Volume(voxels=vox, spacing=spacing, series_uid="bench", modality="CT", units="HU")
    print(f"512x512x300 int16 CT, spacing {spacing} mm; median of {args.runs} runs, alternating")
    print(f"{'surface':<14}{'method':<40}{'time s':>8}{'triangles':>12}{'payload MB':>12}")
    for name, level in (("bone 400", 400.0), ("skin -300", -300.0)):
        methods = {
            "scikit-image marching_cubes, full res": lambda lv=level: marching_cubes(vox, lv, spacing=spacing)[:2],
            "VTK vtkFlyingEdges3D, full res": lambda lv=level: vtk_flying_edges(vox, lv, spacing),
            "extract_isosurface, 300k budget": lambda lv=level: extract_isosurface(vol, lv),
        }
        times: dict[str, list[float]] = {m: [] for m in methods}
        last = {}
        for _ in range(args.runs):
            for m, fn in methods.items():
                t = time.perf_counter()
                last[m] = fn()
                times[m].append(time.perf_counter() - t)
        for m in methods:
            out = last[m]
            verts, faces = (out.vertices, out.faces) if hasattr(out, "faces") else out
            print(f"{name:<14}{m:<40}{statistics.median(times[m]):>8.2f}{len(faces):>12,}"
                  f"{payload_mb(verts, faces):>12.1f}")


if __name__ == "__main__":
    main()
