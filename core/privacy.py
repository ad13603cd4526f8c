"""What counts as PHI when showing a study: DICOM PS3.15 Annex E attributes, by keyword."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from core.numbers import length_mm

if TYPE_CHECKING:
    from core.volume import Volume

__all__ = ["DESCRIPTION_WORDS", "MASK", "PHI_KEYWORDS", "SAFE_NESTED_TEXT", "TEXT_VRS", "SeriesIdentity",
           "display_description", "is_phi", "is_safe_description", "masked", "nested_may_be_phi", "series_identity"]

MASK = "•••• (hidden)"

# Attributes of PS3.15 Table E.1-1 (Basic Application Level Confidentiality Profile)
# that a viewer commonly shows; the de-identification export applies the full table.
PHI_KEYWORDS: frozenset[str] = frozenset(
    {
        "AccessionNumber", "AcquisitionDate", "AcquisitionDateTime", "AcquisitionTime", "AdditionalPatientHistory",
        "AdmittingDiagnosesDescription", "ContentDate", "ContentTime", "DerivationDescription", "DeviceSerialNumber",
        "ImageComments", "InstanceCreationDate", "InstanceCreationTime", "InstitutionAddress", "InstitutionName",
        "InstitutionalDepartmentName", "IssuerOfPatientID", "MedicalRecordLocator", "NameOfPhysiciansReadingStudy",
        "OperatorsName", "OtherPatientIDs", "OtherPatientIDsSequence", "OtherPatientNames", "PatientAddress",
        "PatientAge", "PatientBirthDate", "PatientBirthName", "PatientBirthTime", "PatientComments", "PatientID",
        "PatientMotherBirthName", "PatientName", "PatientSex", "PatientSize", "PatientTelephoneNumbers",
        "PatientWeight", "PerformedProcedureStepDescription", "PerformedProcedureStepID",
        "PerformedProcedureStepStartDate", "PerformedProcedureStepStartTime", "PerformingPhysicianName",
        "PhysiciansOfRecord", "ProtocolName", "ReferringPhysicianName", "RequestAttributesSequence",
        "RequestingPhysician", "SeriesDate", "SeriesDescription", "SeriesTime", "StationName", "StudyDate",
        "StudyDescription", "StudyID", "StudyTime", "EthnicGroup", "Occupation", "MilitaryRank", "BranchOfService",
        "CountryOfResidence", "RegionOfResidence", "PatientReligiousPreference", "ResponsiblePerson",
        "ResponsibleOrganization", "ReasonForStudy", "RequestedProcedureDescription",
        "ScheduledProcedureStepDescription",
    }
)


# Value representations that can carry a name, an identifier, a date or free text.
TEXT_VRS: frozenset[str] = frozenset({"PN", "LO", "SH", "LT", "ST", "UT", "UC", "UR", "DA", "DT", "TM", "AS"})
# Text attributes that are safe inside sequence items: the parts of a coded entry (the code
# and its meaning come from a coding scheme, not from the patient) and technical strings.
SAFE_NESTED_TEXT: frozenset[str] = frozenset({
    "CodeValue", "CodingSchemeDesignator", "CodingSchemeVersion", "CodeMeaning", "LongCodeValue", "URNCodeValue",
    "ContextIdentifier", "MappingResource", "MappingResourceName", "ContextGroupVersion",
    "ContextGroupLocalVersion", "RescaleType", "LUTExplanation", "WindowCenterWidthExplanation",
})
_BINARY_VRS = frozenset({"OB", "OW", "OF", "OD", "OL", "OV", "UN"})


def nested_may_be_phi(keyword: str, vr: str) -> bool:
    """True for an element inside a sequence item that may carry PHI although Annex E does not
    list it: free text, names, identifiers and dates other than coded entries, and binary values."""
    return vr in _BINARY_VRS or (vr in TEXT_VRS and keyword not in SAFE_NESTED_TEXT)


def is_phi(keyword: str) -> bool:
    """True when the attribute is one the UI hides unless the user reveals PHI."""
    return keyword in PHI_KEYWORDS


def masked(value: Any, *, show: bool) -> str:
    """``str(value)`` when PHI is shown, else the mask."""
    return str(value) if show else MASK


# Words a series description may hold and still be shown with patient information hidden: anatomy,
# planes, reconstruction and contrast words of CT and MR protocols, lower-cased. A description is
# shown only when every word of it is one of these, a number, a number with a unit, or a short code
# with a digit (a kernel such as B30f or FC43, "3D"); any other word may be a name.
DESCRIPTION_WORDS: frozenset[str] = frozenset("""
    abd abdomen ac acute adrenal angio ankle aorta aortic ap arm art arterial asir ax axi axial
    body bolus bone brain breast bw c cap cardiac carotid cervical chest circle cor coronal cta ct ctp cor
    delay delayed dental detail dose dual dwi early ear elbow energy facial femur flair foot for
    full gated hand head heart helical helix hip hr hrct idose iv imr insp inspiration exp expiration
    iterative kidney knee kub lat lateral late leg liver localizer localiser low lower lumbar lung lungs
    mandible max maxillofacial med mediastinal mediastinum mip minip mono mpr mr msk native neck no non
    of orbit orbits pa pancreas pe pelvis perfusion phase plain plus portal post pre prone pulmonary
    range recon reconstruction ref renal report routine run safire sag sagittal scan scout sharp shoulder
    sinus sinuses skull slice slices smooth soft spine spiral standard std stone supine surview
    boneplus temporal thick thin thoracic thorax tissue topo topogram trauma ultra upper uro
    urogram o vascular venous vertebra volume vol w wo with without wrist x
""".split())
_UNIT = r"(mm|cm|kv|kvp|mas|ma|s|sec|hu|ml|keV|kev|%)"
_NUMBER = re.compile(r"^\d+(?:\.\d+)?" + _UNIT + r"?$", re.IGNORECASE)
# A kernel or short code: at most 6 characters, a digit, at most 3 letters (B30f, FC43, Br64, 3D; not Smith2).
_CODE = re.compile(r"^(?=.*\d)(?!(?:.*[A-Za-z]){4})[A-Za-z0-9]{1,6}$")
_ALLOWED_MARKS = re.compile(r"^[A-Za-z0-9\s.,:;/+\-_()\[\]%x=<>*#&']*$")


def is_safe_description(text: str) -> bool:
    """True when a series description holds only words that cannot be a name.

    The rule: every token (a run of letters and digits) is a number, a number with a unit
    (``5mm``, ``120kV``), a code of at most six letters and digits with at least one digit and at
    most three letters (kernels such as ``B30f``, ``FC43``, ``3D``), or a word of :data:`DESCRIPTION_WORDS`
    (anatomy, planes, reconstruction and contrast words, any case); and the text uses no
    characters other than letters, digits, spaces and common punctuation. So ``"Brain 1.0 H31s"``
    and ``"CHEST W/O C+ 5mm"`` pass, ``"Head SMITH"`` and ``"Jane's brain"`` do not.
    An empty description is not shown either.
    """
    text = text.strip()
    if not text or len(text) > 64 or not _ALLOWED_MARKS.match(text):
        return False
    for token in re.findall(r"[A-Za-z0-9.]+", text):
        token = token.strip(".")
        if not token:
            continue
        for part in re.split(r"(?<=[A-Za-z])\.(?=[A-Za-z])", token):
            if _NUMBER.match(part) or _CODE.match(part) or part.lower() in DESCRIPTION_WORDS:
                continue
            return False
    return True


@dataclass(frozen=True)
class SeriesIdentity:
    """What tells a series apart without identifying the patient (as text, "" when the header has none)."""

    number: str  # SeriesNumber (0020,0011)
    description: str  # SeriesDescription when revealed or when it passes is_safe_description, else ""
    body_part: str  # BodyPartExamined (0018,0015), lower case
    kernel: str  # ConvolutionKernel (0018,1210)
    thickness: str  # SliceThickness (0018,0050), "1 mm"
    contrast: str  # "contrast" when (0018,0010) Contrast/Bolus Agent is given, else ""
    date: str  # SeriesDate or StudyDate, only when PHI is revealed (YYYY-MM-DD)


def _text(ds: Any, keyword: str) -> str:
    from core.headers import lenient

    value = lenient(ds, keyword, "")
    if isinstance(value, (list, tuple)):
        value = "\\".join(str(v) for v in value)
    return re.sub(r"[\x00-\x1f\x7f]+", " ", str(value)).strip()


def series_identity(volume: Volume, *, show_phi: bool) -> SeriesIdentity:
    """The facts that tell ``volume`` from the other series of its study.

    Series number, body part, kernel and slice thickness are not patient information
    (DICOM PS3.15 Annex E keeps them); the contrast agent's name is (E.1-1 lists it), so only
    whether one was given is said. The description is shown when ``show_phi`` or when it passes
    :func:`is_safe_description`; dates only when ``show_phi``. The built-in sample's patient is
    fictitious: its description and date are always shown.
    """
    from core.sample import SERIES_UID as SAMPLE_SERIES

    ds = volume.header
    description = volume.description
    label = " (localizer)" if description.endswith("(localizer)") else ""
    bare = description[: -len(" (localizer)")] if label else description
    fictitious = ds is None or volume.series_uid == SAMPLE_SERIES  # the built-in sample's patient is made up
    show_phi = show_phi or fictitious
    if show_phi or is_safe_description(bare):
        shown = description
    else:
        shown = label.strip(" ()") if label else ""
    number = _text(ds, "SeriesNumber")
    kernel = _text(ds, "ConvolutionKernel")
    thickness = ""
    try:
        value = float(_text(ds, "SliceThickness") or "nan")
        thickness = length_mm(value) if value > 0 else ""
    except ValueError:
        thickness = ""
    date = ""
    if show_phi:
        raw = _text(ds, "SeriesDate") or _text(ds, "StudyDate")
        date = f"{raw[:4]}-{raw[4:6]}-{raw[6:8]}" if re.fullmatch(r"\d{8}", raw) else raw
    return SeriesIdentity(
        number=number if re.fullmatch(r"-?\d{1,12}", number) else "",
        description=shown,
        body_part=_text(ds, "BodyPartExamined").lower()[:32],
        kernel=kernel[:24] if _ALLOWED_MARKS.match(kernel) else "",
        thickness=thickness,
        contrast="contrast" if _text(ds, "ContrastBolusAgent") else "",
        date=date,
    )


def _shape_words(volume: Volume) -> str:
    """``CT 200x512x512`` for a stack; the kind and its frames or images, columns x rows, for the others."""
    from core.numbers import count

    n, rows, cols = volume.shape
    colour = "colour " if volume.rgb is not None else ""
    if volume.kind == "loop":
        return f"{volume.modality} {colour}loop, {count(n, 'frame')} of {cols} x {rows}"
    if volume.kind == "projection":
        return f"{volume.modality} {colour}projection, {cols} x {rows}"
    if volume.kind == "gallery":
        return f"{volume.modality} {colour}" + ("image" if n == 1 else f"gallery, {count(n, 'image')}")
    return f"{volume.modality} {'x'.join(str(k) for k in volume.shape)}"


def display_description(volume: Volume, index: int, *, show_phi: bool) -> str:
    """A series label safe to show, that tells the series apart with patient information hidden.

    ``#2 Series 3 (Brain 1.0) — head, kernel H31s, 1 mm, contrast, CT 200x512x512``: the position in
    the study, the series number, the description when :func:`series_identity` shows it, then body
    part, kernel, slice thickness, contrast and the voxels. The built-in sample's patient is
    fictitious, so its description is always shown.
    """
    from core.sample import SERIES_UID as SAMPLE_SERIES

    facts = _shape_words(volume)
    if volume.header is None or volume.series_uid == SAMPLE_SERIES:
        return f"#{index + 1} {volume.description or '(no description)'} — {facts}"
    ident = series_identity(volume, show_phi=show_phi)
    name = f"Series {ident.number}" if ident.number else "Series"
    if ident.description:
        name += f" ({ident.description})"
    details = [ident.body_part, f"kernel {ident.kernel}" if ident.kernel else "", ident.thickness, ident.contrast,
               ident.date, facts]
    return f"#{index + 1} {name} — " + ", ".join(d for d in details if d)
