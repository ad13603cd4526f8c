"""HU histograms and tissue statistics, exact and fast on int16 volumes."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from core import hu

__all__ = [
    "DEFAULT_HU_RANGE",
    "TISSUE_BANDS",
    "Band",
    "BandCount",
    "ValueCounts",
    "array_statistics",
    "band_counts",
    "bin_edges",
    "hu_histogram",
    "round_bin_width",
    "value_counts",
    "value_statistics",
]

# Air to the top of what 12-bit CT stores (3071 HU): what a CT histogram opens on.
DEFAULT_HU_RANGE = (-1100, 3100)


def round_bin_width(value_range: tuple[float, float], *, bins: int = 80) -> float:
    """A round bin width (1, 2 or 5 times a power of ten, or 2.5 times one) that gives about ``bins`` bins.

    ``(-1100, 3100)`` gives 50 (84 bins) instead of 52.5; ``(-1000, 1000)`` gives 25 (80 bins).

    Raises
    ------
    ValueError
        When the range is empty or ``bins`` is not positive.
    """
    lo, hi = value_range
    if not hi > lo or bins < 1:
        raise ValueError(f"value_range must be (low, high) with high > low and bins >= 1, got {value_range}, {bins}")
    raw = (hi - lo) / bins
    power = 10.0 ** np.floor(np.log10(raw))
    candidates = [m * power for m in (1, 2, 2.5, 5, 10)]
    return float(min(candidates, key=lambda w: (abs((hi - lo) / w - bins), w)))


@dataclass(frozen=True)
class Band:
    """A tissue's usual HU range, half-open ``[low, high)``, with its display colour."""

    name: str
    low: float
    high: float
    color: str


# Approximate ranges at 120 kVp; scanners and kernels shift them by tens of HU. Fat
# and muscle follow the body-composition convention (-190..-30, -29..150 is common; here
# muscle/soft tissue stops at 80 so that blood with contrast gets its own band).
TISSUE_BANDS: tuple[Band, ...] = (
    Band("Air", -1100, hu.LOW_ATTENUATION, "#5c6bc0"),
    Band("Lung", hu.LOW_ATTENUATION, -500, "#29b6f6"),
    Band("Fat", -190, -30, "#ffca28"),
    Band("Water and fluid", -30, 20, "#26c6da"),
    Band("Soft tissue", 20, 80, "#ef5350"),
    Band("Blood and contrast", 80, 300, "#ec407a"),
    Band("Cancellous bone", 300, 700, "#bdbdbd"),
    Band("Cortical bone", 700, hu.TOP + 1, "#fafafa"),
)


@dataclass(frozen=True)
class ValueCounts:
    """How many voxels hold each integer value: ``counts[i]`` voxels equal ``offset + i``.

    Every histogram and statistic of an integer volume follows exactly from this.
    """

    offset: int
    counts: np.ndarray  # int64

    @property
    def total(self) -> int:
        return int(self.counts.sum())

    @property
    def values(self) -> np.ndarray:
        return np.arange(self.offset, self.offset + self.counts.size)


def _chunk_slices(shape: tuple[int, ...]) -> int:
    # OpenCV counts in float32: keep every chunk below 2**24 voxels so counts stay exact.
    per_slice = int(np.prod(shape[1:])) or 1
    return max(1, (1 << 23) // per_slice)


def value_counts(
    voxels: np.ndarray,
    *,
    mask: np.ndarray | None = None,
    padding: np.ndarray | None = None,
) -> ValueCounts:
    """Count every value of an integer volume (int16, uint16, int8 or uint8).

    Parameters
    ----------
    voxels : (S, R, C) or (R, C) integer ndarray
    mask : bool ndarray of the same shape, optional
        Voxels to count (True); all by default.
    padding : uint8 ndarray, optional
        Voxels to leave out, packed with ``numpy.packbits`` along the last axis (as
        :attr:`core.volume.Volume.padding` holds them).

    Returns
    -------
    ValueCounts
        Exact int64 counts over the dtype's whole range.

    Raises
    ------
    TypeError
        For a float or wide integer volume (use :func:`hu_histogram`, which falls back
        to ``numpy.histogram``).
    """
    v = np.asarray(voxels)
    if v.dtype not in (np.int16, np.uint16, np.int8, np.uint8):
        raise TypeError(f"value_counts needs 8- or 16-bit integer voxels, got {v.dtype}")
    if v.ndim == 2:
        v = v[None]
        mask = None if mask is None else np.asarray(mask)[None]
        padding = None if padding is None else np.asarray(padding)[None]
    if mask is not None and mask.shape != v.shape:
        raise ValueError(f"mask shape {mask.shape} does not match voxels shape {v.shape}")
    info = np.iinfo(v.dtype)
    nvalues = info.max - info.min + 1
    out = np.zeros(nvalues, dtype=np.int64)
    step = _chunk_slices(v.shape)
    cols = v.shape[2]
    for s in range(0, v.shape[0], step):
        chunk = v[s:s + step]
        if v.dtype == np.int16:
            chunk = chunk.view(np.uint16) ^ np.uint16(0x8000)
        elif v.dtype == np.int8:
            chunk = chunk.view(np.uint8) ^ np.uint8(0x80)
        flat = np.ascontiguousarray(chunk).reshape(-1)
        keep = None
        if mask is not None:
            keep = np.asarray(mask[s:s + step], dtype=bool)
        if padding is not None:
            pad = np.unpackbits(padding[s:s + step], axis=-1, count=cols).astype(bool)
            keep = ~pad if keep is None else (keep & ~pad)
        keep_flat = None if keep is None else np.ascontiguousarray(keep).reshape(-1).view(np.uint8)
        for a in range(0, flat.size, 1 << 23):
            piece = flat[a:a + (1 << 23)].reshape(1, -1)
            cv_mask = None if keep_flat is None else keep_flat[a:a + (1 << 23)].reshape(1, -1)
            hist = cv2.calcHist([piece], [0], cv_mask, [nvalues], [0, nvalues], accumulate=False)
            out += hist.ravel().astype(np.int64)
    return ValueCounts(int(info.min), out)


def bin_edges(bin_width: float, hu_range: tuple[float, float]) -> np.ndarray:
    """Edges from ``hu_range[0]`` in steps of ``bin_width``; the last edge is ``hu_range[1]``.

    The last bin is narrower when the range is not a whole number of bins.
    """
    lo, hi = float(hu_range[0]), float(hu_range[1])
    bw = float(bin_width)
    if not (np.isfinite(lo) and np.isfinite(hi) and hi > lo):
        raise ValueError(f"hu_range must be (low, high) with low < high, got {hu_range!r}")
    if not (np.isfinite(bw) and bw > 0):
        raise ValueError(f"bin_width must be positive, got {bin_width!r}")
    n = int(np.ceil((hi - lo) / bw - 1e-9))
    if n > 100_000:
        raise ValueError(f"{n} bins is too many; use a bin width of at least {(hi - lo) / 100_000:g}")
    edges = lo + bw * np.arange(n + 1, dtype=np.float64)
    edges[-1] = hi
    return edges


def hu_histogram(
    voxels: np.ndarray | ValueCounts,
    *,
    bin_width: float = 10,
    hu_range: tuple[float, float] = DEFAULT_HU_RANGE,
    mask: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Histogram of HU values, identical to ``numpy.histogram(voxels[mask], edges)``.

    Parameters
    ----------
    voxels : ndarray or ValueCounts
        The values (any shape), or their :func:`value_counts` (then ``mask`` is unused).
    bin_width : float
        In HU; 10 by default.
    hu_range : (low, high)
        Values outside are not counted; ``high`` itself falls in the last bin, as in
        ``numpy.histogram``.
    mask : bool ndarray, optional
        Voxels to count.

    Returns
    -------
    counts : (N,) int64 ndarray
    edges : (N + 1,) float64 ndarray
        See :func:`bin_edges`.
    """
    edges = bin_edges(bin_width, hu_range)
    if isinstance(voxels, ValueCounts):
        vc = voxels
    else:
        v = np.asarray(voxels)
        if v.dtype not in (np.int16, np.uint16, np.int8, np.uint8):
            data = v if mask is None else v[np.asarray(mask, dtype=bool)]
            counts, _ = np.histogram(data, bins=edges)
            return counts.astype(np.int64), edges
        if v.ndim not in (2, 3):
            v = v.reshape(1, 1, -1)
        m = None if mask is None else np.asarray(mask, dtype=bool).reshape(v.shape)
        vc = value_counts(v, mask=m)
    # Map every integer value to its numpy bin: edges[i] <= v < edges[i+1], v == edges[-1] in the last.
    values = vc.values.astype(np.float64)
    idx = np.searchsorted(edges, values, side="right") - 1
    idx[values == edges[-1]] = len(edges) - 2
    inside = (idx >= 0) & (idx < len(edges) - 1)
    counts = np.bincount(idx[inside], weights=vc.counts[inside], minlength=len(edges) - 1)
    return np.rint(counts).astype(np.int64), edges


def value_statistics(vc: ValueCounts, *, percentiles: tuple[float, ...] = (1, 5, 25, 75, 95, 99)) -> dict[str, float]:
    """Count, mean, median, SD, min, max and percentiles, exact from value counts.

    Percentiles use numpy's default ("linear") definition, so they equal
    ``numpy.percentile`` of the voxels themselves.
    """
    n = vc.total
    if n == 0:
        return {"count": 0}
    nz = np.flatnonzero(vc.counts)
    vals = (vc.offset + nz).astype(np.float64)
    cnt = vc.counts[nz].astype(np.float64)
    mean = float((vals * cnt).sum() / n)
    var = float((cnt * (vals - mean) ** 2).sum() / n)
    cum = np.cumsum(vc.counts[nz])

    def quantile(q: float) -> float:
        # Position in the sorted voxels, as numpy's linear method: (n - 1) * q.
        pos = (n - 1) * q / 100.0
        lo_i, frac = int(np.floor(pos)), pos - np.floor(pos)
        a = vals[np.searchsorted(cum, lo_i, side="right")]
        b = vals[np.searchsorted(cum, min(lo_i + 1, n - 1), side="right")]
        return float(a + (b - a) * frac)

    out = {"count": n, "mean": mean, "median": quantile(50), "sd": float(np.sqrt(var)),
           "min": float(vals[0]), "max": float(vals[-1])}
    for p in percentiles:
        out[f"p{p:g}"] = quantile(p)
    return out


def array_statistics(values: np.ndarray, *,
                     percentiles: tuple[float, ...] = (1, 5, 25, 75, 95, 99)) -> dict[str, float]:
    """The same statistics as :func:`value_statistics`, for float values (computed directly)."""
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size == 0:
        return {"count": 0}
    out = {"count": int(v.size), "mean": float(v.mean()), "median": float(np.median(v)), "sd": float(v.std()),
           "min": float(v.min()), "max": float(v.max())}
    for p, q in zip(percentiles, np.percentile(v, percentiles), strict=True):
        out[f"p{p:g}"] = float(q)
    return out


@dataclass(frozen=True)
class BandCount:
    """How many of the counted voxels fall in one tissue band."""

    band: Band
    voxels: int
    fraction: float  # of the counted voxels, 0..1 (0 when none were counted)
    volume_ml: float


def band_counts(vc: ValueCounts, voxel_volume_mm3: float, *, bands: tuple[Band, ...] = TISSUE_BANDS) -> list[BandCount]:
    """Per tissue band, in the order of ``bands``: voxel count, fraction of the counted voxels, volume in mL."""
    n = vc.total
    values = vc.values
    out = []
    for b in bands:
        sel = (values >= b.low) & (values < b.high)
        count = int(vc.counts[sel].sum())
        out.append(BandCount(b, count, count / n if n else 0.0, count * voxel_volume_mm3 / 1000.0))
    return out
