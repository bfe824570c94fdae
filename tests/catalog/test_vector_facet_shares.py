"""How the facets of one request are dealt out to statements run side by side
(catalog/vector/facets.py ``facet_counts_shared``): the answer waits for the slowest one."""

from catalog.vector.facets import _deal
from catalog.vector.schema import Property, PropertyType

T = PropertyType


def _props(*types: PropertyType) -> list[Property]:
    return [Property(f"p{i}", kind, f"c{i}") for i, kind in enumerate(types)]


def test_every_facet_goes_to_exactly_one_statement() -> None:
    props = _props(T.STRING, T.STRING, T.BOOLEAN, T.INTEGER, T.NUMBER, T.DATETIME, T.DATE)
    for count in range(1, 9):
        shares = _deal(props, count)
        assert len(shares) == count
        assert sorted(name for share in shares for name in share) == sorted(p.name for p in props)


def test_the_costly_facets_are_not_put_together() -> None:
    # bench.vector_facets' layer: crop and farmer (text), organic, parcels, yield, sown. Dealt
    # in turn, farmer, parcels and sown made one statement 39 ms against the other's 28.
    props = _props(T.STRING, T.STRING, T.BOOLEAN, T.INTEGER, T.NUMBER, T.DATETIME)
    shares = _deal(props, 2)
    assert sorted(map(sorted, shares)) == [["p0", "p1", "p2", "p3"], ["p4", "p5"]]


def test_more_statements_than_facets_leaves_some_without_a_share() -> None:
    shares = _deal(_props(T.DATETIME, T.BOOLEAN), 3)
    assert sorted(map(len, shares)) == [0, 1, 1]
