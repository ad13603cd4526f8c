"""Helpers the page tests share: AppTests of the app and its pages, uploads, and what a page shows.

Test modules import these from here, never from each other (a test module imported by another
is collected twice in spirit: its import-time work and fixtures run for both).
"""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

from tests.factory import ct_series, ramp_volume

__all__ = ["APP", "PAGE_FILES", "ROOT", "app_test", "page_test", "page_text", "table_with", "upload_files",
           "visits_to_other_pages"]

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "streamlit_app.py"
PAGE_FILES = sorted((ROOT / "pages").glob("*.py")) if (ROOT / "pages").exists() else []


def app_test(*, timeout: int = 60) -> AppTest:
    """An AppTest of the entry point (the first page)."""
    return AppTest.from_file(str(APP), default_timeout=timeout)


def page_test(page: Path, *, timeout: int = 120) -> AppTest:
    """An AppTest of ``page`` reached from the entry point, as in the running app."""
    at = AppTest.from_file(str(APP), default_timeout=timeout)
    at.switch_page(str(page.relative_to(ROOT)))
    return at


def visits_to_other_pages(at: AppTest, page: Path):
    """Visit every other page of the app (the first page too) and come back to ``page``: yields each page visited."""
    for other in [APP, *PAGE_FILES]:
        if other != page:
            at.switch_page(str(other.relative_to(ROOT))).run()
            at.switch_page(str(page.relative_to(ROOT))).run()
            yield other


def upload_files(n=4, uid="1.2.3.1", patient="DOE^JANE", prefix="a", seed=0) -> list[tuple[str, bytes, str]]:
    """A small CT series as the file uploader receives it: ``(name, bytes, mime type)`` per slice."""
    return [(name, data, "application/dicom") for name, data in
            ct_series(ramp_volume((n, 16, 12), seed=seed), series_uid=uid, patient_name=patient,
                      names=lambda k: f"{prefix}{k:03d}.dcm")]


def table_with(at: AppTest, column: str):
    """The first table on the page that has ``column`` (tables carry no widget key)."""
    for df in at.dataframe:
        if column in df.value.columns:
            return df.value
    raise AssertionError(f"no table with a {column!r} column")


def page_text(at: AppTest) -> str:
    """Everything a person can read on the page: text elements, select boxes and tables."""
    parts = []
    for kind in ("markdown", "caption", "title", "subheader", "info", "warning", "error", "success", "text"):
        parts += [str(e.value) for e in getattr(at, kind)]
    parts += [str(sb.options) + str(sb.value) for sb in at.selectbox]
    for df in at.dataframe:
        parts.append(df.value.to_string())
    return "\n".join(parts)
