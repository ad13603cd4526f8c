"""HU histogram: the tissue distribution of the current series, banded, with statistics."""

from __future__ import annotations

import streamlit as st

from dashboard import explorer, histogram_ui, kinds
from dashboard.frame import page_frame
from dashboard.text import md_escape, unit_label

vol = page_frame("HU histogram", needs_volume=True)

unit = unit_label(vol.units)
if vol.units == "HU":
    st.title("HU histogram")
else:  # MR, CR, US…: the page keeps its name in the sidebar, but speaks the series' own units
    st.title(md_escape(f"Histogram of {vol.modality or 'the'} values ({unit})", max_len=None))
kinds.needs(vol, what="The histogram", kinds=("volume", "loop", "projection"))
if vol.units == "HU":
    st.caption(
        "How many voxels hold each value. Tissue bands are approximate ranges at 120 kVp (air below -950, lung "
        "-950 to -500, fat -190 to -30, water and fluid -30 to 20, soft tissue 20 to 80, blood with contrast 80 "
        "to 300, cancellous bone 300 to 700, cortical bone above 700 HU); scanners and kernels shift them by tens "
        "of HU."
    )
else:
    elements = "voxels" if vol.kind == "volume" else "pixels"
    st.caption(md_escape(f"How many {elements} hold each value, in {unit}. These are not Hounsfield units, so "
                         "there are no tissue bands.", max_len=None))
histogram_ui.init(vol)
ask = histogram_ui.controls_ui(vol)
hist = histogram_ui.histogram_of(vol, ask.scope, ask.bin_width, ask.value_range)
overlay = histogram_ui.overlay_ui(vol, ask.scope, ask.bin_width, ask.value_range)
window = explorer.current_window()
fig = histogram_ui.figure(hist.counts, hist.edges, log=ask.log, cumulative=ask.cumulative, bands=ask.bands,
                          window=window, unit=unit, overlay=overlay)
histogram_ui.chart_ui(fig)
histogram_ui.bins_caption(hist.edges, unit)
if vol.units == "HU":
    histogram_ui.band_window_ui()
table = histogram_ui.stats_tables(hist.stats, hist.value_counts, vol, hist.padding_left_out, unit)
histogram_ui.csv_downloads(hist.counts, hist.edges, hist.stats, table, st.session_state[histogram_ui.SCOPE])
