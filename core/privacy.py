"""What counts as PHI when showing a study: DICOM PS3.15 Annex E attributes, by keyword."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from core.volume import Volume

__all__ = ["MASK", "PHI_KEYWORDS", "SAFE_NESTED_TEXT", "TEXT_VRS", "display_description", "is_phi", "masked",
           "nested_may_be_phi"]

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


def display_description(volume: Volume, index: int, *, show_phi: bool) -> str:
    """A series label safe to show: SeriesDescription (PHI in Annex E) only when revealed.

    The built-in sample's patient is fictitious, so its description is always shown.
    """
    from core.sample import SERIES_UID as SAMPLE_SERIES

    facts = f"{volume.modality} {'x'.join(str(n) for n in volume.shape)}"
    if volume.header is None or show_phi or volume.series_uid == SAMPLE_SERIES:
        desc = volume.description or "(no description)"
        return f"#{index + 1} {desc} — {facts}"
    label = " (localizer)" if volume.description.endswith("(localizer)") else ""
    return f"#{index + 1} Series {index + 1}{label} — {facts}"
