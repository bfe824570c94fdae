"""Every STAC route shows a caller only the collections it may read, and owners manage rights.

The catalogue: ``open`` (public, made by the bootstrap admin) and ``secret`` (made by account
A, then made private; C holds a read grant). B is signed in without a grant. Each caller's
searches, counts, collection lists and queryables are checked against a brute-force answer
computed here from the items as sent.
"""

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from catalog.accounts.principal import Principal
from catalog.accounts.repository import AccountRepository
from server.settings import Settings
from tests.factories import collection, item

SCHEMAS = Path(__file__).resolve().parents[2] / "catalog" / "schemas"
AUTH_URL = "https://stac-extensions.github.io/authentication/v1.1.0/schema.json"
OPEN, SECRET = "open", "secret"


@dataclass
class World:
    """The client, each caller's headers, the accounts' ids and the items as sent."""

    client: TestClient
    callers: dict[str, dict[str, str]]
    ids: dict[str, str]
    items: list[dict[str, Any]]

    def reads(self, caller: str) -> set[str]:
        """The collections ``caller`` should read."""
        return {OPEN, SECRET} if caller in ("a", "c", "admin") else {OPEN}


def _items() -> list[dict[str, Any]]:
    made = []
    for i in range(6):
        doc = item(f"o{i}", lon=i * 10.0, lat=10.0, when=f"2021-01-{i + 1:02d}T10:00:00Z",
                   **{"eo:cloud_cover": i * 10})  # fmt: skip
        made.append({**doc, "collection": OPEN})
    for i in range(5):
        doc = item(f"s{i}", lon=i * 10.0, lat=10.0, when=f"2021-01-{i + 1:02d}T12:00:00Z",
                   **{"eo:cloud_cover": i * 10 + 5, "secret:level": i})  # fmt: skip
        made.append({**doc, "collection": SECRET})
    return made


def _account(client: TestClient, name: str) -> tuple[str, dict[str, str]]:
    """A user account and a token with the ``write`` scope (enough to manage what it owns)."""
    accounts: AccountRepository = client.app.state.accounts  # type: ignore[attr-defined]
    assert client.portal is not None
    row = client.portal.call(accounts.create_account, name)
    issued = client.portal.call(accounts.create_token, row["id"], "", ("read", "write"))
    return str(row["id"]), {"Authorization": f"Bearer {issued.token}"}


def _load(client: TestClient, admin: dict[str, str]) -> World:
    ids, callers = {}, {"anonymous": {}, "admin": admin}
    for name in ("a", "b", "c"):
        ids[name], callers[name] = _account(client, name)
    a = callers["a"]
    assert client.post("/collections", json=collection(OPEN), headers=admin).status_code == 201
    assert client.post("/collections", json=collection(SECRET), headers=a).status_code == 201
    items = _items()
    for doc in items:
        body = {k: v for k, v in doc.items() if k != "collection"}
        who = a if doc["collection"] == SECRET else admin
        r = client.post(f"/collections/{doc['collection']}/items", json=body, headers=who)
        assert r.status_code == 201, r.text
    r = client.put(f"/collections/{SECRET}/rights", json={"visibility": "private"}, headers=a)
    assert r.status_code == 200, r.text
    r = client.put(f"/collections/{SECRET}/rights/grants/account/{ids['c']}",
                   json={"right": "read"}, headers=a)  # fmt: skip
    assert r.status_code == 200, r.text
    return World(client, callers, ids, items)


@pytest.fixture
def world(client: TestClient, admin: dict[str, str]) -> World:
    """The two collections, their items, and the five callers."""
    return _load(client, admin)


CALLERS = ("anonymous", "a", "b", "c", "admin")
Check = Callable[[dict[str, Any]], bool]


def _lon(doc: dict[str, Any]) -> float:
    return float(doc["geometry"]["coordinates"][0][0][0])


def _day(doc: dict[str, Any]) -> int:
    return int(doc["properties"]["datetime"][8:10])


SEARCHES: list[tuple[dict[str, str], Check]] = [
    ({}, lambda d: True),
    ({"collections": SECRET}, lambda d: d["collection"] == SECRET),
    ({"collections": f"{SECRET},{OPEN}"}, lambda d: True),
    ({"bbox": "5,0,35,30"}, lambda d: 10 <= _lon(d) <= 30),
    ({"datetime": "2021-01-02T00:00:00Z/2021-01-04T00:00:00Z"}, lambda d: _day(d) in (2, 3)),
    ({"filter": "eo:cloud_cover < 25", "filter-lang": "cql2-text"},
     lambda d: d["properties"]["eo:cloud_cover"] < 25),
    ({"collections": OPEN, "bbox": "-1,0,25,30", "filter": "eo:cloud_cover >= 10"},
     lambda d: d["collection"] == OPEN and _lon(d) <= 20
     and d["properties"]["eo:cloud_cover"] >= 10),
]  # fmt: skip


def _expected(world: World, caller: str, check: Check) -> set[tuple[str, str]]:
    reads = world.reads(caller)
    return {
        (d["collection"], d["id"]) for d in world.items if d["collection"] in reads and check(d)
    }


def _found(page: dict[str, Any]) -> set[tuple[str, str]]:
    return {(f["collection"], f["id"]) for f in page["features"]}


def test_searches_and_counts_per_caller(world: World) -> None:
    for caller in CALLERS:
        headers = world.callers[caller]
        for params, check in SEARCHES:
            expected = _expected(world, caller, check)
            for limit in (100, 2):  # one page (its own count) and a counted first page
                r = world.client.get("/search", params={**params, "limit": limit}, headers=headers)
                assert r.status_code == 200, (caller, params, r.text)
                page = r.json()
                assert page["numberMatched"] == len(expected), (caller, params, limit)
                assert _found(page) <= expected
                if limit == 100:
                    assert _found(page) == expected, (caller, params)
            body = {k: v for k, v in params.items() if k not in ("collections", "bbox")}
            if "collections" in params:
                body["collections"] = params["collections"].split(",")
            if "bbox" in params:
                body["bbox"] = [float(v) for v in params["bbox"].split(",")]
            r = world.client.post("/search", json={**body, "limit": 100}, headers=headers)
            assert _found(r.json()) == expected and r.json()["numberMatched"] == len(expected)


def test_estimated_counts_leave_private_items_out(
    settings: Settings, apps: Any, admin: dict[str, str], sync_engine: Engine
) -> None:
    # count_limit 1: numberMatched is the planner's estimate, which must be the estimate of the
    # query an admin makes naming the caller's readable collections, private items left out.
    settings.catalog.count_limit = 1
    with apps.client(settings) as client:
        world = _load(client, admin)
        with sync_engine.begin() as conn:
            conn.execute(text("ANALYZE items"))

        def matched(params: dict[str, str], headers: dict[str, str]) -> Any:
            r = client.get("/search", params={**params, "limit": 1}, headers=headers)
            return r.json()["numberMatched"]

        for caller in ("anonymous", "b"):
            headers = world.callers[caller]
            assert matched({}, headers) == matched({"collections": OPEN}, admin) < 11
            assert matched({"collections": SECRET}, headers) == 0
            assert matched({"collections": f"{SECRET},{OPEN}"}, headers) == matched({}, headers)
        for caller in ("a", "c"):
            assert matched({}, world.callers[caller]) == matched({}, admin)


def test_a_private_collection_searched_by_a_non_reader_is_like_a_missing_one(world: World) -> None:
    for caller in ("anonymous", "b"):
        headers = world.callers[caller]
        answers = []
        for wanted in ([SECRET], ["missing"]):
            r = world.client.post("/search", json={"collections": wanted}, headers=headers)
            assert r.status_code == 200
            answers.append(r.json())
        assert answers[0] == answers[1]
        assert answers[0]["features"] == [] and answers[0]["numberMatched"] == 0
        # A property only the private collection has is as unknown as one nobody has.
        codes = []
        for name in ("secret:level", "nobody:has"):
            r = world.client.get("/search", params={"filter": f"{name} = 1"}, headers=headers)
            assert r.status_code == 400
            codes.append(r.json()["code"])
        assert codes[0] == codes[1]
    r = world.client.get(
        "/search", params={"filter": "secret:level = 1"}, headers=world.callers["c"]
    )
    assert _found(r.json()) == {(SECRET, "s1")}


@pytest.mark.parametrize("caller", CALLERS)
def test_paging_to_the_last_page_under_the_filter(world: World, caller: str) -> None:
    headers = world.callers[caller]
    expected = sorted(
        (d for d in world.items if d["collection"] in world.reads(caller)),
        key=lambda d: -d["properties"]["eo:cloud_cover"],
    )
    params = {"sortby": "-eo:cloud_cover", "limit": "2"}
    r = world.client.get("/search", params=params, headers=headers)
    seen: list[str] = []
    while True:
        assert r.status_code == 200, r.text
        page = r.json()
        assert page["numberMatched"] == len(expected)
        seen += [f["id"] for f in page["features"]]
        following = [link for link in page["links"] if link["rel"] == "next"]
        if not following:
            break
        r = world.client.get(following[0]["href"], headers=headers)
    assert seen == [d["id"] for d in expected]
    # POST paging: the next link's body carries the token.
    r = world.client.post("/search", json={"sortby": [{"field": "eo:cloud_cover",
                          "direction": "desc"}], "limit": 4}, headers=headers)  # fmt: skip
    posted = [f["id"] for f in r.json()["features"]]
    while nxt := [link for link in r.json()["links"] if link["rel"] == "next"]:
        r = world.client.post("/search", json=nxt[0]["body"], headers=headers)
        posted += [f["id"] for f in r.json()["features"]]
    assert posted == seen


def test_collection_items_of_a_private_collection(world: World) -> None:
    missing = world.client.get("/collections/missing/items")
    for caller in CALLERS:
        r = world.client.get(f"/collections/{SECRET}/items", headers=world.callers[caller])
        if SECRET in world.reads(caller):
            assert r.status_code == 200 and r.json()["numberMatched"] == 5
            assert {f["id"] for f in r.json()["features"]} == {f"s{i}" for i in range(5)}
        else:
            assert r.status_code == 404
            assert r.json() == json.loads(missing.text.replace("missing", SECRET))


def test_items_and_collections_of_non_readers_answer_404_like_missing_ones(world: World) -> None:
    paths = ["/collections/{}", "/collections/{}/items/s0", "/collections/{}/queryables"]
    for path in paths:
        missing = world.client.get(path.format("missing"), headers=world.callers["b"])
        assert missing.status_code == 404
        for caller in ("anonymous", "b"):
            r = world.client.get(path.format(SECRET), headers=world.callers[caller])
            assert r.status_code == 404, (path, caller)
            assert r.json() == json.loads(missing.text.replace("missing", SECRET))
        r = world.client.get(path.format(SECRET), headers=world.callers["c"])
        assert r.status_code == 200, (path, r.text)


def test_collection_lists_and_collection_search(world: World) -> None:
    for caller in CALLERS:
        headers = world.callers[caller]
        reads = world.reads(caller)
        r = world.client.get("/collections", headers=headers)
        assert {c["id"] for c in r.json()["collections"]} == reads
        assert r.json()["numberMatched"] == len(reads)
        r = world.client.get("/collections", params={"q": SECRET}, headers=headers)
        assert r.json()["numberMatched"] == (1 if SECRET in reads else 0)
        r = world.client.get("/collections", params={"filter": f"id = '{SECRET}'"}, headers=headers)
        assert [c["id"] for c in r.json()["collections"]] == ([SECRET] if SECRET in reads else [])
        r = world.client.get("/collections", params={"limit": 1}, headers=headers)
        has_next = any(link["rel"] == "next" for link in r.json()["links"])
        assert has_next == (len(reads) > 1)


def test_queryables_and_sortables_list_readable_properties_only(world: World) -> None:
    for caller in CALLERS:
        for route in ("/queryables", "/sortables"):
            r = world.client.get(route, headers=world.callers[caller])
            names = set(r.json()["properties"])
            assert "eo:cloud_cover" in names
            assert ("secret:level" in names) == (SECRET in world.reads(caller)), (caller, route)
        # a collection's own sortables: its properties, or the 404 of a missing collection
        r = world.client.get(f"/collections/{SECRET}/sortables", headers=world.callers[caller])
        if SECRET in world.reads(caller):
            assert r.status_code == 200 and "secret:level" in r.json()["properties"], caller
            assert r.json()["$id"].endswith(f"/collections/{SECRET}/sortables")
        else:
            missing = world.client.get("/collections/nothing/sortables",
                                       headers=world.callers[caller])  # fmt: skip
            twin = missing.text.replace("'nothing'", f"'{SECRET}'")
            assert (r.status_code, r.text) == (missing.status_code, twin), caller
            assert r.status_code == 404
    # the collections' sortables (collection search): the collection fields, the same for all
    sorts = {world.client.get("/collections-sortables", headers=world.callers[caller]).text
             for caller in CALLERS}  # fmt: skip
    assert len(sorts) == 1 and "title" in json.loads(sorts.pop())["properties"]


def test_writes_need_the_right(world: World) -> None:
    doc = item("s0", lon=0.0, lat=10.0, when="2021-01-01T12:00:00Z", **{"eo:cloud_cover": 99})
    url = f"/collections/{SECRET}/items/s0"
    expected = {"anonymous": 401, "b": 404, "c": 403, "a": 204, "admin": 204}
    for caller, status in expected.items():
        r = world.client.put(url, json=doc, headers=world.callers[caller])
        assert r.status_code == status, (caller, r.text)
    r = world.client.delete(f"/collections/{SECRET}", headers=world.callers["c"])
    assert r.status_code == 403 and r.json()["code"] == "auth.Forbidden"
    r = world.client.post(f"/collections/{SECRET}/items", json=item("s9"),
                          headers=world.callers["b"])  # fmt: skip
    assert r.status_code == 404
    # A create of a taken id is 409 for anyone, readable or not: no more than any name tells.
    for caller in ("b", "c"):
        r = world.client.post(
            "/collections", json=collection(SECRET), headers=world.callers[caller]
        )
        assert r.status_code == 409
    r = world.client.get(f"/collections/{SECRET}", headers=world.callers["a"])
    assert r.json()["title"] == f"Collection {SECRET}"


def test_rights_routes(world: World) -> None:
    c, a = world.callers["c"], world.callers["a"]
    rights = f"/collections/{SECRET}/rights"
    r = world.client.get(rights, headers=a)
    assert r.status_code == 200
    assert r.json() == {
        "collection": SECRET, "owner": world.ids["a"], "visibility": "private",
        "grants": [{"kind": "account", "grantee": world.ids["c"], "right": "read"}],
    }  # fmt: skip
    assert world.client.get(rights, headers=c).status_code == 403
    assert world.client.get(rights, headers=world.callers["b"]).status_code == 404
    assert world.client.get(rights).status_code == 401
    assert (
        world.client.get("/collections/missing/rights", headers=world.callers["admin"]).status_code
        == 404
    )
    for body in ({"visibility": "secretive"},):
        r = world.client.put(rights, json=body, headers=a)
        assert r.status_code == 400 and r.json()["code"] == "rights.Invalid"
    for path, body in ((f"{rights}/grants/team/x", {"right": "read"}),
                       (f"{rights}/grants/account/{world.ids['b']}", {"right": "own"}),
                       (f"{rights}/grants/account/not-an-id", {"right": "read"})):  # fmt: skip
        r = world.client.put(path, json=body, headers=a)
        assert r.status_code == 400 and r.json()["code"] == "rights.Invalid", path
    # Only admins give a collection away.
    r = world.client.put(rights, json={"owner": world.ids["b"]}, headers=a)
    assert r.status_code == 403
    # An admin grant lets C manage; taking the grant back takes reading away at once.
    grant_c = f"{rights}/grants/account/{world.ids['c']}"
    assert world.client.put(grant_c, json={"right": "admin"}, headers=a).status_code == 200
    assert world.client.get(rights, headers=c).status_code == 200
    assert world.client.delete(grant_c, headers=a).status_code == 204
    assert world.client.get(f"/collections/{SECRET}", headers=c).status_code == 404
    r = world.client.get("/search", params={"collections": SECRET}, headers=c)
    assert r.json()["numberMatched"] == 0
    # Visibility "accounts": every signed-in caller, not the anonymous one.
    assert world.client.put(rights, json={"visibility": "accounts"}, headers=a).status_code == 200
    assert world.client.get("/search", headers=world.callers["b"]).json()["numberMatched"] == 11
    assert world.client.get("/search").json()["numberMatched"] == 6
    r = world.client.put(rights, json={"owner": world.ids["b"]}, headers=world.callers["admin"])
    assert r.status_code == 200 and r.json()["owner"] == world.ids["b"]
    assert world.client.get(rights, headers=world.callers["b"]).status_code == 200
    assert world.client.get(rights, headers=a).status_code == 403


class GroupVerifier:
    """An identity provider's JWT check that knows one token: D, a member of ``analysts``."""

    def __init__(self, account_id: Any) -> None:
        self.account_id = account_id

    async def principal(self, token: str, accounts: AccountRepository) -> Principal:
        """D with its groups, for the one token."""
        assert token == "header.payload.signature"
        return Principal(self.account_id, "d", "user", frozenset({"read"}), groups=("analysts",),
                         via="oidc", key="oidc:d")  # fmt: skip


def test_group_grants(world: World) -> None:
    accounts: AccountRepository = world.client.app.state.accounts  # type: ignore[attr-defined]
    assert world.client.portal is not None
    row = world.client.portal.call(accounts.create_account, "d")
    world.client.app.state.authenticator.oidc = GroupVerifier(row["id"])  # type: ignore[attr-defined]
    d = {"Authorization": "Bearer header.payload.signature"}
    assert world.client.get("/search", headers=d).json()["numberMatched"] == 6
    r = world.client.put(f"/collections/{SECRET}/rights/grants/group/analysts",
                         json={"right": "read"}, headers=world.callers["a"])  # fmt: skip
    assert r.status_code == 200
    r = world.client.get("/search", params={"collections": SECRET}, headers=d)
    assert r.json()["numberMatched"] == 5
    assert world.client.get("/queryables", headers=d).json()["properties"].get("secret:level")
    # Another group's member does not read it.
    r = world.client.put(f"/collections/{SECRET}/rights/grants/group/analysts",
                         json={"right": "read"}, headers=world.callers["c"])  # fmt: skip
    assert r.status_code == 403
    assert world.client.delete(f"/collections/{SECRET}/rights/grants/group/analysts",
                               headers=world.callers["a"]).status_code == 204  # fmt: skip
    assert world.client.get(f"/collections/{SECRET}", headers=d).status_code == 404


@pytest.fixture
def private_by_default(settings: Settings, apps: Any) -> Iterator[TestClient]:
    """A client on an app whose new collections are private."""
    settings.auth.default_visibility = "private"
    with apps.client(settings) as test_client:
        yield test_client


def test_new_collections_take_the_default_visibility(
    private_by_default: TestClient, admin: dict[str, str]
) -> None:
    client = private_by_default
    a_id, a = _account(client, "a")
    _, b = _account(client, "b")
    assert client.post("/collections", json=collection("mine"), headers=a).status_code == 201
    r = client.get("/collections/mine/rights", headers=a)
    assert r.json()["visibility"] == "private" and r.json()["owner"] == a_id
    assert client.get("/collections/mine", headers=a).status_code == 200
    assert client.get("/collections/mine", headers=b).status_code == 404
    assert client.get("/collections", headers=b).json()["collections"] == []
    r = client.get("/collections/mine/rights", headers=admin)
    assert r.status_code == 200 and r.json()["owner"] == a_id


def test_the_authentication_extension_is_advertised(world: World) -> None:
    schema = json.loads((SCHEMAS / "stac-extensions.github.io/authentication/v1.1.0/schema.json")
                        .read_text())  # fmt: skip
    validator = jsonschema.Draft7Validator(schema)
    landing = world.client.get("/").json()
    doc = world.client.get(f"/collections/{OPEN}").json()
    for document in (landing, doc):
        assert AUTH_URL in document["stac_extensions"]
        assert document["auth:schemes"]["bearer"]["scheme"] == "bearer"
        assert [e.message for e in validator.iter_errors(document)] == []
    refs = {link["rel"]: link.get("auth:refs") for link in landing["links"]}
    assert refs["http://www.opengis.net/def/rel/ogc/1.0/job-list"] == ["bearer"]
    assert refs["upload-sets"] == ["bearer"]
    assert refs["self"] is None and refs["search"] is None


def test_a_read_token_only_reads_even_what_its_account_owns(world: World) -> None:
    """Scopes cap the account's rights: A's ``read`` token reads its private collection but
    neither writes to it nor manages it; its ``write`` token (the fixture's) does both."""
    accounts: AccountRepository = world.client.app.state.accounts  # type: ignore[attr-defined]
    assert world.client.portal is not None
    issued = world.client.portal.call(accounts.create_token, world.ids["a"], "", ("read",))
    reader = {"Authorization": f"Bearer {issued.token}"}
    assert world.client.get(f"/collections/{SECRET}", headers=reader).status_code == 200
    rights = f"/collections/{SECRET}/rights"
    r = world.client.put(rights, json={"visibility": "public"}, headers=reader)
    assert r.status_code == 403 and r.json()["code"] == "auth.Forbidden"
    r = world.client.delete(f"/collections/{SECRET}/items/s0", headers=reader)
    assert r.status_code == 403
    writer = world.callers["a"]
    assert world.client.delete(f"/collections/{SECRET}/items/s0", headers=writer).status_code == 204
    assert world.client.delete(f"/collections/{SECRET}", headers=writer).status_code == 204
    assert world.client.get(f"/collections/{SECRET}", headers=writer).status_code == 404
