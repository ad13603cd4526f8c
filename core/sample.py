"""The built-in sample: a deterministic synthetic chest CT with realistic HU and its label map."""

from __future__ import annotations

import functools

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from core import hu
from core.dicom_writer import dicom_bytes, set_int16_pixels, set_padding_value
from core.volume import Volume

__all__ = ["LABELS", "TISSUE_HU", "sample_ct", "sample_ct_files", "sample_labels"]

SHAPE = (120, 256, 256)
SPACING = (2.5, 1.4, 1.4)  # dz, dy, dx in mm: a 358 mm field of view, 300 mm long

LABELS: dict[str, int] = {
    "outside scan circle": 0,
    "air": 1,
    "skin": 2,
    "fat": 3,
    "muscle": 4,
    "lung": 5,
    "vessel": 6,
    "heart": 7,
    "aorta": 8,
    "liver": 9,
    "cancellous bone": 10,
    "cortical bone": 11,
    "airway": 12,
    "spinal canal": 13,
}

# Mean HU of each label; Gaussian noise of NOISE_SD is added inside the scan circle.
TISSUE_HU: dict[str, int] = {
    "outside scan circle": hu.PADDING_STORED,
    "air": -1000,
    "skin": 40,
    "fat": -100,
    "muscle": 45,
    "lung": -850,
    "vessel": 40,
    "heart": 45,
    "aorta": 50,
    "liver": 60,
    "cancellous bone": 250,
    "cortical bone": 1200,
    "airway": -1000,
    "spinal canal": 10,
}
NOISE_SD = 10.4

SERIES_UID = generate_uid(entropy_srcs=["hounsfield sample chest ct series"])
STUDY_UID = generate_uid(entropy_srcs=["hounsfield sample chest ct study"])
FRAME_UID = generate_uid(entropy_srcs=["hounsfield sample chest ct frame"])


def _ellipse(x: np.ndarray, y: np.ndarray, cx: float, cy: float, ax: np.ndarray | float, ay: np.ndarray | float) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return ((x - cx) / ax) ** 2 + ((y - cy) / ay) ** 2 <= 1.0


@functools.lru_cache(maxsize=1)
def _build() -> tuple[np.ndarray, np.ndarray]:
    """(raw HU with padding at -2000, labels), both (120, 256, 256), read-only."""
    nz, ny, nx = SHAPE
    dz, dy, dx = SPACING
    z = (np.arange(nz, dtype=np.float32) * dz)[:, None, None]  # 0 (inferior) .. 297.5 mm
    y = ((np.arange(ny, dtype=np.float32) - (ny - 1) / 2) * dy)[None, :, None]  # + is posterior
    x = ((np.arange(nx, dtype=np.float32) - (nx - 1) / 2) * dx)[None, None, :]  # + is patient left
    lab = np.full(SHAPE, LABELS["air"], dtype=np.uint8)

    def paint(mask: np.ndarray, name: str) -> None:
        np.copyto(lab, np.uint8(LABELS[name]), where=np.broadcast_to(mask, SHAPE))

    # Body: an ellipse that narrows a little towards the shoulders; skin, fat, muscle.
    taper = 1.0 - 0.08 * (z / 300.0)
    bax, bay, bcy = 150.0 * taper, 105.0 * taper, 5.0
    body = _ellipse(x, y, 0, bcy, bax, bay)
    paint(body, "skin")
    paint(_ellipse(x, y, 0, bcy, bax - 2.5, bay - 2.5), "fat")
    inner = _ellipse(x, y, 0, bcy, bax - 16, bay - 14)
    paint(inner, "muscle")

    def ellipsoid(cx: float, cy: float, cz: float, ax: float, ay: float, az: float) -> tuple[tuple[slice, ...], np.ndarray]:
        """An ellipsoid's mask within its bounding box only (much cheaper than the whole grid)."""
        box = tuple(
            slice(max(0, int(np.floor((c0 - a) / d + off))), min(n, int(np.ceil((c0 + a) / d + off)) + 1))
            for c0, a, d, off, n in ((cz, az, dz, 0.0, nz), (cy, ay, dy, (ny - 1) / 2, ny), (cx, ax, dx, (nx - 1) / 2, nx))
        )
        m = ((x[:, :, box[2]] - cx) / ax) ** 2 + ((y[:, box[1], :] - cy) / ay) ** 2 + ((z[box[0]] - cz) / az) ** 2 <= 1.0
        return box, m

    def paint_box(box: tuple[slice, ...], mask: np.ndarray, name: str, *, onto: tuple[str, ...]) -> None:
        sub = lab[box]
        allowed = np.isin(sub, [LABELS[o] for o in onto])
        sub[mask & allowed] = LABELS[name]

    # Liver under the right lung (patient right is -x), lungs around the heart, inside the muscle.
    box, m = ellipsoid(-55, 5, 55, 85, 75, 65)
    paint_box(box, m, "liver", onto=("muscle",))
    for cx, cz, ax, az in ((-68, 200, 52, 115), (70, 195, 50, 110)):
        box, m = ellipsoid(cx, 0, cz, ax, 62, az)
        paint_box(box, m, "lung", onto=("muscle",))
    box, m = ellipsoid(22, -28, 125, 55, 45, 48)
    paint_box(box, m, "heart", onto=("muscle", "lung", "liver"))

    # Pulmonary vessels: tapering tubes from each hilum outwards, only inside the lungs.
    rng = np.random.default_rng(20261125)
    pts, radii = [], []
    for hx in (-40.0, 42.0):
        for _ in range(26):
            start = np.array([190.0, -8.0, hx])  # z, y, x
            direction = rng.normal(size=3) * np.array([1.0, 0.7, 0.8]) + np.array([0.0, 0.0, np.sign(hx) * 0.9])
            direction /= np.linalg.norm(direction)
            length = rng.uniform(50, 95)
            t = np.arange(0, length, 1.0)[:, None]
            pts.append(start + t * direction)
            radii.append(np.linspace(3.0, 1.2, len(t)))
    p = np.concatenate(pts)
    rad = np.concatenate(radii)
    idx = np.rint(p / np.array([dz, dy, dx]) + np.array([0, (ny - 1) / 2, (nx - 1) / 2])).astype(int)
    off = np.stack(np.meshgrid(np.arange(-1, 2), np.arange(-2, 3), np.arange(-2, 3), indexing="ij"), -1).reshape(-1, 3)
    dist = np.linalg.norm(off * np.array([dz, dy, dx]), axis=1)
    cand = idx[:, None, :] + off[None, :, :]
    keep = dist[None, :] <= rad[:, None] + 0.5
    cand = cand[keep]
    inside = np.all((cand >= 0) & (cand < np.array(SHAPE)), axis=1)
    cand = cand[inside]
    sel = lab[cand[:, 0], cand[:, 1], cand[:, 2]] == LABELS["lung"]
    cand = cand[sel]
    lab[cand[:, 0], cand[:, 1], cand[:, 2]] = LABELS["vessel"]

    # Descending aorta beside the spine, trachea above the heart.
    paint(_ellipse(x, y, 18, 42, 12, 12) & (z > 60) & (z < 265), "aorta")
    paint(_ellipse(x, y, 0, -30, 9, 8) & (z > 235), "airway")

    # Spine: vertebral body (cortical rim, cancellous core), posterior arch, canal.
    paint(_ellipse(x, y, 0, 72, 19, 16), "cortical bone")
    paint(_ellipse(x, y, 0, 72, 16.5, 13.5), "cancellous bone")
    paint(_ellipse(x, y, 0, 96, 13, 11), "cortical bone")
    paint(_ellipse(x, y, 0, 96, 7, 6), "spinal canal")

    # Ribs: bands of an elliptic ring every 26 mm, sparing the anterior cartilage.
    phase = np.mod(z - 70, 26.0)
    rib_z = (phase < 9.0) & (z > 60) & (z < 285)
    ring_out = _ellipse(x, y, 0, bcy, bax - 17, bay - 15)
    ring_in = _ellipse(x, y, 0, bcy, bax - 26, bay - 24)
    cortex_in = _ellipse(x, y, 0, bcy, bax - 19, bay - 17)
    cortex_out = _ellipse(x, y, 0, bcy, bax - 24, bay - 22)
    lateral = ~((np.abs(x) < 45) & (y < 0))
    rib = ring_out & ~ring_in & rib_z & lateral
    paint(rib, "cortical bone")
    rib_core = cortex_in & ~cortex_out & rib_z & (phase > 1.5) & (phase < 7.5) & lateral
    paint(rib_core, "cancellous bone")
    # Sternum in front of the heart.
    sternum = (np.abs(x) < 16) & (y > -bay + bcy + 14) & (y < -bay + bcy + 26) & (z > 110) & (z < 265)
    paint(sternum, "cortical bone")
    paint((np.abs(x) < 13) & (y > -bay + bcy + 16) & (y < -bay + bcy + 24) & (z > 112) & (z < 263), "cancellous bone")

    # Scan circle: outside it the scanner stores padding.
    radius = 175.0
    outside = np.broadcast_to((x**2 + y**2) > radius**2, SHAPE)
    lab[outside] = LABELS["outside scan circle"]

    lut = np.zeros(max(LABELS.values()) + 1, dtype=np.int16)
    for name, value in TISSUE_HU.items():
        lut[LABELS[name]] = value
    raw = lut[lab]
    # Noise: the sum of two uniform bytes is a bell-ish curve with SD 104; /10 gives about
    # NOISE_SD HU, all in int16 (much faster than Gaussian floats on 8 million voxels).
    noise = rng.integers(0, 256, size=SHAPE, dtype=np.uint8).astype(np.int16)
    noise += rng.integers(0, 256, size=SHAPE, dtype=np.uint8)
    noise -= 255
    noise //= 10
    noise[outside] = 0
    raw += noise
    np.clip(raw, hu.AIR, hu.TOP, out=raw, where=~outside)
    raw.flags.writeable = False
    lab.flags.writeable = False
    return raw, lab


def sample_labels() -> np.ndarray:
    """The tissue label map the sample was drawn from.

    Returns
    -------
    labels : (120, 256, 256) uint8 ndarray, read-only
        Values from :data:`LABELS`, aligned voxel for voxel with :func:`sample_ct`.
    """
    return _build()[1]


@functools.lru_cache(maxsize=1)
def sample_ct() -> Volume:
    """The built-in sample: a synthetic axial chest CT, 120 x 256 x 256 voxels.

    Deterministic (seeded), int16 HU, padding outside the scan circle already set to
    air (-1024) and recorded in ``padding``, as :func:`core.load_series` does for a
    scanner's series. Cached: every call returns the same read-only object.
    """
    raw, lab = _build()
    headers = tuple(_sample_header(k) for k in range(SHAPE[0]))  # a fictitious patient, as a scanner writes
    outside = lab == LABELS["outside scan circle"]
    voxels = raw.copy()
    voxels[outside] = hu.AIR
    nz, ny, nx = SHAPE
    dz, dy, dx = SPACING
    x0, y0 = -(nx - 1) / 2 * dx, -(ny - 1) / 2 * dy
    positions = np.stack([np.full(nz, x0), np.full(nz, y0), np.arange(nz) * dz - 150.0], axis=1)
    return Volume(
        voxels=voxels,
        spacing=SPACING,
        series_uid=SERIES_UID,
        modality="CT",
        warnings=[],
        positions=positions,
        row_direction=np.array([1.0, 0.0, 0.0]),
        col_direction=np.array([0.0, 1.0, 0.0]),
        description="Synthetic chest CT (built-in sample)",
        window=(40.0, 400.0),
        summary={
            "Modality": "CT",
            "Manufacturer": "Hounsfield (synthetic)",
            "Slices": nz,
            "Rows": ny,
            "Columns": nx,
            "Spacing (mm)": SPACING,
            "Orientation": "axial",
        },
        header=headers[0],
        padding=np.packbits(outside, axis=-1),
        invert=False,
        units="HU",
        source_names=tuple(f"sample/slice{k + 1:03d}.dcm" for k in range(nz)),
        slice_headers=headers,
    )


def _sample_header(k: int) -> Dataset:
    """The header of slice ``k`` of the sample, as a scanner would write it (no pixel data)."""
    nz, ny, nx = SHAPE
    dz, dy, dx = SPACING
    x0, y0 = -(nx - 1) / 2 * dx, -(ny - 1) / 2 * dy
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    sop = generate_uid(entropy_srcs=["hounsfield sample", str(k)])
    ds.file_meta.MediaStorageSOPInstanceUID = sop
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = sop
    ds.PatientName = "SAMPLE^SYNTHETIC"
    ds.PatientID = "HOUNSFIELD-SAMPLE"
    ds.StudyInstanceUID = STUDY_UID
    ds.SeriesInstanceUID = SERIES_UID
    ds.FrameOfReferenceUID = FRAME_UID
    ds.Modality = "CT"
    ds.SeriesDescription = "Synthetic chest CT (built-in sample)"
    ds.Manufacturer = "Hounsfield (synthetic)"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SeriesNumber = 1
    ds.InstanceNumber = k + 1
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.ImagePositionPatient = [round(x0, 4), round(y0, 4), round(k * dz - 150.0, 4)]
    ds.PixelSpacing = [dy, dx]
    ds.SliceThickness = dz
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = ny, nx
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    set_padding_value(ds, hu.PADDING_STORED)
    ds.RescaleIntercept = hu.AIR  # stored 0 is air
    ds.RescaleSlope = 1
    ds.RescaleType = "HU"
    ds.WindowCenter = 40
    ds.WindowWidth = 400
    return ds


def sample_ct_files(*, slices: slice | None = None) -> list[tuple[str, bytes]]:
    """The sample written as a DICOM CT series, one ``(name, bytes)`` pair per slice.

    Stored values are signed with Rescale Intercept -1024 and the scan-circle padding
    stored as -2000 with (0028,0120) Pixel Padding Value, as many scanners write it.
    The patient is fictitious ("SAMPLE^SYNTHETIC").

    Parameters
    ----------
    slices : slice, optional
        Write only these slices (all by default).
    """
    raw, _ = _build()
    out = []
    for k in range(SHAPE[0])[slices or slice(None)]:
        stored = raw[k].astype(np.int32) - hu.AIR
        stored[raw[k] == hu.PADDING_STORED] = hu.PADDING_STORED
        ds = _sample_header(k)
        set_int16_pixels(ds, stored)
        out.append((f"sample/slice{k + 1:03d}.dcm", dicom_bytes(ds)))
    return out
