"""SSRF-safe URL download against a local http.server; no traffic leaves 127.0.0.0/8."""

import hashlib
import ipaddress
import os
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from catalog.ingest import fetch
from catalog.ingest.errors import TooLarge, UrlForbidden, UrlTooManyRedirects, UrlUnreachable
from catalog.ingest.fetch import DownloadCancelled, check_url, download, safe_filename
from catalog.settings import IngestSettings

PAYLOAD = os.urandom(700_000)
SHA = hashlib.sha256(PAYLOAD).hexdigest()


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail any connection outside 127.0.0.0/8 before it leaves the machine."""
    real = socket.socket.connect

    def connect(self: socket.socket, address: Any) -> None:
        host = address[0] if isinstance(address, tuple) else None
        if host is not None and not ipaddress.ip_address(host.split("%")[0]).is_loopback:
            raise AssertionError(f"test tried to connect to {address}")
        real(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)


@dataclass
class Origin:
    """The local web server and what it was asked."""

    base: str
    port: int
    seen: list[tuple[str, str]] = field(default_factory=list)  # (path, Host header)

    def paths(self) -> list[str]:
        return [p for p, _ in self.seen]


def _handler(origin_ref: list[Origin]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _send(self, status: int, body: bytes = b"", **headers: str) -> None:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name.replace("_", "-"), value)
            if "Content_Length" not in headers:
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802
            origin_ref[0].seen.append((self.path, self.headers.get("Host", "")))
            path = self.path
            if path == "/data/scene.tif":
                self._send(200, PAYLOAD)
            elif path == "/cd":
                name = "attachment; filename*=UTF-8''..%2F%C3%A9t%C3%A9%0A.tif"
                self._send(200, PAYLOAD, Content_Disposition=name)
            elif path.startswith("/r/"):
                n = int(path[3:])
                self._send(302, Location=f"/r/{n - 1}" if n > 0 else "/data/scene.tif")
            elif path == "/loop":
                self._send(302, Location="/loop")
            elif path == "/to-metadata":
                self._send(302, Location="http://169.254.169.254/latest/meta-data/")
            elif path == "/to-file":
                self._send(302, Location="file:///etc/passwd")
            elif path == "/slow":
                self.send_response(200)
                self.send_header("Content-Length", "100000")
                self.end_headers()
                for _ in range(100):
                    self.wfile.write(b"x" * 1000)
                    self.wfile.flush()
                    time.sleep(0.05)
            elif path == "/huge":
                self._send(200, Content_Length=str(10**12))
            elif path == "/nolength":  # HTTP/1.0: the body ends when the connection closes
                self.send_response(200)
                self.end_headers()
                self.wfile.write(PAYLOAD)
            else:
                self._send(404, b"not here")

    return Handler


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hangs up early is part of the tests


def _serve(context: ssl.SSLContext | None = None) -> Iterator[Origin]:
    ref: list[Origin] = []
    server = _Server(("127.0.0.1", 0), _handler(ref))
    if context is not None:
        server.socket = context.wrap_socket(server.socket, server_side=True)
    port = server.server_address[1]
    ref.append(Origin(f"{'https' if context else 'http'}://127.0.0.1:{port}", port))
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield ref[0]
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture
def origin() -> Iterator[Origin]:
    yield from _serve()


def _settings(**kw: Any) -> IngestSettings:
    return IngestSettings(**{"url_allow_private": True, **kw})


def _empty(path: Path) -> bool:
    return not any(path.iterdir())


def test_download_works_and_hashes(origin: Origin, tmp_path: Path) -> None:
    calls: list[tuple[int, int | None]] = []
    got = download(
        f"{origin.base}/data/scene.tif", tmp_path, _settings(), progress=lambda *a: calls.append(a)
    )
    assert got.size == len(PAYLOAD) and got.sha256 == SHA
    assert got.path.parent == tmp_path and got.path.read_bytes() == PAYLOAD
    assert got.path.stat().st_mode & 0o777 == 0o600
    assert got.filename == "scene.tif" and got.final_url == f"{origin.base}/data/scene.tif"
    assert calls[-1] == (len(PAYLOAD), len(PAYLOAD))


def test_filename_from_content_disposition(origin: Origin, tmp_path: Path) -> None:
    got = download(f"{origin.base}/cd", tmp_path, _settings())
    assert got.filename == "été.tif"


def test_redirect_chain_is_followed(origin: Origin, tmp_path: Path) -> None:
    got = download(f"{origin.base}/r/3", tmp_path, _settings(url_max_redirects=4))
    assert got.sha256 == SHA and got.final_url == f"{origin.base}/data/scene.tif"
    assert origin.paths() == ["/r/3", "/r/2", "/r/1", "/r/0", "/data/scene.tif"]


def test_too_many_redirects_and_a_loop_are_final(origin: Origin, tmp_path: Path) -> None:
    with pytest.raises(UrlTooManyRedirects, match="more than 3 redirects") as chain:
        download(f"{origin.base}/r/3", tmp_path, _settings(url_max_redirects=3))
    with pytest.raises(UrlTooManyRedirects, match="redirect loop") as loop:
        download(f"{origin.base}/loop", tmp_path, _settings())
    for err in (chain.value, loop.value):
        assert err.code == "url.TooManyRedirects" and not err.retriable  # no retry can help
    assert origin.paths().count("/loop") == 1  # the loop is seen at its first repeat
    assert _empty(tmp_path)


def test_loopback_is_forbidden_by_default(origin: Origin, tmp_path: Path) -> None:
    with pytest.raises(UrlForbidden) as err:
        download(f"{origin.base}/data/scene.tif", tmp_path, IngestSettings())
    assert err.value.code == "url.Forbidden" and err.value.status == 400
    assert origin.seen == [] and _empty(tmp_path)
    with pytest.raises(UrlForbidden):
        check_url(f"http://localhost:{origin.port}/data/scene.tif", allow_private=False)
    assert origin.seen == []


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.1/x.tif",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/x",
        "http://0.0.0.0/x",
        "http://100.64.0.1/x",
        "http://224.0.0.1/x",
        "http://[::ffff:127.0.0.1]/x",
        "http://[fe80::1]/x",
        "http://2130706433/x",  # 127.0.0.1 as one number
        "http://0x7f.1/x",
        "http://localhost/x",
        "https://127.0.0.1:8443/x",
    ],
)
def test_private_addresses_are_forbidden(url: str) -> None:
    with pytest.raises(UrlForbidden):
        check_url(url, allow_private=False)


@pytest.mark.parametrize(
    "url",
    [
        "ftp://127.0.0.1/x.tif",
        "file:///etc/passwd",
        "gopher://127.0.0.1/",
        "http://user:pw@127.0.0.1/x",
        "http://8.8.8.8@127.0.0.1/x",
        "http://127.0.0.1\\@8.8.8.8/x",
        "http:///x",
        "http://127.0.0.1:99999/x",
        "http://127.0.0.1/a b",
    ],
)
def test_bad_urls_are_forbidden_even_when_private_is_allowed(url: str, tmp_path: Path) -> None:
    with pytest.raises(UrlForbidden):
        download(url, tmp_path, _settings())
    assert _empty(tmp_path)


@pytest.fixture
def loopback_is_public(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let 127.0.0.0/8 stand in for the internet, with private addresses refused as usual."""
    real = fetch.is_public_address
    monkeypatch.setattr(fetch, "is_public_address", lambda ip: ip.is_loopback or real(ip))


@pytest.mark.usefixtures("loopback_is_public")
def test_redirect_to_forbidden_target_is_refused(origin: Origin, tmp_path: Path) -> None:
    with pytest.raises(UrlForbidden, match="169.254.169.254"):
        download(f"{origin.base}/to-metadata", tmp_path, IngestSettings())
    with pytest.raises(UrlForbidden, match="http and https"):
        download(f"{origin.base}/to-file", tmp_path, _settings())
    assert origin.paths() == ["/to-metadata", "/to-file"] and _empty(tmp_path)


@pytest.mark.usefixtures("loopback_is_public")
def test_connects_to_the_checked_address(
    origin: Origin, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second DNS answer (rebinding to a private address) is never asked for nor used."""
    answers = iter(["127.0.0.1", "10.0.0.1", "10.0.0.1"])
    real = socket.getaddrinfo

    def fake_getaddrinfo(host: str, port: int, *args: Any, **kw: Any) -> list[Any]:
        if host != "files.test":  # the IP literal we connect to
            assert host == "127.0.0.1"
            return real(host, port, *args, **kw)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (next(answers), port))]

    monkeypatch.setattr(fetch.socket, "getaddrinfo", fake_getaddrinfo)
    got = download(f"http://files.test:{origin.port}/data/scene.tif", tmp_path, IngestSettings())
    assert got.sha256 == SHA
    assert origin.seen == [("/data/scene.tif", f"files.test:{origin.port}")]


def test_http_error_is_unreachable(origin: Origin, tmp_path: Path) -> None:
    with pytest.raises(UrlUnreachable, match="HTTP 404") as err:
        download(f"{origin.base}/missing", tmp_path, _settings())
    assert err.value.code == "url.Unreachable" and err.value.retriable
    assert _empty(tmp_path)


def test_dns_failure_is_unreachable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_such_host(*args: Any, **kw: Any) -> list[Any]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(fetch.socket, "getaddrinfo", no_such_host)
    with pytest.raises(UrlUnreachable, match="cannot resolve host 'nowhere.test'"):
        download("https://nowhere.test/x.tif", tmp_path, IngestSettings())
    assert _empty(tmp_path)


def test_connection_refused_is_unreachable(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: connections are refused
        with pytest.raises(UrlUnreachable, match="cannot connect"):
            download(f"http://127.0.0.1:{port}/x", tmp_path, _settings())
    assert _empty(tmp_path)


def test_whole_download_time_limit(origin: Origin, tmp_path: Path) -> None:
    start = time.monotonic()
    with pytest.raises(UrlUnreachable, match="time"):
        download(f"{origin.base}/slow", tmp_path, _settings(url_timeout_s=0.5))
    assert time.monotonic() - start < 3 and _empty(tmp_path)


def test_declared_size_over_limit(origin: Origin, tmp_path: Path) -> None:
    with pytest.raises(TooLarge) as err:
        download(f"{origin.base}/huge", tmp_path, _settings())
    assert err.value.code == "ingest.TooLarge" and _empty(tmp_path)


def test_streamed_size_over_limit(origin: Origin, tmp_path: Path) -> None:
    with pytest.raises(TooLarge):
        download(f"{origin.base}/nolength", tmp_path, _settings(max_file_bytes=300_000))
    assert _empty(tmp_path)
    got = download(f"{origin.base}/nolength", tmp_path, _settings())
    assert got.sha256 == SHA and got.filename == "nolength"


def test_cancel_stops_and_cleans_up(origin: Origin, tmp_path: Path) -> None:
    seen: list[int] = []
    with pytest.raises(DownloadCancelled):
        download(
            f"{origin.base}/data/scene.tif",
            tmp_path,
            _settings(),
            progress=lambda done, total: seen.append(done),
            cancelled=lambda: len(seen) >= 1,
        )
    assert len(seen) == 1 and seen[0] < len(PAYLOAD) and _empty(tmp_path)


def test_safe_filename() -> None:
    assert safe_filename("../../etc/passwd", "d.tif") == "passwd"
    assert safe_filename("C:\\Users\\x\\scene.tif", "d.tif") == "scene.tif"
    assert safe_filename("a\x00b\x1b\u202ec.tif", "d.tif") == "abc.tif"
    assert safe_filename("..", "d.tif") == "d.tif" and safe_filename("", "d.tif") == "d.tif"
    long = safe_filename("é" * 300 + ".tif", "d.tif")
    assert len(long.encode()) <= 255 and long.endswith(".tif")


# -- https: the certificate is checked against the name while we connect to the address -----------
@pytest.fixture
def tls_origin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Origin, Path]]:
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=files.test",
         "-addext", "subjectAltName=DNS:files.test"],
        check=True, capture_output=True,
    )  # fmt: skip
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    for served in _serve(context):
        yield served, cert


def test_https_checks_certificate_by_name(
    tls_origin: tuple[Origin, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    origin, cert = tls_origin
    monkeypatch.setattr(fetch, "_ssl_context", lambda: ssl.create_default_context(cafile=cert))
    real = socket.getaddrinfo

    def fake_getaddrinfo(host: str, port: int, *args: Any, **kw: Any) -> list[Any]:
        return real("127.0.0.1" if host.endswith(".test") else host, port, *args, **kw)

    monkeypatch.setattr(fetch.socket, "getaddrinfo", fake_getaddrinfo)
    got = download(f"https://files.test:{origin.port}/data/scene.tif", tmp_path, _settings())
    assert got.sha256 == SHA and origin.seen[-1] == ("/data/scene.tif", f"files.test:{origin.port}")
    with pytest.raises(UrlUnreachable, match="(?i)certificate"):
        download(f"https://other.test:{origin.port}/data/scene.tif", tmp_path, _settings())
    assert [p.name for p in tmp_path.iterdir()] == [got.path.name]
