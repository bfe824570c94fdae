"""Schemathesis fuzzes every operation of the OpenAPI document against the app, in-process.

Each operation gets a bounded number of generated requests (``TERRACAT_FUZZ_EXAMPLES`` per
phase, 5 here, more with ``make fuzz``), deterministically (hypothesis' ``derandomize``: the same
requests on every run), once without a token and once with the admin token. Every answer must
be no 5xx, declared (status code and media type) and true to the declared schema.

The app is a real one on a database of its own, seeded with what the operations can find: a
collection ``maps`` with two COG items (so tile, preview and statistics routes render), and a
saved search. Generated path parameters take those ids half of the time (schemathesis
dictionaries), random strings otherwise.

No operation is left out. tus uploads and upload sets get what the document declares (no
``Tus-Resumable`` or ``Upload-Length`` header), so they write no file; with the token, the
writes that may replace or delete the seeded data run after the rest (``SEEDED_WRITES``).
"""

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from schemathesis.engine import events, from_schema
from schemathesis.python import asgi

from server.app import create_app
from server.policy import Rule, rule_of
from tests import rasters
from tests.conftest import ADMIN, Databases, app_settings
from tests.factories import collection
from tests.server.vector_fields import load as load_parcels
from tests.tiler.conftest import COLLECTION, add_collection, ingest_item

# schemathesis' hypothesis warns when it prints a large generated body; that is no finding
pytestmark = pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisWarning")
EXAMPLES = int(os.environ.get("TERRACAT_FUZZ_EXAMPLES", "5"))
VECTOR = "parcels"  # a vector collection: its features answer the items routes
# The coverage phase (every parameter's boundary and invalid values) makes ~28,000 requests a
# run: `make fuzz` only. Stateful runs need links the document does not have.
PHASES = os.environ.get("TERRACAT_FUZZ_PHASES", "examples,fuzzing").split(",")
CHECKS = ("not_a_server_error", "status_code_conformance", "content_type_conformance",
          "response_schema_conformance", "writes_need_the_token")  # fmt: skip


@schemathesis.check
def writes_need_the_token(ctx: Any, response: Any, case: Any) -> None:
    """An operation the rights table guards beyond reading never succeeds without a token."""
    rule = rule_of(case.operation.definition.raw.get("operationId"))
    guarded = rule not in (Rule.PUBLIC, Rule.LISTED, Rule.READ)
    if guarded and "Authorization" not in response.request.headers and response.status_code < 400:
        raise AssertionError(f"{response.status_code} without a token")


@pytest.fixture(scope="module")
def fuzz_app(databases: Databases, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The app on a seeded database of its own, and the ids of what was seeded."""
    folder = tmp_path_factory.mktemp("fuzz")
    url = databases.create(f"terracat_fuzz_{databases.suffix}")
    settings = app_settings(url, folder / "data")
    app = create_app(settings)
    with TestClient(app) as client:
        add_collection(client, collection(COLLECTION))
        ingest_item(client, settings, rasters.utm_rgb_tif(_mkdir(folder / "rgb")), "rgb")
        ingest_item(client, settings, rasters.rgbn_uint16_tif(_mkdir(folder / "rgbn")), "rgbn")
        r = client.post("/searches", json={"collections": [COLLECTION]}, headers=ADMIN)
        assert r.status_code == 201, r.text
        search_id = r.json()["id"]
    load_parcels(url, VECTOR)
    ids = {"collection": COLLECTION, "item": "rgb", "search": search_id}
    try:
        yield app, ids
    finally:
        asgi.shutdown_lifespans()  # schemathesis keeps the app's lifespan running until then


def _mkdir(path: Path) -> Path:
    path.mkdir()
    return path


def _config(ids: dict[str, str], headers: dict[str, str]) -> schemathesis.Config:
    dictionaries = {
        "collections": {"values": [ids["collection"], VECTOR]},
        "items": {"values": [ids["item"], "rgbn", "1"]},
        "searches": {"values": [ids["search"]]},
        "tms": {"values": ["WebMercatorQuad", "WorldCRS84Quad"]},
    }
    bind = {
        "collection_id": "collections", "collectionId": "collections", "item_id": "items",
        "searchId": "searches", "tileMatrixSetId": "tms",
    }  # fmt: skip
    parameters = {f"path.{name}": {"dictionary": d, "probability": 0.5} for name, d in bind.items()}
    return schemathesis.Config.from_dict({
        "seed": 1,
        "headers": headers,
        "dictionaries": dictionaries,
        "parameters": parameters,
        # the same requests on every run: no examples or state kept from an earlier run
        "generation": {"max-examples": EXAMPLES, "deterministic": True, "database": "none"},
        "cache": {"enabled": False},
        "checks": {"enabled": False, **{c: {"enabled": True} for c in CHECKS}},
        "phases": {p: {"enabled": p in PHASES} for p in ("examples", "coverage", "fuzzing",
                                                          "stateful")},
    })  # fmt: skip


class CountingApp:
    """The app, counting the requests it receives and the paths it answered 200."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.requests = 0
        self.ok_paths: list[str] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        self.requests += 1

        async def record(message: Any) -> None:
            if message["type"] == "http.response.start" and message["status"] == 200:
                self.ok_paths.append(scope["path"])
            await send(message)

        await self.app(scope, receive, record)


# Writes that may replace or delete the seeded collection and item: with the token they run
# last, in a pass of their own, so that the other operations find the catalogue (schemathesis
# orders operations by resource, but a DELETE of one comes before the GETs of another).
SEEDED_WRITES = ["putCollection", "patchCollection", "deleteCollection", "putFeature",
                 "patchFeature", "deleteFeature"]  # fmt: skip


def fuzz(app: CountingApp, ids: dict[str, str], headers: dict[str, str]) -> list[str]:
    """Run schemathesis' engine on every operation; the failures found."""
    schema = schemathesis.openapi.from_asgi("/api", app, config=_config(ids, headers))
    app.requests = 0  # the document's own request is no fuzzing
    passes = [schema]
    if headers:
        passes = [schema.exclude(operation_id=SEEDED_WRITES),
                  schema.include(operation_id=SEEDED_WRITES)]  # fmt: skip
    failures: list[str] = []
    for part in passes:
        for event in from_schema(part).execute():
            if isinstance(event, events.ScenarioFinished):
                failures.extend(_failures(event))
            elif isinstance(event, events.NonFatalError):
                failures.append(f"{event.label}: {event.info.format()}\n{event.info.traceback}")
            elif isinstance(event, events.FatalError):
                failures.append(f"schemathesis stopped: {event.exception!r}")
    return failures


def _failures(event: events.ScenarioFinished) -> list[str]:
    found = []
    for checks in event.recorder.checks.values():
        for check in checks:
            if check.failure_info is not None:
                failure = check.failure_info.failure
                found.append(f"{event.label} [{check.name}] {failure.title}: {failure.message}\n"
                             f"    {check.failure_info.code_sample}")  # fmt: skip
    return found


@pytest.mark.parametrize("token", [False, True], ids=["anonymous", "admin"])
def test_no_5xx_and_answers_true_to_the_document(
    fuzz_app: Any, token: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    app, ids = fuzz_app
    counting = CountingApp(app)
    failures = fuzz(counting, ids, ADMIN if token else {})
    with capsys.disabled():
        who = "admin token" if token else "no token"
        print(f"\nschemathesis ({who}): {counting.requests} requests, {EXAMPLES} examples "
              f"per phase of {PHASES}")  # fmt: skip
    assert counting.requests > 100 * EXAMPLES
    # the fuzzer reached the seeded data: tiles of the COG item were rendered
    item_tiles = f"/collections/{ids['collection']}/items/{ids['item']}/tiles/"
    assert any(path.startswith(item_tiles) for path in counting.ok_paths)
    if failures:
        pytest.fail(f"{len(failures)} failures:\n" + "\n".join(sorted(set(failures))))
