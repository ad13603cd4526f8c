"""Text from files, made safe to show: no markup, no links, no images, whatever the file holds.

Streamlit 1.67 renders Markdown (with GitHub's autolinks) in far more places than
``st.markdown``: widget labels, radio options, help, captions, metric labels *and values*,
image captions, expander and tab labels, alerts. An image there makes the browser fetch it
(a tracking beacon); a bare ``http://``, ``www.`` or ``name@host`` becomes a link even when
every Markdown character is backslash-escaped (both checked in Chromium, see
tests/test_security_content.py). Plotly renders its own HTML subset (``<a href>``, ``<b>``)
in titles, axis labels and hover templates. Select box options, tables and the views
component show plain text.

So text from a file goes through :func:`md_escape` wherever Streamlit renders Markdown, and
through :func:`plotly_escape` into Plotly; in plain-text places it is shown as it is.
"""

from __future__ import annotations

import html
import re

# How numbers and units are written (one rule for every page; see docs/CONTRIBUTING.md).
from core.numbers import count, decimal, length_mm, ordinal, spacing_mm

__all__ = ["count", "decimal", "file_part", "keyword_label", "length_mm", "md_escape", "ordinal", "plotly_escape",
           "spacing_mm", "unit_label", "value_kind"]

# Characters that Markdown, GitHub's extensions or Streamlit's own syntax (":red[...]",
# ":material/x:", emoji shortcodes, "$" for LaTeX, "&" for entities) give a meaning to anywhere
# in a line; CommonMark allows a backslash before any ASCII punctuation.
_SPECIAL = re.compile(r"([\\`*_{}\[\]()!|~<>$:&])")
# Characters that mean something only where a block starts (a heading, a list item): escaped
# there, since the text may open a caption or an alert. Inline, they are left as they are.
_BLOCK_MARK = re.compile(r"^(#{1,6}|[+\-]|-{3,})(?=\s|$)")
_LIST_NUMBER = re.compile(r"^(\d{1,9})([.)])(?=\s|$)")
# Where GitHub-flavoured Markdown starts an autolink: "scheme://", "www." and "name@host"
# (mailto: and xmpp: included). A zero-width space placed in each breaks the autolink and
# is invisible in the page.
_AUTOLINK = re.compile(r"(:)(?=//)|(www)(?=\.)|(@)", re.IGNORECASE)
_ZWSP = "\u200b"
# Control characters (newlines included) would end a label or start a block.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


def _defused(text: object, max_len: int | None) -> str:
    text = _CONTROL.sub(" ", str(text)).strip()  # leading spaces would make a code block
    if max_len is not None and len(text) > max_len:
        text = text[:max_len] + "…"
    return _AUTOLINK.sub(lambda m: m.group(0) + _ZWSP, text)


def md_escape(text: object, *, max_len: int | None = 200) -> str:
    """``text`` safe for any place where Streamlit renders Markdown.

    Every character with a Markdown meaning is backslash-escaped (so the text shows as it is
    and makes no image, link, emphasis, directive, emoji, entity or formula, and does not open
    a heading or a list), newlines and other control characters become spaces, autolinks are
    broken with a zero-width space, and text longer than ``max_len`` characters is cut with
    an ellipsis.
    """
    escaped = _SPECIAL.sub(r"\\\1", _defused(text, max_len))
    return _LIST_NUMBER.sub(r"\1\\\2", _BLOCK_MARK.sub(r"\\\1", escaped))


def plotly_escape(text: object, *, max_len: int | None = 200) -> str:
    """``text`` safe in a Plotly title, axis label, legend or hover template.

    Plotly reads ``<a href>``, ``<b>``, ``<br>`` and entities in its text and ``%{...}`` in
    hover templates: markup is escaped as entities, and a zero-width space after each ``%``
    keeps text out of the template syntax.
    """
    return html.escape(_defused(text, max_len), quote=False).replace("%", "%" + _ZWSP)


def file_part(text: object, *, default: str = "series", max_len: int = 16) -> str:
    """``text`` reduced to letters and digits for a download's file name (a modality, say)."""
    part = re.sub(r"[^A-Za-z0-9]+", "", str(text))[:max_len]
    return part or default


def value_kind(dtype: object) -> str:
    """How a volume's values are stored, in words: "16-bit whole numbers", "32-bit decimals"."""
    import numpy as np

    d = np.dtype(dtype)  # type: ignore[call-overload]
    bits = d.itemsize * 8
    if d.kind == "f":
        return f"{bits}-bit decimals"
    return f"{bits}-bit whole numbers" + (" (no sign)" if d.kind in "ub" else "")


UNIT_CHARS = 16  # a unit from a file (Rescale Type is up to 64 characters) is cut to this, with "…"


def unit_label(units: str | None) -> str:
    """The unit of a volume's values as shown next to a number: ``units`` ("HU", "%", from the file,
    cut to 16 characters), or "stored units" when the file names none. Not escaped: it may come from a
    file."""
    if not units:
        return "stored units"
    return units if len(units) <= UNIT_CHARS else units[:UNIT_CHARS - 1] + "…"


# Labels of DICOM keywords where splitting the words would not say what people call them.
KEYWORD_LABELS = {
    "PatientName": "Patient", "PatientID": "Patient ID", "PatientBirthDate": "Birth date",
    "NumberOfStudyRelatedSeries": "Series", "NumberOfSeriesRelatedInstances": "Images",
    "NumberOfStudyRelatedInstances": "Images", "ModalitiesInStudy": "Modalities", "KVP": "Tube voltage (kVp)",
    "ConvolutionKernel": "Reconstruction kernel", "ManufacturerModelName": "Model",
}


def keyword_label(keyword: str) -> str:
    """A DICOM keyword or a snake_case name as a label: "SliceThickness" reads "Slice thickness",
    "StudyInstanceUID" "Study instance UID", "lung_volume_ml" "Lung volume ml"."""
    if keyword in KEYWORD_LABELS:
        return KEYWORD_LABELS[keyword]
    words = re.findall(r"[A-Z]{2,}(?=[A-Z][a-z]|\b|_|\d)|[A-Z]?[a-z]+|[A-Z]+|\d+", keyword.replace("_", " "))
    if not words:
        return keyword
    out = [w if (w.isupper() and len(w) > 1) else w.lower() for w in words]
    return out[0][:1].upper() + out[0][1:] + (" " + " ".join(out[1:]) if len(out) > 1 else "")
