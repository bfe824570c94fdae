"""The rights matrix: every operation of the OpenAPI document, called by six kinds of caller.

The operations come from ``app.openapi()``, so a route added later is in the matrix without
editing this file; its rule comes from server/policy.py. The world: account A owns the private
collection ``priv`` (one COG item) and an upload set, a file, a tus upload, a job and a saved
search; ``pub`` is public with two items. The callers: nobody, a revoked token, B (no right on
``priv``), C (``read`` grant), W (``write`` grant) and the bootstrap admin token.

What is checked, for every answer (each test reports every offender at once):

- no 5xx;
- the status the operation's rule gives the caller (``expected``);
- a caller who may not read ``priv`` learns nothing of it: no body or header names it, its
  item or a coordinate of its footprint (unless the request itself did), no tile carries its
  pixels, ``numberMatched`` counts public data only, and its refusals naming ``priv`` are
  word for word those for a collection that does not exist;
- no one but A and the admin sees A's rows, in lists either.

Writes are kept harmless: bodies are ``{}`` unless ``BODIES`` says otherwise, deletes come
after everything else, and ``World.restore`` puts ``priv`` back after any write that passed.
"""

import base64
import json
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import morecantile
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from catalog.accounts.repository import AccountRepository
from server.app import create_app
from server.policy import Rule, rule_of
from server.settings import Settings
from tests import rasters
from tests.conftest import ADMIN, Databases, app_settings
from tests.factories import collection, item
from tests.stored import ingest_local, store_item

PRIV, PUB, GHOST = "priv", "pub", "ghost"
PRIV_ITEM = "kestrel-7"
PUB_ITEMS = ("pub-a", "pub-b")
CALLERS = ("anonymous", "revoked", "B", "C", "W", "admin")
BLIND = ("anonymous", "revoked", "B")  # may not read priv
TUS = {"Tus-Resumable": "1.0.0"}
SAFE = ("GET", "HEAD", "OPTIONS")
PARAMETER = re.compile(r"\{([^}:]+)\}")
# "priv" as an id, not inside a word such as "private"
PRIV_WORD = re.compile(r"(?<![A-Za-z0-9_-])priv(?![A-Za-z0-9_-])")
# Bodies of the operations whose answer is worth reading whole; any other operation with a
# body gets ``{}``, which changes nothing (no write accepts it, or it is an empty patch),
# while the rights check, which runs before the body is looked at, still answers as it must.
BODIES: dict[str, Any] = {
    "postItemSearch": {"limit": 100},
    "createUploadSet": {"collection": PRIV},
    "execute": {"inputs": {"item": {"collection": PRIV, "id": PRIV_ITEM}, "maxzoom": 3}},
}
# CREATE operations whose body names priv: the route checks the right it needs there (an
# upload writes into priv; an export renders it, which needs `write` too: docs/api.md).
INTO_PRIV = frozenset({"createUploadSet", "execute"})
# A job's results and an export's archive exist once a worker ran the job; none runs here.
NOT_MADE = frozenset({"getResult", "getExportArchive", "headExportArchive"})
# Requests that need a body of their own kind to reach the rights of their route.
RAW = {"tusPatch": ({"Content-Type": "application/offset+octet-stream", "Upload-Offset": "0"},
                    b"0123456789")}  # fmt: skip
VECTOR_ONLY = frozenset({"getCollectionFacets", "getCollectionAggregate"})
# routes of datacube collections only: on priv (imagery) their own 404 is cube.NotACube
CUBE_ONLY = frozenset({"getCollectionCapabilities"})
OK = "ok"  # not refused: neither 401, 403 nor 404, and no 5xx
SEEN = "seen"  # not refused by the rights check: neither 401 nor 403 (a 404 may be the route's)
HIDDEN = "hidden"  # refused as if priv did not exist: a 4xx, neither 401 nor 403
SIGNED = "signed"  # recognised: anything but 401 (the bootstrap token has no account of its own)


def expected(rule: Rule, caller: str, operation: str, real_ids: bool, row: bool) -> int | str:
    """The status (or OK, SEEN, HIDDEN, SIGNED) a caller must get from an operation with
    ``rule`` on ``priv`` and on A's rows. ``real_ids``: every path parameter names something
    that exists; ``row``: the path names one row (not a list)."""
    if caller == "revoked":
        return 401  # a refused token is refused everywhere, the public routes too
    # a route of vector collections only: on priv (imagery) its own 404 is features.NotVector
    found = OK if real_ids and operation not in VECTOR_ONLY | CUBE_ONLY else SEEN
    if operation in INTO_PRIV and caller != "anonymous":
        return {"B": HIDDEN, "C": 403, "W": OK, "admin": OK}[caller]
    if rule in (Rule.PUBLIC, Rule.LISTED):
        return found
    if caller == "anonymous" and rule not in (Rule.READ, Rule.ASSET):
        return 401
    table: dict[Rule, dict[str, int | str]] = {
        Rule.READ: {"anonymous": 404, "B": 404, "C": found, "W": found, "admin": found},
        # unsigned here: a signature is the asset tests' (tests/server/test_assets_http.py)
        Rule.ASSET: {"anonymous": 404, "B": 404, "C": found, "W": found, "admin": found},
        Rule.WRITE: {"B": 404, "C": 403, "W": found, "admin": found},
        Rule.MANAGE: {"B": 404, "C": 403, "W": 403, "admin": found},
        Rule.CREATE: {"B": SEEN, "C": SEEN, "W": SEEN, "admin": SEEN},
        Rule.SIGNED_IN: {"B": SEEN, "C": SEEN, "W": SEEN, "admin": SIGNED},
        # A's rows: not the others' (404 like a missing row); lists are everyone's own
        Rule.OWNED: dict.fromkeys(("B", "C", "W"), 404 if row and real_ids else found)
        | {"admin": found},
        Rule.ADMIN: {"B": 403, "C": 403, "W": 403, "admin": found},
    }
    return table[rule][caller]


@dataclass
class Answer:
    """One call of the matrix."""

    operation: str
    rule: Rule
    caller: str
    method: str
    url: str
    body: Any
    status: int
    headers: dict[str, str]
    content: bytes
    real_ids: bool
    row: bool

    def json(self) -> Any:
        """The body as JSON, or None."""
        if not self.headers.get("content-type", "").split(";")[0].endswith("json"):
            return None
        try:
            return json.loads(self.content)
        except ValueError:
            return None

    def __str__(self) -> str:
        media = self.headers.get("content-type", "")
        readable = media.startswith("text/") or media.split(";")[0].endswith(("json", "xml"))
        text = self.content[:300].decode() if readable else f"<{len(self.content)} bytes {media}>"
        return f"{self.operation} {self.method} {self.url} as {self.caller}: {self.status} {text}"


@dataclass
class World:
    """The callers' headers, the values of path parameters, what ``priv`` must never show."""

    client: TestClient
    accounts: AccountRepository
    callers: dict[str, dict[str, str]]
    values: dict[str, str]
    real: set[str]  # parameters whose value names a row that exists
    secrets: list[str]
    owner: uuid.UUID
    grants: dict[str, uuid.UUID]
    item_doc: dict[str, Any]  # as the ingest job stored it (stored hrefs)
    database_url: str
    answers: list[Answer] = field(default_factory=list)

    def call(
        self, method: str, url: str, caller: str, body: Any = None, operation: str = ""
    ) -> Any:
        """One request as ``caller``."""
        headers = {**self.callers[caller], **(TUS if url.startswith("/uploads") else {})}
        if operation in RAW:
            extra, content = RAW[operation]
            return self.client.request(method, url, headers={**headers, **extra}, content=content)
        return self.client.request(method, url, headers=headers, json=body)

    def restore(self) -> None:
        """Put ``priv`` back as it was, after an allowed write that may have changed it."""
        portal, accounts = self.client.portal, self.accounts
        assert portal is not None
        if self.call("GET", f"/collections/{PRIV}", "admin").status_code == 404:
            self.call("POST", "/collections", "admin", collection(PRIV))
        if self.call("GET", f"/collections/{PRIV}/items/{PRIV_ITEM}", "admin").status_code == 404:
            store_item(self.database_url, self.item_doc)
        portal.call(accounts.set_owner, PRIV, self.owner)
        portal.call(accounts.set_visibility, PRIV, "private")
        for caller, account_id in self.grants.items():
            right = "read" if caller == "C" else "write"
            portal.call(accounts.grant, PRIV, "account", str(account_id), right)


def _ingest(
    client: TestClient, settings: Settings, folder: Path
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The COG item of ``priv``, ingested and stored as the worker would: as the API serves
    it, and as stored."""
    source = rasters.utm_rgb_tif(folder, size=256, border=16)
    doc = ingest_local(source, PRIV, PRIV_ITEM, settings.ingest.data_dir, settings.ingest)
    assert settings.db.url is not None
    store_item(settings.db.url, doc)
    return dict(client.get(f"/collections/{PRIV}/items/{PRIV_ITEM}", headers=ADMIN).json()), doc


def _coordinate(value: float) -> str:
    """A coordinate as any serialisation of it starts: four decimals, cut, not rounded."""
    whole, _, decimals = repr(float(value)).partition(".")
    return f"{whole}.{decimals[:4]}"


def _accounts(world_client: TestClient) -> tuple[dict[str, dict[str, str]], dict[str, Any]]:
    """Accounts A, B, C, W with a token each, and B's revoked token."""
    accounts: AccountRepository = world_client.app.state.accounts  # type: ignore[attr-defined]
    portal = world_client.portal
    assert portal is not None
    made: dict[str, Any] = {}
    callers: dict[str, dict[str, str]] = {"anonymous": {}, "admin": dict(ADMIN)}
    for name in ("A", "B", "C", "W"):
        account = portal.call(accounts.create_account, f"matrix-{name}-{uuid.uuid4().hex[:8]}")
        issued = portal.call(accounts.create_token, account["id"], f"{name}'s")
        made[name] = (account, issued)
        callers[name] = {"Authorization": f"Bearer {issued.token}"}
    revoked = portal.call(accounts.create_token, made["B"][0]["id"], "revoked")
    portal.call(accounts.revoke_token, revoked.id, None)
    callers["revoked"] = {"Authorization": f"Bearer {revoked.token}"}
    return callers, made


def _a_rows(world: World, a: dict[str, str]) -> None:
    """A's upload set, file, tus upload, export job and saved search: real ids for OWNED."""
    client, values, real = world.client, world.values, world.real
    r = client.post("/upload_sets", json={"collection": PRIV}, headers=a)
    assert r.status_code == 201, r.text
    values["upload_set_id"] = r.json()["id"]
    r = client.post(f"/upload_sets/{values['upload_set_id']}/files", headers=a,
                    files={"file": ("scene.tif", b"II*\x00 not really a tiff")})  # fmt: skip
    assert r.status_code == 201, r.text
    values["file_id"] = r.json()["id"]
    meta = ",".join(f"{k} {base64.b64encode(v.encode()).decode()}"
                    for k, v in (("upload_set", values["upload_set_id"]),
                                 ("filename", "more.tif")))  # fmt: skip
    r = client.post("/uploads/", headers={**a, **TUS, "Upload-Length": "10",
                                           "Upload-Metadata": meta})  # fmt: skip
    assert r.status_code == 201, r.text
    values["upload_id"] = r.headers["location"].rstrip("/").rsplit("/", 1)[-1]
    inputs = {"item": {"collection": PRIV, "id": PRIV_ITEM}, "maxzoom": 3}
    r = client.post("/processes/mbtiles/execution", json={"inputs": inputs}, headers=a)
    assert r.status_code == 201, r.text
    values["jobID"] = r.json()["jobID"]
    r = client.post("/searches", json={"collections": [PRIV, PUB]}, headers=a)
    assert r.status_code in (200, 201), r.text
    values["searchId"] = r.json()["id"]
    real.update({"upload_set_id", "file_id", "upload_id", "jobID", "searchId"})


@pytest.fixture(scope="module")
def world(databases: Databases, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """An app on a database of its own with the world of the module docstring."""
    folder = tmp_path_factory.mktemp("matrix")
    settings = app_settings(databases.create(f"terracat_matrix_{databases.suffix}"),
                            folder / "data")  # fmt: skip
    # the revoked token fails on every operation: not a reason to block the test's address
    settings.auth.failure_limit = 1_000_000
    with TestClient(create_app(settings)) as client:
        callers, made = _accounts(client)
        for doc in (collection(PUB), collection(PRIV)):
            assert client.post("/collections", json=doc, headers=ADMIN).status_code == 201
        for n, item_id in enumerate(PUB_ITEMS):
            doc = item(item_id, lon=-60.0 + n, lat=-30.0)
            assert client.post(f"/collections/{PUB}/items", json=doc, headers=ADMIN).is_success
        source = folder / "src"
        source.mkdir()
        stored, ingested = _ingest(client, settings, source)
        lon, lat = stored["geometry"]["coordinates"][0][0]
        center_lon, center_lat = (stored["bbox"][0] + stored["bbox"][2]) / 2, (
            stored["bbox"][1] + stored["bbox"][3]) / 2  # fmt: skip
        # a tile the COG fills in part: its pixels are in every map of priv
        tile = morecantile.tms.get("WebMercatorQuad").tile(center_lon, center_lat, 12)
        values = {
            "collection_id": PRIV, "collectionId": PRIV, "item_id": PRIV_ITEM,
            "itemId": PRIV_ITEM, "assetKey": "data",
            "tileMatrixSetId": "WebMercatorQuad", "z": str(tile.z), "x": str(tile.x),
            "y": str(tile.y), "scale": "1",
            "format": "png", "lon": str(center_lon), "lat": str(center_lat),
            "minx": str(stored["bbox"][0]), "miny": str(stored["bbox"][1]),
            "maxx": str(stored["bbox"][2]), "maxy": str(stored["bbox"][3]), "width": "32",
            "height": "32", "processID": "mbtiles", "extension": "mbtiles",
            "account_id": str(made["A"][0]["id"]), "token_id": str(made["A"][1].id),
            "kind": "account", "grantee": str(uuid.uuid4()),  # nobody: a grant changes nothing
        }  # fmt: skip
        real = set(values) - {"grantee"}
        world = World(
            client=client, accounts=client.app.state.accounts,  # type: ignore[attr-defined]
            callers=callers, values=values, real=real,
            secrets=[PRIV_ITEM, *(_coordinate(v) for v in (lon, lat, *stored["bbox"]))],
            owner=made["A"][0]["id"],
            grants={"C": made["C"][0]["id"], "W": made["W"][0]["id"]},
            item_doc=ingested, database_url=str(settings.db.url),
        )  # fmt: skip
        world.restore()
        _a_rows(world, callers["A"])
        _run(world)
        yield world


def _order(doc: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(method, path, operation id): reads and writes first, deletes last, and the collection's
    own delete the very last (it takes ``priv`` away)."""
    ops = [(method.upper(), path, op["operationId"])
           for path, entry in doc["paths"].items()
           for method, op in entry.items() if isinstance(op, dict)]  # fmt: skip
    return sorted(ops, key=lambda o: (o[0] == "DELETE", o[2] == "deleteCollection"))


def _run(world: World) -> None:
    """Every operation of the document, as every caller, recorded in ``world.answers``."""
    app = world.client.app
    assert isinstance(app, FastAPI)
    for method, path, operation in _order(app.openapi()):
        names = PARAMETER.findall(path)
        url = PARAMETER.sub(lambda m: world.values.get(m[1], "no-such-thing"), path)
        real_ids = all(n in world.real for n in names) and operation not in NOT_MADE
        body = BODIES.get(operation, {}) if method in ("POST", "PUT", "PATCH") else None
        for caller in CALLERS:
            r = world.call(method, url, caller, body, operation)
            world.answers.append(Answer(operation, rule_of(operation), caller, method, url,
                                        body, r.status_code, dict(r.headers), r.content,
                                        real_ids, bool(names)))  # fmt: skip
            if r.is_success and method not in SAFE and operation != "deleteCollection":
                world.restore()  # e.g. W deleted the item: the admin must find it again


def _problems(answers: list[Answer], check: Callable[[Answer], str | None]) -> list[str]:
    return [f"{a}: {problem}" for a in answers if (problem := check(a))]


def _status_problem(a: Answer) -> str | None:
    if a.status >= 500:
        return "a server error"
    want = expected(a.rule, a.caller, a.operation, a.real_ids, a.row)
    if want == OK and a.status in (401, 403, 404):
        return f"expected to be let through ({a.rule})"
    if want == SEEN and a.status in (401, 403):
        return f"expected to pass the rights check ({a.rule})"
    if want == HIDDEN and (a.status < 400 or a.status in (401, 403)):
        return f"expected the refusal of a missing collection ({a.rule})"
    if want == SIGNED and a.status == 401:
        return f"expected to be recognised ({a.rule})"
    if isinstance(want, int) and a.status != want:
        return f"expected {want} ({a.rule})"
    return None


def test_no_answer_is_a_server_error(world: World) -> None:
    assert len({a.operation for a in world.answers}) > 80
    assert _problems(world.answers, lambda a: "5xx" if a.status >= 500 else None) == []


def test_every_caller_gets_the_status_of_its_rights(world: World) -> None:
    problems = _problems(world.answers, _status_problem)
    assert problems == [], "\n".join(problems)


def test_refusals_say_why(world: World) -> None:
    """401 with WWW-Authenticate (invalid_token for the revoked token), and the codes."""

    def check(a: Answer) -> str | None:
        if a.status == 401 and "bearer" not in a.headers.get("www-authenticate", "").lower():
            return "401 without WWW-Authenticate: Bearer"
        doc = a.json()
        code = doc.get("code") if isinstance(doc, dict) else None
        if a.caller == "revoked" and a.method != "HEAD" and code != "auth.InvalidToken":
            return f"code {code}, expected auth.InvalidToken"
        if a.status == 403 and a.method != "HEAD" and code not in (
            "auth.Forbidden", "auth.InsufficientScope",
        ):  # fmt: skip
            return f"403 with code {code}"
        return None

    problems = _problems(world.answers, check)
    assert problems == [], "\n".join(problems)


def _leak(world: World, a: Answer) -> str | None:
    if a.caller not in BLIND:
        return None
    asked = f"{a.url} {a.body}"
    text = a.content.decode("latin-1") + "\n" + "\n".join(
        f"{k}: {v}" for k, v in a.headers.items())  # fmt: skip
    if PRIV_WORD.search(text) and not PRIV_WORD.search(asked):
        return "names priv"
    shown = [s for s in world.secrets if s in text and s not in asked]
    return f"shows {shown}" if shown else None


def test_nothing_of_priv_reaches_those_who_may_not_read_it(world: World) -> None:
    problems = _problems(world.answers, lambda a: _leak(world, a))
    assert problems == [], "\n".join(problems)


def test_no_pixel_of_priv_reaches_those_who_may_not_read_it(world: World) -> None:
    """An image or tile an admin gets with priv's pixels (the COG is the only readable raster
    here) is not what a caller who may not read priv gets from the same request."""
    admins = {(a.operation, a.url): a for a in world.answers if a.caller == "admin"}

    def check(a: Answer) -> str | None:
        admin = admins[(a.operation, a.url)]
        media = admin.headers.get("content-type", "").split(";")[0]
        binary = not media.startswith("text/") and not media.endswith(("json", "xml", "html"))
        if a.caller in BLIND and a.status == admin.status == 200 and binary and a.content:
            return "the admin's bytes" if a.content == admin.content else None
        return None

    problems = _problems(world.answers, check)
    assert problems == [], "\n".join(problems)


def test_rows_of_one_account_reach_no_other(world: World) -> None:
    """A's upload set, file, tus upload, job and saved search: no one but A and admins sees
    them (lists included), unless the request itself names them."""
    rows = [world.values[n] for n in ("upload_set_id", "file_id", "upload_id", "jobID")]

    def check(a: Answer) -> str | None:
        if a.caller == "admin" or a.status >= 400:
            return None
        text = a.content.decode("latin-1") + " ".join(a.headers.values())
        shown = [r for r in rows if r in text and r not in a.url]
        return f"shows A's {shown}" if shown else None

    problems = _problems(world.answers, check)
    assert problems == [], "\n".join(problems)


def test_counts_are_of_public_data_only(world: World) -> None:
    def check(a: Answer) -> str | None:
        doc = a.json()
        if a.caller not in BLIND or not isinstance(doc, dict) or "numberMatched" not in doc:
            return None
        want = 1 if "collections" in doc else len(PUB_ITEMS)
        return None if doc["numberMatched"] == want else f"numberMatched, expected {want}"

    problems = _problems(world.answers, check)
    assert problems == [], "\n".join(problems)


def _ghost(value: Any) -> Any:
    """A request's body with ``priv`` replaced by a collection that does not exist."""
    return json.loads(json.dumps(value).replace(f'"{PRIV}"', f'"{GHOST}"'))


def test_a_collection_one_may_not_read_answers_like_a_missing_one(world: World) -> None:
    """B's refusals naming ``priv`` (in the path or the body) are word for word those for a
    collection that does not exist."""
    problems = []
    for a in world.answers:
        in_path, in_body = PRIV in a.url.split("/"), PRIV_WORD.search(json.dumps(a.body))
        if a.caller != "B" or a.status < 400 or not (in_path or in_body) or a.method == "HEAD":
            continue
        url = re.sub(f"/{PRIV}(?=/|$)", f"/{GHOST}", a.url)
        ghost = world.call(a.method, url, "B", _ghost(a.body))
        mine, theirs = a.json() or {}, ghost.json() if ghost.content else {}
        same = (
            ghost.status_code == a.status
            and mine.get("code") == theirs.get("code")
            and (str(mine.get("description")).replace(PRIV, GHOST) == theirs.get("description"))
        )
        if not same:
            problems.append(f"{a}: differs from {ghost.status_code} {ghost.text[:200]}")
    assert problems == [], "\n".join(problems)
