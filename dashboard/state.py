"""Session state: every key the app uses, and the study held for this browser session.

Volumes live in ``st.session_state`` only: one browser session, never a cache shared
with other users, never written to disk, never copied per rerun (pages get the same
read-only arrays).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import streamlit as st

from core import Volume, sample_ct

# Session-state keys (page keys are prefixed with the page's name).
STUDY = "study"
CURRENT = "current_series"
SHOW_PHI = "show_phi"
SHOW_PHI_WIDGET = "sidebar_show_phi"
LOAD_REPORT = "load_report"
LOADED_SIGNATURE = "load_signature"
UPLOAD_NONCE = "load_upload_nonce"
HELD_A_STUDY = "load_held_a_study"  # this session has held a loaded study (not the sample) at some point

# Keys whose values must survive visits to other pages (widget keys: Streamlit drops a widget's
# value when a run does not draw it). Each page's UI module registers its own when it is imported,
# which is before any of its keys can be in a session; the frame re-assigns them on every run.
# Key names only, the same for every visitor: process-wide on purpose, like the modules.
_PERSISTENT: set[str] = set()


def persist(*keys: str) -> None:
    """Register session-state keys that keep their values across pages (see :func:`persistent_keys`)."""
    _PERSISTENT.update(keys)


def keep_within(key: str, low: float, high: float, *, default: object, basis: object = None) -> None:
    """Fit the kept value of widget ``key`` (a number, or a (low, high) pair) to the current series'
    bounds before the widget is drawn: a value kept from another series may lie outside them, and a
    widget given a value outside its bounds fails. Set to ``default`` when missing, when the pair
    would collapse, or when ``basis`` (what the bounds mean, e.g. the series' units) has changed.
    """
    basis_key = f"{key}__basis"
    value = st.session_state.get(key)
    if value is None or st.session_state.get(basis_key, basis) != basis:
        st.session_state[key] = default
    elif isinstance(value, (tuple, list)):
        a, b = (min(max(v, low), high) for v in value)
        st.session_state[key] = (a, b) if a < b else default
    else:
        st.session_state[key] = type(value)(min(max(value, low), high))
    st.session_state[basis_key] = basis


def persistent_keys() -> frozenset[str]:
    """Every key registered with :func:`persist` in this process."""
    return frozenset(_PERSISTENT)


@dataclass
class Study:
    """What the user has loaded in this session."""

    volumes: list[Volume]
    skipped: list[tuple[str, str]]
    source: str
    corrected: dict[int, Volume] = field(default_factory=dict)
    use_corrected: set[int] = field(default_factory=set)
    segmentations: list[tuple[str, bytes]] = field(default_factory=list)  # DICOM SEG files (name, bytes)

    @property
    def is_sample(self) -> bool:
        return self.source == SAMPLE_SOURCE


SAMPLE_SOURCE = "Built-in sample"


def sample_study() -> Study:
    return Study(volumes=[sample_ct()], skipped=[], source=SAMPLE_SOURCE)


def init() -> None:
    """Set every key's default once per session; the sample is loaded on first visit."""
    if STUDY not in st.session_state:
        st.session_state[STUDY] = sample_study()
    st.session_state.setdefault(CURRENT, 0)
    st.session_state.setdefault(SHOW_PHI, False)
    st.session_state.setdefault(LOAD_REPORT, None)
    st.session_state.setdefault(LOADED_SIGNATURE, None)
    st.session_state.setdefault(UPLOAD_NONCE, 0)


def study() -> Study | None:
    return st.session_state.get(STUDY)


def set_study(new: Study) -> None:
    st.session_state[STUDY] = new
    st.session_state[CURRENT] = 0
    _collect()


def clear_study() -> None:
    st.session_state[STUDY] = None
    st.session_state[CURRENT] = 0
    _collect()


def _collect() -> None:
    """Free the replaced study now: runner.postScriptGC is off (it costs every slider step
    30-70 ms), so volumes caught in reference cycles would otherwise wait for Python's
    occasional full collection. Replacing a study is rare and already takes seconds."""
    import gc

    gc.collect()
    trim_memory()


def trim_memory() -> None:
    """Hand the free pages of glibc's heaps back to the system (malloc_trim; a no-op elsewhere).

    glibc keeps freed buffers (uploaded files, about 0.5 MB each) in its heaps; without this the
    server's memory would hold both the upload and the volume made from it.
    """
    import ctypes

    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to trim
        pass


def current_index() -> int:
    s = study()
    if s is None or not s.volumes:
        return 0
    return min(max(int(st.session_state.get(CURRENT, 0)), 0), len(s.volumes) - 1)


def current_volume() -> Volume | None:
    """The series the pages work on (its corrected geometry when the user chose it)."""
    s = study()
    if s is None or not s.volumes:
        return None
    i = current_index()
    if i in s.use_corrected:
        if i not in s.corrected:  # made here, before the sidebar and the page ask: one series shown everywhere
            with st.spinner("Resampling onto a regular grid…"):
                s.corrected[i] = s.volumes[i].corrected()
        return s.corrected[i]
    return s.volumes[i]


def show_phi() -> bool:
    return bool(st.session_state.get(SHOW_PHI, False))
