"""stac-api-validator and pystac-client with vector and hybrid collections in the catalogue.

A server of its own holds the STAC catalogue of the validator test, a vector collection that
annotates the Sentinel-2 one (a hybrid) and a vector collection of its own. The validator walks
every collection document (each stays a valid STAC Collection) and checks the STAC classes on
the raster collection: 0 errors. pystac-client reads every collection and searches the raster
ones as before; the features never show up as items.
"""

import json
from collections.abc import Iterator
from typing import Any

import pytest
from pystac_client import Client

from tests.server.conftest import (
    S2,
    Catalogue,
    LiveServer,
    Offline,
    _start,
    _stop,
    load_catalogue,
)
from tests.server.test_stac_api_validator import READ_CLASSES, _run, validator_bug_656
from tests.server.vector_fields import load

HYBRID_LAYER = "s2_annotations"
VECTOR = "field_parcels"

__all__ = ["validator_bug_656"]  # the fixture, used here as in its own module


@pytest.fixture(scope="module")
def mixed(databases: Any) -> Iterator[tuple[LiveServer, Catalogue]]:
    """A live server with the STAC catalogue plus a hybrid and a plain vector collection."""
    url = databases.create(f"terracat_mixed_{databases.suffix}")
    proc, server = _start(url)
    try:
        catalogue = load_catalogue(server)
        load(url, HYBRID_LAYER, count=30, annotates=S2)
        load(url, VECTOR, count=25)
        yield server, catalogue
    finally:
        _stop(proc, server)


@pytest.mark.filterwarnings("ignore:get_all_items is deprecated:DeprecationWarning")
def test_validator_has_no_errors_with_vector_collections(
    mixed: tuple[LiveServer, Catalogue], offline_network: Offline, validator_bug_656: list[str]
) -> None:
    server, catalogue = mixed
    target = next(i for i in catalogue.items[S2] if i["bbox"][0] == 20.2)
    warnings, errors = _run(
        server,
        READ_CLASSES,
        collection=S2,
        geometry=json.dumps(target["geometry"]),
        transaction_collection=None,
    )
    assert not errors, "\n".join(errors) + "\n" + server.log()
    assert offline_network.served


def test_pystac_client_reads_every_collection_and_searches_raster_ones(
    mixed: tuple[LiveServer, Catalogue], offline_network: Offline
) -> None:
    server, catalogue = mixed
    client = Client.open(server.url)
    collections = {c.id: c for c in client.get_collections()}
    assert set(collections) == {*catalogue.collections, HYBRID_LAYER, VECTOR}
    assert collections[VECTOR].extra_fields["itemType"] == "feature"
    related = [link.href for link in collections[S2].links if link.rel == "related"]
    assert related == [f"{server.url}/collections/{HYBRID_LAYER}/items"]
    for cid, items in catalogue.items.items():
        found = {item.id for item in client.search(collections=[cid], max_items=500).items()}
        assert found == {doc["id"] for doc in items}
    everything = list(client.search(max_items=500).items())
    assert len(everything) == len(catalogue.all_items())
    assert all(item.collection_id in catalogue.collections for item in everything)
    assert list(client.search(collections=[VECTOR], max_items=10).items()) == []
