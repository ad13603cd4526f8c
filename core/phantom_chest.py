"""The anatomy and image formation of the built-in synthetic chest CT (pure NumPy, no I/O).

Coordinates are millimetres: ``z`` up from the lowest slice (0 .. 297.5), ``y`` from the
image centre towards the patient's back, ``x`` towards the patient's left. The label map is
drawn voxel centre by voxel centre (exact truth); the image is the label map's HU blurred by
a 3 x 3 x 3 point spread function (partial volume at every edge) plus correlated noise.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from core import hu

__all__ = ["LABELS", "LUNG_LABELS", "NOISE_SD", "SHAPE", "SPACING", "TISSUE_HU", "build_chest"]

SHAPE = (120, 256, 256)
SPACING = (2.5, 1.4, 1.4)  # dz, dy, dx in mm: a 358 mm field of view, 300 mm long

# name: (label, mean HU). A contrast-enhanced chest CT in the portal venous phase.
_TISSUES: dict[str, tuple[int, int]] = {
    "outside scan circle": (0, hu.PADDING_STORED),
    "air": (1, -1000),
    "skin": (2, 30),
    "subcutaneous fat": (3, -105),
    "muscle": (4, 50),
    "mediastinal and abdominal fat": (5, -90),
    "lung": (6, -860),
    "emphysema": (7, -1000),
    "pulmonary vessel": (8, 150),
    "bronchus": (9, -1000),
    "bronchial wall": (10, 40),
    "trachea": (11, -1000),
    "airway wall": (12, 45),
    "solid nodule": (13, 35),
    "ground-glass nodule": (14, -560),
    "myocardium": (15, 105),
    "left ventricle": (16, 190),
    "right ventricle": (17, 165),
    "left atrium": (18, 185),
    "right atrium": (19, 160),
    "aorta": (20, 190),
    "pulmonary artery": (21, 165),
    "superior vena cava": (22, 210),
    "esophagus": (23, 45),
    "diaphragm": (24, 55),
    "liver": (25, 95),
    "spleen": (26, 110),
    "stomach wall": (27, 60),
    "stomach contents": (28, 15),
    "stomach gas": (29, -1000),
    "vertebral body": (30, 230),
    "cortical bone": (31, 1100),
    "cancellous bone": (32, 260),
    "intervertebral disc": (33, 80),
    "spinal canal": (34, 15),
    "costal cartilage": (35, 120),
    "main bronchus": (36, -1000),
    "axillary fat": (37, -100),
}
LABELS: dict[str, int] = {name: v[0] for name, v in _TISSUES.items()}
TISSUE_HU: dict[str, int] = {name: v[1] for name, v in _TISSUES.items()}

LUNG_LABELS: tuple[str, ...] = ("lung", "emphysema", "pulmonary vessel", "bronchus", "bronchial wall",
                                "solid nodule", "ground-glass nodule")
"""The labels inside the pleura: together, the lungs as a lung segmentation should find them."""

NOISE_SD = 12.0
"""Standard deviation of the image noise in HU (before rounding); never more than 4 SD from zero."""

_SEED = 20261129


def _allowed(names: tuple[str, ...]) -> np.ndarray:
    """A look-up table: which of the 256 label values are among ``names``."""
    table = np.zeros(256, dtype=bool)
    table[[LABELS[n] for n in names]] = True
    return table


class _Canvas:
    """The label map being drawn, with the grid's coordinates in mm."""

    def __init__(self) -> None:
        nz, ny, nx = SHAPE
        dz, dy, dx = SPACING
        self.z = np.arange(nz, dtype=np.float32) * dz
        self.y = (np.arange(ny, dtype=np.float32) - (ny - 1) / 2) * dy
        self.x = (np.arange(nx, dtype=np.float32) - (nx - 1) / 2) * dx
        self.lab = np.full(SHAPE, LABELS["air"], dtype=np.uint8)

    def box(self, x: tuple[float, float], y: tuple[float, float], z: tuple[float, float]):
        """Slices of the grid covering a box in mm, and the box's coordinates (broadcastable)."""
        def sl(c: np.ndarray, lo: float, hi: float) -> slice:
            i = np.nonzero((c >= lo) & (c <= hi))[0]
            return slice(int(i[0]), int(i[-1]) + 1) if i.size else slice(0, 0)

        s = (sl(self.z, *z), sl(self.y, *y), sl(self.x, *x))
        return s, self.z[s[0]][:, None, None], self.y[s[1]][None, :, None], self.x[s[2]][None, None, :]

    def paint(self, s, mask: np.ndarray, name: str, onto: tuple[str, ...] | None = None) -> None:
        sub = self.lab[s]
        mask = np.broadcast_to(mask, sub.shape)
        if onto is not None:
            mask = mask & _allowed(onto)[sub]
        sub[mask] = LABELS[name]

    def near(self, points: np.ndarray, radii: np.ndarray) -> np.ndarray:
        """Flat indices (with repeats) of the voxels whose centre is within ``radii`` mm of one of
        ``points`` (z, y, x mm): the union of spheres, a tube when the points follow a line."""
        sp = np.array(SPACING)
        origin = np.array([0.0, self.y[0], self.x[0]])
        idx0 = np.rint((points - origin) / sp).astype(np.int64)
        buckets = np.ceil(radii * 2) / 2
        out = []
        for r in np.unique(buckets):
            sel = buckets == r
            reach = np.ceil(r / sp).astype(int)
            grid = np.stack(np.meshgrid(*(np.arange(-n, n + 1) for n in reach), indexing="ij"), -1).reshape(-1, 3)
            grid = grid[np.linalg.norm(grid * sp, axis=1) <= r + 0.9]
            cand = idx0[sel][:, None, :] + grid[None]
            d = np.linalg.norm(cand * sp + origin - points[sel][:, None, :], axis=2)
            cand = cand[d <= radii[sel][:, None]]
            cand = cand[np.all((cand >= 0) & (cand < np.array(SHAPE)), axis=1)]
            out.append(np.ravel_multi_index(cand.T, SHAPE))
        return np.concatenate(out)

    def stamp(self, points: np.ndarray, radii: np.ndarray, name: str, onto: tuple[str, ...]) -> None:
        """Paint a tube: every voxel within ``radii`` mm of one of ``points`` (z, y, x mm)."""
        self.paint_flat(self.near(points, radii), name, onto)

    def paint_flat(self, flat: np.ndarray, name: str, onto: tuple[str, ...]) -> None:
        keep = flat[_allowed(onto)[self.lab.flat[flat]]]
        self.lab.flat[keep] = LABELS[name]


def _shell(flat: np.ndarray) -> np.ndarray:
    """Flat indices of the voxels within two voxels of ``flat`` along every axis (an ellipsoid of
    5 x 5 x 5 voxels less its corners): a wall that partial volume cannot make leak (the PSF reaches one voxel)."""
    off = np.stack(np.meshgrid(*(np.arange(-2, 3),) * 3, indexing="ij"), -1).reshape(-1, 3)
    off = off[(off**2).sum(axis=1) <= 6]
    zyx = np.stack(np.unravel_index(np.unique(flat), SHAPE), -1)
    cand = (zyx[:, None, :] + off[None]).reshape(-1, 3)
    cand = cand[np.all((cand >= 0) & (cand < np.array(SHAPE)), axis=1)]
    return np.ravel_multi_index(cand.T, SHAPE)


def _polyline(nodes, radii) -> tuple[np.ndarray, np.ndarray]:
    """Points along a polyline of (x, y, z) nodes, radii interpolated; as (z, y, x)."""
    nodes = np.asarray(nodes, dtype=float)[:, [2, 1, 0]]
    return _tree_points(list(zip(nodes[:-1], nodes[1:], radii[:-1], radii[1:], strict=False)))


def _tree(rng: np.random.Generator, start, direction, radius: float, length: float, *, min_radius: float,
          max_depth: int, spread: float = 0.55) -> list[tuple[tuple, tuple, float, float]]:
    """A branching tree of segments (start, end, r0, r1), points as (z, y, x) mm: each branch
    splits in two, turned ``spread`` radians (+-40 %) either way about a random axis."""
    def unit(v):
        n = math.sqrt(v[0] ** 2 + v[1] ** 2 + v[2] ** 2)
        return (v[0] / n, v[1] / n, v[2] / n)

    out = []
    stack = [(tuple(float(v) for v in start), unit(direction), radius, length, 0)]
    while stack:
        p, d, r, n, depth = stack.pop()
        end = (p[0] + d[0] * n, p[1] + d[1] * n, p[2] + d[2] * n)
        out.append((p, end, r, r * 0.85))
        if depth >= max_depth or r * 0.72 < min_radius:
            continue
        g = rng.normal(size=3)
        perp = unit((d[1] * g[2] - d[2] * g[1], d[2] * g[0] - d[0] * g[2], d[0] * g[1] - d[1] * g[0]))
        u = rng.uniform(0.6, 1.2, size=2)
        k = rng.uniform((0.74, 0.75), (0.84, 0.92), size=(2, 2))
        for sign, ui, (kr, kn) in zip((1.0, -1.0), u, k, strict=True):
            ca, sa = math.cos(spread * ui), sign * math.sin(spread * ui)
            child = unit(tuple(ca * d[i] + sa * perp[i] for i in range(3)))
            stack.append((end, child, r * kr, n * kn, depth + 1))
    return out


def _tree_points(segments) -> tuple[np.ndarray, np.ndarray]:
    """Points along segments (start, end, r0, r1), close enough that the spheres they stamp
    make a smooth tube (within 0.2 mm of a true cylinder)."""
    a = np.array([seg[0] for seg in segments], dtype=float)
    b = np.array([seg[1] for seg in segments], dtype=float)
    ra = np.array([seg[2] for seg in segments], dtype=float)
    rb = np.array([seg[3] for seg in segments], dtype=float)
    step = np.maximum(0.7, np.minimum(ra, rb) / 3)
    n = np.maximum(2, np.ceil(np.linalg.norm(b - a, axis=1) / step).astype(int) + 1)
    seg = np.repeat(np.arange(len(n)), n)
    t = (np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)) / np.repeat(n - 1, n)
    return a[seg] + t[:, None] * (b - a)[seg], ra[seg] + t * (rb - ra)[seg]


def _body_axes(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Half width and half depth of the body outline at height z: upper abdomen, chest, shoulders."""
    a = 148 + 8 * np.sin(np.pi * np.clip(z / 300, 0, 1)) + 14 * np.clip((z - 240) / 60, 0, 1) ** 2
    b = 108 + 4 * np.sin(np.pi * np.clip(z / 300, 0, 1)) - 10 * np.clip((z - 250) / 50, 0, 1)
    return a, b


def _cavity_axes(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Half width and half depth of the inside of the rib cage, narrowing to the lung apices."""
    top = np.sqrt(np.clip(1 - (np.clip(z - 190, 0, None) / 108) ** 2, 0, 1))
    return (122 + 6 * np.sin(np.pi * np.clip(z / 300, 0, 1))) * (0.2 + 0.8 * top), 80 * (0.45 + 0.55 * top)


CAVITY_CY = -5.0
SPINE_Y = 48.0


def _dome(x, y, side: float, top: float):
    """Height of one diaphragm dome (below it: abdomen), lowest in the posterior recesses."""
    return top - 75 * ((x - side * 55) / 100) ** 2 - 70 * ((y + 15) / 85) ** 2 - 25 * np.clip(y / 80, 0, None)


def _draw(c: _Canvas, rng: np.random.Generator) -> None:
    z, y, x = c.z[:, None, None], c.y[None, :, None], c.x[None, None, :]
    full = (slice(None),) * 3

    # Body outline (flat back on the table), skin, subcutaneous fat, muscle; the rest inside is fat.
    a, b = _body_axes(z)
    cy = 4.0
    s = np.sqrt((x / a) ** 2 + ((y - cy) / b) ** 2)
    grad = np.sqrt((x / a**2) ** 2 + ((y - cy) / b**2) ** 2) + 1e-6
    depth = np.where(s > 0.05, (1 - s) * s / grad, 99.0)  # inward distance from the outline, mm (first order)
    depth = np.minimum(depth, 112 - y)  # the back lies flat on the table
    fat_t = 9 + 9 * (x / a) ** 2 + 5 * np.clip(-y / 100, 0, None) * (z < 110)  # more fat laterally, on the belly
    c.paint(full, depth >= 0, "skin")
    c.paint(full, depth >= 2, "subcutaneous fat")
    c.paint(full, depth >= fat_t, "muscle")
    del s, grad

    # Inside the rib cage.
    ac, bc = _cavity_axes(z)
    q = (x / ac) ** 2 + ((y - CAVITY_CY) / bc) ** 2
    cavity = q <= 1
    c.paint(full, cavity, "mediastinal and abdominal fat")
    cavity_depth = (1 - np.sqrt(q)) * np.minimum(ac, bc)  # rough mm inside the rib cage (< 0 outside)

    # Lungs: the cavity above the diaphragm domes, minus a central strip (the mediastinum).
    dome_r, dome_l = _dome(x, y, -1, 92), _dome(x, y, 1, 80)
    dome = np.where(x < 0, dome_r, dome_l)
    strip = 3 + 21 * np.clip((y + 20) / 60, 0, 1) + 8 * np.clip((z - 190) / 30, 0, 1)
    lungs = cavity & (z > dome) & (np.abs(x) > strip)
    c.paint(full, lungs, "lung")
    c.paint(full, cavity & (z <= dome) & (z > dome - 6), "diaphragm")
    del lungs, q

    # Below the diaphragm: liver on the right, stomach with its gas bubble and the spleen on the left.
    below = cavity & (z <= dome - 6)
    c.paint(full, below & (x < 25 - 0.4 * y) & (y < 62), "liver",
            onto=("mediastinal and abdominal fat",))
    s, zz, yy, xx = c.box((0, 140), (-90, 100), (0, 110))
    stomach = ((xx - 55) / 48) ** 2 + ((yy + 5) / 40) ** 2 + ((zz - 40) / 55) ** 2
    free = c.lab[s] == LABELS["mediastinal and abdominal fat"]
    c.paint(s, (stomach <= 1) & free, "stomach wall")
    ellipsoid = ((xx - 55) / 43) ** 2 + ((yy + 5) / 35) ** 2 + ((zz - 40) / 50) ** 2 <= 1
    inner = ellipsoid & (zz < _dome(xx, yy, 1, 80) - 11)
    c.paint(s, inner & (yy < -18), "stomach gas", onto=("stomach wall",))
    c.paint(s, inner & (yy >= -18), "stomach contents", onto=("stomach wall",))
    spleen = ((xx - 92) / 28) ** 2 + ((yy - 45) / 42) ** 2 + ((zz - 45) / 60) ** 2 <= 1
    c.paint(s, spleen, "spleen", onto=("mediastinal and abdominal fat",))

    _heart_and_vessels(c)
    _spine(c)
    _ribs(c, cavity_depth)
    _shoulders(c)
    _airways_and_lung_vessels(c, rng)

    # Findings: a bulla of emphysema (left upper lobe), a solid nodule (left lower lobe),
    # a ground-glass nodule (right upper lobe).
    s, zz, yy, xx = c.box((20, 130), (-80, 60), (200, 290))
    c.paint(s, ((xx - 66) / 36) ** 2 + ((yy + 12) / 32) ** 2 + ((zz - 248) / 30) ** 2 <= 1, "emphysema",
            onto=("lung", "pulmonary vessel"))
    s, zz, yy, xx = c.box((40, 110), (0, 80), (80, 140))
    c.paint(s, ((xx - 78) ** 2 + (yy - 40) ** 2 + (zz - 110) ** 2) <= 7.5**2, "solid nodule",
            onto=("lung", "pulmonary vessel"))
    s, zz, yy, xx = c.box((-110, -30), (-60, 20), (190, 260))
    c.paint(s, ((xx + 72) ** 2 + (yy + 20) ** 2 + (zz - 225) ** 2) <= 11.0**2, "ground-glass nodule",
            onto=("lung", "pulmonary vessel"))

    # Outside the scan circle the scanner stores padding.
    c.lab[:, (c.y[:, None] ** 2 + c.x[None, :] ** 2) > 175.0**2] = LABELS["outside scan circle"]


def _heart_and_vessels(c: _Canvas) -> None:
    soft = ("lung", "mediastinal and abdominal fat", "diaphragm", "liver")
    # The heart: an ellipsoid whose long axis points to the apex (left, anterior, down).
    s, zz, yy, xx = c.box((-80, 120), (-110, 50), (70, 200))
    centre = np.array([28.0, -28.0, 135.0])  # x, y, z
    e1 = np.array([0.62, -0.5, -0.6])
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(e1, [0.0, 0.0, 1.0])
    e2 /= np.linalg.norm(e2)  # towards the patient's back and left
    e3 = np.cross(e1, e2)
    px, py, pz = xx - centre[0], yy - centre[1], zz - centre[2]
    u = px * e1[0] + py * e1[1] + pz * e1[2]
    v = px * e2[0] + py * e2[1] + pz * e2[2]
    w = px * e3[0] + py * e3[1] + pz * e3[2]

    def ell(cu, cv, cw, ru, rv, rw):
        return ((u - cu) / ru) ** 2 + ((v - cv) / rv) ** 2 + ((w - cw) / rw) ** 2

    def world(cx, cy, cz, rx, ry, rz):
        return ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 + ((zz - cz) / rz) ** 2

    c.paint(s, (ell(0, 0, 0, 66, 50, 46) <= 1) | (world(10, 14, 160, 34, 22, 24) <= 1)
            | (world(-28, -8, 152, 26, 26, 33) <= 1), "mediastinal and abdominal fat", onto=soft)  # pericardial fat
    c.paint(s, (ell(0, 0, 0, 60, 44, 40) <= 1) | (world(10, 14, 160, 30, 18, 20) <= 1)
            | (world(-28, -8, 152, 22, 22, 29) <= 1), "myocardium", onto=soft + ("mediastinal and abdominal fat",))
    lv = ell(8, 10, 2, 42, 20, 22)
    c.paint(s, ell(-4, -22, -4, 44, 15, 30) <= 1, "right ventricle", onto=("myocardium",))
    c.paint(s, lv <= (1 + 10 / 21) ** 2, "myocardium", onto=("right ventricle",))  # the septum
    c.paint(s, lv <= 1, "left ventricle", onto=("myocardium",))
    c.paint(s, world(10, 14, 160, 26, 14, 16) <= 1, "left atrium", onto=("myocardium",))
    c.paint(s, world(-28, -8, 152, 19, 19, 26) <= 1, "right atrium", onto=("myocardium",))

    tubes = soft + ("mediastinal and abdominal fat",)
    # Aorta: ascending, the arch over the pulmonary artery, descending left of the spine.
    pts, r = _polyline([(2, -14, 158), (-6, -22, 195), (-4, -12, 228), (8, 6, 240), (20, 24, 234),
                        (25, 34, 218), (26, 34, 150), (20, 28, 60), (8, 22, -10)],
                       [15, 15, 14, 13, 12.5, 12, 11.5, 11, 10.5])
    c.stamp(pts, r, "aorta", onto=tubes + ("myocardium", "left ventricle", "right ventricle"))
    for nodes in ([(-4, 0, 238), (-16, -8, 260), (-22, -10, 300)], [(8, 6, 240), (8, -4, 300)],
                  [(18, 18, 238), (32, 16, 300)]):
        pts, r = _polyline(nodes, [7, 6.5, 6])
        c.stamp(pts, r, "aorta", onto=tubes)  # the arch's three branches, up into the neck
    # Pulmonary trunk from the right ventricle, then the right and left pulmonary arteries.
    pts, r = _polyline([(22, -48, 168), (14, -22, 190), (8, -6, 194)], [13, 13, 12])
    c.stamp(pts, r, "pulmonary artery", onto=tubes + ("myocardium", "right ventricle", "left ventricle"))
    pts, r = _polyline([(8, -6, 194), (-20, 2, 190), (-44, 6, 186)], [10.5, 10, 9])
    c.stamp(pts, r, "pulmonary artery", onto=tubes)
    pts, r = _polyline([(8, -6, 194), (30, 8, 198), (46, 16, 192)], [10.5, 10, 9])
    c.stamp(pts, r, "pulmonary artery", onto=tubes)
    pts, r = _polyline([(-30, -8, 172), (-30, -10, 215), (-24, -6, 258), (-14, -10, 300)], [11, 11, 10, 9])
    c.stamp(pts, r, "superior vena cava", onto=tubes + ("myocardium", "right atrium"))
    pts, r = _polyline([(6, 30, 300), (4, 30, 200), (14, 26, 110), (30, 12, 70)], [8, 8, 8, 9])
    c.stamp(pts, r, "esophagus", onto=tubes + ("stomach wall",))


def _spine(c: _Canvas) -> None:
    """Vertebrae of 24 mm (body, pedicles, canal, laminae, spinous and transverse processes), discs."""
    s, zz, yy, xx = c.box((-48, 48), (15, 112), (0, 300))
    level = np.mod(300 - zz, 24.0)  # 0 at a vertebra's top, a disc in its last 4.5 mm
    ys = SPINE_Y + 4 * np.sin(np.pi * zz / 300)  # the thoracic curve
    grow = 1 + 0.25 * (1 - zz / 300)  # lower vertebrae are bigger
    rx, ry = 16 * grow, 13 * grow
    body = ((xx / rx) ** 2 + ((yy - ys) / ry) ** 2) <= 1
    shell = ((xx / (rx - 1.6)) ** 2 + ((yy - ys) / (ry - 1.6)) ** 2) > 1
    disc = level > 19.5
    c.paint(s, body & disc, "intervertebral disc")
    c.paint(s, body & ~disc & (shell | (level < 1.2) | (level > 18.3)), "cortical bone")
    c.paint(s, body & ~disc & ~shell & (level >= 1.2) & (level <= 18.3), "vertebral body")
    canal_y = ys + ry + 9
    canal = (xx**2 + (yy - canal_y) ** 2) <= 8.5**2
    # Posterior arch at the upper part of the level; the spinous process runs down and back.
    arch = (level > 2) & (level < 16)
    ring = (xx**2 + (yy - canal_y) ** 2 <= 14.0**2) & (yy > ys + ry - 1) & arch
    pedicle_lam = ring & ~canal
    back = yy - (canal_y + 10)
    spinous = (np.abs(xx) < 3.5) & (back > -2) & (back < 24) & (np.abs(level - 8 - 0.5 * back) < 5)
    transverse = (np.abs(yy - (canal_y - 2) - 0.35 * (np.abs(xx) - 12)) < 4.5) & (np.abs(xx) > 8) & (np.abs(xx) < 38) \
        & (level > 4) & (level < 13)
    bone = pedicle_lam | spinous | transverse
    onto = ("muscle", "subcutaneous fat", "mediastinal and abdominal fat", "lung", "diaphragm", "liver")
    c.paint(s, bone, "cortical bone", onto=onto)
    core = (pedicle_lam & (xx**2 + (yy - canal_y) ** 2 <= 12.5**2) & (xx**2 + (yy - canal_y) ** 2 >= 10.0**2)) \
        | (transverse & (np.abs(yy - (canal_y - 2) - 0.35 * (np.abs(xx) - 12)) < 2.5) & (np.abs(xx) < 35))
    c.paint(s, core & (level > 3.5) & (level < 14.5), "cancellous bone", onto=("cortical bone",))
    c.paint(s, canal, "spinal canal")
    # Paraspinal muscles either side of the spinous processes.
    para = (((np.abs(xx) - 28) / 20) ** 2 + ((yy - (canal_y + 12)) / 17) ** 2) <= 1
    c.paint(s, para, "muscle", onto=("subcutaneous fat", "mediastinal and abdominal fat", "lung"))


def _ribs(c: _Canvas, cavity_depth: np.ndarray) -> None:
    """Twelve pairs of ribs: arcs just outside the lungs that fall 60 mm from back to front,
    the upper seven continued by costal cartilage to the sternum; the sternum; the scapulae."""
    zi, yi, xi = np.nonzero((cavity_depth < -0.5) & (cavity_depth > -9.5))
    z, y, x = c.z[zi], c.y[yi], c.x[xi]
    d = -cavity_depth[zi, yi, xi]  # mm outside the rib cage's inner surface
    # 0 at the back, 1 at the front
    phi = np.arccos(np.clip((y - CAVITY_CY) / np.sqrt(x**2 + (y - CAVITY_CY) ** 2 + 1e-6), -1, 1)) / np.pi
    t = np.clip((phi - 0.1) / 0.65, 0, 1)
    drop = 75 * t * t * (3 - 2 * t)  # near level by the spine, steepest at the side
    i = np.rint((288 - drop - z) / 24.0)  # rib number - 1
    dz = z - (288 - drop - 24 * i)
    ok = (i >= 0) & (i <= 11) & (np.abs(x) > 22)
    end = np.where(i < 7, 0.72, np.where(i < 10, 0.66 - 0.03 * (i - 7), 0.45))  # where bone gives way to cartilage
    cart_end = np.where(i < 7, 1.0, np.where(i < 10, 0.8, 0.0))
    half = np.where(i < 1, 4.0, 5.5)
    rib = ok & (np.abs(dz) < half) & (d > 0.5) & (d < 7.5)
    bone = rib & (phi <= end)
    cart = rib & (phi > end) & (phi <= cart_end)
    core = bone & (np.abs(dz) < half - 1.6) & (d > 2.0) & (d < 6.0)
    allowed = _allowed(("muscle", "subcutaneous fat", "mediastinal and abdominal fat"))[c.lab[zi, yi, xi]]
    for m, name in ((bone, "cortical bone"), (core, "cancellous bone"), (cart, "costal cartilage")):
        m = m & allowed
        c.lab[zi[m], yi[m], xi[m]] = LABELS[name]
    # Sternum: manubrium and body in front of the heart, down to the xiphoid.
    s, zz, yy, xx = c.box((-26, 26), (-115, -60), (112, 256))
    _, bc = _cavity_axes(zz)
    front = CAVITY_CY - bc
    half_w = 12 + 9 * np.clip((zz - 228) / 12, 0, 1)
    st = (np.abs(xx) < half_w) & (yy < front - 0.5) & (yy > front - 11)
    c.paint(s, st, "cortical bone", onto=("muscle", "costal cartilage", "subcutaneous fat"))
    c.paint(s, st & (np.abs(xx) < half_w - 1.6) & (yy < front - 2.1) & (yy > front - 9.4) & (zz > 115) & (zz < 253),
            "cancellous bone", onto=("cortical bone",))


def _shoulders(c: _Canvas) -> None:
    """Axillae, humeral heads and shafts in their deltoids, scapulae and clavicles."""
    s, zz, yy, xx = c.box((-180, 180), (-120, 120), (170, 300))
    a, _ = _body_axes(zz)
    ac, _ = _cavity_axes(zz)
    axilla = (((np.abs(xx) - ac - 48) / 38) ** 2 + (yy / 40) ** 2 <= 1) & (zz > 185)
    c.paint(s, axilla, "axillary fat", onto=("muscle",))
    hx = a - 32
    r = np.where(zz > 272, 21.0, 11.0 + 10 * np.clip((zz - 252) / 20, 0, 1))  # head above, shaft below
    dist = np.sqrt((np.abs(xx) - hx) ** 2 + (yy - 8) ** 2)
    arm = zz > 225
    c.paint(s, arm & (dist <= r + 14), "muscle", onto=("axillary fat", "muscle", "subcutaneous fat"))
    c.paint(s, arm & (dist <= r), "cortical bone")
    c.paint(s, arm & (dist <= r - 2.5) & (zz > 228), "cancellous bone")
    # Scapula: a plate from its medial border to the glenoid, behind the ribs, narrowing downwards.
    t = np.clip((np.abs(xx) - 45) / (hx - 22 - 45), 0, 1)  # 0 medial border .. 1 glenoid
    plate_y = 88 - 70 * t  # the plate curves forward round the chest wall
    low = 190 + 60 * t  # the inferior angle is medial and low
    scap = (np.abs(yy - plate_y) < 3.2) & (np.abs(xx) > 42) & (np.abs(xx) < hx - 20) & (zz > low) & (zz < 288)
    c.paint(s, scap, "cortical bone", onto=("muscle", "axillary fat", "subcutaneous fat"))
    c.paint(s, scap & (np.abs(yy - plate_y) < 1.2), "cancellous bone", onto=("cortical bone",))
    # Clavicles: from the manubrium out and back to the shoulders.
    for side in (-1, 1):
        pts, rr = _polyline([(side * 16, -98, 262), (side * 60, -104, 278), (side * 105, -80, 290),
                             (side * 128, -40, 296)], [7.0, 6.5, 6.5, 7.0])
        c.stamp(pts, rr, "cortical bone", onto=("muscle", "subcutaneous fat", "axillary fat"))
        c.stamp(pts, rr - 2.2, "cancellous bone", onto=("cortical bone",))


def _airways_and_lung_vessels(c: _Canvas, rng: np.random.Generator) -> None:
    # Trachea and main bronchi (walls first, then the lumen, so branches open into each other).
    main = [([(0, 14, 300), (0, 16, 252), (0, 18, 205)], [8.5, 8.5, 8]),
            ([(0, 18, 205), (-26, 22, 190), (-36, 24, 182)], [6.5, 6, 5.5]),
            ([(0, 18, 205), (24, 22, 194), (42, 28, 180)], [6, 5.5, 5])]
    trachea = c.near(*_polyline(*main[0]))
    central = np.concatenate([trachea] + [c.near(*_polyline(nodes, radii)) for nodes, radii in main[1:]])
    # Bronchial trees from the ends of the main bronchi (z, y, x order for the trees).
    trees = []
    for start, direction in (((182, 24, -36), (-0.7, 0.1, -0.7)), ((182, 24, -36), (0.8, 0.1, -0.6)),
                             ((180, 28, 42), (-0.6, 0.2, 0.75)), ((180, 28, 42), (0.8, -0.1, 0.6))):
        trees += _tree(rng, start, direction, 4.6, 24, min_radius=1.4, max_depth=4, spread=0.5)
    peripheral = c.near(*_tree_points(trees))
    wall = _shell(np.concatenate([central, peripheral]))
    c.paint_flat(wall, "airway wall", onto=("mediastinal and abdominal fat", "pulmonary artery", "aorta", "esophagus"))
    c.paint_flat(wall, "bronchial wall", onto=("lung",))
    c.paint_flat(central, "main bronchus", onto=("airway wall", "bronchial wall"))
    c.paint_flat(peripheral, "bronchus", onto=("bronchial wall",))
    c.paint_flat(peripheral, "main bronchus", onto=("airway wall",))
    c.paint_flat(trachea, "trachea", onto=("main bronchus",))
    # Pulmonary arteries and veins: trees from each hilum, tapering to 0.6 mm.
    vessels = []
    for hx, sgn in ((-46, -1.0), (48, 1.0)):
        for dz_, dy_ in ((0.9, 0.0), (0.2, -0.8), (-0.9, 0.2), (-0.3, 0.9), (0.4, 0.6)):
            d = np.array([dz_, dy_, sgn * 0.9])
            vessels += _tree(rng, (188, 8, hx), d, 5.0, 26, min_radius=0.6, max_depth=8, spread=0.45)
        for dz_, dy_ in ((0.5, -0.4), (-0.6, 0.3), (-0.2, -0.7)):
            d = np.array([dz_, dy_, sgn * 0.9])
            vessels += _tree(rng, (160, 16, sgn * 30), d, 4.5, 26, min_radius=0.6, max_depth=8, spread=0.45)
    pts, r = _tree_points(vessels)
    c.stamp(pts, np.maximum(r, 0.75), "pulmonary vessel", onto=("lung",))  # at least the nearest voxel


def _psf(img: np.ndarray) -> np.ndarray:
    """The scanner's point spread function, in place: [1 4 1]/6 across (about 1.3 mm full width at
    half maximum at 1.4 mm pixels), [1 6 1]/8 along z (the slice profile)."""
    for axis, k in ((1, [1 / 6, 4 / 6, 1 / 6]), (2, [1 / 6, 4 / 6, 1 / 6]), (0, [0.125, 0.75, 0.125])):
        ndimage.correlate1d(img, np.array(k, np.float32), axis=axis, output=img, mode="nearest")
    return img


def _noise(rng: np.random.Generator, shape: tuple[int, ...] = SHAPE) -> np.ndarray:
    """CT-like noise: white noise band-passed in-plane by L - L^2 (L the [1 2 1]/4 binomial), so
    its power spectrum, cos^2 sin^2 per axis, is zero at DC and Nyquist and peaks between;
    scaled to NOISE_SD and cut at 4 SD (no voxel's noise exceeds 48 HU)."""
    def low(a: np.ndarray) -> np.ndarray:
        for axis in (1, 2):
            ndimage.correlate1d(a, np.array([0.25, 0.5, 0.25], np.float32), axis=axis, output=a, mode="wrap")
        return a

    # Uniform bytes are cheaper than Gaussian floats; after the filter they are near Gaussian.
    w = low(rng.integers(0, 256, size=shape, dtype=np.uint8).astype(np.float32))
    w -= low(w.copy())
    delta = np.zeros((1, 15, 15), np.float32)
    delta[0, 7, 7] = 1
    one = low(delta.copy())
    h = one - low(one.copy())
    white_sd = np.sqrt((256.0**2 - 1) / 12)
    w *= np.float32(NOISE_SD / (white_sd * np.sqrt(float((h**2).sum()))))
    np.clip(w, -4 * NOISE_SD, 4 * NOISE_SD, out=w)
    return w


def build_chest() -> tuple[np.ndarray, np.ndarray]:
    """The chest phantom: (raw HU with -2000 outside the scan circle, labels).

    Returns
    -------
    raw : (120, 256, 256) int16 ndarray
        HU as a scanner stores them: padding (-2000) outside the scan circle, -1024 .. 3071 inside.
    labels : (120, 256, 256) uint8 ndarray
        Values from :data:`LABELS`.
    """
    rng = np.random.default_rng(_SEED)
    c = _Canvas()
    _draw(c, rng)
    lab = c.lab
    lut = np.zeros(256, dtype=np.float32)
    for name, value in TISSUE_HU.items():
        lut[LABELS[name]] = value
    lut[LABELS["outside scan circle"]] = TISSUE_HU["air"]  # the scanner sees air there
    img = _psf(lut[lab])
    img += _noise(rng)
    np.rint(img, out=img)
    np.clip(img, hu.AIR, hu.TOP, out=img)
    raw = img.astype(np.int16)
    raw[lab == LABELS["outside scan circle"]] = hu.PADDING_STORED
    return raw, lab
