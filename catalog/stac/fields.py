"""The STAC fields extension: include/exclude dotted paths on response documents."""

from collections.abc import Iterable
from typing import Any

# What a client gets when it asks for fields without naming any (fields extension, rule 1).
DEFAULT_ITEM_FIELDS = frozenset(
    {"type", "stac_version", "id", "geometry", "bbox", "links", "assets", "properties.datetime"}
)
# Added to the default set when properties.datetime is null (fields extension, rule 1).
NULL_DATETIME_FIELDS = frozenset({"properties.start_datetime", "properties.end_datetime"})
# Always kept, so that even a one-field answer says what it is about.
IDENTITY_FIELDS = frozenset({"type", "stac_version", "id", "collection"})

Tree = dict[str, "Tree | None"]  # None: the whole value at this path


def _tree(paths: Iterable[str]) -> Tree:
    tree: Tree = {}
    for path in paths:
        node = tree
        parts = [p for p in path.split(".") if p]
        for i, part in enumerate(parts):
            child = node.get(part, {})
            if child is None:
                break  # an ancestor is already taken whole
            if i == len(parts) - 1:
                node[part] = None
            else:
                node[part] = child
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


def _covers(path: str, others: set[str]) -> bool:
    """Whether ``path`` or something inside it is named in ``others``."""
    return any(o == path or o.startswith(path + ".") for o in others)


def apply_fields(
    doc: dict[str, Any],
    include: Iterable[str] | None,
    exclude: Iterable[str] | None,
    base_is_default: bool = False,
) -> dict[str, Any]:
    """Filter ``doc`` by the STAC fields extension; ``doc`` itself is not modified.

    - ``include`` given: those paths (plus id, type, stac_version, collection); an ``exclude``
      of the same path, or of a parent of an included path, does not remove it.
    - only ``exclude``: the whole document minus those paths, or the default set minus them
      when the client sent ``include`` explicitly empty (``base_is_default``).
    - neither: the whole document, or the default set when ``base_is_default``. The default
      set has start and end datetimes too when ``properties.datetime`` is null.
    """
    include = {p for p in include or () if p}
    exclude = {p for p in exclude or () if p and not _covers(p, include)}
    if include:
        doc = _pick(doc, _tree(IDENTITY_FIELDS | include))
    elif base_is_default:
        default = DEFAULT_ITEM_FIELDS
        if (doc.get("properties") or {}).get("datetime") is None:
            default = default | NULL_DATETIME_FIELDS
        doc = _pick(doc, _tree(default))
    if exclude:
        doc = _drop(doc, _tree(exclude))
    return doc
