"""The STAC fields extension: include/exclude dotted paths on response documents."""

from collections.abc import Iterable
from typing import Any

# Returned when only `include` is given, so the result stays a valid STAC item.
DEFAULT_ITEM_FIELDS = frozenset(
    {"type", "stac_version", "id", "collection", "geometry", "bbox", "links", "assets",
     "properties.datetime"}
)  # fmt: skip

Tree = dict[str, "Tree | None"]  # None: the whole value at this path


def _tree(paths: Iterable[str]) -> Tree:
    tree: Tree = {}
    for path in paths:
        node = tree
        parts = [p for p in path.split(".") if p]
        for i, part in enumerate(parts):
            if part in node and node[part] is None:
                break  # an ancestor is already taken whole
            if i == len(parts) - 1:
                node[part] = None
            else:
                child = node.setdefault(part, {})
                assert child is not None
                node = child
    return tree


def _pick(doc: dict[str, Any], tree: Tree) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in doc.items():
        if key not in tree:
            continue
        sub = tree[key]
        if sub is None:
            out[key] = value
        elif isinstance(value, dict):
            out[key] = _pick(value, sub)
    return out


def _drop(doc: dict[str, Any], tree: Tree) -> dict[str, Any]:
    out = dict(doc)
    for key, sub in tree.items():
        if key not in out:
            continue
        if sub is None:
            del out[key]
        elif isinstance(out[key], dict):
            out[key] = _drop(out[key], sub)
    return out


def apply_fields(
    doc: dict[str, Any], include: Iterable[str] | None, exclude: Iterable[str] | None
) -> dict[str, Any]:
    """Filter ``doc`` by the fields extension rules; ``doc`` itself is not modified.

    Nothing given: the whole document. Only ``include``: the defaults plus those paths.
    Only ``exclude``: the whole document minus those paths. Both: a path must be included and
    not excluded (``properties`` included with ``properties.datetime`` excluded drops it).
    """
    include = set(include or ())
    exclude = set(exclude or ())
    if include:
        doc = _pick(doc, _tree(DEFAULT_ITEM_FIELDS | include))
    if exclude:
        doc = _drop(doc, _tree(exclude))
    return doc
