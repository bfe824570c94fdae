"""Download a linked file without letting the URL reach into our own network (SSRF).

Every hop is checked before it is connected: http(s) only, no userinfo, and every address the
host resolves to must be globally routable. The request then goes to the checked address itself,
with the original Host header (and TLS SNI name), so a DNS answer that changes between the check
and the connection cannot redirect us. Redirects are followed by hand, each one checked again.
"""

import email.message
import hashlib
import ipaddress
import os
import socket
import ssl
import tempfile
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote, urljoin, urlsplit

from ..settings import IngestSettings
from .errors import TooLarge, UrlForbidden, UrlTooManyRedirects, UrlUnreachable

# httpx is imported where a download runs: it brings its CLI (rich, pygments), ~2.5 MB in
# every API worker, which imports this module to check URLs and never downloads.
if TYPE_CHECKING:
    import httpx

CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 30.0
DEFAULT_FILENAME = "download.tif"
REDIRECTS = frozenset({301, 302, 303, 307, 308})
_DEFAULT_PORTS = {"http": 80, "https": 443}

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# IPv6 prefixes that carry an IPv4 address in their last 32 bits (NAT64, RFC 6052 / 8215).
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))


class DownloadCancelled(Exception):
    """The job asked the download to stop; the partial file was deleted (not a file error)."""


@dataclass(frozen=True)
class Download:
    """A downloaded file: a temporary file in ``dest_dir`` that now belongs to the caller."""

    path: Path
    size: int
    sha256: str
    filename: str
    final_url: str


@dataclass(frozen=True)
class _Target:
    """One checked hop: what to connect to and what to call it."""

    url: str
    scheme: str
    host: str  # ASCII (IDNA) host name or IP literal, without brackets
    port: int
    target: bytes  # path and query, as sent in the request line
    addresses: tuple[IPAddress, ...]

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == _DEFAULT_PORTS[self.scheme] else f"{host}:{self.port}"


def _never() -> bool:
    return False


def _no_progress(received: int, total: int | None) -> None:
    return None


def safe_filename(name: str | None, default: str) -> str:
    """A file name fit to show and store: basename only, no control characters, <= 255 bytes."""
    name = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in name if unicodedata.category(c) not in ("Cc", "Cf", "Zl", "Zp"))
    name = name.strip().lstrip(".")
    if not name:
        return default
    stem, dot, ext = name.rpartition(".")
    if not dot or len(ext.encode()) > 16:
        stem, dot, ext = name, "", ""
    room = 255 - len(dot.encode()) - len(ext.encode())
    stem = stem.encode()[:room].decode(errors="ignore")
    return f"{stem}{dot}{ext}" if stem else default


def is_public_address(ip: IPAddress) -> bool:
    """True if ``ip`` is globally routable (and so are IPv4 addresses embedded in it)."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is None and any(ip in net for net in _NAT64):
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None and not is_public_address(embedded):
            return False
        if ip.is_site_local:
            return False
    return ip.is_global and not (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
    )


def _parse(url: str) -> tuple[str, str, int, bytes]:
    """Split ``url`` into scheme, ASCII host, port and request target, refusing anything odd."""
    if any(c.isspace() or unicodedata.category(c) == "Cc" for c in url) or "\\" in url:
        raise UrlForbidden(f"{url!r}: whitespace, control characters or backslashes in the URL")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise UrlForbidden(f"{url!r}: only http and https URLs can be fetched")
    if "@" in parts.netloc:
        raise UrlForbidden(f"{url!r}: URLs with user information are not fetched")
    try:
        port = parts.port or _DEFAULT_PORTS[scheme]
    except ValueError as exc:
        raise UrlForbidden(f"{url!r}: invalid port") from exc
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise UrlForbidden(f"{url!r}: no host")
    try:
        host = str(ipaddress.ip_address(host))
    except ValueError:
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise UrlForbidden(f"{url!r}: invalid host name") from exc
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    # Percent-encode what is not ASCII; escapes and reserved characters stay as they are.
    return scheme, host, port, quote(target, safe="!#$%&'()*+,/:;=?@[]~").encode("ascii")


def _resolve(host: str, port: int) -> tuple[IPAddress, ...]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise UrlUnreachable(f"cannot resolve host {host!r}: {exc}") from exc
    found: list[IPAddress] = []
    for info in infos:
        ip = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if ip not in found:
            found.append(ip)
    if not found:
        raise UrlUnreachable(f"host {host!r} has no address")
    return tuple(found)


def _check(url: str, allow_private: bool) -> _Target:
    scheme, host, port, target = _parse(url)
    addresses = _resolve(host, port)
    if not allow_private:
        for ip in addresses:
            if not is_public_address(ip):
                raise UrlForbidden(
                    f"{url!r}: host {host!r} resolves to {ip}, which is not a public address"
                )
    return _Target(url, scheme, host, port, target, addresses)


def check_url(url: str, allow_private: bool) -> None:
    """Raise UrlForbidden for a scheme, host or resolved address we refuse to fetch."""
    _check(url, allow_private)


def _ssl_context() -> ssl.SSLContext:
    import httpx

    return httpx.create_ssl_context()


def _remaining(deadline: float, url: str) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise UrlUnreachable(f"{url}: the download took longer than the time limit")
    return left


def _open(hop: _Target, deadline: float) -> tuple["httpx.Client", "httpx.Response"]:
    """Send GET to the checked addresses of ``hop`` in turn; return the streaming response."""
    import httpx

    last: Exception | None = None
    for ip in hop.addresses:
        left = _remaining(deadline, hop.url)
        timeout = httpx.Timeout(
            min(READ_TIMEOUT_S, left), connect=min(CONNECT_TIMEOUT_S, left), pool=None
        )
        # A client per hop and address: a pooled TLS connection must never serve another name.
        client = httpx.Client(verify=_ssl_context(), trust_env=False, follow_redirects=False)
        url = httpx.URL(scheme=hop.scheme, host=str(ip), port=hop.port, raw_path=hop.target)
        extensions = {"sni_hostname": hop.host} if hop.scheme == "https" else {}
        request = client.build_request(
            "GET",
            url,
            headers={"Host": hop.host_header, "Accept-Encoding": "identity"},
            timeout=timeout,
            extensions=extensions,
        )
        try:
            return client, client.send(request, stream=True)
        except httpx.ConnectError as exc:
            client.close()
            last = exc
        except BaseException:
            client.close()
            raise
    raise UrlUnreachable(f"{hop.url}: cannot connect: {last}")


def _follow(
    url: str, settings: IngestSettings, deadline: float
) -> tuple["httpx.Client", "httpx.Response", str]:
    """Follow redirects by hand, checking every hop; return the final 2xx response."""
    visited: set[str] = set()
    for _ in range(settings.url_max_redirects + 1):
        if url in visited:
            raise UrlTooManyRedirects(f"redirect loop: {url} redirects back to itself")
        visited.add(url)
        hop = _check(url, settings.url_allow_private)
        client, response = _open(hop, deadline)
        status = response.status_code
        if 200 <= status < 300:
            return client, response, url
        location = response.headers.get("location")
        response.close()
        client.close()
        if status in REDIRECTS and location:
            url = urljoin(url, location)
            continue
        if status >= 400:
            raise UrlUnreachable(f"{url}: the server answered HTTP {status}", status=status)
        raise UrlUnreachable(f"{url}: unexpected HTTP {status} without a usable redirect")
    raise UrlTooManyRedirects(f"more than {settings.url_max_redirects} redirects, last to {url}")


def _filename(response: "httpx.Response", url: str) -> str:
    disposition = response.headers.get("content-disposition")
    if disposition:
        msg = email.message.Message()
        msg["content-disposition"] = disposition
        given = msg.get_filename()
        if given:
            return safe_filename(given, DEFAULT_FILENAME)
    return safe_filename(unquote(urlsplit(url).path.rsplit("/", 1)[-1]), DEFAULT_FILENAME)


def _declared_size(response: "httpx.Response") -> int | None:
    try:
        return int(response.headers["content-length"])
    except (KeyError, ValueError):
        return None


def _stream(
    response: "httpx.Response",
    out: int,
    url: str,
    settings: IngestSettings,
    deadline: float,
    progress: Callable[[int, int | None], None],
    cancelled: Callable[[], bool],
) -> tuple[int, str]:
    total = _declared_size(response)
    limit = settings.max_file_bytes
    if total is not None and total > limit:
        raise TooLarge(f"{url}: {total} bytes, more than the limit of {limit}")
    digest = hashlib.sha256()
    received = 0
    # Chunks come as the network delivers them, so the deadline and cancel checks keep up with a
    # slow sender. Decoded bytes are counted, so a compressed body cannot inflate past the limit.
    for chunk in response.iter_bytes():
        received += len(chunk)
        if received > limit:
            raise TooLarge(f"{url}: more than the limit of {limit} bytes")
        digest.update(chunk)
        view = memoryview(chunk)
        while view:
            view = view[os.write(out, view) :]
        progress(received, total)
        if cancelled():
            raise DownloadCancelled(url)
        _remaining(deadline, url)
    return received, digest.hexdigest()


def download(
    url: str,
    dest_dir: Path,
    settings: IngestSettings,
    *,
    progress: Callable[[int, int | None], None] = _no_progress,
    cancelled: Callable[[], bool] = _never,
) -> Download:
    """Fetch ``url`` into a new private file in ``dest_dir``; nothing is left there on failure."""
    import httpx

    deadline = time.monotonic() + settings.url_timeout_s
    fd, name = tempfile.mkstemp(dir=dest_dir, prefix=".download-")
    path = Path(name)
    try:
        try:
            client, response, final_url = _follow(url, settings, deadline)
            try:
                size, sha256 = _stream(
                    response, fd, final_url, settings, deadline, progress, cancelled
                )
                filename = _filename(response, final_url)
            finally:
                response.close()
                client.close()
        except httpx.TimeoutException as exc:
            raise UrlUnreachable(f"{url}: timed out ({type(exc).__name__})") from exc
        except httpx.HTTPError as exc:
            raise UrlUnreachable(f"{url}: {type(exc).__name__}: {exc}") from exc
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise
    os.close(fd)
    return Download(path, size, sha256, filename, final_url)
