"""Text from files shown through Markdown: escaped, so a description cannot become a link or markup."""

from __future__ import annotations

import re

_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|~<>$:])")


def md_escape(text: object) -> str:
    """``text`` with every Markdown (and Streamlit LaTeX ``$``) special character escaped."""
    return _SPECIAL.sub(r"\\\1", str(text)).replace("\n", " ")
