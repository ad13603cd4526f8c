"""The tag browser's rows: every element of a header, PHI masked, long and binary values summarised."""

from __future__ import annotations

from dataclasses import dataclass

import pydicom
from pydicom.dataset import Dataset

from core.privacy import MASK, is_phi, nested_may_be_phi

__all__ = ["TagRow", "filter_rows", "tag_rows"]

_BINARY_VRS = {"OB", "OW", "OD", "OF", "OL", "OV", "UN"}


def _value_text(elem: pydicom.DataElement, max_len: int) -> str:
    if elem.VR == "SQ":
        n = len(elem.value)
        return f"Sequence of {n} item{'s' if n != 1 else ''}"
    if elem.VR in _BINARY_VRS:
        length = len(elem.value) if elem.value is not None else 0
        return f"<{length} bytes of binary data>"
    value = elem.value
    if isinstance(value, (bytes, bytearray)):
        return f"<{len(value)} bytes>"
    text = "\\".join(str(v) for v in value) if isinstance(value, pydicom.multival.MultiValue) else str(value)
    return text if len(text) <= max_len else f"{text[:max_len]}… ({len(text)} characters)"


@dataclass(frozen=True)
class TagRow:
    """One element of a header as the tag browser shows it (``value`` already masked or summarised)."""

    tag: str  # "(GGGG,EEEE)"
    name: str  # the dictionary name, or the private creator's name
    keyword: str
    vr: str
    value: str
    private: bool
    path: str  # keywords from the top level, items numbered: "Seq[0] > CodeValue"
    depth: int  # 0 at the top level, 1 inside a sequence item, ...


def tag_rows(ds: Dataset, *, show_phi: bool, nested: bool = True, max_value_len: int = 120) -> list[TagRow]:
    """One row per element, in file order; sequence items follow their sequence, indented.

    Values of PS3.15 Annex E attributes, and of private tags (which may hold anything),
    are replaced by the mask unless ``show_phi``; so is everything nested inside them.
    """
    rows: list[TagRow] = []

    def walk(item: Dataset, depth: int, path: str, masked: bool) -> None:
        for elem in item:
            keyword = elem.keyword or (elem.name if elem.tag.is_private else "")
            private = elem.tag.is_private
            # Instance UIDs are in Annex E too (action U): they link files back to the source.
            uid = elem.VR == "UI" and "ClassUID" not in elem.keyword and elem.keyword != "TransferSyntaxUID"
            # Inside items, free text and binary values are hidden too: the export removes them.
            nested_phi = depth > 0 and nested_may_be_phi(elem.keyword, elem.VR)
            hide = masked or (not show_phi and (is_phi(elem.keyword) or private or uid or nested_phi))
            rows.append(TagRow(
                tag=f"({elem.tag.group:04X},{elem.tag.element:04X})",
                name=elem.name if elem.name else keyword,
                keyword=keyword,
                vr=elem.VR,
                value=MASK if hide and elem.VR != "SQ" else _value_text(elem, max_value_len),
                private=private,
                path=f"{path}{keyword or elem.tag}",
                depth=depth,
            ))
            if nested and elem.VR == "SQ":
                for n, sub in enumerate(elem.value):
                    walk(sub, depth + 1, f"{path}{keyword}[{n}] > ", hide)

    walk(ds, 0, "", False)
    return rows


def filter_rows(rows: list[TagRow], query: str) -> list[TagRow]:
    """Rows whose tag, name, keyword or shown value contains ``query`` (case-insensitive).

    Only the value as shown is searched, so a masked value cannot be found by searching.
    """
    q = query.strip().lower().replace(" ", "")
    if not q:
        return rows
    out = []
    for r in rows:
        hay = f"{r.tag}{r.tag.replace('(', '').replace(')', '').replace(',', '')}{r.name}{r.keyword}{r.value}"
        if q in hay.lower().replace(" ", ""):
            out.append(r)
    return out
