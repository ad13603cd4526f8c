"""The operator's settings for a hosted app, read in one place: environment first, then st.secrets.

Each setting ``name`` is read from the environment variable ``HOUNSFIELD_<NAME>`` or, when
that is not set, from ``name`` in the ``[hounsfield]`` table of ``.streamlit/secrets.toml``.
Defaults are the safe ones for a shared public host; the README's "Hosting safely" section
lists every setting. Nothing here is cached: settings are read on each run (they are few and
cheap), so module state is never shared between visitors.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from typing import Any

import streamlit as st

from core.outbound import AddressPolicy, Network
from core.pacs import PacsLimits

__all__ = ["CohortSettings", "ConfiguredPacs", "ConfiguredPeer", "DimseSettings", "PacsSettings", "cohort_settings",
           "configured_pacs", "configured_peers", "dimse_settings", "pacs_settings", "setting"]

MB = 1024**2
TRUE, FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off", ""}
ACCESS_MODES = ("off", "login", "everyone")

# name: (default, what it is for) - the README's table is written from this.
SETTINGS: dict[str, tuple[str, str]] = {
    "pacs_page": ("on", "on | off: the PACS page at all"),
    "pacs_typed_addresses": ("on", ("on | off: visitors may type a DICOMweb address of their own (public "
                                    "addresses only, unless allow_private_networks)")),
    "pacs_configured_access": ("login", ("login | everyone | off: who may use the PACS configured in [pacs] "
                                         "and the DIMSE peers in [dimse] (login: visitors logged in with "
                                         "st.login, see [auth])")),
    "pacs_allowed_users": ("", ("comma-separated e-mail addresses allowed to use the configured PACS and DIMSE "
                                "peers when access is 'login' (empty: anyone who can log in)")),
    "allow_private_networks": ("0", ("1 on your own computer: loopback and private addresses (127/8, 10/8, "
                                     "172.16/12, 192.168/16, ::1, fc00::/7) may be reached")),
    "allowed_networks": ("", ("comma-separated networks also allowed (e.g. 100.64.0.0/10 for a VPN); "
                              "cloud metadata addresses stay refused")),
    "pacs_search_seconds": ("20", "total seconds for one search answer"),
    "pacs_retrieve_seconds": ("300", "total seconds for retrieving one series"),
    "pacs_answer_mb": ("4", "largest search answer read, in MB"),
    "pacs_instance_mb": ("200", "largest single image retrieved, in MB"),
    "pacs_series_mb": ("1000", "largest series retrieved, in MB (the memory budget may refuse earlier)"),
    "dimse": ("on", "on | off: DIMSE connections (C-ECHO, C-FIND, C-GET, C-MOVE, C-STORE) on the PACS page"),
    "dimse_typed_peers": ("off", ("on | off: visitors may type a DIMSE peer's host, port and AE titles (public "
                                  "addresses only, unless allow_private_networks); off: only the peers in [dimse]")),
    "dimse_move_port": ("", ("port of the app's short-lived storage SCP that receives C-MOVE (empty: C-MOVE off); "
                             "each peer must know our AE title with this server's address and this port")),
    "dimse_move_bind": ("0.0.0.0", "address that storage SCP listens on while a C-MOVE runs"),
    "dimse_find_limit": ("500", "most studies or series one C-FIND lists; past it the search stops and says so"),
    "cohort_run": ("off", ("on | off: visitors may run cohorts on the Cohort page, on a local Dask cluster of this "
                           "server (a cohort occupies every worker; one runs at a time); off: the page only shows "
                           "tables written by python -m core.cohort")),
    "cohort_server_paths": ("off", ("on | off: a cohort may be read from a folder path on this server (a hosted app "
                                    "must not browse its server's disk); off: only from an uploaded zip of studies")),
    "cohort_workers": ("2", "worker processes of the local Dask cluster a cohort runs on (one study in flight each)"),
    "cohort_worker_memory_mb": ("2000", "memory limit of each cohort worker, in MB (Dask restarts a worker over it)"),
    "cohort_max_studies": ("500", "most studies one cohort run on the page may hold"),
}


def _secrets_table(name: str) -> dict:
    try:
        return dict(st.secrets.get(name, {}) or {})
    except Exception:  # noqa: BLE001 - no or a malformed secrets file must not break the page
        return {}


def setting(name: str) -> str:
    """The raw value of setting ``name`` (one of :data:`SETTINGS`), as a string."""
    default = SETTINGS[name][0]
    value: Any = os.environ.get(f"HOUNSFIELD_{name.upper()}")
    if value is None:
        value = _secrets_table("hounsfield").get(name)
    if value is None:
        return default
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value).strip()


def _flag(name: str) -> bool:
    value = setting(name).lower()
    if value in TRUE:
        return True
    if value in FALSE:
        return False
    return SETTINGS[name][0].lower() in TRUE  # a value that is neither: the default


def _number(name: str) -> float:
    try:
        value = float(setting(name))
    except ValueError:
        value = float(SETTINGS[name][0])
    return value if value > 0 else float(SETTINGS[name][0])


def _networks(name: str) -> tuple[Network, ...]:
    out = []
    for item in setting(name).split(","):
        try:
            if item.strip():
                out.append(ipaddress.ip_network(item.strip(), strict=False))
        except ValueError:
            continue  # a typo opens nothing
    return tuple(out)


@dataclass(frozen=True)
class PacsSettings:
    """What the operator allows on the PACS page (see :data:`SETTINGS`)."""

    page: bool
    typed_addresses: bool
    configured_access: str
    allowed_users: tuple[str, ...]
    typed_policy: AddressPolicy
    configured_policy: AddressPolicy
    limits: PacsLimits


def pacs_settings() -> PacsSettings:
    """The PACS settings in force for this run."""
    access = setting("pacs_configured_access").lower()
    extra = _networks("allowed_networks")
    return PacsSettings(
        page=_flag("pacs_page"),
        typed_addresses=_flag("pacs_typed_addresses"),
        configured_access=access if access in ACCESS_MODES else "off",
        allowed_users=tuple(u.strip().lower() for u in setting("pacs_allowed_users").split(",") if u.strip()),
        typed_policy=AddressPolicy(allow_private=_flag("allow_private_networks"), allowed_networks=extra),
        # The operator chose this address: it may be on their own network, never on link-local
        # or metadata addresses (unless listed in allowed_networks, and metadata never).
        configured_policy=AddressPolicy(allow_private=True, allowed_networks=extra),
        limits=PacsLimits(
            search_seconds=_number("pacs_search_seconds"), retrieve_seconds=_number("pacs_retrieve_seconds"),
            answer_bytes=int(_number("pacs_answer_mb") * MB), instance_bytes=int(_number("pacs_instance_mb") * MB),
            series_bytes=int(_number("pacs_series_mb") * MB)),
    )


@dataclass(frozen=True)
class ConfiguredPacs:
    """The PACS the operator configured in ``[pacs]`` of the secrets (url, username, password, token, ca_bundle)."""

    url: str
    username: str | None = None
    password: str | None = None
    token: str | None = None
    ca_bundle: str | None = None

    def __repr__(self) -> str:  # never show secrets in logs or tracebacks
        return f"ConfiguredPacs(url={self.url!r})"


def configured_pacs() -> ConfiguredPacs | None:
    """The operator's PACS from ``st.secrets["pacs"]``, or None when there is none."""
    table = _secrets_table("pacs")
    url = str(table.get("url") or "").strip().rstrip("/")
    if not url:
        return None
    return ConfiguredPacs(url, username=table.get("username") or None, password=table.get("password") or None,
                          token=table.get("token") or None, ca_bundle=table.get("ca_bundle") or None)


def visitor_email() -> str | None:
    """The logged-in visitor's e-mail address (``st.user``).

    "" when their provider gives none, None when nobody is logged in.
    """
    try:
        if not st.user.is_logged_in:
            return None
        return str(st.user.get("email") or "")
    except Exception:  # noqa: BLE001 - no login set up, or an older Streamlit
        return None


def login_configured() -> bool:
    """Whether the operator set up Streamlit's login (an ``[auth]`` table in the secrets)."""
    return bool(_secrets_table("auth"))


@dataclass(frozen=True)
class DimseSettings:
    """What the operator allows for DIMSE peers (see :data:`SETTINGS`); policies and limits are the PACS ones."""

    enabled: bool
    typed_peers: bool
    move_port: int | None
    move_bind: str
    find_limit: int


def _port(name: str) -> int | None:
    value = setting(name)
    return int(value) if value.isdigit() and 0 < int(value) < 65536 else None


def dimse_settings() -> DimseSettings:
    """The DIMSE settings in force for this run."""
    return DimseSettings(enabled=_flag("dimse"), typed_peers=_flag("dimse_typed_peers"),
                         move_port=_port("dimse_move_port"), move_bind=setting("dimse_move_bind") or "0.0.0.0",
                         find_limit=int(_number("dimse_find_limit")))


@dataclass(frozen=True)
class ConfiguredPeer:
    """One DIMSE peer of ``[dimse.<name>]`` in the secrets: host, port, ae_title, our_ae_title, timeout.

    ``our_ae_title`` is the calling AE title this peer knows the app by: like a credential, it is
    used with this peer only.
    """

    name: str
    host: str
    port: int
    ae_title: str
    our_ae_title: str = "HOUNSFIELD"
    timeout: float = 30.0

    def __repr__(self) -> str:  # the AE title a peer trusts stays out of logs
        return f"ConfiguredPeer(name={self.name!r}, host={self.host!r}, port={self.port})"


def configured_peers() -> list[ConfiguredPeer]:
    """The operator's DIMSE peers from ``st.secrets["dimse"]`` (one table per peer); incomplete ones are left out."""
    peers = []
    for name, table in _secrets_table("dimse").items():
        try:
            table = dict(table)
            host, port, aet = str(table["host"]).strip(), int(table["port"]), str(table["ae_title"]).strip()
            timeout = float(table.get("timeout") or 30.0)
        except (KeyError, TypeError, ValueError):
            continue  # a peer without host, port and AE title is not offered
        if host and aet and 0 < port < 65536:
            peers.append(ConfiguredPeer(str(name), host, port, aet, str(table.get("our_ae_title") or "HOUNSFIELD"),
                                        timeout if timeout > 0 else 30.0))
    return peers


@dataclass(frozen=True)
class CohortSettings:
    """What the operator allows on the Cohort page (see :data:`SETTINGS`)."""

    run: bool
    server_paths: bool
    workers: int
    worker_memory_bytes: int
    max_studies: int


def cohort_settings() -> CohortSettings:
    """The cohort settings in force for this run."""
    return CohortSettings(run=_flag("cohort_run"), server_paths=_flag("cohort_server_paths"),
                          workers=max(1, int(_number("cohort_workers"))),
                          worker_memory_bytes=int(_number("cohort_worker_memory_mb") * MB),
                          max_studies=max(1, int(_number("cohort_max_studies"))))
