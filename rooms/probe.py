"""The server's own look at a movie URL: its Content-Type, by HEAD, bounded and SSRF-guarded.

The probe connects only to public addresses (docs/security.md): every address the host
name resolves to is checked, again after each redirect, and the connection goes to an
address that was checked, never through a second name lookup (no DNS rebinding). Numeric
host forms (2130706433, 0x7f.1, [::ffff:127.0.0.1]) resolve to the address they mean and
are judged by it. `jobs.probe_allowed_networks` names networks or host names the probe
may reach anyway (a media server on the LAN). Browsers are not limited by any of this.
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import queue
import socket
import ssl
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urljoin, urlsplit

from django.conf import settings

from synctv_project.config import ProbeDestination, parse_probe_destination

# The whole probe of one URL (name lookups, redirects and the GET fallback included).
PROBE_TIMEOUT_SECS = 5.0
PROBE_MAX_REDIRECTS = 5
PROBE_USER_AGENT = "SyncTV-probe/1"
HEAD_REFUSED = frozenset({405, 501})
REDIRECTS = frozenset({301, 302, 303, 307, 308})
# IPv6 ranges that carry an IPv4 address in their last 32 bits (RFC 6052 NAT64 prefixes).
NAT64_PREFIXES = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class ProbeFailed(Exception):
    """The URL did not tell a content type; the message says why."""


class ProbeRefused(ProbeFailed):
    """The URL's host is not a public address and no allow-list entry names it."""


def _embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one stands for (mapped, 6to4, NAT64), if any."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if any(address in prefix for prefix in NAT64_PREFIXES):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def non_public_reason(address: IPAddress) -> str | None:
    """Why the probe must not connect to `address` (None when it is a public unicast one)."""
    embedded = _embedded_ipv4(address)
    if embedded is not None:
        reason = non_public_reason(embedded)
        return f"{reason} (inside {address})" if reason else None
    for kind in ("loopback", "private", "link_local", "multicast", "reserved", "unspecified"):
        if getattr(address, f"is_{kind}"):
            return f"a {kind.replace('_', '-')} address"
    if isinstance(address, ipaddress.IPv6Address) and address.teredo is not None:
        return "a Teredo tunnel address"
    if not address.is_global:
        return "not a public address"
    return None


@dataclass(frozen=True)
class ProbeAllowList:
    """Networks and host names the probe may reach although they are not public."""

    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    host_names: frozenset[str] = frozenset()

    @classmethod
    def from_entries(cls, entries: Iterable[str]) -> ProbeAllowList:
        """Built from `jobs.probe_allowed_networks` (already validated at start)."""
        parsed: list[ProbeDestination] = [parse_probe_destination(entry) for entry in entries]
        return cls(
            networks=tuple(p for p in parsed if not isinstance(p, str)),
            host_names=frozenset(p for p in parsed if isinstance(p, str)),
        )

    @classmethod
    def configured(cls) -> ProbeAllowList:
        """The allow-list of the running node's settings."""
        return cls.from_entries(settings.SYNCTV_PROBE_ALLOWED_NETWORKS)

    def names_host(self, host: str) -> bool:
        """Whether the URL's host name itself is listed (any address it resolves to is allowed)."""
        return host.rstrip(".").lower() in self.host_names

    def names_address(self, address: IPAddress) -> bool:
        """Whether an allowed network holds the address (or the IPv4 address it stands for)."""
        candidates = [address]
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            candidates.append(embedded)
        return any(
            candidate.version == network.version and candidate in network
            for candidate in candidates
            for network in self.networks
        )


def checked_addresses(
    host: str, port: int, allowed: ProbeAllowList
) -> list[tuple[socket.AddressFamily, Any]]:
    """Every address `host` resolves to, as (family, sockaddr); ProbeRefused if any is refused.

    One refused address refuses the host: a name with a private address among public ones
    would otherwise reach the private one on some attempts.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise ProbeFailed(f"cannot resolve {host!r}: {exc}") from None
    if not infos:
        raise ProbeFailed(f"{host!r} resolves to no address")
    host_listed = allowed.names_host(host)
    targets: list[tuple[socket.AddressFamily, Any]] = []
    for family, _, _, _, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        reason = non_public_reason(address)
        if reason and not host_listed and not allowed.names_address(address):
            raise ProbeRefused(
                f"{host!r} resolves to {address}, {reason}; the server probes public "
                "addresses only (jobs.probe_allowed_networks can allow it)"
            )
        if (family, sockaddr) not in targets:
            targets.append((family, sockaddr))
    return targets


class _PinnedConnection(http.client.HTTPConnection):
    """An HTTP(S) connection to addresses already checked, whatever the host name says now.

    The Host header, TLS SNI and certificate check use the URL's host name; the TCP
    connection goes to one of `targets` (the first that accepts).
    """

    def __init__(
        self,
        host: str,
        port: int,
        targets: Sequence[tuple[socket.AddressFamily, Any]],
        timeout: float,
        tls: ssl.SSLContext | None,
    ) -> None:
        super().__init__(host, port, timeout=timeout)
        self.targets = targets
        self.tls = tls
        if tls is not None:
            self.default_port = 443  # no ":443" in the Host header

    def connect(self) -> None:
        """Connect to the first checked address that answers, then start TLS if asked."""
        failure: OSError | None = None
        for family, sockaddr in self.targets:
            sock = socket.socket(family, socket.SOCK_STREAM)
            try:
                sock.settimeout(self.timeout)
                sock.connect(sockaddr)
            except OSError as exc:
                sock.close()
                failure = exc
                continue
            self.sock = sock
            break
        else:
            raise failure or OSError("no address to connect to")
        if self.tls is not None:
            self.sock = self.tls.wrap_socket(self.sock, server_hostname=self.host)


class _ContentTypeProbe:
    """One look at a URL's Content-Type, run in a daemon thread so that its deadline holds.

    Socket timeouts bound each read, not the whole exchange (a server may trickle its
    headers) nor the name lookup; so the caller waits at most `timeout`, then shuts the
    socket and leaves the thread, which touches nothing else, to end on its own.
    """

    def __init__(self, url: str, timeout: float, allowed: ProbeAllowList) -> None:
        self.url = url
        self.timeout = timeout
        self.allowed = allowed
        self.deadline = time.monotonic() + timeout
        self._outcome: queue.SimpleQueue[tuple[bool, Any]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._connection: http.client.HTTPConnection | None = None
        self._abandoned = False

    def run(self) -> str:
        """The Content-Type of a 2xx answer; raises ProbeFailed (ProbeRefused for a guarded host)."""
        threading.Thread(target=self._ask, name="synctv-probe", daemon=True).start()
        try:
            succeeded, value = self._outcome.get(timeout=self.timeout)
        except queue.Empty:
            self._abandon()
            raise ProbeFailed(f"no answer within {self.timeout:g}s") from None
        if not succeeded:
            raise value
        return str(value)

    def _ask(self) -> None:
        try:
            status, content_type = self._request(self.url, "HEAD", {})
            if status in HEAD_REFUSED:
                # One byte at most: the body is never read anyway, the Range keeps it small.
                status, content_type = self._request(self.url, "GET", {"Range": "bytes=0-0"})
            if not 200 <= status < 300:
                self._outcome.put((False, ProbeFailed(f"the server answered {status}")))
            else:
                self._outcome.put((True, content_type))
        except ProbeFailed as exc:
            self._outcome.put((False, exc))
        except Exception as exc:  # any failure is the probe's answer, never the job's crash
            self._outcome.put((False, ProbeFailed(str(exc) or type(exc).__name__)))

    def _request(self, url: str, method: str, headers: dict[str, str]) -> tuple[int, str]:
        for _ in range(PROBE_MAX_REDIRECTS + 1):
            status, content_type, location = self._exchange(url, method, headers)
            if status not in REDIRECTS or not location:
                return status, content_type
            url = urljoin(url, location)
            if urlsplit(url).scheme not in ("http", "https"):
                raise ProbeFailed(f"redirected to {url!r}, not an http(s) URL")
        raise ProbeFailed(f"more than {PROBE_MAX_REDIRECTS} redirects")

    def _exchange(
        self, url: str, method: str, headers: dict[str, str]
    ) -> tuple[int, str, str | None]:
        """One request; the status line and headers are read, the body never is."""
        parts = urlsplit(url)
        https = parts.scheme == "https"
        host = parts.hostname or ""
        port = parts.port or (443 if https else 80)
        targets = checked_addresses(host, port, self.allowed)  # before any connection
        remaining = max(self.deadline - time.monotonic(), 0.001)
        tls = ssl.create_default_context() if https else None
        connection = _PinnedConnection(host, port, targets, remaining, tls)
        with self._lock:
            if self._abandoned:
                raise ProbeFailed("abandoned")
            self._connection = connection
        try:
            target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            safe = "!#$%&'()*+,/:;=?@[]~"  # percent-encode only what may not appear raw
            connection.request(
                method,
                quote(target, safe=safe),
                headers={"User-Agent": PROBE_USER_AGENT, **headers},
            )
            response = connection.getresponse()
            return (
                response.status,
                response.getheader("Content-Type", ""),
                response.getheader("Location"),
            )
        finally:
            connection.close()

    def _abandon(self) -> None:
        with self._lock:
            self._abandoned = True
            sock = self._connection.sock if self._connection is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked reading it


def fetch_content_type(
    url: str, timeout: float | None = None, allowed: ProbeAllowList | None = None
) -> str:
    """What an http(s) URL says its Content-Type is, by HEAD (a one-byte GET if HEAD is refused).

    Raises ProbeRefused for a host that is not public and not allowed (nothing is sent
    there), ProbeFailed on a timeout (PROBE_TIMEOUT_SECS for the whole probe by default),
    a refused connection or an answer other than 2xx. Never downloads a body.
    """
    return _ContentTypeProbe(
        url,
        PROBE_TIMEOUT_SECS if timeout is None else timeout,
        ProbeAllowList.configured() if allowed is None else allowed,
    ).run()
