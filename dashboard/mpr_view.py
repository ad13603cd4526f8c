"""The explorer's three linked views, windowed and drawn in the browser (a Streamlit v2 component).

Moving a slice or the window paints at once from planes the browser already holds; the
state comes back here as the component's ``view`` value, with the planes the browser
wants next (those ahead of the scroll). Each rerun answers with a few missing planes: values
(int16, or float32 when values are not integral), byte-shuffled with the high bytes
zlib-compressed, except the planes the browser is waiting for at the crosshair, which go as
they are.

Values set on the Python side (presets, the histogram page) go to the browser with a new
revision number (one for the crosshair, one for the window), which it adopts.

A segmentation overlay travels as uint8 label planes (zlib), cut and flipped like the image
planes (a slab shows its centre slice's labels). The measurements drawn in the browser and its
layout come back in the same state and are kept here per series (``measurements``), outside any
widget, so that they survive visits to other pages and come back to the browser when it mounts.
"""

from __future__ import annotations

import json
import struct
import zlib
from typing import TYPE_CHECKING

import numpy as np
import streamlit as st

from core import Volume
from core.annotations import Measurement
from core.mpr import IN_PLANE, VIEW_NAMES, SlabMode, plane_info, slab, slab_width_slices
from core.numbers import length_mm
from core.render import colormap_table
from dashboard.components import local_component

if TYPE_CHECKING:
    from dashboard.overlay_ui import Overlay

__all__ = ["MAX_PLANES", "clear_measurements", "encode_plane", "is_single_slice", "measurement_store", "measurements",
           "new_sync", "pack", "payload", "read_view", "selected_measurement", "view_layouts", "view_ui_settings",
           "views_ui"]

KEY = "explorer_mpr"  # the component's key (its state holds the browser's ``view``)
SYNC = "explorer_mpr_sync"  # what this session has agreed with and sent to the browser
STORE = "explorer_mpr_store"  # the series' measurements and view settings (not a widget: kept across pages)
MAX_PLANES = 6  # planes sent per rerun at most: the crosshair's first; the browser asks again for the rest
MAX_LABEL_PLANES = 12  # label planes per rerun (uint8, compressed: small)
SLAB_LABELS: dict[SlabMode, str] = {"mip": "MIP", "minip": "MinIP", "mean": "mean"}

COMPONENT = local_component("hounsfield_mpr", __file__, root_class="hf-root")


def encode_plane(plane: np.ndarray, *, compress: bool = True) -> tuple[str, bytes, int]:
    """A plane as the browser reads it: ``("i2" | "f4", bytes, raw_length)``.

    Integer planes whose values fit int16 go as int16; anything else as float32. With
    ``compress`` the bytes of each value are grouped by significance (all low bytes, then all
    high bytes): the low half goes as it is (``raw_length`` bytes: CT noise does not compress
    much) and the high half, nearly constant, zlib-compressed. That is about half the size in
    a quarter of the time of compressing everything. Without ``compress`` the values go as
    little-endian numbers, which the browser uses as they are (no decoding wait), and
    ``raw_length`` is the whole length.
    """
    plane = np.asarray(plane)
    dtype: np.dtype
    if plane.dtype.kind in "iub" and plane.dtype.itemsize <= 2 and plane.dtype != np.uint16:
        dtype, code = np.dtype("<i2"), "i2"
    elif plane.dtype.kind in "iu" and plane.size and -32768 <= plane.min() and plane.max() <= 32767:
        dtype, code = np.dtype("<i2"), "i2"
    else:
        dtype, code = np.dtype("<f4"), "f4"
    values = np.ascontiguousarray(plane, dtype=dtype)
    if not compress:
        data = values.tobytes()
        return code, data, len(data)
    shuffled = values.view(np.uint8).reshape(-1, dtype.itemsize).T.tobytes()
    split = len(shuffled) // 2
    packer = zlib.compressobj(1, zlib.DEFLATED, 15, 9, zlib.Z_RLE)  # runs: fast, and enough here
    return code, shuffled[:split] + packer.compress(shuffled[split:]) + packer.flush(), split


def pack(header: dict, blobs: list[bytes]) -> bytes:
    """``uint32 length (little endian) + JSON header + blobs``, with blob offsets in the header's ``slices``."""
    offset = 0
    for meta, blob in zip(header["slices"], blobs, strict=True):
        meta["offset"], meta["length"] = offset, len(blob)
        offset += len(blob)
    text = json.dumps(header, separators=(",", ":")).encode()
    return b"".join([struct.pack("<I", len(text)), text, *blobs])


def view_layouts(vol: Volume) -> list[dict]:
    """Per view: its axis, the axes running down and across, the flip, pixel size and edge letters."""
    out = []
    for axis in (0, 1, 2):
        info = plane_info(vol, axis)
        down, across = IN_PLANE[axis]
        out.append({
            "axis": axis, "name": info.name.capitalize() if info.name != "oblique" else f"{VIEW_NAMES[axis]} (oblique)",
            "n": int(vol.shape[axis]), "rows": int(vol.shape[down]), "cols": int(vol.shape[across]),
            "down": down, "across": across, "flip": bool(info.flip_rows),
            "row_mm": float(info.row_mm), "col_mm": float(info.col_mm), "letters": dict(info.letters),
        })
    return out


def is_single_slice(vol: Volume) -> bool:
    """True when ``vol`` has one slice (a CT localizer): its coronal and sagittal views would be
    one pixel tall, so only its own plane is shown."""
    return int(vol.shape[0]) == 1


def _display_plane(vol: Volume, axis: int, index: int, width: int, mode: SlabMode, flip: bool) -> np.ndarray:
    plane = slab(vol.voxels, axis, index, width=width, mode=mode)
    return plane[::-1] if flip else plane


_MAX_MEASUREMENTS = 200
_POINTS = {"length": 2, "angle": 3, "ellipse": 2, "rectangle": 2, "point": 1}


def _read_measurements(raw: object, vol: Volume) -> list[Measurement] | None:
    """The browser's measurements, checked: kinds, views, slices and points inside their plane."""
    if not isinstance(raw, list):
        return None
    out = []
    for item in raw[:_MAX_MEASUREMENTS]:
        try:
            kind, axis, index = str(item["kind"]), int(item["axis"]), int(item["index"])
            if kind not in _POINTS or axis not in (0, 1, 2) or not 0 <= index < vol.shape[axis]:
                continue
            down, across = IN_PLANE[axis]
            points = tuple((float(np.clip(float(r), -0.5, vol.shape[down] - 0.5)),
                            float(np.clip(float(c), -0.5, vol.shape[across] - 0.5))) for r, c in item["points"])
            if len(points) != _POINTS[kind] or not all(np.isfinite(points).ravel()):
                continue
            out.append(Measurement(kind, axis, index, points, label=str(item.get("label", ""))[:80],  # type: ignore[arg-type]
                                   id=str(item.get("id", ""))[:40]))
        except (KeyError, TypeError, ValueError, OverflowError):
            continue
    return out


def _read_pairs(raw: object, vol: Volume) -> list[tuple[int, int]]:
    if not isinstance(raw, list):
        return []
    want = [(int(a), int(i)) for a, i in raw[:32] if int(a) in (0, 1, 2)]
    return [(a, i) for a, i in want if 0 <= i < vol.shape[a]]


def _read_ui(raw: object) -> dict:
    """The browser's layout, tool and cine settings, kept so that they survive page visits."""
    ui = raw if isinstance(raw, dict) else {}
    out: dict = {}
    if ui.get("layout") in ("all", "0", "1", "2"):
        out["layout"] = ui["layout"]
    if ui.get("tool") in ("navigate", *_POINTS):
        out["tool"] = ui["tool"]
    if isinstance(ui.get("fps"), int | float) and 1 <= ui["fps"] <= 60:
        out["fps"] = int(ui["fps"])
    if ui.get("cine") in (0, 1, 2):
        out["cine"] = int(ui["cine"])
    return out


def read_view(raw: object, vol: Volume, window_range: tuple[float, float, float]) -> dict | None:
    """The browser's ``view`` state, checked and clipped; None when it is missing, malformed or
    about another series than ``vol``."""
    token = vol.key
    if not isinstance(raw, dict) or raw.get("vol", token) != token:
        return None
    try:
        point = [int(np.clip(int(p), 0, n - 1)) for p, n in zip(raw["point"], vol.shape, strict=True)]
        lo, hi, wmax = window_range
        center = float(np.clip(round(float(raw["center"])), lo, hi))
        width = float(np.clip(round(float(raw["width"])), 1, wmax))
        want = _read_pairs(raw.get("want"), vol)
        lwant = _read_pairs(raw.get("lwant"), vol)
        edits = tuple(int(e) for e in raw["edits"])
        if len(edits) != 2:
            return None
        mrev = raw.get("mrev")
        return {"seq": int(raw["seq"]), "epoch": str(raw.get("epoch", ""))[:40], "edits": edits, "point": point,
                "center": center, "width": width, "want": want, "lwant": lwant,
                "mrev": int(mrev) if isinstance(mrev, int) else None,
                "measurements": _read_measurements(raw.get("measurements"), vol), "ui": _read_ui(raw.get("ui")),
                "selected": str(raw.get("selected") or "")[:40]}
    except (KeyError, TypeError, ValueError, OverflowError):
        return None


def adopt(vol: Volume, window_range: tuple[float, float, float], *, slice_keys: dict[int, str],
          center_key: str, width_key: str) -> bool:
    """Take what the browser changed into session state. True when the window changed there."""
    sync = _sync(vol)
    component = st.session_state.get(KEY)
    view = read_view(component.get("view") if component is not None and hasattr(component, "get") else None,
                     vol, window_range)
    sync["want"], sync["lwant"] = [], []
    if view is None:
        return False
    if view["epoch"] != sync["epoch"]:  # a new mount of the component: its cache may be empty
        sync["epoch"], sync["sent"], sync["lsent"], sync["edits"] = view["epoch"], set(), set(), (0, 0)
    if view["seq"] == sync["seq"]:
        sync["want"], sync["lwant"] = view["want"], view["lwant"]
        return False
    sync["seq"], sync["want"], sync["lwant"], sync["fresh"] = view["seq"], view["want"], view["lwant"], True
    # Measurements and layout: the browser's, once it has taken the page's latest list.
    store = _store(vol)
    if view["mrev"] == sync["mrev"] and view["measurements"] is not None:
        store["measurements"] = view["measurements"]
    store["ui"], store["selected"] = view["ui"], view["selected"]
    # Adopt only what the user changed in the browser: a state sent to ask for planes, or a
    # scroll reported late, must not undo a preset chosen on the page in between.
    point_edited, window_edited = (a != b for a, b in zip(view["edits"], sync["edits"], strict=True))
    sync["edits"] = view["edits"]
    if point_edited:
        for axis, key in slice_keys.items():
            st.session_state[key] = view["point"][axis]
        sync["agreed"][0] = tuple(view["point"])
    window = (view["center"], view["width"])
    window_changed = window_edited and window != (st.session_state.get(center_key), st.session_state.get(width_key))
    if window_edited:
        st.session_state[center_key], st.session_state[width_key] = window
        sync["agreed"][1] = window
    return window_changed


def new_sync(vol: Volume) -> dict:
    """What a session has agreed with and sent to the browser, before anything was."""
    return {"vol": vol.key, "rev": [0, 0], "seq": None, "epoch": None, "edits": (0, 0), "agreed": [None, None],
            "sent": set(), "want": [], "lsent": set(), "lwant": [], "fresh": False, "mrev": 0}


def _sync(vol: Volume) -> dict:
    sync = st.session_state.get(SYNC)
    if sync is None or sync["vol"] != vol.key:
        sync = new_sync(vol)
        st.session_state[SYNC] = sync
    return sync


def _store(vol: Volume) -> dict:
    """This series' measurements and view settings (layout, tool, cine), kept across page visits."""
    store = st.session_state.setdefault(STORE, {})
    if vol.key not in store:
        # Measurements belong to the series they were drawn on.
        store[vol.key] = {"measurements": [], "ui": {}, "selected": ""}
        while len(store) > 16:
            store.pop(next(iter(store)))
    return store[vol.key]


def measurement_store(vol: Volume) -> dict:
    """The dict that holds ``vol``'s measurements (``"measurements"``), updated in place as the
    browser reports: a download made on click reads it then."""
    return _store(vol)


def measurements(vol: Volume) -> list[Measurement]:
    """The measurements drawn on ``vol`` in this session."""
    return list(_store(vol)["measurements"])


def clear_measurements(vol: Volume) -> None:
    """Delete every measurement of ``vol`` (the browser drops them too at its next update)."""
    _store(vol)["measurements"] = []
    _sync(vol)["mrev"] += 1


def selected_measurement(vol: Volume) -> str:
    """The id of the measurement selected in the views ("" when none is)."""
    return str(_store(vol).get("selected", ""))


def view_ui_settings(vol: Volume) -> dict:
    """The layout, tool and cine settings the browser last reported."""
    return dict(_store(vol)["ui"])


def _overlay_header(vol: Volume, overlay: Overlay | None, sync: dict) -> dict | None:
    if overlay is None:
        return None
    labels = overlay.labels
    present = labels.present()  # counted once per label map, slice by slice
    return {
        "key": labels.key, "opacity": float(np.clip(overlay.opacity, 0.0, 1.0)), "outline": bool(overlay.outline),
        "colors": {str(v): [int(c) for c in labels.colors.get(v, (255, 0, 0))] for v in present},
        "legend": [[v, labels.names.get(v, f"Label {v}")] for v in present],
    }


def _label_plane(labels: np.ndarray, axis: int, index: int, flip: bool) -> np.ndarray:
    """The label plane shown with an image plane, flipped like it; with a slab, its centre slice's
    (core.mpr.slab centres the slab on ``index``)."""
    plane = np.take(labels, index, axis=axis)
    return plane[::-1] if flip else plane


def payload(vol: Volume, sync: dict, *, point: dict[int, int], center: float, width: float, colormap: str,
            slab_mm: float, slab_mode: SlabMode, window_range: tuple[float, float, float], unit: str,
            overlay: Overlay | None = None, measurements: list[Measurement] | tuple = (), ui: dict | None = None,
            ) -> bytes:
    """The bytes the views component gets: settings, and the planes (and label planes) it lacks.

    Records in ``sync`` what was sent, so that the next call sends only what is still missing.
    """
    current = (tuple(point[a] for a in (0, 1, 2)), float(center), float(width))
    # Changed on this side: the browser adopts it. The crosshair and the window are counted
    # apart, so that a preset does not undo a scroll the browser has not reported yet.
    for part, value in enumerate((current[0], current[1:])):
        if value != sync["agreed"][part]:
            sync["rev"][part] += 1
            sync["agreed"][part] = value
    layouts = view_layouts(vol)
    single = is_single_slice(vol)
    shown = (0,) if single else (0, 1, 2)  # a single slice: only its own plane (the others are 1 pixel tall)
    widths = [slab_width_slices(vol, a, slab_mm) for a in (0, 1, 2)]
    render = ["1" if w == 1 else f"{w}{slab_mode}" for w in widths]
    slab_text = [None if w == 1 else f"{SLAB_LABELS[slab_mode]} {length_mm(w * vol.spacing[a])}"
                 for a, w in enumerate(widths)]
    # The crosshair's planes first. When one is missing (a jump), they go alone, so that they
    # arrive soonest; otherwise what the browser asked for (anew when it asked anew).
    order = [(a, point[a]) for a in shown if (a, point[a], render[a]) not in sync["sent"]]
    fresh = sync.pop("fresh", False)
    urgent = bool(order)  # the browser is waiting for these: sent raw, usable on arrival
    if not order:
        order = [(a, i) for a, i in sync["want"] if a in shown and (fresh or (a, i, render[a]) not in sync["sent"])]
    metas: list[dict] = []
    blobs: list[bytes] = []
    seen: set[tuple[int, int]] = set()
    for axis, index in order:
        if (axis, index) in seen or len(seen) >= MAX_PLANES:
            continue
        seen.add((axis, index))
        layout = layouts[axis]
        plane = _display_plane(vol, axis, index, widths[axis], slab_mode, layout["flip"])
        code, blob, raw = encode_plane(plane, compress=not urgent)
        metas.append({"axis": axis, "index": index, "render": render[axis], "dtype": code, "raw": raw,
                      "rows": int(plane.shape[0]), "cols": int(plane.shape[1])})
        blobs.append(blob)
        sync["sent"].add((axis, index, render[axis]))
        pad = vol.padding_plane(axis, index)
        if pad is not None:  # which pixels are outside the scan (ROI statistics leave them out), as bits
            pad = pad[::-1] if layout["flip"] else pad
            metas.append({"axis": axis, "index": index, "render": render[axis], "dtype": "b1", "raw": 0,
                          "rows": int(pad.shape[0]), "cols": int(pad.shape[1])})
            blobs.append(zlib.compress(np.packbits(pad.ravel()).tobytes(), 1))
    if overlay is not None:
        key = overlay.labels.key
        lorder = [(a, point[a]) for a in shown if (key, a, point[a]) not in sync["lsent"]]
        lorder += [(a, i) for a, i in sync["lwant"] if a in shown and (fresh or (key, a, i) not in sync["lsent"])]
        lorder = list(dict.fromkeys(lorder))
        for axis, index in lorder[:MAX_LABEL_PLANES]:
            plane = _label_plane(overlay.labels.labels, axis, index, layouts[axis]["flip"])
            blob = zlib.compress(np.ascontiguousarray(plane).tobytes(), 1)
            metas.append({"axis": axis, "index": index, "key": key, "dtype": "u1", "raw": 0,
                          "rows": int(plane.shape[0]), "cols": int(plane.shape[1])})
            blobs.append(blob)
            sync["lsent"].add((key, axis, index))
    header = {
        "vol": sync["vol"], "rev": list(sync["rev"]), "views": layouts, "range": list(window_range), "unit": unit,
        "point": list(current[0]), "center": current[1], "width": current[2],
        "cmap": colormap_table(colormap).ravel().tolist(), "invert": bool(vol.invert),
        "render": render, "slab": slab_text, "slices": metas, "geom": _geometry(vol),
        "overlay": _overlay_header(vol, overlay, sync), "mrev": sync["mrev"],
        "measurements": [{"id": m.id, "kind": m.kind, "axis": m.axis, "index": m.index,
                          "points": [list(p) for p in m.points], "label": m.label} for m in measurements],
        "ui": {**(ui or {}), "layout": "0", "cine": 0} if single else (ui or {}), "single": single,
    }
    return pack(header, blobs)


def _geometry(vol: Volume) -> dict:
    """What the browser needs for the patient position under the pointer (Volume.patient_position)."""
    _, dy, dx = vol.spacing
    return {"positions": np.round(np.asarray(vol.positions, float), 4).tolist(),
            "row_dir": [float(v) for v in vol.row_direction], "col_dir": [float(v) for v in vol.col_direction],
            "dy": float(dy), "dx": float(dx)}


def views_ui(vol: Volume, *, point: dict[int, int], center: float, width: float, colormap: str,
             slab_mm: float, slab_mode: SlabMode, window_range: tuple[float, float, float], unit: str,
             overlay: Overlay | None = None) -> None:
    """Mount the three views with the current settings and the planes the browser lacks."""
    store = _store(vol)
    data = payload(vol, _sync(vol), point=point, center=center, width=width, colormap=colormap, slab_mm=slab_mm,
                   slab_mode=slab_mode, window_range=window_range, unit=unit, overlay=overlay,
                   measurements=store["measurements"], ui=store["ui"])
    COMPONENT(data=data, key=KEY, default={"view": None}, on_view_change=lambda: None, width="stretch")
