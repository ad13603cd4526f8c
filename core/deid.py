"""De-identified export: a series as DICOM files, PS3.15 Basic Profile, built in memory.

The profile's tables come from dicom-anonymizer (KitwareMedical), which encodes PS3.15
Annex E action by action (X remove, Z empty, D dummy, U new UID, and their combinations)
for the standard's 2024b edition. Two of its defaults are replaced here: UIDs are remapped
through a map local to one export (the library keeps a process-wide map, which would link
exports of different users), and dates may be shifted by a whole number of days
("Retain Longitudinal Temporal Information with Modified Dates" option) instead of blanked.
"""

from __future__ import annotations

import datetime
import io
import threading
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from core.dicom_writer import dicom_bytes, is_resampled, series_datasets
from core.privacy import nested_may_be_phi

if TYPE_CHECKING:
    from core.volume import Volume

__all__ = ["DeidReport", "deidentified_zip", "deidentify"]

# The library's UID map is a module global: exports take turns and it is emptied after each.
_LIBRARY_LOCK = threading.Lock()


@dataclass
class DeidReport:
    """What the export did, in words and numbers."""

    files: int
    uids_remapped: int
    date_shift_days: int | None
    warnings: list[str] = field(default_factory=list)
    method: str = ""
    resampled: bool = False

    @property
    def content(self) -> str:
        """What the files hold, in words: the original slices or the resampled ones."""
        return "resampled slices (corrected geometry)" if self.resampled else "original slices"


def _shift_date(value: str, days: int) -> str:
    text = str(value).strip()
    if len(text) < 8:
        return ""
    try:
        d = datetime.datetime.strptime(text[:8], "%Y%m%d").date() + datetime.timedelta(days=days)
    except ValueError:
        return ""
    return d.strftime("%Y%m%d") + text[8:]


def _remap_uids(item: Dataset, uid_map: dict[str, str]) -> None:
    """Replace every UID in ``item`` (sequences included) through ``uid_map``, except class UIDs."""
    for elem in item:
        if elem.VR == "SQ":
            for sub in elem.value:
                _remap_uids(sub, uid_map)
        elif elem.value and _is_instance_uid(elem):
            values = elem.value if isinstance(elem.value, pydicom.multival.MultiValue) else [elem.value]
            new = [uid_map.setdefault(str(v), str(generate_uid())) for v in values]
            elem.value = new if len(new) > 1 else new[0]


def _rule_for(rules: dict, tag) -> Callable[[Dataset, tuple[int, int]], None] | None:
    """The Annex E action for ``tag``: an exact entry, else a repeating-group (mask) entry."""
    key = (tag.group, tag.element)
    if key in rules:
        return rules[key]
    for t, action in rules.items():
        if len(t) == 4 and tag.group & t[2] == t[0] & t[2] and tag.element & t[3] == t[1] & t[3]:
            return action
    return None


def _is_instance_uid(elem) -> bool:
    return elem.VR == "UI" and "ClassUID" not in elem.keyword and elem.keyword != "TransferSyntaxUID"


def _clean_item(item: Dataset, rules: dict, date_shift_days: int | None) -> None:
    """Apply the profile to one sequence item and everything nested in it, in place.

    Annex E attributes get their action (the library's own functions, which work on any
    dataset); dates are shifted instead when asked. What Annex E does not list is kept only
    when it cannot carry PHI: private and binary elements (which may hold anything) are
    removed, and so are text attributes (names, identifiers, dates, free text) other than the
    parts of coded entries. Instance UIDs stay, for the consistent remapping that follows.
    """
    from dicomanonymizer import simpledicomanonymizer as sda

    for elem in list(item):
        tag = elem.tag
        if tag not in item:  # removed along with an earlier element
            continue
        if tag.is_private or elem.VR in ("OB", "OW", "OF", "OD", "OL", "OV", "UN"):
            del item[tag]
            continue
        action = _rule_for(rules, tag)
        if elem.VR == "SQ":
            if action is sda.delete:
                del item[tag]
            else:
                for sub in elem.value or ():
                    _clean_item(sub, rules, date_shift_days)
            continue
        if elem.VR in ("DA", "DT") and date_shift_days is not None:
            if elem.value:
                elem.value = _shift_date(elem.value, date_shift_days)
            continue
        if action is not None:
            if _is_instance_uid(elem) and action in (sda.replace_UID, sda.delete_or_empty_or_replace_UID):
                continue
            action(item, (tag.group, tag.element))
            if elem.VR == "DA" and tag in item and str(item[tag].value or "") == "00010101":
                del item[tag]  # the library's X on a date writes a dummy date: remove it instead
        elif nested_may_be_phi(elem.keyword, elem.VR):
            del item[tag]


def _clean_sequences(ds: Dataset, rules: dict, date_shift_days: int | None) -> None:
    """Apply the profile inside every sequence left at the top level of ``ds``, and drop
    top-level elements of unknown content (UN), which may hold anything."""
    for elem in list(ds):
        if elem.tag not in ds:
            continue
        if elem.VR == "UN":
            del ds[elem.tag]
        elif elem.VR == "SQ":
            for sub in elem.value or ():
                _clean_item(sub, rules, date_shift_days)


def deidentify(datasets: list[Dataset], *, date_shift_days: int | None = None) -> DeidReport:
    """De-identify datasets in place with the PS3.15 Basic Application Level Confidentiality Profile.

    Parameters
    ----------
    datasets : list of pydicom.Dataset
        One series (or study): UIDs are remapped consistently across all of them.
    date_shift_days : int, optional
        Shift every date (DA, and the date of DT) by this many days instead of emptying or
        replacing it, so that intervals between studies are kept.

    Returns
    -------
    DeidReport
        Includes warnings where pixels may carry burned-in text.
    """
    from dicomanonymizer import simpledicomanonymizer as sda

    uid_map: dict[str, str] = {}
    warnings: list[str] = []
    base = sda.initialize_actions_2024b()

    def keep_uid_for_later(dataset: Dataset, tag: tuple[int, int]) -> None:
        # U actions: remapped below, with this export's own map.
        return None

    def shift(dataset: Dataset, tag: tuple[int, int]) -> None:
        elem = dataset.get(tag)
        if elem is not None and elem.value and date_shift_days is not None:
            elem.value = _shift_date(elem.value, date_shift_days)

    uid_actions = {sda.replace_UID, sda.delete_or_empty_or_replace_UID}
    extra = {tag: keep_uid_for_later for tag, action in base.items() if action in uid_actions and len(tag) == 2}
    burned = False
    methods: list[str] = []
    with _LIBRARY_LOCK:
        try:
            for ds in datasets:
                if str(ds.get("BurnedInAnnotation", "")).upper() == "YES" or str(ds.get("SOPClassUID", "")).startswith(
                        "1.2.840.10008.5.1.4.1.1.7"):
                    burned = True
                rules = dict(extra)
                if date_shift_days is not None:
                    for elem in ds:
                        tag = (elem.tag.group, elem.tag.element)
                        if elem.VR in ("DA", "DT") and tag in base:
                            rules[tag] = shift
                sda.anonymize_dataset(ds, extra_anonymization_rules=rules, delete_private_tags=True,
                                      base_rules_gen=sda.initialize_actions_2024b)
                # The library applies the table to the top level only: PS3.15 applies it to items too.
                _clean_sequences(ds, base, date_shift_days)
                # Every UID still present (sequences included) gets this export's consistent new one.
                _remap_uids(ds, uid_map)
                ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
                ds.PatientIdentityRemoved = "YES"
                methods = ["PS3.15 Basic Profile (dicom-anonymizer, 2024b tables)"]
                if date_shift_days is not None:
                    methods.append("Retain Longitudinal Temporal: Modified Dates")
                ds.DeidentificationMethod = methods if len(methods) > 1 else methods[0]
        finally:
            sda.dictionary.clear()
    if burned:
        warnings.append(
            "Pixels may carry burned-in text (Burned In Annotation is YES, or this is a secondary capture): "
            "de-identification cleans the header only. Check the images before sharing them."
        )
    return DeidReport(files=len(datasets), uids_remapped=len(uid_map), date_shift_days=date_shift_days,
                      warnings=warnings, method="; ".join(methods) if datasets else "")


def deidentified_zip(volume: Volume, *, date_shift_days: int | None = None) -> tuple[bytes, DeidReport]:
    """The volume as a zip of de-identified DICOM files, in memory.

    The folder in the zip says what the files hold: ``original_slices/IM00001.dcm``, ... or,
    for a corrected volume, ``resampled_slices/IM00001.dcm``, ... (see :attr:`DeidReport.content`).
    """
    datasets = series_datasets(volume)
    report = deidentify(datasets, date_shift_days=date_shift_days)
    report.resampled = is_resampled(volume)
    folder = "resampled_slices" if report.resampled else "original_slices"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for k, ds in enumerate(datasets):
            zf.writestr(f"{folder}/IM{k + 1:05d}.dcm", dicom_bytes(ds))
    return buf.getvalue(), report
