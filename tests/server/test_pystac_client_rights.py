"""pystac-client with a token: a private collection is there for its reader and nowhere else.

The live server's catalogue is shared by the session, so the collection and account made here
are taken away again (the account disabled: accounts are never deleted).
"""

from collections.abc import Iterator

import httpx
import pytest
from pystac_client import Client
from pystac_client.exceptions import APIError

from tests.factories import collection, item
from tests.server.conftest import Catalogue, LiveServer, Offline

HIDDEN = "pystac-client-hidden"


@pytest.fixture
def reader(live_server: LiveServer, live_catalogue: Catalogue) -> Iterator[dict[str, str]]:
    """Headers of an account that reads ``HIDDEN``, a private collection of three items."""
    url, admin = live_server.url, live_server.auth
    account = httpx.post(f"{url}/accounts", json={"name": "pystac-reader"}, headers=admin)
    assert account.status_code == 201, account.text
    account_id = account.json()["id"]
    token = httpx.post(f"{url}/accounts/{account_id}/tokens", json={"scopes": ["read"]},
                       headers=admin)  # fmt: skip
    assert token.status_code == 201, token.text
    assert httpx.post(f"{url}/collections", json=collection(HIDDEN), headers=admin).is_success
    try:
        for n in range(3):
            doc = item(f"hidden-{n}", lon=-60.0 + n, lat=-20.0)
            r = httpx.post(f"{url}/collections/{HIDDEN}/items", json=doc, headers=admin)
            assert r.status_code == 201, r.text
        rights = f"{url}/collections/{HIDDEN}/rights"
        assert httpx.put(rights, json={"visibility": "private"}, headers=admin).is_success
        r = httpx.put(f"{rights}/grants/account/{account_id}", json={"right": "read"},
                      headers=admin)  # fmt: skip
        assert r.is_success, r.text
        yield {"Authorization": f"Bearer {token.json()['token']}"}
    finally:
        httpx.delete(f"{url}/collections/{HIDDEN}", headers=admin)
        httpx.patch(f"{url}/accounts/{account_id}", json={"disabled": True}, headers=admin)


def test_a_token_opens_a_private_collection_to_pystac_client(
    live_server: LiveServer, reader: dict[str, str], offline_network: Offline
) -> None:
    signed_in = Client.open(live_server.url, headers=reader)
    anonymous = Client.open(live_server.url)

    found = signed_in.search(collections=[HIDDEN], max_items=10)
    assert sorted(i.id for i in found.items()) == ["hidden-0", "hidden-1", "hidden-2"]
    assert found.matched() == 3
    assert signed_in.get_collection(HIDDEN).id == HIDDEN
    assert HIDDEN in {c.id for c in signed_in.get_collections()}

    nothing = anonymous.search(collections=[HIDDEN], bbox=[-61, -21, -57, -19], max_items=10)
    assert list(nothing.items()) == [] and nothing.matched() == 0
    everywhere = anonymous.search(bbox=[-61, -21, -57, -19], max_items=10)
    assert not any(i.id.startswith("hidden-") for i in everywhere.items())
    assert HIDDEN not in {c.id for c in anonymous.get_collections()}
    assert anonymous.get_collection(HIDDEN) is None  # pystac-client's answer to a 404
    with pytest.raises(APIError, match="does not exist"):
        anonymous._stac_io.read_json(f"{live_server.url}/collections/{HIDDEN}")
