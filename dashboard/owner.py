"""Who a memory reservation belongs to: the browser session running this script."""

from __future__ import annotations

__all__ = ["session_owner"]


def session_owner() -> str:
    """This browser session's id (the owner of its reservations in ``core.memory``).

    Outside a Streamlit run (a test calling page code directly), one shared owner.
    """
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    return ctx.session_id if ctx is not None else "no-session"
