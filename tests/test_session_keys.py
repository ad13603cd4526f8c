"""Session keys that survive page changes: registered by each page's UI module in dashboard.state."""

from __future__ import annotations

import ast

import pytest

from dashboard import state
from tests.helpers import ROOT, page_test

UI_MODULES = ("details_ui", "explorer", "faces_ui", "histogram_ui", "iso_ui", "pacs_ui")


def test_the_frame_does_not_import_the_pages_ui_modules():
    tree = ast.parse((ROOT / "dashboard" / "frame.py").read_text())
    imported = {alias.name.split(".")[-1] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom | ast.Import)
                for alias in node.names} | {node.module.split(".")[-1] for node in ast.walk(tree)
                                              if isinstance(node, ast.ImportFrom) and node.module}
    assert imported.isdisjoint(UI_MODULES), imported & set(UI_MODULES)


@pytest.mark.parametrize("name", UI_MODULES)
def test_each_ui_module_registers_its_keys_when_imported(name):
    import importlib

    module = importlib.import_module(f"dashboard.{name}")
    assert set(module.PERSISTENT) <= state.persistent_keys()


def test_a_setting_is_kept_after_a_visit_to_another_page():
    at = page_test(ROOT / "pages" / "2_HU_histogram.py").run()
    at.toggle(key="histogram_log").set_value(True).run()
    at.number_input(key="histogram_bin_width").set_value(25.0).run()
    at.switch_page("streamlit_app.py").run()  # no histogram widget is drawn there
    at.switch_page("pages/2_HU_histogram.py").run()
    assert not at.exception
    assert at.toggle(key="histogram_log").value is True
    assert at.number_input(key="histogram_bin_width").value == 25.0
