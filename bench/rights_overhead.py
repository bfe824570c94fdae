"""In-process cost of recognising the caller: the rights dependency alone, and a whole request.

Part of ``python -m bench.rights``. The app runs in this process (its lifespan entered by
hand, requests through httpx's ASGITransport), on the benchmark's database, so no socket or
other process adds noise to differences of microseconds.
"""

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
from fastapi import FastAPI
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import SecretStr
from starlette.requests import Request

from catalog.accounts.rights import RightsCache
from server.app import create_app
from server.auth import Authenticator, TokenCache, _enforce
from server.policy import Rule
from server.settings import ApiSettings, Settings

from .report import fmt, log

TARGET_REQUEST_MS = 0.3


@dataclass(frozen=True)
class Timing:
    """Nanoseconds of one repeated call, wall and CPU of this process (what other processes
    on the machine do not inflate; the database's own work is not in it)."""

    label: str
    samples: list[int]
    cpu: list[int]

    @property
    def cpu_p50_us(self) -> float:
        """Median CPU time of this process in microseconds."""
        return statistics.median(self.cpu) / 1000

    @property
    def p50_us(self) -> float:
        """Median in microseconds."""
        return statistics.median(self.samples) / 1000

    @property
    def mean_us(self) -> float:
        """Mean in microseconds."""
        return statistics.fmean(self.samples) / 1000


PATHS = ("/conformance", "/_mgmt/ping")  # PUBLIC routes: the conformance list, and nothing
NO_TOKEN = "no token"


@dataclass
class Overhead:
    """The rights dependency per caller, and whole requests per path and caller."""

    checks: list[Timing]
    requests: dict[str, dict[str, Timing]]  # path -> caller -> timing, samples in send order
    iterations: int
    per_caller: int

    def extra_ms(self, path: str, kind: str) -> float:
        """Median of paired differences: ``kind``'s request minus the untokened request sent
        next to it, in milliseconds (pairs cancel the drift of a shared machine)."""
        mine, bare = self.requests[path][kind].samples, self.requests[path][NO_TOKEN].samples
        return statistics.median(a - b for a, b in zip(mine, bare, strict=True)) / 1e6

    def extra_cpu_ms(self, path: str, kind: str) -> float:
        """``extra_ms`` in CPU time of this process."""
        mine, bare = self.requests[path][kind].cpu, self.requests[path][NO_TOKEN].cpu
        return statistics.median(a - b for a, b in zip(mine, bare, strict=True)) / 1e6


def _request(app: FastAPI, collection_id: str) -> Request:
    """A bare request on a collection route, as ``_enforce`` sees one (fresh state)."""
    scope = {
        "type": "http", "app": app, "method": "GET", "path": f"/collections/{collection_id}",
        "headers": [], "query_string": b"", "path_params": {"collection_id": collection_id},
    }  # fmt: skip
    return Request(scope)


async def _time_check(
    app: FastAPI,
    token: str | None,
    rule: Rule,
    collection_id: str,
    n: int,
    before: Callable[[], None] = lambda: None,
) -> tuple[list[int], list[int]]:
    """``Authenticator.principal`` then ``_enforce`` ``n`` times, wall and CPU nanoseconds;
    ``before`` runs untimed."""
    authenticator: Authenticator = app.state.authenticator
    credentials = (
        HTTPAuthorizationCredentials(scheme="Bearer", credentials=token) if token else None
    )
    wall, cpu = [], []
    for _ in range(n):
        before()
        request = _request(app, collection_id)
        started, cpu_started = time.perf_counter_ns(), time.process_time_ns()
        principal = await authenticator.principal(credentials)
        request.state.principal = principal
        await _enforce(rule, principal, request)
        cpu.append(time.process_time_ns() - cpu_started)
        wall.append(time.perf_counter_ns() - started)
    return wall, cpu


async def _checks(app: FastAPI, admin: str, user: str, collection_id: str, n: int) -> list[Timing]:
    """Every caller through a PUBLIC rule and a READ rule, the caches warm or cold."""
    authenticator: Authenticator = app.state.authenticator
    accounts = app.state.accounts
    warm_tokens, warm_rights = authenticator.tokens, accounts.rights
    cold = max(200, n // 20)  # each cold check is a query or two

    def token_cold() -> None:
        authenticator.tokens = TokenCache(0)

    def both_cold() -> None:
        authenticator.tokens = TokenCache(0)
        accounts.rights = RightsCache(0)

    cases: list[tuple[str, str | None, Rule, int, Callable[[], None]]] = [
        ("anonymous, PUBLIC rule", None, Rule.PUBLIC, n, lambda: None),
        ("bootstrap token, PUBLIC rule", admin, Rule.PUBLIC, n, lambda: None),
        ("bootstrap token, READ rule", admin, Rule.READ, n, lambda: None),
        ("`tcat_` token, cache hit, PUBLIC rule", user, Rule.PUBLIC, n, lambda: None),
        ("`tcat_` token, cache hit, READ rule (readable set cached)", user, Rule.READ, n,
         lambda: None),
        ("`tcat_` token, cache miss (verified in the database), PUBLIC rule", user, Rule.PUBLIC,
         cold, token_cold),
        ("`tcat_` token, cache miss, READ rule, readable set looked up", user, Rule.READ, cold,
         both_cold),
    ]  # fmt: skip
    timings = []
    for label, token, rule, count, before in cases:
        try:
            # A short unmeasured warm-up fills the caches (or not, for the cold cases).
            await _time_check(app, token, rule, collection_id, 50, before)
            wall, cpu = await _time_check(app, token, rule, collection_id, count, before)
        finally:
            authenticator.tokens, accounts.rights = warm_tokens, warm_rights
        timing = Timing(label, wall, cpu)
        log(
            f"{label}: median {timing.p50_us:.1f} us (CPU {timing.cpu_p50_us:.1f} us), "
            f"mean {timing.mean_us:.1f} us ({count}x)"
        )
        timings.append(timing)
    return timings


async def _requests(
    app: FastAPI, path: str, headers: dict[str, dict[str, str]], n: int
) -> dict[str, Timing]:
    """``GET path`` ``n`` times per caller, callers taking turns request by request (their
    order rotating), after an unmeasured warm-up."""
    samples: dict[str, list[int]] = {kind: [] for kind in headers}
    cpu: dict[str, list[int]] = {kind: [] for kind in headers}
    kinds = list(headers)
    warm = max(50, n // 10)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
        for i in range(warm + n):
            turn = i % len(kinds)
            for kind in kinds[turn:] + kinds[:turn]:
                started, cpu_started = time.perf_counter_ns(), time.process_time_ns()
                response = await client.get(path, headers=headers[kind])
                cpu_used = time.process_time_ns() - cpu_started
                elapsed = time.perf_counter_ns() - started
                if response.status_code != 200:
                    raise RuntimeError(f"{path} ({kind}): {response.status_code}")
                if i >= warm:
                    samples[kind].append(elapsed)
                    cpu[kind].append(cpu_used)
    return {kind: Timing(kind, samples[kind], cpu[kind]) for kind in kinds}


def app_settings(database_url: str, admin_token: str, data_dir: Path) -> Settings:
    """The settings of the in-process app: the benchmark's database and bootstrap token."""
    settings = Settings()
    settings.db.url = database_url
    settings.api = ApiSettings(admin_token=SecretStr(admin_token), access_log="off")
    settings.ingest.data_dir = data_dir
    return settings


async def measure(
    settings: Settings,
    admin: str,
    user_token: str,
    collection_id: str,
    iterations: int,
    per_caller: int,
) -> Overhead:
    """Time the rights dependency and whole requests on an app built from ``settings``
    (``admin``: its bootstrap token; ``collection_id``: one the user reads)."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        checks = await _checks(app, admin, user_token, collection_id, iterations)
        headers = {
            NO_TOKEN: {},
            "`tcat_` token": {"Authorization": f"Bearer {user_token}"},
            "bootstrap token": {"Authorization": f"Bearer {admin}"},
        }
        requests = {path: await _requests(app, path, headers, per_caller) for path in PATHS}
    overhead = Overhead(checks, requests, iterations, per_caller)
    for path, timings in requests.items():
        for kind, t in timings.items():
            extra = "" if kind == NO_TOKEN else f", extra {overhead.extra_ms(path, kind):+.3f} ms"
            log(f"GET {path}, {kind}: median {t.p50_us:.0f} us, mean {t.mean_us:.0f} us{extra}")
    return overhead


def section(overhead: Overhead) -> list[str]:
    """Markdown: the dependency per caller, whole requests, and the target."""
    rows = [
        "### Recognising the caller, in process",
        "",
        "`Authenticator.principal` then `_enforce` (server/auth.py) awaited in a loop, each call "
        "timed with `time.perf_counter_ns` (wall) and `time.process_time_ns` (CPU of this "
        "process, which other processes on the machine do not inflate; the database's work is "
        "not in it); a fresh request state every call, so the READ rule asks the readable set "
        "of `AccountRepository.readable` (cached 1 s by default). Cache misses: a token cache "
        "(and rights cache) of TTL 0.",
        "",
        "| caller and rule | calls | median us | mean us | median CPU us |",
        "| --- | ---: | ---: | ---: | ---: |",
        *[
            f"| {t.label} | {len(t.samples):,} | {fmt(t.p50_us)} | {fmt(t.mean_us)} "
            f"| {fmt(t.cpu_p50_us)} |"
            for t in overhead.checks
        ],
        "",
        "Whole requests through httpx's ASGITransport on the app: `GET /conformance` "
        "(PUBLIC, cheap) and `GET /_mgmt/ping` (PUBLIC, touches nothing), "
        f"{overhead.per_caller:,} per caller, the callers taking turns request by request "
        "(their order rotating) after a warm-up. Extra = median of the differences between a "
        "tokened request and the untokened one sent next to it. The token cache lives 1 s, so "
        "about one request a second verifies the token in the database.",
        "",
        "| request | caller | median ms | mean ms | extra ms | median CPU ms | extra CPU ms |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for path, timings in overhead.requests.items():
        for kind, t in timings.items():
            extra, extra_cpu = "-", "-"
            if kind != NO_TOKEN:
                extra = fmt(overhead.extra_ms(path, kind), 3)
                extra_cpu = fmt(overhead.extra_cpu_ms(path, kind), 3)
            rows.append(
                f"| `GET {path}` | {kind} | {fmt(t.p50_us / 1000, 3)} "
                f"| {fmt(t.mean_us / 1000, 3)} | {extra} | {fmt(t.cpu_p50_us / 1000, 3)} "
                f"| {extra_cpu} |"
            )
    return [*rows, ""]


def targets(overhead: Overhead) -> list[str]:
    """The token target, one line."""
    extra = overhead.extra_ms("/conformance", "`tcat_` token")
    cpu = overhead.extra_cpu_ms("/conformance", "`tcat_` token")
    ok = "met" if extra < TARGET_REQUEST_MS else "MISSED"
    return [
        f"- a valid `tcat_` token costs < {TARGET_REQUEST_MS} ms per request (`GET "
        f"/conformance`, median paired difference with no token): {ok} ({extra:.3f} ms wall, "
        f"{cpu:.3f} ms CPU)"
    ]
