"""The floor: one slider and one st.image inside a fragment, nothing else (run with postScriptGC off).

Started by bench_explorer.py with the folder in HOUNSFIELD_BENCH_FOLDER; shows what Streamlit's
own round trip costs for the smallest possible view update.
"""

import os

import numpy as np
import pydicom
import streamlit as st


@st.cache_resource
def volume():
    folder = os.environ["HOUNSFIELD_BENCH_FOLDER"]
    dss = [pydicom.dcmread(os.path.join(folder, f)) for f in os.listdir(folder)]
    dss.sort(key=lambda d: float(d.ImagePositionPatient[2]))
    return np.stack([d.pixel_array.astype(np.int16) + int(d.RescaleIntercept) for d in dss])


vol = volume()


@st.fragment
def view():
    k = st.slider("Axial slice", 0, vol.shape[0] - 1, vol.shape[0] // 2, key="explorer_k")
    c = st.slider("Window center (HU)", -1200, 3000, 40, key="explorer_center")
    img = np.clip((vol[k].astype(np.float32) - (c - 200)) / 400 * 255, 0, 255).astype(np.uint8)
    st.image(img)


view()
