"""Outbound address filter for the HTTP tools: no request reaches a non-public address.

The URLs come from the model (prompt injection), so by default only public unicast addresses
may be connected to: loopback (``127/8``, ``::1``), private (``10/8``, ``172.16/12``,
``192.168/16``, ``fc00::/7``), link-local and cloud metadata (``169.254/16`` with
``169.254.169.254``, ``fe80::/10``, ``fd00:ec2::254``), shared (``100.64/10``), multicast,
unspecified (``0.0.0.0``, ``::``), reserved and documentation ranges are refused; an IPv6
address embedding an IPv4 one (IPv4-mapped ``::ffff:a.b.c.d``, 6to4, Teredo, NAT64
``64:ff9b::/96``) is refused when the embedded address is.

**Where the check is made.** In the connection itself, not on the URL: :class:`GuardedBackend`
is the httpcore network backend of the tools' HTTP client; for every new TCP connection it
resolves the host name *once*, checks the resolved addresses and connects to the checked IP
literal. The URL keeps its host name, so the ``Host`` header, TLS SNI and certificate checks
are unchanged. So a DNS answer that changes between check and use (rebinding) cannot get
through: no second resolution happens. Every redirect hop opens its connections through the
same backend (and the tools follow redirects themselves, see
:mod:`~conveyor_integrations.tools.search`), no proxy from the environment is used, and Unix
sockets are refused.

**Opening it.** ``allow_hosts`` names hosts (``"search.internal"``, ``"127.0.0.1"``) or one
port of a host (``"127.0.0.1:8080"``, ``"[::1]:8080"``) that may be reached whatever they
resolve to; ``allow_networks`` lists CIDR networks (``"10.1.0.0/16"``) whose addresses may be
reached on any port::

    >>> g = NetGuard(allow_hosts=("127.0.0.1:8080",))
    >>> g.check("127.0.0.1", 8080, "127.0.0.1"), g.check("127.0.0.1", 22, "127.0.0.1")
    (None, '127.0.0.1 is a loopback address')
    >>> NetGuard().check("x", 80, "::ffff:169.254.169.254")
    '::ffff:169.254.169.254 is a link-local address'
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import typing
from collections.abc import Iterable
from dataclasses import dataclass, field

import anyio
import httpcore
import httpx

__all__ = ["BlockedAddress", "GuardedBackend", "NetGuard", "address_problem", "guarded_transport"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_SPECIAL = tuple(ipaddress.ip_network(n) for n in (   # not all marked non-global by 3.11
    "192.0.0.0/24", "100.64.0.0/10", "198.18.0.0/15", "192.88.99.0/24", "fc00::/7",
    "2001:db8::/32", "64:ff9b:1::/48", "100::/64"))
_KINDS = (("loopback", "is_loopback"), ("link-local", "is_link_local"),
          ("multicast", "is_multicast"), ("unspecified", "is_unspecified"),
          ("private", "is_private"), ("reserved", "is_reserved"))


class BlockedAddress(Exception):
    """A connection to a non-public address was refused (the message says which and why)."""


def _embedded(ip: IPAddress) -> ipaddress.IPv4Address | None:
    if not isinstance(ip, ipaddress.IPv6Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def address_problem(ip: IPAddress) -> str | None:
    """Why ``ip`` may not be connected to by default (``"loopback"``...), or None if public."""
    mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
    for candidate in (mapped,) if mapped is not None else (ip, _embedded(ip)):
        if candidate is None:
            continue
        for kind, attr in _KINDS:
            if getattr(candidate, attr):
                return kind
        if not candidate.is_global or any(candidate in n for n in _SPECIAL):
            return "non-public"
    return None


def _host_key(host: str) -> str:
    host = host.strip().lower().rstrip(".")
    return f"[{host}]" if host.count(":") > 1 and not host.startswith("[") else host


@dataclass(frozen=True)
class NetGuard:
    """Which addresses may be connected to: public ones, plus the allow-lists (hashable)."""

    allow_hosts: tuple[str, ...] = ()
    """Hosts, or ``host:port`` pairs, reachable whatever address they resolve to."""
    allow_networks: tuple[str, ...] = ()
    """CIDR networks whose addresses are reachable on any port."""
    _nets: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = field(
        init=False, repr=False, compare=False, default=())

    def __post_init__(self) -> None:
        hosts = tuple(sorted({_host_key(h) for h in self.allow_hosts}))
        object.__setattr__(self, "allow_hosts", hosts)
        nets = tuple(str(ipaddress.ip_network(n, strict=False)) for n in self.allow_networks)
        object.__setattr__(self, "allow_networks", nets)
        object.__setattr__(self, "_nets", tuple(ipaddress.ip_network(n) for n in nets))

    def host_allowed(self, host: str, port: int) -> bool:
        """Whether ``host`` (as written in the URL) on ``port`` is on the host allow-list."""
        key = _host_key(host)
        return key in self.allow_hosts or f"{key}:{port}" in self.allow_hosts

    def check(self, host: str, port: int, address: str) -> str | None:
        """None if ``host:port`` may be reached at ``address``, else the reason it may not."""
        if self.host_allowed(host, port):
            return None
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        embedded = _embedded(ip)
        if any(ip in n or (embedded is not None and embedded in n) for n in self._nets):
            return None
        kind = address_problem(ip)
        if kind is None:
            return None
        article = "an" if kind[0] in "aeiou" else "a"
        return f"{address} is {article} {kind} address"


async def _resolve(host: str, port: int) -> list[str]:
    infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    seen: list[str] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        addr = str(sockaddr[0])
        if addr not in seen:
            seen.append(addr)
    return seen


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore network backend: resolve once, refuse blocked addresses, connect to the IP."""

    def __init__(self, guard: NetGuard) -> None:
        self.guard = guard
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None,
                          socket_options: Iterable[typing.Any] | None = None,
                          ) -> httpcore.AsyncNetworkStream:
        """Connect to the resolved addresses of ``host`` the guard allows, in order, or raise."""
        with anyio.fail_after(timeout):
            try:
                addresses = await _resolve(host, port)
            except OSError as exc:
                raise httpcore.ConnectError(f"cannot resolve {host!r}: {exc}") from exc
        problems: list[str] = []
        error: httpcore.ConnectError | None = None
        for address in addresses:
            problem = self.guard.check(host, port, address)
            if problem is not None:
                problems.append(problem)
                continue
            try:
                return await self._inner.connect_tcp(address, port, timeout, local_address,
                                                      socket_options)
            except httpcore.ConnectError as exc:        # try the next allowed address
                error = exc
        if error is not None:
            raise error
        raise BlockedAddress(f"{host}: " + ("; ".join(problems) or "no address"))

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Iterable[typing.Any] | None = None,
                                  ) -> httpcore.AsyncNetworkStream:
        """Refused: the tools never talk to Unix sockets."""
        raise BlockedAddress("Unix sockets are not allowed")

    async def sleep(self, seconds: float) -> None:
        """Sleep (used by httpcore's retries)."""
        await self._inner.sleep(seconds)


def guarded_transport(guard: NetGuard, limits: httpx.Limits) -> httpx.AsyncHTTPTransport:
    """An httpx transport whose every connection goes through :class:`GuardedBackend`.

    Built as httpx's own transport (for its request/response and error mapping) with its
    connection pool replaced by one on the guarded backend; no proxy, no environment settings.
    """
    transport = httpx.AsyncHTTPTransport(trust_env=False, limits=limits)
    ctx: ssl.SSLContext = httpx.create_ssl_context(trust_env=False)
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=ctx, max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry, network_backend=GuardedBackend(guard))
    return transport
