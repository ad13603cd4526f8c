"""The peer: a plain Streamlit app that shows one slice with st.image and a slider.

Started by bench_explorer.py with the folder in HOUNSFIELD_BENCH_FOLDER.
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
k = st.slider("Axial slice", 0, vol.shape[0] - 1, vol.shape[0] // 2, key="explorer_k")
c = st.slider("Window center (HU)", -1200, 3000, 40, key="explorer_center")
w = st.slider("Window width (HU)", 1, 6000, 400, key="explorer_width")
img = np.clip((vol[k].astype(np.float32) - (c - w / 2)) / w * 255, 0, 255).astype(np.uint8)
st.image(img)
