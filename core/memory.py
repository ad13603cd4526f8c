"""One memory budget for the whole server: reservations checked before allocating.

Every visitor of a hosted app runs in the same process. Before an allocation whose size a
visitor's input decides (decoding pixels, inflating a deflated file, unzipping, meshing, a
photo), the code asks the budget for the bytes it is about to use; the budget refuses in
words when the session or the server as a whole would go over its share. Reservations are
released when the work ends (a ``with`` block) or when the object they were made for is
collected (:meth:`MemoryBudget.hold`), so a session that ends gives its share back.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

__all__ = ["MemoryBudget", "OverBudget", "Reservation", "budget_from_env", "server_budget", "set_server_budget"]

MB = 1024**2


class OverBudget(MemoryError):
    """A reservation the budget refused; ``str()`` says so in words a visitor understands."""


@dataclass
class Reservation:
    """Bytes reserved for one owner (a browser session, or a shared task)."""

    owner: str
    nbytes: int
    what: str
    _budget: MemoryBudget | None = None

    def release(self) -> None:
        """Give the bytes back (idempotent)."""
        budget, self._budget = self._budget, None
        if budget is not None:
            budget._release(self)


class MemoryBudget:
    """Bytes that visitors' work may hold at once, for the server and for each session.

    Parameters
    ----------
    total_bytes : int
        What all sessions together may hold (voxels, inflated files, meshes, photos).
    session_bytes : int
        What one owner may hold.

    Notes
    -----
    Thread-safe: Streamlit runs each session's script in its own thread.
    """

    def __init__(self, *, total_bytes: int, session_bytes: int) -> None:
        if total_bytes <= 0 or session_bytes <= 0:
            raise ValueError(f"budgets must be positive, got total_bytes={total_bytes}, session_bytes={session_bytes}")
        self.total_bytes = int(total_bytes)
        self.session_bytes = int(min(session_bytes, total_bytes))
        self._lock = threading.Lock()
        self._used: dict[str, int] = {}

    # -- queries --------------------------------------------------------------------------

    def used(self, owner: str | None = None) -> int:
        """Bytes reserved by ``owner``, or by everyone when ``owner`` is None."""
        with self._lock:
            return self._used.get(owner, 0) if owner is not None else sum(self._used.values())

    def available(self, owner: str) -> int:
        """Bytes ``owner`` could still reserve now."""
        with self._lock:
            total = sum(self._used.values())
            return max(0, min(self.total_bytes - total, self.session_bytes - self._used.get(owner, 0)))

    # -- reservations ---------------------------------------------------------------------

    def reserve(self, nbytes: int, *, owner: str, what: str) -> Reservation:
        """Reserve ``nbytes`` for ``owner`` or raise :class:`OverBudget`.

        Parameters
        ----------
        nbytes : int
            Bytes about to be allocated (0 or more).
        owner : str
            Whose share they count against (a session id; never a file name).
        what : str
            What they are for, in words ("the voxels of this series"): used in the message.
        """
        nbytes = max(0, int(nbytes))
        with self._lock:
            mine = self._used.get(owner, 0)
            total = sum(self._used.values())
            if mine + nbytes > self.session_bytes:
                raise OverBudget(
                    f"refused: {what} would need {_mb(nbytes)}, and this session may hold at most "
                    f"{_mb(self.session_bytes)} ({_mb(mine)} in use); close the study or load less at once"
                )
            if total + nbytes > self.total_bytes:
                raise OverBudget(
                    f"the server is busy: {what} would need {_mb(nbytes)}, and other visitors' work leaves "
                    f"{_mb(max(0, self.total_bytes - total))} free right now; try again in a few minutes"
                )
            self._used[owner] = mine + nbytes
        return Reservation(owner=owner, nbytes=nbytes, what=what, _budget=self)

    @contextmanager
    def reserved(self, nbytes: int, *, owner: str, what: str) -> Iterator[Reservation]:
        """``with budget.reserved(n, owner=..., what=...):`` holds the bytes for the block."""
        res = self.reserve(nbytes, owner=owner, what=what)
        try:
            yield res
        finally:
            res.release()

    def hold(self, obj: Any, reservation: Reservation) -> None:
        """Keep ``reservation`` until ``obj`` is garbage collected (a session's study, say)."""
        weakref.finalize(obj, reservation.release)

    def _release(self, res: Reservation) -> None:
        with self._lock:
            left = self._used.get(res.owner, 0) - res.nbytes
            if left > 0:
                self._used[res.owner] = left
            else:
                self._used.pop(res.owner, None)


def _mb(n: int) -> str:
    return f"{n / MB:,.0f} MB"


# What an operator may set (megabytes), read once when the process starts.
ENV_TOTAL = "HOUNSFIELD_MEMORY_MB"
ENV_SESSION = "HOUNSFIELD_SESSION_MEMORY_MB"
# Fitted to Streamlit Community Cloud (2.7 GB for the whole process): about 0.35 GB go to
# Python, the libraries and the sample, and 0.5-0.6 GB to what the budget does not count
# (Streamlit's own buffers, pages' figures, allocator slack, a visitor's transient copies).
DEFAULT_TOTAL_MB = 1700
DEFAULT_SESSION_MB = 700


def budget_from_env(environ: Mapping[str, str] | None = None) -> MemoryBudget:
    """The budget an operator chose with ``HOUNSFIELD_MEMORY_MB`` (and ``HOUNSFIELD_SESSION_MEMORY_MB``).

    Parameters
    ----------
    environ : mapping, optional
        The environment to read (``os.environ`` by default).

    Returns
    -------
    MemoryBudget
        ``HOUNSFIELD_MEMORY_MB`` (default 1700) for all sessions together; each session may hold
        ``HOUNSFIELD_SESSION_MEMORY_MB``, by default 40% of the total but at least 700 MB
        (or the total, when that is smaller).
    """
    env = os.environ if environ is None else environ
    total = _megabytes(env, ENV_TOTAL, DEFAULT_TOTAL_MB)
    default_session = max(min(total, DEFAULT_SESSION_MB), round(0.4 * total))
    session = _megabytes(env, ENV_SESSION, default_session)
    return MemoryBudget(total_bytes=total * MB, session_bytes=session * MB)


def _megabytes(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be a whole number of megabytes, got {raw!r}") from None
    if value <= 0:
        raise ValueError(f"{name} must be positive, got {value}")
    return value


# The server's one budget: every session of the process reserves from it (see the README's
# "Hosting safely"); tests replace it with set_server_budget.
_SERVER = budget_from_env()


def server_budget() -> MemoryBudget:
    """The budget shared by every session of this process."""
    return _SERVER


def set_server_budget(budget: MemoryBudget) -> None:
    """Replace the process's budget (at start-up, before any session runs, or in tests)."""
    global _SERVER
    _SERVER = budget
