"""Cohorts: the Data Science Bowl preprocessing and lung measures over many studies, on Dask distributed.

One pure function, :func:`measure_study`, takes one study (a folder, a zip, or the files of one
study in a flat folder) from files to a table row: load, HU, corrected geometry, isotropic
resampling, lungs, measures and optional arrays for training. :func:`run_cohort` runs it over a
cohort on a Dask ``LocalCluster`` (default) or any scheduler address; only the rows travel back
to the client, the volumes stay on the workers. The command line is ``python -m core.cohort``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import time
import traceback
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["ARRAY_FORMATS", "COLUMNS", "HIST_EDGES", "CohortResult", "StudySource", "Tally", "ZipStudy",
           "discover_studies", "isotropic", "local_cluster", "measure_study", "outliers", "process_cluster",
           "read_table", "run_cohort", "run_studies", "studies_in_zip", "write_table"]

ARRAY_FORMATS = ("none", "nifti", "npz")
HIST_EDGES = np.arange(-1100, 2001, 10)  # the histogram column: 10 HU bins, air to dense bone
JOURNAL = ".cohort_rows.jsonl"  # one JSON row per finished study, appended as they arrive (resume)
_DICOM_SUFFIXES = {"", ".dcm", ".dicom", ".ima"}

COLUMNS = [
    "study", "status", "reason", "series_uid", "series_choice", "slices", "rows", "cols", "source_spacing_mm",
    "slice_thickness_mm", "tilt_deg", "warnings", "spacing_mm", "iso_shape", "lung_volume_ml",
    "emphysema_index_pct", "perc15_hu", "mean_lung_hu", "band_air_ml", "band_lung_ml", "band_fat_ml",
    "band_water_and_fluid_ml", "band_soft_tissue_ml", "band_blood_and_contrast_ml", "band_cancellous_bone_ml",
    "band_cortical_bone_ml", "arrays", "seconds", "hu_histogram",
]


@dataclass(frozen=True)
class StudySource:
    """One study of a cohort: its name in the table and what its files are read from (paths, or
    ``(name, bytes)`` pairs for a study taken from an uploaded zip)."""

    name: str
    paths: tuple[Any, ...]


# -- finding the studies --------------------------------------------------------------------

def discover_studies(root: str | os.PathLike) -> list[StudySource]:
    """The studies under ``root``, sorted by name.

    Each direct sub-folder or ``.zip`` of ``root`` is one study, named by it. A flat folder
    (DICOM files directly in ``root``, no sub-folders or zips) is split by StudyInstanceUID
    (0020,000D) read from the headers, each study named by its UID.

    Raises
    ------
    FileNotFoundError
        If ``root`` is not a folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"cohort root {str(root)!r} is not a folder")
    entries = sorted(p for p in root.iterdir() if not p.name.startswith("."))
    studies = [StudySource(p.name, (str(p),)) for p in entries
               if p.is_dir() or (p.is_file() and p.suffix.lower() == ".zip")]
    if studies:
        return studies
    return _studies_of_flat_folder([p for p in entries if p.is_file()])


def _studies_of_flat_folder(files: list[Path]) -> list[StudySource]:
    import pydicom

    by_study: dict[str, list[str]] = {}
    unreadable: list[str] = []
    for f in files:
        try:
            ds = pydicom.dcmread(f, stop_before_pixels=True, specific_tags=["StudyInstanceUID"])
            uid = str(ds.get("StudyInstanceUID", "") or "")
        except Exception:  # noqa: BLE001 - any unreadable file goes to a study of its own kind
            uid = ""
        (by_study.setdefault(uid, []) if uid else unreadable).append(str(f))
    studies = [StudySource(uid, tuple(paths)) for uid, paths in sorted(by_study.items())]
    if unreadable:  # kept, so that the table says why they were not used
        studies.append(StudySource("unreadable files", tuple(unreadable)))
    return studies


@dataclass(frozen=True)
class ZipStudy:
    """One study inside an uploaded zip of studies: its name, its members and their declared size."""

    name: str
    members: tuple[str, ...]
    nbytes: int

    def source(self, zf: zipfile.ZipFile) -> StudySource:
        """The study's files read into memory, as ``(name, bytes)`` pairs (nothing touches the disk)."""
        return StudySource(self.name, tuple((m, zf.read(m)) for m in self.members))


def studies_in_zip(zf: zipfile.ZipFile, *, label: str = "upload") -> list[ZipStudy]:
    """The studies of a zip laid out like a cohort root: each top-level folder or ``.zip`` is one study.

    A zip holding one folder that holds the studies is read as that folder; files lying at the
    top level form one study named ``label``. Nothing is read but the directory.
    """
    infos = [i for i in zf.infolist() if not i.is_dir() and not _hidden(i.filename)]
    parts = [i.filename.split("/") for i in infos]
    strip = 0
    while (parts and len({p[strip] for p in parts}) == 1 and all(len(p) > strip + 1 for p in parts)
           and any(len(p) > strip + 2 or p[-1].lower().endswith(".zip") for p in parts)):
        strip += 1  # one enclosing folder that holds folders or zips: the studies are inside it
    groups: dict[str, list[zipfile.ZipInfo]] = {}
    for info, p in zip(infos, parts, strict=True):
        rest = p[strip:]
        name = rest[0] if len(rest) > 1 or rest[0].lower().endswith(".zip") else label
        groups.setdefault(name, []).append(info)
    return [ZipStudy(name, tuple(i.filename for i in members), sum(i.file_size for i in members))
            for name, members in sorted(groups.items())]


def _hidden(name: str) -> bool:
    return any(part.startswith(".") or part == "__MACOSX" for part in name.split("/"))


# -- one study ------------------------------------------------------------------------------

def isotropic(volume, *, spacing: float = 1.0):
    """A regular volume resampled to isotropic ``spacing`` mm (trilinear), the DSB step.

    Output planes, rows and columns sit exactly ``spacing`` mm apart from the first voxel
    (the last partial step is dropped, so geometry stays exact). Works plane by plane:
    memory is the output plus two float32 planes.

    Parameters
    ----------
    volume : Volume
        Regular (``volume.is_regular``); correct tilt and gaps first (:func:`core.resample.resample_regular`).
    spacing : float
        Output voxel size in mm.

    Returns
    -------
    Volume
        ``int16`` voxels when the input is integral, else ``float32``; ``spacing`` ``(s, s, s)``.
    """
    from scipy import ndimage

    if not (spacing > 0 and math.isfinite(spacing)):
        raise ValueError(f"spacing must be a positive number of mm, got {spacing!r}")
    src = volume.voxels
    shape_in = np.array(src.shape)
    sp_in = np.array(volume.spacing, dtype=float)
    shape_out = np.floor((shape_in - 1) * sp_in / spacing + 1e-6).astype(int) + 1
    step = spacing / sp_in  # input index step per output index, per axis
    integral = np.issubdtype(src.dtype, np.integer)
    out = np.empty(tuple(shape_out), dtype=src.dtype if integral else np.float32)
    pad_in = volume.padding_mask()
    pad_out = None if pad_in is None else np.zeros(tuple(shape_out), dtype=bool)

    def plane(k: int, arr: np.ndarray, order: int) -> np.ndarray:
        return ndimage.affine_transform(arr[k].astype(np.float32), step[1:], output_shape=tuple(shape_out[1:]),
                                        order=order, mode="nearest")

    for k in range(shape_out[0]):
        z = k * step[0]
        i = min(int(np.floor(z)), shape_in[0] - 1)
        w = z - i
        a = plane(i, src, 1)
        if w > 1e-9 and i + 1 < shape_in[0]:
            a = a * (1.0 - w) + plane(i + 1, src, 1) * w
        out[k] = np.rint(a) if integral else a
        if pad_out is not None:
            pad_out[k] = plane(int(round(z)) if round(z) < shape_in[0] else i, pad_in, 0) > 0.5
    n = volume.normal
    positions = volume.origin[None, :] + np.arange(shape_out[0])[:, None] * spacing * n[None, :]
    return volume.with_changes(
        voxels=out, spacing=(spacing, spacing, spacing), positions=positions,
        padding=None if pad_out is None or not pad_out.any() else np.packbits(pad_out, axis=-1),
        source_names=(), slice_headers=(), header=None,
    )


def _choose_series(volumes: list) -> tuple[Any, str]:
    """The largest axial CT, and why it was chosen (or ValueError saying why none could be)."""
    from core.geometry import orientation_name

    ct = [v for v in volumes if v.modality == "CT" and v.units == "HU"]
    if not ct:
        kinds = sorted({v.modality or "unknown" for v in volumes})
        raise ValueError(f"no CT series in the study (found {', '.join(kinds) or 'no images'})")
    axial = [v for v in ct if orientation_name(v.normal) == "axial"]
    pool = axial or ct
    best = max(pool, key=lambda v: (int(np.prod(v.shape)), v.shape[0]))
    why = (f"largest axial CT ({best.shape[0]} slices) of {len(volumes)} series" if axial else
           f"largest CT ({best.shape[0]} slices, {orientation_name(best.normal)}: no axial CT) of "
           f"{len(volumes)} series")
    return best, why


def _band_columns(vc, voxel_mm3: float) -> dict[str, float]:
    from core.histogram import band_counts

    return {f"band_{b.band.name.lower().replace(' ', '_')}_ml": round(b.volume_ml, 3)
            for b in band_counts(vc, voxel_mm3)}


def _hu_histogram(vc) -> str:
    values = vc.values
    idx = np.searchsorted(HIST_EDGES, values, side="right") - 1
    keep = (idx >= 0) & (idx < len(HIST_EDGES) - 1)
    counts = np.bincount(idx[keep], weights=vc.counts[keep], minlength=len(HIST_EDGES) - 1)
    return " ".join(str(int(c)) for c in counts)


def _safe_file_name(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)[:120] or "study"


def _write_arrays(vol, lungs: np.ndarray, name: str, arrays: str, out_dir: str | None) -> str:
    if out_dir is None:
        raise ValueError(f"arrays={arrays!r} needs an output folder (out_dir)")
    folder = Path(out_dir) / "arrays"
    folder.mkdir(parents=True, exist_ok=True)
    stem = _safe_file_name(name)
    if arrays == "npz":
        from core.export import nifti_affine

        path = folder / f"{stem}.npz"
        tmp = folder / f".{stem}.tmp.npz"
        np.savez_compressed(tmp, hu=vol.voxels, lungs=lungs, spacing=np.array(vol.spacing),
                            affine_ras=nifti_affine(vol))
        os.replace(tmp, path)
        return path.name
    from core.export import nifti_bytes

    written = []
    for suffix, v in (("hu", vol), ("lungs", vol.with_changes(voxels=lungs.astype(np.uint8), units=""))):
        path = folder / f"{stem}_{suffix}.nii.gz"
        tmp = folder / f".{stem}_{suffix}.tmp"
        tmp.write_bytes(nifti_bytes(v))
        os.replace(tmp, path)
        written.append(path.name)
    return " ".join(written)


def measure_study(study: StudySource, *, spacing: float = 1.0, arrays: str = "none",
                  out_dir: str | None = None) -> dict[str, Any]:
    """One study from files to one table row: the DSB preprocessing and the lung measures.

    Loads the study (:func:`core.load_series`), picks the largest axial CT, corrects tilt or
    gaps (:func:`core.resample.resample_regular`), resamples to isotropic ``spacing`` mm
    (:func:`isotropic`), segments the lungs (:func:`core.lungs.segment_lungs`) and measures.
    Never raises: a study that fails returns a row with ``status`` ``"failed"`` and the
    ``reason`` in words. The row holds no patient name, ID or date.

    Parameters
    ----------
    study : StudySource
    spacing : float
        Isotropic voxel size in mm.
    arrays : {"none", "nifti", "npz"}
        Also write the resampled HU volume and the lung mask under ``out_dir/arrays``.
    out_dir : str, optional
        Needed when ``arrays`` is not ``"none"``.

    Returns
    -------
    dict
        One row, keys among :data:`COLUMNS`.
    """
    start = time.perf_counter()
    row: dict[str, Any] = {"study": study.name, "status": "failed", "reason": ""}
    try:
        if arrays not in ARRAY_FORMATS:
            raise ValueError(f"arrays must be one of {ARRAY_FORMATS}, got {arrays!r}")
        if arrays != "none" and not out_dir:
            raise ValueError("arrays need an output folder (out_dir)")
        row.update(_measure(study, spacing=spacing, arrays=arrays, out_dir=out_dir))
        row["status"] = "ok"
    except (ValueError, OSError, MemoryError) as exc:
        row["reason"] = str(exc) or type(exc).__name__
    except Exception as exc:  # noqa: BLE001 - a study that fails costs its row, never the run
        where = traceback.extract_tb(exc.__traceback__)[-1]
        row["reason"] = f"internal error ({type(exc).__name__} in {Path(where.filename).name}:{where.lineno})"
    row["seconds"] = round(time.perf_counter() - start, 3)
    return row


def _measure(study: StudySource, *, spacing: float, arrays: str, out_dir: str | None) -> dict[str, Any]:
    from core.export import on_one_grid
    from core.histogram import value_counts, value_statistics
    from core.loader import load_series
    from core.lungs import segment_lungs

    result = load_series(list(study.paths))
    if not result.volumes:
        reasons = sorted({reason for _, reason in result.skipped})
        raise ValueError("no series could be assembled: " + ("; ".join(reasons[:3]) or "no DICOM files found"))
    vol, why = _choose_series(result.volumes)
    row: dict[str, Any] = {
        "series_uid": vol.series_uid, "series_choice": why, "slices": vol.shape[0], "rows": vol.shape[1],
        "cols": vol.shape[2], "source_spacing_mm": " ".join(f"{s:.4g}" for s in vol.spacing),
        "slice_thickness_mm": _number(vol.summary.get("SliceThickness")), "tilt_deg": round(vol.tilt_degrees, 2),
    }
    warnings = list(vol.warnings)
    del result
    if not vol.is_regular or not on_one_grid(vol):
        vol = vol.corrected()
        warnings += vol.warnings
    row["warnings"] = " | ".join(warnings)
    iso = isotropic(vol, spacing=spacing)
    del vol
    if not np.issubdtype(iso.voxels.dtype, np.integer):  # fractional rescale: whole HU, as the DSB arrays hold
        iso = iso.with_changes(voxels=np.clip(np.rint(iso.voxels), -32768, 32767).astype(np.int16))
    lungs = segment_lungs(iso)
    voxel_mm3 = float(np.prod(iso.spacing))
    lung = value_statistics(value_counts(iso.voxels, mask=lungs), percentiles=(15,))
    n = int(lung["count"])
    whole = value_counts(iso.voxels, padding=iso.padding)
    below = value_counts(iso.voxels, mask=lungs & (iso.voxels < -950)).total if n else 0
    row.update({
        "spacing_mm": spacing, "iso_shape": "x".join(str(s) for s in iso.shape),
        "lung_volume_ml": round(n * voxel_mm3 / 1000.0, 3),
        "emphysema_index_pct": round(100.0 * below / n, 4) if n else 0.0,
        "perc15_hu": lung.get("p15", float("nan")), "mean_lung_hu": round(lung.get("mean", float("nan")), 3),
        **_band_columns(whole, voxel_mm3), "hu_histogram": _hu_histogram(whole),
        "arrays": _write_arrays(iso, lungs, study.name, arrays, out_dir) if arrays != "none" else "",
    })
    return row


def _number(value: Any) -> float | None:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


# -- the cohort -----------------------------------------------------------------------------

@dataclass
class CohortResult:
    """What :func:`run_cohort` did: all rows (earlier runs' included), and how many it ran now."""

    rows: list[dict[str, Any]]
    ran: int
    resumed: int
    dashboard: str | None = None


ProgressFn = Callable[[int, int, int, float], Any]  # (done, failed, total, studies per minute)


def _journal_rows(out: Path) -> dict[str, dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    journal = out / JOURNAL
    if journal.exists():
        for line in journal.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by a kill: that study runs again
            rows[row["study"]] = row
    elif (out / "cohort.csv").exists():
        for row in read_table(out / "cohort.csv").to_dict("records"):
            rows[str(row["study"])] = {k: (None if isinstance(v, float) and math.isnan(v) else v)
                                       for k, v in row.items()}
    return rows


def read_table(source: Any):
    """A cohort table (``cohort.csv`` or ``cohort.parquet``) as a pandas DataFrame.

    ``source`` is a path, or a binary file-like object with a ``.name`` (an upload).

    Raises
    ------
    ValueError
        If it is neither CSV nor parquet, cannot be parsed, or has no ``study`` and ``status`` columns.
    """
    import pandas as pd

    name = str(getattr(source, "name", source))
    try:
        if name.lower().endswith(".parquet"):
            df = pd.read_parquet(source)
        elif name.lower().endswith(".csv"):
            df = pd.read_csv(source, dtype={c: str for c in ("study", "series_uid", "hu_histogram", "reason",
                                                             "warnings", "arrays", "series_choice")})
        else:
            raise ValueError(f"a cohort table is a .csv or .parquet file, got {Path(name).name!r}")
    except (OSError, ValueError, ImportError) as exc:
        if isinstance(exc, ValueError) and str(exc).startswith("a cohort table"):
            raise
        raise ValueError(f"{Path(name).name!r} could not be read as a cohort table ({type(exc).__name__})") from exc
    missing = [c for c in ("study", "status") if c not in df.columns]
    if missing:
        raise ValueError(f"{Path(name).name!r} is not a cohort table: no {' or '.join(missing)} column")
    return df


def outliers(df, *, columns: tuple[str, ...] = ("lung_volume_ml", "emphysema_index_pct", "perc15_hu", "mean_lung_hu"),
             threshold: float = 3.5) -> list[tuple[str, str, float, float]]:
    """Studies far from the others: ``(study, column, value, robust z)`` where |z| > ``threshold``.

    The robust z-score is ``0.6745 (x - median) / MAD`` (Iglewicz and Hoaglin), over the ``ok`` rows.
    """
    ok = df[df["status"] == "ok"]
    found = []
    for col in columns:
        if col not in ok.columns:
            continue
        x = ok[col].astype(float).to_numpy()
        med = np.nanmedian(x) if len(x) else np.nan
        mad = np.nanmedian(np.abs(x - med)) if len(x) else np.nan
        if not (mad > 0):
            continue
        z = 0.6745 * (x - med) / mad
        for study, value, zi in zip(ok["study"], x, z, strict=True):
            if abs(zi) > threshold:
                found.append((str(study), col, float(value), round(float(zi), 1)))
    return found


def write_table(rows: Iterable[dict[str, Any]], out: str | os.PathLike) -> None:
    """``out/cohort.csv`` and ``out/cohort.parquet``: one row per study, sorted by study, :data:`COLUMNS` first."""
    import pandas as pd

    out = Path(out)
    df = pd.DataFrame(sorted(rows, key=lambda r: str(r["study"])))
    df = df.reindex(columns=COLUMNS + [c for c in df.columns if c not in COLUMNS])
    for col in ("study", "status", "reason", "series_uid", "series_choice", "warnings", "arrays", "hu_histogram",
                "source_spacing_mm", "iso_shape"):
        df[col] = df[col].astype("string")
    for name, write in (("cohort.csv", lambda p: df.to_csv(p, index=False)),
                        ("cohort.parquet", lambda p: df.to_parquet(p, index=False))):
        tmp = out / f".{name}.tmp"
        write(tmp)
        os.replace(tmp, out / name)


def local_cluster(workers: int | None = None, *, memory_limit: str | int = "auto"):
    """A Dask ``LocalCluster`` of single-threaded worker processes (one study in flight per worker), on loopback."""
    import dask
    from distributed import LocalCluster

    with dask.config.set({_TRIM_KEY: None}):  # read by each Nanny as it is made
        return LocalCluster(n_workers=workers or os.cpu_count() or 1, threads_per_worker=1, processes=True,
                            memory_limit=memory_limit, dashboard_address=":0" if _has_bokeh() else None,
                            host="127.0.0.1")


# Dask starts workers with MALLOC_TRIM_THRESHOLD_=65536; setting it turns off glibc's sliding mmap
# threshold, so every plane-sized temporary (about 1 MB) is a fresh mmap and page faults: a study
# took 1.6 to 1.9 times as long (8 s instead of 4.3 s for 512x512x150). Unset, glibc's defaults apply.
_TRIM_KEY = "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_"
_WORKER_CLI = (f"import sys, dask; dask.config.set({{{_TRIM_KEY!r}: None}}); "
               "from distributed.cli.dask_worker import main; sys.argv[0] = 'dask worker'; main()")


@contextlib.contextmanager
def process_cluster(workers: int, *, memory_limit: str | int = "2GB", timeout: float = 120.0) -> Iterator[str]:
    """A Dask scheduler and ``workers`` single-threaded worker processes on loopback, run as child
    processes (``dask scheduler`` and ``dask worker``); yields the scheduler's address, stops them after.

    For a long-running server (the app): the cluster's processes are not forked or spawned from
    it (a spawned worker would run the server's ``__main__`` script again), and they hold none of
    its memory. Workers import ``core`` from this checkout.
    """
    import subprocess
    import tempfile

    project = str(Path(__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [project, os.environ.get("PYTHONPATH")])))
    # Workers never spill to disk: a page run holds visitors' uploads, which must not reach the disk.
    env.update(DASK_DISTRIBUTED__WORKER__MEMORY__TARGET="False", DASK_DISTRIBUTED__WORKER__MEMORY__SPILL="False")
    quiet: dict[str, Any] = dict(cwd=project, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
    procs: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory(prefix="hounsfield-cohort-") as tmp:
        info = Path(tmp) / "scheduler.json"
        try:
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0",
                 "--scheduler-file", str(info), "--dashboard" if _has_bokeh() else "--no-dashboard",
                 "--dashboard-address", "127.0.0.1:0"], **quiet))
            deadline = time.monotonic() + timeout
            while not info.exists():
                if procs[0].poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the Dask scheduler did not start")
                time.sleep(0.05)
            procs.append(subprocess.Popen(
                [sys.executable, "-c", _WORKER_CLI, "--scheduler-file", str(info), "--nworkers",
                 str(workers), "--nthreads", "1", "--memory-limit", str(memory_limit), "--host", "127.0.0.1",
                 "--no-dashboard", "--death-timeout", "60"], **quiet))
            address = json.loads(info.read_text())["address"]
            yield address
        finally:
            for proc in reversed(procs):
                proc.terminate()
            for proc in procs:
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def run_studies(client, studies: Iterable[StudySource | Callable[[], StudySource]], *, spacing: float = 1.0,
                arrays: str = "none", out_dir: str | None = None,
                max_in_flight: int | None = None) -> Iterator[dict[str, Any]]:
    """Run :func:`measure_study` on ``client``'s cluster; yield each row as it finishes.

    ``studies`` may hold callables that make the StudySource when it is submitted (bytes read
    from an upload, say): with ``max_in_flight`` at most that many are made and held at once.
    A worker lost while running a study costs that study's row (status ``failed``).
    """
    from distributed import as_completed

    pending = iter(studies)
    running = as_completed()
    of: dict[str, str] = {}

    def submit_next() -> bool:
        item = next(pending, None)
        if item is None:
            return False
        study = item() if callable(item) else item
        future = client.submit(measure_study, study, spacing=spacing, arrays=arrays, out_dir=out_dir, pure=False,
                               key=f"study-{len(of)}-{_safe_file_name(study.name)}")
        of[future.key] = study.name
        running.add(future)
        return True

    limit = max_in_flight or sys.maxsize
    while len(of) < limit and submit_next():
        pass
    for future in running:
        try:
            row = future.result()
        except Exception as exc:  # noqa: BLE001 - a lost worker costs the study's row, never the run
            row = {"study": of[future.key], "status": "failed", "seconds": None,
                   "reason": f"the worker running it failed ({type(exc).__name__})"}
        future.release()
        submit_next()
        yield row


def run_cohort(root: str | os.PathLike, out: str | os.PathLike, *, workers: int | None = None,
               scheduler: str | None = None, spacing: float = 1.0, arrays: str = "none",
               memory_limit: str = "auto", progress: ProgressFn | None = None,
               on_dashboard: Callable[[str], Any] | None = None) -> CohortResult:
    """Measure every study under ``root`` on Dask distributed; write ``out/cohort.csv`` and ``.parquet``.

    Studies already in ``out`` (an earlier run's journal or table) are skipped; each finished
    row is appended to the journal at once, so a killed run loses only the studies in flight.

    Parameters
    ----------
    root : path
        See :func:`discover_studies`. With ``scheduler``, a path every worker reads too.
    out : path
        Output folder (created).
    workers : int, optional
        Worker processes of the ``LocalCluster`` (one thread each: one study in flight per
        worker); one per core by default. Ignored with ``scheduler``.
    scheduler : str, optional
        A running scheduler's address (``tcp://host:port``) instead of a LocalCluster.
    memory_limit : str
        Per worker of the LocalCluster (Dask's spelling: ``"4GB"``, ``"auto"``).
    progress : callable(done, failed, total, per_minute), optional
    on_dashboard : callable(address), optional
        Called with the Dask dashboard's address when one runs.
    """
    from distributed import Client

    if arrays not in ARRAY_FORMATS:
        raise ValueError(f"arrays must be one of {ARRAY_FORMATS}, got {arrays!r}")
    if not (spacing > 0 and math.isfinite(spacing)):
        raise ValueError(f"spacing must be a positive number of mm, got {spacing!r}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    studies = discover_studies(root)
    done_rows = _journal_rows(out)
    todo = [s for s in studies if s.name not in done_rows]
    rows = dict(done_rows)
    dashboard = None
    if todo:
        cluster = None if scheduler else local_cluster(workers, memory_limit=memory_limit)
        client = Client(scheduler or cluster, timeout="30s")
        try:
            dashboard = client.dashboard_link if _has_bokeh() else None
            if dashboard and on_dashboard:
                on_dashboard(dashboard)
            tally = Tally(len(todo), progress)
            with _Journal(out / JOURNAL) as journal:
                for row in run_studies(client, todo, spacing=spacing, arrays=arrays, out_dir=str(out.resolve())):
                    rows[row["study"]] = row
                    journal.append(row)
                    tally.add(row)
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
    names = {s.name for s in studies}
    write_table([rows[s.name] for s in studies if s.name in rows] + [r for n, r in rows.items() if n not in names], out)
    return CohortResult(rows=sorted(rows.values(), key=lambda r: str(r["study"])), ran=len(todo),
                        resumed=len(done_rows), dashboard=dashboard)


class Tally:
    """Studies done and failed, and the rate, reported to a progress callable as rows arrive."""

    def __init__(self, total: int, progress: ProgressFn | None) -> None:
        self.total, self.progress = total, progress
        self.done = self.failed = 0
        self.start = time.perf_counter()

    def add(self, row: dict[str, Any]) -> None:
        self.done += 1
        self.failed += row["status"] != "ok"
        if self.progress:
            minutes = (time.perf_counter() - self.start) / 60.0
            self.progress(self.done, self.failed, self.total, self.done / minutes if minutes > 0 else 0.0)


class _Journal:
    """The append-only file of finished rows: each line written and synced as its study ends."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self) -> _Journal:
        cut = self.path.exists() and self.path.stat().st_size > 0 and not self.path.read_bytes().endswith(b"\n")
        self.file = open(self.path, "a", encoding="utf-8")
        if cut:  # the last line of a killed run: end it, so the next row starts on its own line
            self.file.write("\n")
        return self

    def append(self, row: dict[str, Any]) -> None:
        self.file.write(json.dumps(row, default=_json_default) + "\n")
        self.file.flush()
        os.fsync(self.file.fileno())

    def __exit__(self, *exc: Any) -> None:
        self.file.close()


def _json_default(x: Any) -> Any:
    if isinstance(x, np.generic):
        return x.item()
    raise TypeError(type(x).__name__)


def _has_bokeh() -> bool:
    try:
        import bokeh  # noqa: F401
    except ImportError:
        return False
    return True


# -- the command line -----------------------------------------------------------------------

def _bar(done: int, failed: int, total: int, per_minute: float) -> None:
    width = 30
    filled = int(width * done / total) if total else width
    sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} studies, {failed} failed, "
                     f"{per_minute:.1f} studies/min")
    if done == total:
        sys.stderr.write("\n")
    sys.stderr.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m core.cohort",
        description=("Measure every study of a cohort (DSB preprocessing and lung measures) on Dask. Each direct "
                     "sub-folder or .zip of ROOT is one study; a flat folder of DICOM files is split by "
                     "StudyInstanceUID. Writes OUT/cohort.csv and OUT/cohort.parquet; run again to resume."))
    parser.add_argument("root", help="folder of studies (sub-folders or .zip files)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--workers", type=int, default=None, help="local worker processes (default: one per core)")
    parser.add_argument("--scheduler", default=None, help="tcp://HOST:PORT of a running Dask scheduler")
    parser.add_argument("--spacing", type=float, default=1.0, help="isotropic voxel size in mm (default 1.0)")
    parser.add_argument("--arrays", choices=ARRAY_FORMATS, default="none",
                        help="also write the resampled HU volume and lung mask per study")
    parser.add_argument("--memory-limit", default="auto", help="memory per local worker, e.g. 4GB (default auto)")
    args = parser.parse_args(argv)
    try:
        result = run_cohort(args.root, args.out, workers=args.workers, scheduler=args.scheduler,
                            spacing=args.spacing, arrays=args.arrays, memory_limit=args.memory_limit,
                            progress=_bar, on_dashboard=lambda a: print(f"Dask dashboard: {a}", file=sys.stderr))
    except (FileNotFoundError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    ok = sum(r["status"] == "ok" for r in result.rows)
    print(f"{len(result.rows)} studies ({ok} ok, {len(result.rows) - ok} failed; {result.resumed} from an earlier "
          f"run) -> {Path(args.out) / 'cohort.csv'}, {Path(args.out) / 'cohort.parquet'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
