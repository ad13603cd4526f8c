"""Cohort: the Data Science Bowl preprocessing and lung measures over many studies, on Dask; or a finished run."""

from __future__ import annotations

import streamlit as st

from dashboard import cohort_ui
from dashboard.frame import page_frame

page_frame("Cohort")

st.title("Cohort")
st.markdown("Measure every study of a cohort the same way: load, HU, corrected geometry, isotropic resampling, "
            "lungs, then lung volume, emphysema index (LAA-950), Perc15 and tissue volumes, spread over the "
            "workers of a Dask cluster. The table holds no patient names, IDs or dates.")
cohort_ui.init()
allowed = cohort_ui.settings()
cohort_ui.table_upload_ui()
cohort_ui.run_ui(allowed)
table = cohort_ui.current_table()
if table is not None:
    cohort_ui.results_ui(table)
    cohort_ui.open_in_explorer_ui(table)
