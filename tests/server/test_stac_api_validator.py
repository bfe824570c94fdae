"""stac-api-validator against a live server: every conformance class it knows, zero errors.

It runs in-process, so the ``offline_network`` fixture serves the JSON schemas it (and
stac-validator, stac-check, pystac) fetch from tests/data/stac-schemas and refuses any other
host. Classes it only names (``features#fields``, ``features#sort``, ``features#query``: "not
yet supported" in 0.6.8) are still passed, so a newer validator checks them without edits here.
"""

import json
import re
import socket
import urllib.error
import urllib.request
from typing import Any

import httpx
import pytest
import requests
import urllib3
from stac_api_validator import validations
from stac_api_validator.validations import QueryConfig, validate_api

from tests.server.conftest import S2, SCHEMA_DIR, Catalogue, LiveServer, Offline

# "filter" is the validator's name for the item-search filter class (item-search#filter would
# run the same checks twice); "features#filter" is only reachable through its Python API.
READ_CLASSES = [
    "core",
    "collections",
    "features",
    "item-search",
    "filter",
    "features#filter",
    "item-search#sort",
    "item-search#fields",
    "item-search#query",
    "features#sort",
    "features#fields",
    "features#query",
]

# The conformance URI each class needs in /conformance, by the validator's own patterns.
ADVERTISED: dict[str, re.Pattern[str]] = {
    "core": validations.cc_core_regex,
    "collections": validations.cc_collections_regex,
    "features": validations.cc_features_regex,
    "item-search": validations.cc_item_search_regex,
    "filter": validations.cc_item_search_filter_regex,
    "features#filter": re.compile(
        r"http://www\.opengis\.net/spec/ogcapi-features-3/1\.0/conf/features-filter"
    ),
    "item-search#sort": validations.cc_item_search_sort_regex,
    "item-search#fields": validations.cc_item_search_fields_regex,
    "item-search#query": validations.cc_item_search_query_regex,
    "features#sort": validations.cc_features_sort_regex,
    "features#fields": validations.cc_features_fields_regex,
    "features#query": validations.cc_features_query_regex,
    "transaction": validations.cc_features_transaction_regex,
}

# Query extension checks on the Sentinel-2 collection (values exist in the loaded data).
# The validator checks ``in`` results with set(property) & set(values), which only means
# membership for list-valued or one-character properties: the MGRS latitude band is the latter.
QUERY = QueryConfig(
    query_comparison_field="eo:cloud_cover",
    query_eq_value="26",
    query_neq_value="26",
    query_lt_value="30",
    query_lte_value="26",
    query_gt_value="30",
    query_gte_value="26",
    query_substring_field="platform",
    query_starts_with_value="sentinel",
    query_ends_with_value="-2a",
    query_contains_value="nel-2",
    query_in_field="mgrs:latitude_band",
    query_in_values="S,T",
)


@pytest.fixture
def validator_bug_656(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Send the POST ``collections`` the validator means, as the array the spec requires.

    stac-api-validator 0.6.8 POSTs ``"collections": "<id>"`` (a string) in its sort and query
    checks (stac-utils/stac-api-validator#656, open); the Item Search spec and stac-fastapi's
    model want an array, so the server's 400 is right. Wrapping the string lets those checks
    test what they were written for. Every rewrite is recorded.
    """
    rewritten: list[str] = []
    original = validations.retrieve

    def retrieve(method: Any, url: str, *args: Any, **kwargs: Any) -> Any:
        body = kwargs.get("body")
        if method is validations.Method.POST and isinstance(body, dict):
            if isinstance(body.get("collections"), str):
                kwargs["body"] = {**body, "collections": [body["collections"]]}
                rewritten.append(json.dumps(body))
        return original(method, url, *args, **kwargs)

    monkeypatch.setattr(validations, "retrieve", retrieve)
    return rewritten


def _run(server: LiveServer, classes: list[str], **kwargs: Any) -> tuple[list[str], list[str]]:
    warnings, errors = validate_api(
        root_url=server.url,
        ccs_to_validate=classes,
        auth_bearer_token=server.token,
        auth_query_parameter=None,
        fields_nested_property="properties.eo:cloud_cover",
        validate_pagination=True,
        query_config=QUERY,
        headers={},
        **kwargs,
    )
    for warning in warnings:
        print("validator warning:", warning)
    return list(warnings), list(errors)


# Its core check walks the catalogue with pystac's deprecated get_all_items (no stacklevel,
# so the warning is attributed to pystac, not to the validator that calls it).
@pytest.mark.filterwarnings("ignore:get_all_items is deprecated:DeprecationWarning")
def test_validator_read_classes_have_no_errors(
    live_server: LiveServer,
    live_catalogue: Catalogue,
    offline_network: Offline,
    validator_bug_656: list[str],
) -> None:
    target = next(i for i in live_catalogue.items[S2] if i["bbox"][0] == 20.2)
    warnings, errors = _run(
        live_server,
        READ_CLASSES,
        collection=S2,
        geometry=json.dumps(target["geometry"]),
        transaction_collection=None,
    )
    assert not errors, "\n".join(errors) + "\n" + live_server.log()
    assert offline_network.served, "the schemas should have come from tests/data/stac-schemas"
    # Only the POST sort (asc, desc) and query (10 operators) checks carry the bug.
    assert len(validator_bug_656) == 12, validator_bug_656


def test_validator_transaction_class_has_no_errors(
    lenient_live_server: LiveServer, offline_network: Offline
) -> None:
    """The transaction class as stac-api-validator checks it.

    8-11 s of wall time for 3 s of CPU: the validator sleeps 2 s after each of its four
    writes (stac_api_validator.validations), for servers that index asynchronously.
    """
    server = lenient_live_server
    doc = {
        "type": "Collection", "stac_version": "1.1.0", "id": "transactions",
        "description": "Where stac-api-validator writes", "license": "proprietary",
        "extent": {"spatial": {"bbox": [[-180, -90, 180, 90]]},
                   "temporal": {"interval": [["2023-01-01T00:00:00Z", None]]}},
        "links": [],
    }  # fmt: skip
    r = httpx.post(f"{server.url}/collections", json=doc, headers=server.auth)
    assert r.status_code in (201, 409), r.text
    _, errors = _run(
        server,
        ["transaction"],
        collection="transactions",
        geometry=None,
        transaction_collection="transactions",
    )
    assert not errors, "\n".join(errors) + "\n" + server.log()


def test_offline_network_serves_schemas_and_refuses_other_hosts(offline_network: Offline) -> None:
    """The harness itself: every client library gets the local schema, nobody gets out."""
    url = "https://stac-extensions.github.io/eo/v1.1.0/schema.json"
    local = json.loads((SCHEMA_DIR / "stac-extensions.github.io/eo/v1.1.0/schema.json").read_text())
    assert requests.get(url, timeout=5).json() == local
    with urllib.request.urlopen(url) as f:
        assert json.load(f) == local
    assert json.loads(urllib3.PoolManager().request("GET", url).data) == local
    with pytest.raises(requests.ConnectionError):
        requests.get("https://example.com/", timeout=5)
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen("https://example.com/")
    with pytest.raises(urllib3.exceptions.HTTPError):
        urllib3.PoolManager().request("GET", "https://example.com/", retries=False)
    with pytest.raises(OSError):
        socket.create_connection(("example.com", 443), timeout=5)
    with pytest.raises(requests.ConnectionError):  # a schema host, but no local copy
        requests.get("https://schemas.stacspec.org/v9.9.9/item.json", timeout=5)
    assert len(offline_network.refused) == 5, offline_network.refused
    offline_network.refused.clear()  # expected here; any other test leaving one fails


@pytest.mark.parametrize("cls", sorted(ADVERTISED))
def test_each_class_is_advertised(live_server: LiveServer, cls: str) -> None:
    """The validator skips a class the server does not advertise; make sure none is skipped."""
    conforms = httpx.get(f"{live_server.url}/conformance").json()["conformsTo"]
    landing = httpx.get(live_server.url).json()["conformsTo"]
    assert sorted(conforms) == sorted(landing)
    assert validations.supports(conforms, ADVERTISED[cls]), conforms


def test_default_server_refuses_the_validators_invalid_put(
    live_server: LiveServer, live_catalogue: Catalogue
) -> None:
    """What the lenient server accepts from the validator, the default refuses, with a reason."""
    doc = json.loads(json.dumps(live_catalogue.items[S2][0]))
    doc["properties"]["eo:cloud_cover"] = "3.14"
    url = f"{live_server.url}/collections/{S2}/items/{doc['id']}"
    r = httpx.put(url, json=doc, headers=live_server.auth)
    assert r.status_code == 400, r.text
    assert r.json()["code"] == "stac.Invalid"
    assert "eo extension" in r.json()["description"]
    stored = httpx.get(url).json()
    assert (
        stored["properties"]["eo:cloud_cover"]
        == live_catalogue.items[S2][0]["properties"]["eo:cloud_cover"]
    )
