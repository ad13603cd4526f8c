"""The HU histogram page's widgets, cached computations and Plotly figure."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import cast

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from core import Volume, hu
from core.histogram import (
    DEFAULT_HU_RANGE,
    TISSUE_BANDS,
    ValueCounts,
    array_statistics,
    band_counts,
    hu_histogram,
    round_bin_width,
    value_counts,
    value_statistics,
)
from core.mpr import slab
from dashboard import explorer, state
from dashboard.text import count, decimal, md_escape, ordinal, plotly_escape, unit_label

SCOPE, BIN_WIDTH, RANGE = "histogram_scope", "histogram_bin_width", "histogram_range"
LOG, CUMULATIVE, BANDS = "histogram_log", "histogram_cumulative", "histogram_bands"
OVERLAY, CHART, BAND_PICK = "histogram_overlay", "histogram_chart", "histogram_band_pick"
SLAB_SLICES = "histogram_slab_slices"
PERSISTENT = (SCOPE, BIN_WIDTH, RANGE, LOG, CUMULATIVE, BANDS, OVERLAY, SLAB_SLICES, BAND_PICK)
state.persist(*PERSISTENT)
SCOPES = ("Whole volume", "Current slice", "Slab of slices", "Explorer ROI", "Segmented lungs",
          "A label of the overlay")


@dataclass(frozen=True)
class Scope:
    """Which voxels the histogram counts, as plain values (a cache key)."""

    kind: str
    index: int = 0
    half: int = 0
    axis: int = 0
    roi: explorer.Roi | None = None  # "roi" scope: the explorer's rectangle or ellipse
    labels: str = ""  # "label" scope: the overlay's label map (its key); ``index`` is the label value


@dataclass(frozen=True)
class Controls:
    """What the histogram's widgets ask for, as plain values."""

    scope: Scope
    bin_width: float
    value_range: tuple[float, float]
    log: bool
    cumulative: bool
    bands: bool


@dataclass(frozen=True)
class Histogram:
    """A scope's histogram and what goes with it."""

    counts: np.ndarray  # (bins,) int64
    edges: np.ndarray  # (bins + 1,) float
    stats: dict  # see core.histogram.value_statistics
    value_counts: ValueCounts | None  # None for float volumes
    padding_left_out: int


def init(vol: Volume) -> None:
    st.session_state.setdefault(SCOPE, SCOPES[0])
    st.session_state.setdefault(BIN_WIDTH, 10.0)
    lo, hi = _range_limits(vol)
    hu_default = (max(DEFAULT_HU_RANGE[0], lo), min(DEFAULT_HU_RANGE[1], hi))
    # Kept across pages and series: fitted to this series' values, and anew when its units differ.
    state.keep_within(RANGE, lo, hi, default=hu_default if vol.units == "HU" else (lo, hi), basis=vol.units)
    state.keep_within(SLAB_SLICES, 1, vol.shape[0], default=min(10, vol.shape[0]))
    st.session_state.setdefault(LOG, False)
    st.session_state.setdefault(CUMULATIVE, False)
    st.session_state.setdefault(BANDS, vol.units == "HU")
    st.session_state.setdefault(OVERLAY, None)


def _range_limits(vol: Volume) -> tuple[float, float]:
    if vol.units == "HU":
        return -1100.0, 3100.0
    lo, hi = vol.value_range
    return float(np.floor(lo)), float(np.ceil(hi)) + 1


def _classic_bins(vol: Volume) -> None:
    lo, hi = st.session_state[RANGE]
    st.session_state[BIN_WIDTH] = max(1.0, round_bin_width((lo, hi), bins=80))


def controls_ui(vol: Volume) -> Controls:
    """Scope, bins, range and display options."""
    k = explorer.current_slice(vol)
    roi = explorer.current_roi(vol)
    c1, c2 = st.columns([2, 1])
    kind = c1.radio("Voxels counted", SCOPES, key=SCOPE, persist_state="session", horizontal=True,
                    help="Padding (outside the scan circle) is always left out. The current slice and the ROI (a "
                    "rectangle or an ellipse drawn on a view) are the explorer's.")
    scope = Scope("volume")
    if kind == "Current slice":
        scope = Scope("slab", index=k, half=0)
    elif kind == "Slab of slices":
        n = c2.number_input("Slices in the slab", 1, vol.shape[0], key=SLAB_SLICES, persist_state="session")
        scope = Scope("slab", index=k, half=int(n) // 2)
    if scope.kind == "slab":
        first, last = max(0, k - scope.half) + 1, min(vol.shape[0], k + scope.half + 1)
        where = f"slice {first}" if first == last else f"slices {first} to {last}"
        c2.caption(f"Axial {where} of {vol.shape[0]}, around the explorer's slice {k + 1}.")
    if kind == "Explorer ROI":
        if roi is None:
            st.info("No ROI yet: draw a rectangle or an ellipse on a view of the **Volume explorer**. "
                    "Showing the whole volume meanwhile.")
        else:
            scope = Scope("roi", index=roi.index, axis=roi.axis, roi=roi)
            c2.caption(f"{roi.label}: the pixels the explorer measures.")
    elif kind == "Segmented lungs":
        if vol.units != "HU" or vol.shape[0] < 2:
            st.info("Lung segmentation needs a CT volume in HU. Showing the whole volume meanwhile.")
        else:
            from dashboard.iso_ui import lungs_for

            failed: dict = st.session_state.setdefault("histogram_no_lungs", {})
            key = vol.key
            if key not in failed:
                try:
                    with st.spinner("Segmenting the lungs…"):
                        lungs_for(vol, key)
                except ValueError as exc:  # remembered: the segmentation is not retried on every rerun
                    failed[key] = str(exc)
            if key in failed:
                st.info(f"No lungs to count: {md_escape(failed[key])}. Showing the whole volume meanwhile.")
            else:
                scope = Scope("lungs")
    elif kind == "A label of the overlay":
        from dashboard.overlay_ui import label_scope_ui

        with c2:
            picked = label_scope_ui(vol)
        if picked is not None:
            scope = Scope("label", index=picked[1], labels=picked[0])
    lo, hi = _range_limits(vol)
    unit = md_escape(unit_label(vol.units))  # labels render Markdown
    d1, d2, d3 = st.columns([1, 1, 2])
    bw = d1.number_input(f"Bin width ({unit})", min_value=1.0, max_value=500.0, step=1.0, key=BIN_WIDTH, format="%g",
                         persist_state="session")
    d2.button("About 80 bins", key="histogram_classic", on_click=_classic_bins, args=(vol,),
              help="A round bin width (10, 20, 25, 50 …) that gives about 80 bins over the range.")
    # init() gives the key a (low, high) pair, so the slider is a range slider.
    rng = cast(tuple[float, float], d3.slider(f"Range ({unit})", lo, hi, key=RANGE, persist_state="session", step=1.0,
                                                        format="%g"))
    e1, e2, e3 = st.columns(3)
    log = e1.toggle("Log counts", key=LOG, persist_state="session")
    cum = e2.toggle("Cumulative", key=CUMULATIVE, persist_state="session")
    bands = e3.toggle("Tissue bands", key=BANDS, persist_state="session", disabled=vol.units != "HU")
    return Controls(scope, float(bw), (float(rng[0]), float(rng[1])), log, cum, bands and vol.units == "HU")


def _scope_voxels(vol: Volume, scope: Scope) -> tuple[np.ndarray, np.ndarray | None]:
    """The voxels of a scope (a view, not a copy, where it can) and their padding, packed (unpacked, as a
    bool plane, for the "roi" scope)."""
    if scope.kind == "slab":
        lo = max(0, scope.index - scope.half)
        hi = min(vol.shape[0], scope.index + scope.half + 1)
        pad = None if vol.padding is None else vol.padding[lo:hi]
        return vol.voxels[lo:hi], pad
    if scope.kind == "lungs":
        return vol.voxels, None
    if scope.kind == "roi":  # the whole plane: counts_for keeps the shape's pixels only
        return slab(vol.voxels, scope.axis, scope.index), vol.padding_plane(scope.axis, scope.index)
    return vol.voxels, vol.padding


@st.cache_resource(scope="session", max_entries=16, show_spinner=False)
def counts_for(_vol: Volume, key: str, scope: Scope) -> tuple[ValueCounts | np.ndarray, int]:
    """Value counts of a scope (integer volumes), or the values themselves (float), and padding left out."""
    v, pad = _scope_voxels(_vol, scope)
    if scope.kind == "lungs":
        from dashboard.iso_ui import lungs_for

        with st.spinner("Segmenting the lungs…"):
            lungs, _ = lungs_for(_vol, key)
        return value_counts(v, mask=lungs), 0
    if scope.kind == "label":
        from dashboard.overlay_ui import label_mask

        inside = label_mask(_vol, scope.labels, scope.index)
        padding = _vol.padding_mask()
        n_label_pad = 0 if padding is None else int(np.count_nonzero(inside & padding))
        if v.dtype in (np.int16, np.uint16, np.int8, np.uint8):
            return value_counts(v, mask=inside, padding=_vol.padding), n_label_pad
        return np.asarray(v[inside if padding is None else inside & ~padding], dtype=np.float32), n_label_pad
    if scope.kind == "roi":
        if scope.roi is None:
            raise ValueError("an 'roi' scope needs its rectangle or ellipse")
        inside = scope.roi.mask(v.shape)  # exactly the pixels the explorer measures
        n_roi_pad = 0 if pad is None else int(np.count_nonzero(inside & pad))
        keep = inside if pad is None else inside & ~pad
        if v.dtype in (np.int16, np.uint16, np.int8, np.uint8):
            return value_counts(v, mask=keep), n_roi_pad
        return np.asarray(v[keep], dtype=np.float32), n_roi_pad
    n_pad = 0
    if pad is not None:
        n_pad = int(np.unpackbits(pad, axis=-1, count=v.shape[-1]).sum())
    if v.dtype in (np.int16, np.uint16, np.int8, np.uint8):
        return value_counts(v, padding=pad), n_pad
    values = v if pad is None else v[~np.unpackbits(pad, axis=-1, count=v.shape[-1]).astype(bool)]
    return np.asarray(values, dtype=np.float32).ravel(), n_pad


def histogram_of(vol: Volume, scope: Scope, bw: float, rng: tuple[float, float]) -> Histogram:
    """The histogram of a scope, with its statistics (from cached value counts)."""
    counted, n_pad = counts_for(vol, vol.key, scope)
    counts, edges = hu_histogram(counted, bin_width=bw, hu_range=rng)
    if isinstance(counted, ValueCounts):
        return Histogram(counts, edges, value_statistics(counted), counted, n_pad)
    return Histogram(counts, edges, array_statistics(counted), None, n_pad)


def figure(counts: np.ndarray, edges: np.ndarray, *, log: bool, cumulative: bool, bands: bool,
           window: tuple[float, float] | None, unit: str, overlay: tuple[str, np.ndarray] | None = None,
           name: str = "This series") -> go.Figure:
    """A pre-binned bar chart: its size depends on the number of bins, never on the volume.

    ``unit`` and ``name`` may come from a file: they are escaped for Plotly here.
    """
    unit, name = plotly_escape(unit), plotly_escape(name)
    bw = float(edges[1] - edges[0]) if len(edges) > 1 else 1.0
    x0 = float(edges[0]) + bw / 2  # bars at x0 + i * dx: no x array in the payload
    as_percent = overlay is not None
    y = counts.astype(np.float64)
    total = y.sum()
    if as_percent and total:
        y = 100 * y / total
    if cumulative:
        y = np.cumsum(y)
    # Compact typed arrays: int32 counts (exact up to 2**31 voxels), float32 percentages.
    y_out = y.astype(np.float32) if as_percent else y.astype(np.int64).clip(max=2**31 - 1).astype(np.int32)
    fig = go.Figure()
    centers = ((edges[:-1] + edges[1:]) / 2).astype(np.float32)  # an x array: click selection needs one
    fig.add_bar(x=centers, y=y_out, width=bw, name=name, marker_color="#4fc3f7", marker_line_width=0,
                hovertemplate=f"%{{x}} {unit}<br>%{{y}}<extra></extra>")
    if overlay is not None:
        oname, ocounts = overlay
        oy = 100 * ocounts / max(ocounts.sum(), 1)
        if cumulative:
            oy = np.cumsum(oy)
        fig.add_scatter(x0=x0, dx=bw, y=oy.astype(np.float32), mode="lines", line_shape="hvh",
                        name=plotly_escape(oname),
                        line=dict(color="#ffb74d", width=1.5))
    lo, hi = float(edges[0]), float(edges[-1])
    if bands:
        for b in TISSUE_BANDS:
            x0, x1 = max(b.low, lo), min(b.high, hi)
            if x1 > x0:
                fig.add_vrect(x0=x0, x1=x1, fillcolor=b.color, opacity=0.10, line_width=0, layer="below",
                              annotation_text=b.name, annotation_position="top left",
                              annotation=dict(font_size=10, textangle=-90, font_color=b.color))
    if window is not None:
        c, w = window
        fig.add_vrect(x0=max(c - w / 2, lo), x1=min(c + w / 2, hi), fillcolor="rgba(255,255,255,0.06)",
                      line=dict(color="rgba(255,255,255,0.6)", dash="dash", width=1), layer="below",
                      annotation_text="explorer window", annotation_position="bottom right",
                      annotation=dict(font_size=10))
    ylabel = ("Cumulative " if cumulative else "") + ("% of voxels" if as_percent else "voxels")
    fig.update_layout(
        height=440, margin=dict(l=10, r=10, t=30, b=10), bargap=0, showlegend=overlay is not None,
        xaxis_title=unit, yaxis_title=ylabel, template="plotly_dark", uirevision="histogram",
    )
    fig.update_xaxes(range=[lo, hi])
    if log:
        fig.update_yaxes(type="log")
    return fig


def band_at(x: float):
    for b in TISSUE_BANDS:
        if b.low <= x < b.high:
            return b
    return None


def _clicked() -> None:
    """A click on a bar inside a tissue band sets the explorer's window to it. A callback: it runs before
    the page is drawn, so the chart's window box and the band picker already show the new window."""
    event = st.session_state.get(CHART) or {}
    points = (event.get("selection") or {}).get("points") or []
    band = band_at(float(points[0]["x"])) if points else None
    if band is not None:
        set_window_to_band(band.name)


def chart_ui(fig: go.Figure) -> None:
    """Show the chart; a click on a bar inside a tissue band sets the explorer's window to it."""
    st.plotly_chart(fig, key=CHART, on_select=_clicked, selection_mode=("points", "box"), width="stretch")


def bins_caption(edges: np.ndarray, unit: str) -> None:
    """Say what the bars are: how many bins, how wide, over which range."""
    n = len(edges) - 1
    if n > 0:
        width = decimal(float(edges[1] - edges[0]))
        st.caption(f"{count(n, 'bin')} of {width} {md_escape(unit)}, from {decimal(float(edges[0]))} to "
                   f"{decimal(float(edges[-1]))} {md_escape(unit)}.")


def set_window_to_band(name: str) -> None:
    """Set the explorer's window to a tissue band, and the band picker to its name (called from callbacks)."""
    band = next(b for b in TISSUE_BANDS if b.name == name)
    lo, hi = max(band.low, hu.AIR), min(band.high, hu.TOP)
    explorer.set_window(round((lo + hi) / 2), max(1, round(hi - lo)))
    st.session_state[BAND_PICK] = name
    st.session_state["histogram_window_note"] = f"Explorer window set to the {name.lower()} band: {lo:g} to {hi:g} HU."


def _apply_band() -> None:
    set_window_to_band(st.session_state[BAND_PICK])


def band_window_ui() -> None:
    """The band picker: shows the band the explorer's window is set to, and sets the window to another."""
    names = [b.name for b in TISSUE_BANDS]
    st.session_state.setdefault(BAND_PICK, names[0])
    c1, c2 = st.columns([2, 1])
    c1.selectbox("Set the explorer's window to a band", names, key=BAND_PICK, persist_state="session",
                 help="The same as clicking a bar inside the band on the chart.")
    c2.button("Apply", key="histogram_band_apply", on_click=_apply_band)
    note = st.session_state.pop("histogram_window_note", None)
    if note:
        st.success(note)


def stats_tables(stats: dict, vc: ValueCounts | None, vol: Volume, n_pad: int, unit: str) -> pd.DataFrame | None:
    n = stats.get("count", 0)
    st.caption(f"{n:,} voxels counted; {n_pad:,} padding voxels (outside the scan circle) left out.")
    if n == 0:
        st.info("No voxels in this scope.")
        return None
    rows = [("Count", f"{n:,}")] + [(statistic_label(k), f"{decimal(v, places=1)} {unit}")
                                     for k, v in stats.items() if k != "count"]
    c1, c2 = st.columns([1, 2])
    c1.dataframe(pd.DataFrame(rows, columns=["Statistic", "Value"]), hide_index=True, key="histogram_stats_table",
                 height=_table_height(len(rows)))  # every row, none behind a scroll bar
    table = None
    if vc is not None and vol.units == "HU":
        table = band_table(vc, vol)
        c2.dataframe(table, hide_index=True, key="histogram_band_table", height=_table_height(len(table)),
                     column_config={"Fraction (%)": st.column_config.NumberColumn(format="%.2f"),
                                    "Volume (mL)": st.column_config.NumberColumn(format="%.1f")})
        c2.caption("Each band counts the voxels in its HU range, wherever they are: on a head CT the lung band "
                   "holds air in the sinuses and around the head, not lungs.")
    return table


def statistic_label(key: str) -> str:
    """A statistic's name as people write it: "SD", "Median", "1st percentile"."""
    if key.startswith("p") and key[1:].replace(".", "", 1).isdigit():
        number = float(key[1:])
        return f"{ordinal(int(number))} percentile" if number.is_integer() else f"{key[1:]}th percentile"
    return {"sd": "SD", "min": "Minimum", "max": "Maximum"}.get(key, key.capitalize())


def _table_height(rows: int) -> int:
    """Pixels that show a table's header and ``rows`` rows without a scroll bar (35 px a row)."""
    return 35 * (rows + 1) + 3


def band_table(vc: ValueCounts, vol: Volume) -> pd.DataFrame:
    """The tissue bands as a table: name, HU range, voxels, fraction (%) and volume (mL)."""
    return pd.DataFrame([{
        "Band": b.band.name,
        "HU range": f"{b.band.low:g} to {b.band.high:g}",
        "Voxels": b.voxels,
        "Fraction (%)": 100.0 * b.fraction,
        "Volume (mL)": b.volume_ml,
    } for b in band_counts(vc, float(np.prod(vol.spacing)))])


def csv_downloads(counts: np.ndarray, edges: np.ndarray, stats: dict, bands: pd.DataFrame | None,
                  scope_name: str) -> None:
    idx = state.current_index()
    bins = pd.DataFrame({"left": edges[:-1], "right": edges[1:], "count": counts})
    buf = io.StringIO()
    pd.DataFrame(list(stats.items()), columns=["statistic", "value"]).to_csv(buf, index=False)
    if bands is not None:
        buf.write("\n")
        bands.to_csv(buf, index=False)
    safe = scope_name.lower().replace(" ", "_")
    c1, c2 = st.columns(2)
    c1.download_button("Download the bins (CSV)", bins.to_csv(index=False), f"histogram_series{idx + 1}_{safe}.csv",
                       "text/csv", key="histogram_dl_bins", on_click="ignore", icon=":material/download:")
    c2.download_button("Download the statistics (CSV)", buf.getvalue(), f"statistics_series{idx + 1}_{safe}.csv",
                       "text/csv", key="histogram_dl_stats", on_click="ignore", icon=":material/download:")


def overlay_ui(vol: Volume, scope: Scope, bw: float, rng: tuple[float, float]) -> tuple[str, np.ndarray] | None:
    """Another series of the study, of the same modality, drawn as a line for comparison."""
    study = state.study()
    if study is None:  # page_frame(needs_volume=True) has stopped the page already; nothing to compare with
        return None
    volumes = study.volumes
    current = state.current_index()
    others = [i for i, v in enumerate(volumes) if i != current and v.modality == vol.modality]
    if not others:
        return None
    from core.privacy import display_description

    def label(i: int | None) -> str:
        return "None" if i is None else display_description(volumes[i], i, show_phi=state.show_phi())

    options: list[int | None] = [None, *others]
    choice = st.selectbox(
        "Overlay another series", options, key=OVERLAY, persist_state="session", format_func=label,
        help="Compare kernels or phases: both are drawn as % of their voxels. The whole volume of the other series.",
    )
    if choice is None:
        return None
    other = volumes[choice]
    return f"Series #{choice + 1}", histogram_of(other, Scope("volume"), bw, rng).counts
