"""Isosurfaces within a triangle budget: marching cubes, decimation, cleanup, measurements, export."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from core.volume import Volume

__all__ = ["IsoPlan", "Mesh", "extract_isosurface", "keep_largest_parts", "mesh_bytes", "plan_isosurface"]


@dataclass(frozen=True, eq=False)
class Mesh:
    """A triangle mesh in patient coordinates.

    Attributes
    ----------
    vertices : (V, 3) float32 ndarray
        LPS millimetres (voxel spacing and orientation applied).
    faces : (F, 3) int32 ndarray
        Vertex indices of each triangle.
    step : tuple of int
        The sampling step used along (slices, rows, cols).
    decimated : bool
        Whether the mesh was simplified to meet the triangle budget.
    enclosed_ml : float or None
        Volume enclosed by the surface, measured on the closed marching-cubes mesh before
        any decimation (None when it was not closed).
    """

    vertices: np.ndarray
    faces: np.ndarray
    step: tuple[int, int, int] = (1, 1, 1)
    decimated: bool = False
    enclosed_ml: float | None = None

    @property
    def n_triangles(self) -> int:
        return int(len(self.faces))

    def _triangles(self) -> np.ndarray:
        return self.vertices.astype(np.float64)[self.faces]

    @property
    def area_mm2(self) -> float:
        t = self._triangles()
        return float(0.5 * np.linalg.norm(np.cross(t[:, 1] - t[:, 0], t[:, 2] - t[:, 0]), axis=1).sum())

    @property
    def is_closed(self) -> bool:
        """Every edge is shared by exactly two triangles (a watertight surface)."""
        if len(self.faces) == 0:
            return False
        e = np.sort(np.concatenate([self.faces[:, [0, 1]], self.faces[:, [1, 2]], self.faces[:, [2, 0]]]), axis=1)
        _, counts = np.unique(e, axis=0, return_counts=True)
        return bool(np.all(counts == 2))

    @property
    def volume_ml(self) -> float:
        """Enclosed volume (divergence theorem) of these triangles; exact for closed surfaces."""
        return _signed_volume_ml(self.vertices.astype(np.float64), self.faces)


def _signed_volume_ml(points_mm: np.ndarray, faces: np.ndarray) -> float:
    t = points_mm[faces]
    signed = np.einsum("ij,ij->i", t[:, 0], np.cross(t[:, 1], t[:, 2])).sum() / 6.0
    return float(abs(signed) / 1000.0)


def _estimate_triangles(v: np.ndarray, level: float, upper: float | None = None) -> float:
    """Triangles marching cubes would make at full resolution, from a stride-2 sample."""
    sample = v[::2, ::2, ::2]
    b = sample > level
    if upper is not None:
        b &= sample < upper
    crossings = sum(int(np.count_nonzero(np.diff(b, axis=a))) for a in range(3))
    # Each crossing face at stride 2 stands for ~4 at full resolution; ~2 triangles each.
    return 8.0 * crossings


def _steps_for(spacing: tuple[float, float, float], factor: float) -> tuple[int, int, int]:
    """Per-axis steps that make voxels about ``factor`` times the finest spacing, near-isotropic."""
    finest = min(spacing)
    dz, dy, dx = (max(1, int(round(factor * finest / s))) for s in spacing)
    return dz, dy, dx


def keep_largest_parts(vertices: np.ndarray, faces: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Keep the ``n`` connected parts with the most triangles (drops the table and specks)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    if n <= 0 or len(faces) == 0:
        return vertices, faces
    nv = len(vertices)
    rows = np.concatenate([faces[:, 0], faces[:, 1]])
    cols = np.concatenate([faces[:, 1], faces[:, 2]])
    graph = coo_matrix((np.ones(len(rows), dtype=np.int8), (rows, cols)), shape=(nv, nv))
    ncomp, labels = connected_components(graph, directed=False)
    if ncomp <= n:
        return vertices, faces
    face_label = labels[faces[:, 0]]
    sizes = np.bincount(face_label, minlength=ncomp)
    keep = np.argsort(sizes)[::-1][:n]
    kept_faces = faces[np.isin(face_label, keep)]
    used = np.unique(kept_faces)
    remap = np.full(nv, -1, dtype=np.int64)
    remap[used] = np.arange(len(used))
    return vertices[used], remap[kept_faces].astype(np.int32)


@dataclass(frozen=True)
class IsoPlan:
    """How :func:`extract_isosurface` will sample a volume, and the memory it will need.

    Attributes
    ----------
    step : tuple of int
        Sampling step along (slices, rows, cols).
    estimate : float
        Triangles expected at full resolution.
    nbytes : int
        Peak bytes the extraction allocates, an upper bound (float32 copies of the sampled
        voxels, marching cubes' output and the decimation).
    """

    step: tuple[int, int, int]
    estimate: float
    nbytes: int


# Measured on a 300 x 512 x 512 CT at 0.3 to 2 million triangles (tracemalloc): the peak is
# the padded float32 copy of the sampled voxels plus 190 to 245 bytes per triangle marching
# cubes makes (vertices, normals and values as float64, faces, their copies, the decimation),
# or two float32 copies of the voxels (the cast, then its pad) when there are few triangles.
# A surface's triangles scale with the area of a sampled voxel's face: the full-resolution
# estimate over step ** (2/3) fell short of marching cubes' count by up to 1.4 times.
_BYTES_PER_RAW_TRIANGLE = 250
_RAW_OVER_ESTIMATE = 1.5


def _sampling(v: np.ndarray, spacing: tuple[float, float, float], level: float,
              max_triangles: int, upper: float | None = None) -> tuple[tuple[int, int, int], float]:
    """The sampling step that brings ``v``'s surface near ``max_triangles``, and the full-resolution estimate."""
    estimate = _estimate_triangles(v, level, upper) if v.size else 0.0
    factor = max(1.0, float(np.sqrt(estimate / max_triangles))) if estimate > max_triangles else 1.0
    step = _steps_for(spacing, factor) if factor > 1 else (1, 1, 1)
    return step, estimate


def plan_isosurface(volume: Volume, level: float, *, max_triangles: int = 300_000,
                    crop: tuple[slice, slice, slice] | None = None, mask: np.ndarray | None = None,
                    smooth: float = 0.0, upper: float | None = None) -> IsoPlan:
    """The sampling step and the memory :func:`extract_isosurface` will use, before it runs.

    Costs one stride-2 pass over the volume; pass the plan to :func:`extract_isosurface`.
    With a ``mask`` the step is estimated on the unmasked voxels (more surface, so a coarser
    or equal step and an upper bound on memory). ``smooth`` and ``upper`` as for
    :func:`extract_isosurface` (each adds copies of the sampled voxels).
    """
    if max_triangles <= 0:
        raise ValueError(f"max_triangles must be positive, got {max_triangles!r}")
    v = volume.voxels[crop or (slice(None), slice(None), slice(None))]
    step, estimate = _sampling(v, volume.spacing, level, max_triangles, upper)
    sampled = int(np.prod([-(-n // k) for n, k in zip(v.shape, step, strict=True)]))
    raw = _RAW_OVER_ESTIMATE * estimate / float(np.prod(step)) ** (2 / 3)
    nbytes = max(8 * sampled, 4 * sampled + int(_BYTES_PER_RAW_TRIANGLE * raw))
    if mask is not None:
        nbytes += 4 * v.size  # the masked float copy of the cropped volume
    if smooth > 0:
        nbytes += 8 * sampled  # the block mean and the filter's output, float32
    if upper is not None:
        nbytes += 12 * sampled  # int32 part labels, boolean masks and the float32 result
    return IsoPlan(step=step, estimate=estimate, nbytes=nbytes)


def extract_isosurface(
    volume: Volume,
    level: float,
    *,
    max_triangles: int = 300_000,
    mask: np.ndarray | None = None,
    crop: tuple[slice, slice, slice] | None = None,
    keep_largest: int = 0,
    plan: IsoPlan | None = None,
    smooth: float = 0.0,
    upper: float | None = None,
) -> Mesh:
    """The surface where the volume crosses ``level``, within a triangle budget.

    The sampling step is chosen from an estimate of the full-resolution triangle count
    (coarser along the finely sampled axes first, so voxels become near-isotropic); if
    the mesh is still over budget it is decimated with quadric error metrics
    (fast-simplification). The volume is padded by one voxel below ``level`` so that
    every surface is closed, also where it meets the edge of the scan or the crop.

    Parameters
    ----------
    volume : Volume
    level : float
        Threshold in the volume's units (HU for CT).
    max_triangles : int
        Triangle budget; the result has at most this many.
    mask : (S, R, C) bool ndarray, optional
        Only voxels inside the mask count as above the level (e.g. segmented lungs).
    crop : tuple of three slices, optional
        Part of the volume to use (slices, rows, cols).
    keep_largest : int
        Keep only this many largest connected parts (0 keeps all).
    plan : IsoPlan, optional
        From :func:`plan_isosurface` with the same arguments (made here when not given).
    smooth : float
        Gaussian sigma in voxels of the volume, applied before meshing (0: none); when the volume
        is sampled coarser, each sampled voxel is first the mean of those it stands for. Image
        noise of a few HU around a soft-tissue level makes a surface of specks; sigma 1 removes it.
    upper : float, optional
        Values at or above this (bone, metal) are left out, with the rim of partial volume around
        them and the parts they enclose (marrow): with ``level`` 150 and ``upper`` 400, the
        contrast-filled vessels and heart chambers of an enhanced CT without the skeleton.

    Returns
    -------
    Mesh
        Vertices in patient LPS mm.

    Raises
    ------
    ValueError
        If ``max_triangles`` is not positive or the level is never crossed.
    """
    from skimage.measure import marching_cubes

    if max_triangles <= 0:
        raise ValueError(f"max_triangles must be positive, got {max_triangles!r}")
    crop = crop or (slice(None), slice(None), slice(None))
    v = volume.voxels[crop]
    origin_index = np.array([s.indices(n)[0] for s, n in zip(crop, volume.shape, strict=True)], dtype=np.float64)
    if mask is not None:
        m = np.asarray(mask, dtype=bool)[crop]
        floor = min(float(level) - 1.0, float(v.min()) if v.size else 0.0)
        v = np.where(m, v, np.array(floor, dtype=v.dtype if np.issubdtype(v.dtype, np.floating) else np.float32))
    if v.size == 0 or v.max() <= level or v.min() > level:
        raise ValueError(f"the level {level:g} is not crossed inside the volume (values {v.min():g} to {v.max():g})")
    spacing = volume.spacing  # floats: Volume converts them
    step = plan.step if plan is not None else _sampling(v, spacing, level, max_triangles, upper)[0]
    sub = v[::step[0], ::step[1], ::step[2]]
    if smooth > 0 or upper is not None:
        sub = _prepare(v, step, float(level), smooth=smooth, upper=upper)
        if sub.max() <= level:
            raise ValueError(f"the level {level:g} is not crossed inside the volume once smoothed"
                             + (f" and values from {upper:g} left out" if upper is not None else ""))
    low = np.array(min(float(level) - 1.0, float(sub.min())), dtype=np.float32)
    padded = np.pad(sub.astype(np.float32, copy=False), 1, mode="constant", constant_values=low)
    verts, faces, _, _ = marching_cubes(padded, level=float(level), allow_degenerate=False)
    # Back to voxel indices of the full volume: undo the pad, the step and the crop.
    verts = (verts - 1.0) * np.array(step, dtype=np.float64) + origin_index
    faces = faces.astype(np.int32)
    if keep_largest:
        verts, faces = keep_largest_parts(verts, faces, keep_largest)
    # Measured before decimation, on the closed (padded) marching-cubes surface.
    enclosed = _signed_volume_ml(verts * np.array(spacing), faces) if len(faces) else 0.0
    decimated = False
    if len(faces) > max_triangles:
        import fast_simplification

        mm = verts * np.array(spacing)  # decimate in millimetres, where the error metric means something
        reduction = 1.0 - max_triangles / len(faces) * 0.98
        points, faces = fast_simplification.simplify(mm, faces, target_reduction=reduction)
        verts = points / np.array(spacing)
        faces = faces.astype(np.int32)
        decimated = True
        if len(faces) > max_triangles:
            raise RuntimeError(f"decimation left {len(faces)} triangles, over the budget of {max_triangles}")
    lps = patient_positions(volume, verts)
    return Mesh(vertices=lps.astype(np.float32), faces=faces, step=step, decimated=decimated,
                enclosed_ml=enclosed)


def _block_mean(v: np.ndarray, step: tuple[int, int, int]) -> np.ndarray:
    """Each cell of the grid sampled at ``step`` as the mean of the voxels it stands for: float32.

    Sums the ``prod(step)`` strided views (no copy of the whole volume); cells at the far edges
    average the voxels they have.
    """
    shape = tuple(-(-n // k) for n, k in zip(v.shape, step, strict=True))
    total = np.zeros(shape, dtype=np.float32)
    for offset in np.ndindex(*step):
        part = v[offset[0]::step[0], offset[1]::step[1], offset[2]::step[2]]
        total[tuple(slice(0, n) for n in part.shape)] += part
    counts = [np.array([len(range(i * k, min((i + 1) * k, n))) for i in range(m)], dtype=np.float32)
              for n, k, m in zip(v.shape, step, shape, strict=True)]
    total /= counts[0][:, None, None] * counts[1][None, :, None] * counts[2][None, None, :]
    return total


def _prepare(v: np.ndarray, step: tuple[int, int, int], level: float, *, smooth: float,
             upper: float | None) -> np.ndarray:
    """``v`` sampled at ``step``, smoothed (Gaussian ``smooth``), with ``upper`` the hard parts left out: float32."""
    from scipy import ndimage

    if smooth > 0:
        # Averaged, not picked, when sampled coarser: noise and thin bone are not aliased; then a
        # Gaussian of ``smooth`` voxels of the volume (``smooth / step`` cells of the grid).
        field = _block_mean(v, step) if step != (1, 1, 1) else v.astype(np.float32)
        field = ndimage.gaussian_filter(field, tuple(float(smooth) / k for k in step), mode="nearest", truncate=3.0)
    else:
        field = v[::step[0], ::step[1], ::step[2]].astype(np.float32)
    if upper is None:
        return field
    # Bone where any voxel of a sampled cell is bone: a thin rib, skipped by the step or blurred
    # below ``upper`` by the smoothing, would otherwise become a "vessel".
    hard = field >= upper
    if step != (1, 1, 1) or smooth > 0:  # else ``hard`` is already ``v >= upper``
        for offset in np.ndindex(*step):  # one sampled view at a time: no full-size mask of the volume
            part = v[offset[0]::step[0], offset[1]::step[1], offset[2]::step[2]] >= upper
            hard[tuple(slice(0, n) for n in part.shape)] |= part
    # The rim next to bone (partial volume between bone and soft tissue) is never a vessel.
    inside = (field > level) & ~ndimage.binary_dilation(hard)
    labels, n = ndimage.label(inside)
    if n:
        # A part whose boundary lies mostly against bone is inside it (marrow, a vertebral body).
        edge = inside & ~ndimage.binary_erosion(inside)
        near = ndimage.binary_dilation(hard, iterations=2)
        total = np.bincount(labels[edge], minlength=n + 1)
        touching = np.bincount(labels[edge & near], minlength=n + 1)
        wrapped = touching > 0.5 * np.maximum(total, 1)
        wrapped[0] = False
        inside &= ~wrapped[labels]
    # Left-out voxels just below the level; the others keep their values, so that the surface
    # is interpolated between voxels as usual (a far floor would pull it onto voxel centres).
    field[~inside & (field > level)] = np.float32(level - 1.0)
    return field


def patient_positions(volume: Volume, kji: np.ndarray) -> np.ndarray:
    """Patient LPS mm of fractional voxel indices ``(k, j, i)``: (N, 3) float64.

    Each slice sits at its own ImagePositionPatient (between two slices, on the line joining
    them), so sheared, gapped and unevenly spaced stacks stay true; one slice past either
    end continues the end step (a closed surface reaches there).
    """
    kji = np.asarray(kji, dtype=np.float64)
    positions = np.asarray(volume.positions, dtype=np.float64)
    dz, dy, dx = volume.spacing
    if len(positions) < 2:
        base = positions[0] + kji[:, :1] * dz * volume.normal
    else:
        ext = np.vstack([2 * positions[0] - positions[1], positions, 2 * positions[-1] - positions[-2]])
        k = np.clip(kji[:, 0] + 1.0, 0.0, len(ext) - 1.0)
        lo = np.minimum(np.floor(k).astype(np.int64), len(ext) - 2)
        t = (k - lo)[:, None]
        base = ext[lo] * (1.0 - t) + ext[lo + 1] * t
    return base + kji[:, 1:2] * dy * volume.col_direction + kji[:, 2:3] * dx * volume.row_direction


def mesh_bytes(mesh: Mesh, file_type: str) -> bytes:
    """The mesh as binary STL, PLY or OBJ (written by trimesh, in memory)."""
    import trimesh

    if file_type not in ("stl", "ply", "obj"):
        raise ValueError(f"file_type must be 'stl', 'ply' or 'obj', got {file_type!r}")
    tm = trimesh.Trimesh(vertices=mesh.vertices, faces=mesh.faces, process=False)
    out = tm.export(file_type=file_type)
    if isinstance(out, bytes):
        return out
    if isinstance(out, str):  # OBJ is text
        return out.encode()
    raise TypeError(f"trimesh exported a {type(out).__name__} as {file_type!r}, not bytes or text")

