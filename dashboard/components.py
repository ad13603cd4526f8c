"""The app's own browser components: each a Streamlit v2 component made of a module's .js and .css."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import streamlit as st


def local_component(name: str, module_file: str, *, root_class: str) -> Any:
    """Declare component ``name`` from the ``.js`` and ``.css`` beside ``module_file`` (no build step),
    mounted in one ``<div class="root_class">``."""
    path = Path(module_file)
    css, js = (path.with_suffix(ext).read_text(encoding="utf-8") for ext in (".css", ".js"))
    return st.components.v2.component(name, html=f'<div class="{root_class}"></div>', css=css, js=js)
