"""The Cohort page: run the per-study preprocessing and lung measures over a cohort, or look at a finished run."""

from __future__ import annotations

import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from core import cohort, load_series
from core.memory import OverBudget, server_budget
from dashboard import hosting, state
from dashboard.owner import session_owner

ROWS = "cohort_rows"  # the table on show: a list of row dicts (no voxels, no patient names)
ORIGIN = "cohort_origin"  # where its studies can be read again: a RunOrigin, or None
TABLE_FILE = "cohort_table_file"
ZIP_FILE = "cohort_zip"
PATH = "cohort_path"
SOURCE = "cohort_source"
SPACING = "cohort_spacing"
PICK = "cohort_pick"
PERSISTENT = (PATH, SOURCE, SPACING)
state.persist(*PERSISTENT)
UPLOADED, SERVER_FOLDER = "Uploaded zip of studies", "Folder on this server"
EXPLORER = "pages/1_Volume_explorer.py"
SHOWN = ["study", "status", "reason", "series_choice", "slices", "spacing_mm", "tilt_deg", "lung_volume_ml",
         "emphysema_index_pct", "perc15_hu", "mean_lung_hu", "warnings", "seconds"]
# The table's columns as people read them (the CSV keeps the names scripts use).
COLUMN_LABELS = {"study": "Study", "status": "Status", "reason": "Reason", "series_choice": "Series used",
                 "slices": "Slices", "spacing_mm": "Spacing (mm)", "tilt_deg": "Tilt (°)",
                 "lung_volume_ml": "Lung volume (mL)", "emphysema_index_pct": "Emphysema index (%)",
                 "perc15_hu": "Perc15 (HU)", "mean_lung_hu": "Mean lung (HU)", "warnings": "Notes",
                 "seconds": "Time (s)"}


@dataclass(frozen=True)
class RunOrigin:
    """Where the table's studies came from: a server folder, or the zip in this session's uploader."""

    kind: str  # "folder" or "zip"
    where: str  # the folder's path, or the upload's file_id


def init() -> None:
    st.session_state.setdefault(ROWS, None)
    st.session_state.setdefault(ORIGIN, None)
    st.session_state.setdefault(SPACING, 1.0)
    st.session_state.setdefault(PATH, "")


def settings() -> hosting.CohortSettings:
    return hosting.cohort_settings()


# -- a finished run ------------------------------------------------------------------------

def table_upload_ui() -> None:
    """Open a cohort.csv or cohort.parquet written by ``python -m core.cohort``."""
    file = st.file_uploader("Open a finished run (cohort.csv or cohort.parquet)", type=["csv", "parquet"],
                            key=TABLE_FILE)
    if file is None or st.session_state.get("cohort_table_loaded") == file.file_id:
        return
    try:
        df = cohort.read_table(file)
    except ValueError as exc:
        st.error(f"{exc}. Open the cohort.csv or cohort.parquet that python -m core.cohort wrote.")
        return
    st.session_state[ROWS] = df.to_dict("records")
    st.session_state[ORIGIN] = None
    st.session_state["cohort_table_loaded"] = file.file_id


# -- running one ---------------------------------------------------------------------------

@st.cache_resource
def _one_cohort_at_a_time() -> threading.Lock:
    """Shared by every session on purpose: a cohort occupies every worker, so one runs at a time."""
    return threading.Lock()


def run_ui(allowed: hosting.CohortSettings) -> None:
    """Choose the studies (an uploaded zip, or a server folder when allowed), then run them."""
    if not allowed.run:
        st.info("Running cohorts is turned off on this server (a cohort occupies every core). Run "
                "`python -m core.cohort ROOT --out DIR` on your own machine and open its cohort.csv here.")
        return
    sources = [UPLOADED, SERVER_FOLDER] if allowed.server_paths else [UPLOADED]
    kind = st.radio("Studies", sources, key=SOURCE, persist_state="session",
                    horizontal=True) if len(sources) > 1 else UPLOADED
    if kind == SERVER_FOLDER:
        st.text_input("Folder of studies on this server (each sub-folder or .zip is one study)", key=PATH,
                      persist_state="session")
        upload = None
    else:
        upload = st.file_uploader("A zip of studies (each top-level folder or .zip in it is one study)",
                                  type=["zip"], key=ZIP_FILE)
    spacing = st.number_input("Isotropic voxel size (mm)", min_value=0.3, max_value=5.0, step=0.1, key=SPACING,
                              persist_state="session")
    if not st.button("Run the cohort", key="cohort_run_button", type="primary"):
        return
    lock = _one_cohort_at_a_time()
    if not lock.acquire(blocking=False):
        st.warning("Another cohort is running on this server. Try again when it has finished.")
        return
    try:
        if kind == SERVER_FOLDER:
            _run_folder(st.session_state[PATH].strip(), allowed, float(spacing))
        elif upload is None:
            st.warning("Upload a zip of studies first.")
        else:
            _run_zip(upload, allowed, float(spacing))
    finally:
        lock.release()


def _run_folder(folder: str, allowed: hosting.CohortSettings, spacing: float) -> None:
    try:
        studies = cohort.discover_studies(folder)
    except FileNotFoundError:
        st.error(f"{folder!r} is not a folder on this server. Type the path of a folder of studies.")
        return
    if _too_many(studies, allowed):
        return
    rows = _run_on_cluster(studies, allowed, spacing)
    _keep(rows, RunOrigin("folder", folder))


def _run_zip(upload, allowed: hosting.CohortSettings, spacing: float) -> None:
    try:
        zf = zipfile.ZipFile(upload)
        studies = cohort.studies_in_zip(zf, label=Path(upload.name).stem)
    except (zipfile.BadZipFile, OSError, ValueError):
        st.error("The upload is not a readable zip archive. Re-create the zip and upload it again.")
        return
    if _too_many(studies, allowed):
        return
    # The upload, and the studies being read out of it for the workers, count against the server's budget.
    in_flight = allowed.workers * 2 * max((s.nbytes for s in studies), default=0)
    try:
        with server_budget().reserved(upload.size + in_flight, owner=session_owner(), what="the uploaded cohort"):
            rows = _run_on_cluster([lambda s=s: s.source(zf) for s in studies], allowed, spacing,
                                   total=len(studies), max_in_flight=allowed.workers * 2)
    except OverBudget as exc:
        st.error(f"{exc} Upload fewer studies at a time.")
        return
    _keep(rows, RunOrigin("zip", upload.file_id))


def _too_many(studies: list, allowed: hosting.CohortSettings) -> bool:
    if not studies:
        st.warning("No studies found: a cohort is a folder (or zip) whose sub-folders or zips are the studies.")
        return True
    if len(studies) > allowed.max_studies:
        st.error(f"{len(studies)} studies: this server runs at most {allowed.max_studies} at a time. "
                 "Split the cohort, or run python -m core.cohort on your own machine.")
        return True
    return False


def _run_on_cluster(studies: list, allowed: hosting.CohortSettings, spacing: float, *, total: int | None = None,
                    max_in_flight: int | None = None) -> list[dict]:
    from distributed import Client

    total = total or len(studies)
    bar = st.progress(0.0, text=f"Starting {allowed.workers} workers…")

    def progress(done: int, failed: int, total: int, per_minute: float) -> None:
        bar.progress(done / total, text=f"{done}/{total} studies, {failed} failed, {per_minute:.1f} studies/min")

    tally = cohort.Tally(total, progress)
    rows = []
    with cohort.process_cluster(allowed.workers, memory_limit=allowed.worker_memory_bytes) as address, \
            Client(address, timeout="60s") as client:
        client.wait_for_workers(allowed.workers, timeout=120)
        bar.progress(0.0, text=f"0/{total} studies")
        for row in cohort.run_studies(client, studies, spacing=spacing, max_in_flight=max_in_flight):
            rows.append(row)
            tally.add(row)
    return rows


def _keep(rows: list[dict], origin: RunOrigin) -> None:
    st.session_state[ROWS] = sorted(rows, key=lambda r: str(r["study"]))
    st.session_state[ORIGIN] = origin


# -- the results ---------------------------------------------------------------------------

def current_table() -> pd.DataFrame | None:
    rows = st.session_state.get(ROWS)
    if not rows:
        return None
    df = pd.DataFrame(rows)
    return df.reindex(columns=cohort.COLUMNS + [c for c in df.columns if c not in cohort.COLUMNS])


def summary_ui(df: pd.DataFrame) -> None:
    ok = int((df["status"] == "ok").sum())
    a, b, c = st.columns(3)
    a.metric("Studies", len(df))
    b.metric("Measured", ok)
    c.metric("Failed", len(df) - ok)


def scatter_figure(df: pd.DataFrame, named: set[str]) -> go.Figure:
    """Lung volume against emphysema index, one point per study; outliers carry their name."""
    ok = df[df["status"] == "ok"]
    fig = go.Figure(go.Scatter(
        x=ok["lung_volume_ml"].astype(float), y=ok["emphysema_index_pct"].astype(float), mode="markers+text",
        text=[s if s in named else "" for s in ok["study"]], textposition="top center",
        customdata=ok["study"], hovertemplate="%{customdata}<br>%{x:.0f} mL, %{y:.1f} %<extra></extra>",
        marker=dict(size=9, color=["#ef5350" if s in named else "#29b6f6" for s in ok["study"]]),
    ))
    fig.update_layout(xaxis_title="Lung volume (mL)", yaxis_title="Emphysema index, LAA-950 (% of lung)",
                      height=420, margin=dict(l=10, r=10, t=30, b=10))
    return fig


def histogram_heatmap(df: pd.DataFrame) -> go.Figure | None:
    """Every study's HU histogram (share of its voxels per 10 HU), one row per study."""
    ok = df[(df["status"] == "ok") & df["hu_histogram"].notna()] if "hu_histogram" in df else df.iloc[:0]
    if ok.empty:
        return None
    counts = np.array([np.array(str(h).split(), dtype=float) for h in ok["hu_histogram"]])
    share = 100.0 * counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    centers = (cohort.HIST_EDGES[:-1] + cohort.HIST_EDGES[1:]) / 2
    fig = go.Figure(go.Heatmap(z=share, x=centers, y=list(ok["study"]), colorscale="Viridis", zmax=float(
        np.percentile(share, 99.5)) or None, colorbar=dict(title="% of voxels"),
        hovertemplate="%{y}<br>%{x} HU: %{z:.2f} %<extra></extra>"))
    fig.update_layout(xaxis_title="HU", height=max(260, 22 * len(ok) + 120), margin=dict(l=10, r=10, t=30, b=10))
    return fig


def results_ui(df: pd.DataFrame) -> None:
    """The table, the plots, the outliers by name, and downloads."""
    summary_ui(df)
    found = cohort.outliers(df)
    named = {s for s, *_ in found}
    if (df["status"] == "ok").any():
        st.subheader("Lung volume and emphysema")
        st.plotly_chart(scatter_figure(df, named), key="cohort_scatter")
        heat = histogram_heatmap(df)
        if heat is not None:
            st.subheader("HU histograms of all studies")
            st.plotly_chart(heat, key="cohort_heatmap")
    st.subheader("Outliers")
    if found:
        st.dataframe(pd.DataFrame(found, columns=["Study", "Measure", "Value", "Robust z"]), hide_index=True,
                     key="cohort_outliers")
    else:
        st.caption("No study is more than 3.5 robust standard deviations from the others on lung volume, "
                   "emphysema index, Perc15 or mean lung HU.")
    st.subheader("Studies")
    st.dataframe(df[[c for c in SHOWN if c in df.columns]], hide_index=True, key="cohort_table",
                 column_config={c: st.column_config.Column(label) for c, label in COLUMN_LABELS.items()})
    a, b = st.columns(2)
    a.download_button("cohort.csv", df.to_csv(index=False).encode(), "cohort.csv", "text/csv", key="cohort_csv")
    b.download_button("cohort.parquet", _parquet(df), "cohort.parquet", "application/octet-stream",
                      key="cohort_parquet")


def _parquet(df: pd.DataFrame) -> bytes:
    import io

    buf = io.BytesIO()
    df.astype({c: "string" for c in df.columns if df[c].dtype == object}).to_parquet(buf, index=False)
    return buf.getvalue()


# -- one study in the explorer -------------------------------------------------------------

def open_in_explorer_ui(df: pd.DataFrame) -> None:
    """Load one study of the table into this session and open the explorer on its chosen series."""
    origin: RunOrigin | None = st.session_state.get(ORIGIN)
    allowed = settings()
    if origin is None and allowed.server_paths:
        root = st.session_state.get(PATH, "").strip()
        origin = RunOrigin("folder", root) if root else None
    if origin is None:
        st.caption("To open a study of this table in the explorer, run the cohort here"
                   + (" or type its folder above." if allowed.server_paths else "."))
        return
    ok = [str(s) for s in df.loc[df["status"] == "ok", "study"]]
    if not ok:
        return
    name = st.selectbox("Study", ok, key=PICK, persist_state="session")
    if not st.button("Open in the explorer", key="cohort_open"):
        return
    items = _study_sources(origin, name)
    if items is None:
        st.error("This study can no longer be read: upload the zip again (or check the folder), then retry.")
        return
    with st.spinner(f"Loading {name}…"):
        result = load_series(items, memory=server_budget(), owner=session_owner())
    if not result.volumes:
        st.error("No series of this study could be loaded. Open it on the Load a study page to see why.")
        return
    uid = str(df.loc[df["study"] == name, "series_uid"].iloc[0])
    index = next((i for i, v in enumerate(result.volumes) if v.series_uid == uid), 0)
    state.set_study(state.Study(volumes=result.volumes, skipped=result.skipped, source=f"Cohort study {name}",
                                segmentations=result.segmentations))
    st.session_state[state.CURRENT] = index
    st.switch_page(EXPLORER)


def _study_sources(origin: RunOrigin, name: str) -> list | None:
    if origin.kind == "folder":
        found = cohort.discover_studies(origin.where) if Path(origin.where).is_dir() else []
        match = [s for s in found if s.name == name]
        return list(match[0].paths) if match else None
    upload = st.session_state.get(ZIP_FILE)
    if upload is None or upload.file_id != origin.where:
        return None
    zf = zipfile.ZipFile(upload)
    in_zip = [z for z in cohort.studies_in_zip(zf, label=Path(upload.name).stem) if z.name == name]
    return list(in_zip[0].source(zf).paths) if in_zip else None
