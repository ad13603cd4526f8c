"""The explorer's measurements as a DICOM Structured Report (TID 1500 measurement report, via highdicom)."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from core.mpr import IN_PLANE

if TYPE_CHECKING:
    from pydicom import Dataset

    from core.annotations import Measurement
    from core.volume import Volume

__all__ = ["GRAPHIC_TYPES", "measurement_report", "patient_point", "plane_outline"]

GRAPHIC_TYPES = {"length": "POLYLINE", "angle": "POLYLINE", "point": "POINT", "ellipse": "ELLIPSE",
                 "rectangle": "POLYGON"}
"""The SCOORD3D graphic type each kind of measurement is written as (SCOORD writes POLYGON as a closed
POLYLINE: it has no POLYGON)."""


def plane_outline(m: Measurement) -> np.ndarray:
    """The points a measurement is written with, as (row, col) in its plane's array coordinates.

    Length, angle and point: their own points. Ellipse (drawn by its bounding box): the two ends
    of the major axis, then of the minor axis (DICOM ELLIPSE). Rectangle: its four corners and
    the first again (a closed POLYGON).

    Returns
    -------
    (N, 2) ndarray of float64
    """
    pts = np.asarray(m.points, dtype=float).reshape(-1, 2)
    if m.kind in ("length", "angle", "point"):
        return pts
    (r0, c0), (r1, c1) = pts[0], pts[1]
    if m.kind == "rectangle":
        return np.array([[r0, c0], [r0, c1], [r1, c1], [r1, c0], [r0, c0]])
    rc, cc, hr, hc = (r0 + r1) / 2, (c0 + c1) / 2, abs(r1 - r0) / 2, abs(c1 - c0) / 2
    across = [[rc, cc - hc], [rc, cc + hc]]
    down = [[rc - hr, cc], [rc + hr, cc]]
    return np.array(across + down if hc >= hr else down + across)


def patient_point(volume: Volume, axis: int, index: int, row: float, col: float) -> np.ndarray:
    """Patient position (LPS mm) of a point of a plane, each slice at its own position.

    Positions between slices (a point on a coronal or sagittal view) are interpolated
    linearly between the two slices' ImagePositionPatient.
    """
    ijk = [0.0, 0.0, 0.0]  # slice, row, col of the voxel array
    ijk[axis] = float(index)
    a, b = IN_PLANE[axis]
    ijk[a], ijk[b] = float(row), float(col)
    k, j, i = ijk
    positions = np.asarray(volume.positions, dtype=float)
    k = min(max(k, 0.0), len(positions) - 1.0)
    k0 = int(np.floor(k))
    k1 = min(k0 + 1, len(positions) - 1)
    origin = positions[k0] + (k - k0) * (positions[k1] - positions[k0])
    _, dy, dx = volume.spacing
    return origin + i * dx * np.asarray(volume.row_direction) + j * dy * np.asarray(volume.col_direction)


def _values_spec(modality: str, units: str) -> dict[str, tuple[Any, Any]]:
    """value key -> (concept name, unit) for the SR's measurements."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    if units == "HU":
        unit: Any = codes.UCUM.HounsfieldUnit
    elif units:
        unit = hd.sr.CodedConcept(value=units, scheme_designator="UCUM", meaning=units)
    else:
        unit = codes.UCUM.NoUnits
    point = codes.DCM.AttenuationCoefficient if modality == "CT" else codes.SCT.Mean
    return {
        "length_mm": (codes.SCT.Length, codes.UCUM.Millimeter),
        "angle_deg": (codes.SCT.Angle, codes.UCUM.Degree),
        "mean": (codes.SCT.Mean, unit),
        "sd": (codes.SCT.StandardDeviation, unit),
        "min": (codes.SCT.Minimum, unit),
        "max": (codes.SCT.Maximum, unit),
        "area_mm2": (codes.SCT.Area, codes.UCUM.SquareMillimeter),
        "value": (point, unit),
    }


def _image_region(volume: Volume, m: Measurement, evidence: dict[str, Dataset]) -> Any:
    """SCOORD on the slice's own image (axial views of slices as acquired), else SCOORD3D."""
    import highdicom as hd

    from core.dicom_writer import is_resampled

    outline = plane_outline(m)
    kind = GRAPHIC_TYPES[m.kind]
    header = volume.slice_headers[m.index] if m.axis == 0 and m.index < len(volume.slice_headers) else None
    uid = str(header.get("SOPInstanceUID", "")) if header is not None else ""
    single_frame = header is not None and int(header.get("NumberOfFrames") or 1) == 1
    if single_frame and not is_resampled(volume) and uid in evidence:
        # DICOM image coordinates put (0, 0) at the top left corner of the top left pixel: centres at +0.5.
        data = np.stack([outline[:, 1] + 0.5, outline[:, 0] + 0.5], axis=1)
        source = hd.sr.SourceImageForRegion.from_source_image(evidence[uid])
        # SCOORD has no POLYGON: a closed POLYLINE (first point repeated) is its polygon.
        return hd.sr.ImageRegion(graphic_type="POLYLINE" if kind == "POLYGON" else kind, graphic_data=data,
                                 source_image=source)
    data = np.array([patient_point(volume, m.axis, m.index, r, c) for r, c in outline])
    frame = str(next(iter(evidence.values())).get("FrameOfReferenceUID", "") or "")
    if not frame:
        raise ValueError("the series has no (0020,0052) Frame of Reference UID: patient coordinates cannot be "
                         "written for coronal and sagittal measurements")
    return hd.sr.ImageRegion3D(graphic_type=kind, graphic_data=data, frame_of_reference_uid=frame)


def measurement_report(volume: Volume, measurements: Sequence[Measurement], values: Sequence[Mapping[str, float]],
                       ) -> bytes:
    """A Comprehensive 3D SR (TID 1500) of ``measurements`` on ``volume``'s series, as DICOM file bytes.

    ``values[i]`` holds the values of ``measurements[i]`` (``core.annotations.VALUE_KEYS``).

    One planar ROI measurement group (TID 1410) per measurement, tracked by its label (or its
    name as the page shows it, "Length 1": ``core.annotations.measurement_names``) and a new UID,
    with its region: SCOORD on the referenced slice image for measurements on axial views of
    slices as acquired, SCOORD3D in the series' frame of reference otherwise (coronal and sagittal
    views, resampled volumes: their evidence is the series' first slice, which names the study,
    series and frame of reference). Values are written with the concepts Length, Angle, Mean,
    Standard Deviation, Minimum, Maximum, Area (and Attenuation Coefficient for a point on CT);
    NaN values are left out. The SR belongs to the patient's study: patient and study identity
    come from the series (highdicom copies them from the evidence), and every image of the series
    is listed as evidence.

    Raises
    ------
    ValueError
        No measurement, lengths that differ, or a series without any DICOM header.
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes

    from core.annotations import measurement_names
    from core.overlay import OverlayError, source_images

    if not measurements:
        raise ValueError("no measurement to report")
    if len(values) != len(measurements):
        raise ValueError(f"{len(measurements)} measurements but {len(values)} sets of values")
    try:
        sources = source_images(volume, header_only=True)
    except OverlayError as exc:
        raise ValueError(str(exc)) from None
    evidence = {str(ds.SOPInstanceUID): ds for ds in sources}
    spec = _values_spec(volume.modality, volume.units)
    groups = []
    names = measurement_names(measurements)
    for name, m, vals in zip(names, measurements, values, strict=True):
        items = [hd.sr.Measurement(name=spec[key][0], value=float(vals[key]), unit=spec[key][1])
                 for key in ("length_mm", "angle_deg", "value", "mean", "sd", "min", "max", "area_mm2")
                 if key in vals and np.isfinite(float(vals[key]))]
        groups.append(hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier=m.label or name),
            referenced_region=_image_region(volume, m, evidence),
            measurements=items or None,
        ))
    procedure = codes.LN.CTUnspecifiedBodyRegion if volume.modality == "CT" else codes.SCT.ImagingProcedure
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(),
        procedure_reported=procedure,
        imaging_measurements=groups,
        title=codes.DCM.ImagingMeasurementReport,
    )
    series_number = int(sources[0].get("SeriesNumber") or 0) + 2000
    sr = hd.sr.Comprehensive3DSR(
        evidence=sources, content=report, series_instance_uid=hd.UID(), series_number=series_number,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer="Hounsfield",
        series_description="Measurements",
    )
    buf = io.BytesIO()
    sr.save_as(buf, enforce_file_format=True)
    return buf.getvalue()
