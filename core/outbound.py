"""Outbound HTTP on a visitor's behalf: allowed addresses only, pinned, and bounded in time and bytes.

A hosted app runs every visitor in one server process, on a network that may reach internal
services and the cloud's metadata endpoint. :class:`GuardedSession` is a ``requests.Session``
(so dicomweb-client can use it) that, for every request and every redirect hop:

- accepts only ``http`` and ``https`` URLs without user names in them;
- resolves the host once, refuses it when any of its addresses lies in a range the
  :class:`AddressPolicy` does not allow (numeric forms such as ``2130706433`` or ``0x7f.1`` are
  normalised first), and connects to exactly the address it checked, sending the original
  ``Host`` header and TLS server name (no second lookup, so no DNS rebinding);
- follows redirects only to the same scheme, host and port, a few at most;
- stops a request at a total deadline (a watchdog shuts the socket down, so a server that
  trickles one byte at a time cannot hold the request open) and reads at most ``max_bytes``
  of an answer, streamed, whatever the server claims in ``Content-Length``;
- ignores the environment (proxies, ``.netrc`` credentials, CA bundles named in variables).

Failures raise :class:`OutboundError` subclasses whose messages say what happened in words.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

__all__ = [
    "AddressPolicy", "AddressRefused", "AnswerTooLarge", "DeadlineExceeded", "GuardedSession", "OutboundError",
    "Target", "address_category", "check_url", "parse_ip",
]

MB = 1024**2
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Sequence[str]]


class OutboundError(ConnectionError):
    """An outbound request that was refused or stopped; ``str()`` says why in words."""


class AddressRefused(OutboundError):
    """The URL, its address or a redirect is not one this server may connect to."""


class DeadlineExceeded(OutboundError):
    """The request, with all its redirects and its whole answer, took longer than ``seconds``."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"The server did not finish answering within {seconds:g} s.")
        self.seconds = seconds


class AnswerTooLarge(OutboundError):
    """The answer is larger than the most this server reads for it."""


# Cloud metadata services (AWS, GCP, Azure, OpenStack: 169.254.169.254; AWS ECS: 169.254.170.2;
# AWS IPv6: fd00:ec2::254; Alibaba: 100.100.100.200; Oracle: 192.0.0.192): never allowed.
_METADATA = frozenset(ipaddress.ip_address(a) for a in (
    "169.254.169.254", "169.254.170.2", "169.254.169.253", "fd00:ec2::254", "100.100.100.200", "192.0.0.192"))
_PRIVATE = tuple(ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"))
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")
# Categories a local user's "own network" setting opens; the others stay closed.
OWN_NETWORK = frozenset({"loopback", "private"})


def address_category(ip: IPAddress) -> str | None:
    """What kind of non-public address ``ip`` is (``"loopback"``, ``"private"``, ...), or None if public.

    IPv6 forms that carry an IPv4 address (IPv4-mapped ``::ffff:a.b.c.d``, IPv4-compatible,
    NAT64 ``64:ff9b::/96``, 6to4 ``2002::/16``) are judged by the IPv4 address they carry.
    """
    if isinstance(ip, ipaddress.IPv6Address):
        ip = ipaddress.IPv6Address(ip.exploded)  # drop a %scope: ranges ignore it
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and (ip in _NAT64 or (ip in _IPV4_COMPATIBLE and int(ip) > 1)):
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            return address_category(embedded)
        if ip.teredo is not None:
            return "tunnel (Teredo)"
    if ip in _METADATA:
        return "cloud metadata"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if ip.is_multicast:
        return "multicast"
    if ip in _CGNAT:
        return "shared (carrier-grade NAT)"
    if ip.is_unspecified or ip in _THIS_NETWORK:
        return "unspecified"
    if any(ip in net for net in _PRIVATE):
        return "private"
    if ip.is_reserved or not ip.is_global:
        return "reserved"
    return None


@dataclass(frozen=True)
class AddressPolicy:
    """Which non-public addresses outbound requests may reach.

    Attributes
    ----------
    allow_private : bool
        Allow loopback (127.0.0.0/8, ::1) and private ranges (10/8, 172.16/12, 192.168/16,
        fc00::/7): a local user's own network. Link-local, shared (CGNAT), multicast, reserved
        and cloud metadata addresses stay refused.
    allowed_networks : tuple of ip_network
        Further networks the operator opens explicitly (e.g. ``100.64.0.0/10`` for a VPN).
        Cloud metadata addresses are refused even inside them.
    """

    allow_private: bool = False
    allowed_networks: tuple[Network, ...] = ()

    def refusal(self, ip: IPAddress) -> str | None:
        """The category that makes ``ip`` refused under this policy, or None when it is allowed."""
        category = address_category(ip)
        if category is None:
            return None
        if category == "cloud metadata":
            return category
        if self.allow_private and category in OWN_NETWORK:
            return None
        plain = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped else ip
        if any(plain.version == net.version and plain in net for net in self.allowed_networks):
            return None
        return category


_NUMERIC_HOST = re.compile(r"(?:0x[0-9a-f]*|[0-9]+)(?:\.(?:0x[0-9a-f]*|[0-9]+)){0,3}\.?", re.IGNORECASE)


def parse_ip(host: str) -> IPAddress | None:
    """The address ``host`` names literally, normalised, or None when it is a name to resolve.

    Besides the canonical forms this reads the ones ``inet_aton`` accepts and resolvers pass
    through: ``2130706433``, ``0x7f.1``, ``0177.0.0.1``, ``127.1`` all give ``127.0.0.1``.

    Raises
    ------
    AddressRefused
        When ``host`` looks numeric but is not a valid address (``999.1.1.1``).
    """
    bare = host.strip("[]")
    try:
        return ipaddress.ip_address(bare)
    except ValueError:
        pass
    if _NUMERIC_HOST.fullmatch(bare):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(bare.rstrip(".")))
        except OSError:
            raise AddressRefused(f"{host!r} is not a valid address.") from None
    return None


def _system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]  # SOCK_STREAM over IPv4 or IPv6: the host is text


@dataclass(frozen=True)
class Target:
    """Where one request goes: the URL's scheme, host and port, and the one address checked for it."""

    scheme: str
    host: str
    port: int
    ip: IPAddress

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError:
        port = None
    return scheme, (parts.hostname or "").lower(), port


def _resolve_within(resolver: Resolver, host: str, port: int, seconds: float | None) -> Sequence[str]:
    """``resolver(host, port)``, given up after ``seconds``: a name server that never answers
    would otherwise hold the request for as long as the system resolver keeps retrying."""
    if seconds is None:
        return resolver(host, port)
    answer: dict[str, Any] = {}

    def run() -> None:
        try:
            answer["addresses"] = resolver(host, port)
        except Exception as exc:  # noqa: BLE001 - handed over to the waiting thread
            answer["error"] = exc

    thread = threading.Thread(target=run, name="hounsfield-resolve", daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        raise DeadlineExceeded(seconds)
    if "error" in answer:
        raise answer["error"]
    return answer["addresses"]


def check_url(url: str, policy: AddressPolicy, *, resolver: Resolver | None = None,
              timeout: float | None = None) -> Target:
    """Check ``url`` against ``policy`` and pick the address to connect to.

    Every address the host resolves to must be allowed (a name that resolves to a public
    and a private address is refused), and the first one is returned: the caller connects to
    it and to nothing else. A host name is resolved within ``timeout`` seconds when given.

    Raises
    ------
    AddressRefused
        For another scheme than http(s), a user name in the URL, a bad port, or a refused address.
    OutboundError
        When the host name cannot be resolved.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise AddressRefused(f"Only http:// and https:// addresses are allowed, not {scheme or 'this one'}.")
    if parts.username is not None or parts.password is not None:
        raise AddressRefused("Put user names and passwords in the credential fields, not in the address.")
    host = (parts.hostname or "").lower()
    if not host:
        raise AddressRefused(f"The address {url!r} has no host name.")
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError:
        raise AddressRefused(f"The address {url!r} has an invalid port.") from None
    literal = parse_ip(host)
    if literal is not None:
        addresses = [literal]
    else:
        try:
            found = _resolve_within(resolver or _system_resolver, host, port, timeout)
        except DeadlineExceeded:
            raise
        except (OSError, UnicodeError):
            raise OutboundError(f"The host name {host!r} could not be resolved.") from None
        addresses = [ipaddress.ip_address(a.split("%")[0]) for a in found]
        if not addresses:
            raise OutboundError(f"The host name {host!r} could not be resolved.")
    for ip in addresses:
        category = policy.refusal(ip)
        if category is not None:
            raise AddressRefused(
                f"{host} is a {category} address ({ip}): this server does not connect to {category} addresses "
                f"on a visitor's behalf. Someone running the app on their own computer or network can allow "
                f"it (see \"Hosting safely\" in the README).")
    return Target(scheme, host, port, addresses[0])


class _Deadline:
    """A total time limit for one request; at the end a watchdog shuts its sockets down.

    A per-read timeout cannot stop a server that sends one byte just before each read times
    out; shutting the socket down from another thread ends the blocked read at once.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = float(seconds)
        self.end = time.monotonic() + self.seconds
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._fired = False
        self._timer = threading.Timer(self.seconds, self._expire)
        self._timer.daemon = True
        self._timer.start()

    @property
    def expired(self) -> bool:
        return self._fired or time.monotonic() >= self.end

    def remaining(self) -> float:
        return max(0.0, self.end - time.monotonic())

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            if self._fired:
                _shut(sock)
            else:
                self._sockets.append(sock)

    def _expire(self) -> None:
        with self._lock:
            self._fired = True
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            _shut(sock)

    def cancel(self) -> None:
        self._timer.cancel()
        with self._lock:
            self._sockets = []

    def exceeded(self) -> DeadlineExceeded:
        return DeadlineExceeded(self.seconds)


def _shut(sock: socket.socket) -> None:
    try:
        # The base method on purpose: SSLSocket.shutdown would also drop its TLS state under
        # a reader in another thread; shutting the descriptor down just ends that read.
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass


class _Watched:
    """Hands each new socket to the request's deadline (a mixin for urllib3's connections)."""

    deadline: _Deadline | None = None
    sock: socket.socket

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]  # a mixin: the connection class comes after it
        if self.deadline is not None:
            self.deadline.watch(self.sock)


class _WatchedConnection(_Watched, HTTPConnection):
    pass


class _WatchedHTTPSConnection(_Watched, HTTPSConnection):
    pass


class _Pinned:
    """Gives each new connection the request's deadline (a mixin for urllib3's pools)."""

    deadline: _Deadline | None = None

    def _new_conn(self):
        conn = super()._new_conn()  # type: ignore[misc]  # a mixin: the pool class comes after it
        conn.deadline = self.deadline
        return conn


class _PinnedPool(_Pinned, HTTPConnectionPool):
    ConnectionCls = _WatchedConnection


class _PinnedHTTPSPool(_Pinned, HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


def _pinned_pool(target: Target, deadline: _Deadline) -> HTTPConnectionPool:
    """A pool of one connection to the checked address, whatever the URL's host resolves to later."""
    if target.scheme == "https":
        pool: _PinnedPool | _PinnedHTTPSPool = _PinnedHTTPSPool(
            str(target.ip), target.port, maxsize=1, retries=False,
            server_hostname=target.host, assert_hostname=target.host)
    else:
        pool = _PinnedPool(str(target.ip), target.port, maxsize=1, retries=False)
    pool.deadline = deadline
    return pool


class _BoundedBody:
    """The answer's body as urllib3 gives it to requests, read at most ``max_bytes`` and by the deadline."""

    def __init__(self, raw: Any, *, deadline: _Deadline, max_bytes: int, what: str,
                 on_close: Callable[[], None]) -> None:
        self._raw = raw
        self._deadline = deadline
        self._max = max_bytes
        self._what = what
        self._on_close = on_close
        self._read = 0
        self._pending: Iterator[bytes] | None = None
        self.owns_deadline = False

    def too_large(self) -> AnswerTooLarge:
        return AnswerTooLarge(f"The server's answer is larger than {self._max / MB:g} MB, the most this app reads "
                              f"for {self._what}.")

    def stream(self, amt: int = 2**16, decode_content: bool | None = None) -> Iterator[bytes]:
        try:
            for chunk in self._raw.stream(amt, decode_content=True):
                self._read += len(chunk)
                if self._read > self._max:
                    raise self.too_large()
                if self._deadline.expired:
                    raise self._deadline.exceeded()
                yield chunk
        except OutboundError:
            self.close()
            raise
        except Exception:
            self.close()
            if self._deadline.expired:
                raise self._deadline.exceeded() from None
            raise
        self._done()

    def read(self, amt: int | None = None, **_: Any) -> bytes:
        if amt is None:
            return b"".join(self.stream())
        if self._pending is None:
            self._pending = self.stream(amt)
        return next(self._pending, b"")

    def _done(self) -> None:
        if self.owns_deadline:
            self._deadline.cancel()
        self._on_close()

    def close(self) -> None:
        try:
            self._raw.close()
        finally:
            self._done()

    def release_conn(self) -> None:
        self._raw.release_conn()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)


class _PinnedAdapter(HTTPAdapter):
    """Sends each request to the address :func:`check_url` approved, through a fresh pinned pool."""

    def __init__(self, session: GuardedSession) -> None:
        super().__init__(max_retries=0)
        self._session = session

    def get_connection_with_tls_context(self, request, verify, proxies=None, cert=None):
        return request.hounsfield_pool

    def send(self, request, stream=False, timeout=None, verify=True, cert=None, proxies=None,
             deadline: _Deadline | None = None):
        s = self._session
        deadline = deadline or _Deadline(s.deadline)
        try:
            target = check_url(request.url, s.policy, resolver=s.resolver, timeout=max(0.05, deadline.remaining()))
        except DeadlineExceeded:
            raise deadline.exceeded() from None
        request.headers["Host"] = target.host_header
        pool = _pinned_pool(target, deadline)
        request.hounsfield_pool = pool
        per_read = max(0.05, min(s.read_timeout, deadline.remaining()))
        try:
            response = super().send(request, stream=True, timeout=(per_read, per_read), verify=verify, cert=cert,
                                    proxies={})
        except Exception:
            pool.close()
            raise
        response.raw = _BoundedBody(response.raw, deadline=deadline, max_bytes=s.max_bytes, what=s.what,
                                    on_close=pool.close)
        length = response.headers.get("Content-Length", "")
        if length.isdigit() and int(length) > s.max_bytes:
            error = response.raw.too_large()
            response.close()
            raise error
        return response


class GuardedSession(requests.Session):
    """A ``requests.Session`` for requests a visitor asked for: checked, pinned and bounded.

    Parameters
    ----------
    policy : AddressPolicy
        Which non-public addresses may be reached.
    deadline : float
        Seconds one request may take in all: connecting, redirects, reading the whole answer.
    read_timeout : float
        Seconds to wait for the next bytes (no more than what is left of the deadline).
    max_bytes : int
        The most of one answer's body that is read; more raises :class:`AnswerTooLarge`.
    what : str
        What the answers are, in words, for messages ("a search answer").
    max_redirects : int
        Redirects followed, each to the same scheme, host and port only.
    resolver : callable, optional
        ``resolver(host, port) -> [address, ...]``; ``socket.getaddrinfo`` by default.
    on_answer : callable, optional
        ``on_answer(nbytes)`` once an answer that is not streamed has been read, before anyone
        parses it (to reserve memory for that); whatever it raises ends the request.
    """

    def __init__(self, policy: AddressPolicy, *, deadline: float = 20.0, read_timeout: float = 15.0,
                 max_bytes: int = 4 * MB, what: str = "this request", max_redirects: int = 3,
                 resolver: Resolver | None = None, on_answer: Callable[[int], None] | None = None) -> None:
        super().__init__()
        self.trust_env = False  # no proxies, .netrc credentials or CA bundles from the environment
        self.policy = policy
        self.deadline = float(deadline)
        self.read_timeout = float(read_timeout)
        self.max_bytes = int(max_bytes)
        self.what = what
        self.max_redirects = int(max_redirects)
        self.resolver = resolver
        self.on_answer = on_answer
        self.headers["Accept-Encoding"] = "identity"  # a compressed answer could inflate past the count
        adapter = _PinnedAdapter(self)
        self.mount("http://", adapter)
        self.mount("https://", adapter)

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        stream = kwargs.pop("stream", False)
        kwargs.pop("allow_redirects", None)
        kwargs.pop("proxies", None)
        deadline = _Deadline(self.deadline)
        adapter = self.get_adapter(request.url or "")
        if not isinstance(adapter, _PinnedAdapter):  # a remounted adapter would skip the address check
            raise TypeError(f"GuardedSession sends only through its own adapter, not {type(adapter).__name__}")
        try:
            response = self._follow(adapter, request, deadline, kwargs)
            response.raw.owns_deadline = True
            if not stream:
                if self.on_answer is not None:
                    self.on_answer(len(response.content))  # read now, within the bounds
                else:
                    response.content  # noqa: B018 - read now, within the bounds
        except OutboundError:
            deadline.cancel()
            raise
        except requests.RequestException:
            deadline.cancel()
            if deadline.expired:
                raise deadline.exceeded() from None
            raise
        return response

    def _follow(self, adapter: _PinnedAdapter, request: requests.PreparedRequest, deadline: _Deadline,
                kwargs: dict[str, Any]) -> requests.Response:
        history: list[requests.Response] = []
        for _ in range(self.max_redirects + 1):
            response = adapter.send(request, deadline=deadline, **kwargs)
            response.history = list(history)
            if not response.is_redirect:
                return response
            response.close()
            target = urljoin(request.url or "", response.headers["location"])
            if _origin(target) != _origin(request.url or ""):
                raise AddressRefused("The server redirected to another server, which this app does not follow.")
            history.append(response)
            request = request.copy()
            request.prepare_url(target, None)
        raise AddressRefused(f"The server redirected more than {self.max_redirects} times.")
