"""Which peers may say how the client reached us: the gate in front of every forwarding header.

``Forwarded`` and ``X-Forwarded-*`` decide the links every response carries (scheme, host, port,
path prefix) and the client address in the access log. Any client can send them, so they are
honoured only from the proxies named in ``TERRACAT_API_FORWARDED_ALLOW_IPS``; from anyone else
they are removed from the request before any middleware or route reads them. The gate lives in
the app, so ``terracat serve`` and a bare ``uvicorn --factory`` (run with ``--no-proxy-headers``)
decide alike.
"""

import ipaddress

from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class TrustedProxies:
    """A list of proxy addresses: ``*`` (anyone), addresses and networks, comma-separated.

    The same syntax as uvicorn's ``--forwarded-allow-ips``, whose own list is private to it;
    unlike uvicorn, a malformed entry is an error here rather than a host name that never
    matches, so a typo cannot silently turn the proxy off.
    """

    def __init__(self, spec: str) -> None:
        entries = [entry.strip() for entry in spec.split(",") if entry.strip()]
        self.everyone = "*" in entries
        self.networks: tuple[Network, ...] = tuple(_network(e) for e in entries if e != "*")

    def __str__(self) -> str:
        """The list in uvicorn's syntax, IPv4-mapped IPv6 entries written as IPv4."""
        return "*" if self.everyone else ",".join(str(network) for network in self.networks)

    def __contains__(self, host: object) -> bool:
        if self.everyone:
            return True
        if not isinstance(host, str):
            return False  # no peer address (a Unix socket): only ``*`` trusts it
        try:
            address = ipaddress.ip_address(ipv4_unmapped(host))
        except ValueError:
            return False
        return any(address in network for network in self.networks)


def _network(entry: str) -> Network:
    try:
        network = ipaddress.ip_network(entry)
    except ValueError:
        raise ValueError(f"{entry!r} is not an IP address, a network (CIDR) or '*'") from None
    mapped = network.network_address
    if isinstance(mapped, ipaddress.IPv6Address) and mapped.ipv4_mapped and network.prefixlen >= 96:
        return ipaddress.IPv4Network((mapped.ipv4_mapped, network.prefixlen - 96))
    return network


def ipv4_unmapped(host: str) -> str:
    """An IPv4-mapped IPv6 address (an IPv4 peer on a dual-stack socket) in IPv4 form."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return host


def is_forwarding_header(name: bytes) -> bool:
    """Whether a (lower-case) header name is one a proxy sets to describe the client's request."""
    return name == b"forwarded" or name.startswith(b"x-forwarded-")


class TrustedProxyMiddleware:
    """Drop the forwarding headers of an untrusted peer; for a trusted one, take the client
    address from ``X-Forwarded-For`` with uvicorn's middleware, as ``uvicorn`` itself would.

    The inner middlewares (stac-fastapi's ``ProxyHeaderMiddleware``, our ``PrefixMiddleware``)
    then read whatever forwarding headers are left, which are only a trusted proxy's.
    """

    def __init__(self, app: ASGIApp, trusted: str) -> None:
        self.trusted = TrustedProxies(trusted)
        self.app = app
        hosts = str(self.trusted)
        # uvicorn types ASGI with TypedDicts of its own; Starlette's are plain mappings.
        self.with_client: ASGIApp = ProxyHeadersMiddleware(app, trusted_hosts=hosts)  # type: ignore[arg-type,assignment]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Gate the request's forwarding headers on its peer address, then call the app."""
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        peer = scope.get("client")
        if (peer[0] if peer else None) in self.trusted:
            if peer is not None and peer[0] != (host := ipv4_unmapped(peer[0])):
                scope["client"] = (host, peer[1])  # the form uvicorn's list compares
            await self.with_client(scope, receive, send)
            return
        headers = [(k, v) for k, v in scope["headers"] if not is_forwarding_header(k)]
        if len(headers) != len(scope["headers"]):
            scope = {**scope, "headers": headers}
        await self.app(scope, receive, send)
