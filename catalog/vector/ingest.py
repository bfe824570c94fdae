"""The ingest child's vector work: pick the layers, read each into a COPY-ready file.

Which layers, and into which collections (docs/ingest.md): the layer the upload set names,
into its collection; else every layer, the first into the upload set's collection and each
other into ``{collection}-{layer}``. A multi-layer file appended to an existing vector
collection must name its layer (``ingest.LayerChoiceNeeded``).
"""

import re
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import Any

from catalog.settings import IngestSettings

from .errors import LayerChoiceNeeded, UnknownLayer
from .formats import Format, ZipLimits, prepare
from .layer_data import LayerData
from .reader import SourceLayer, list_layers, read_layer


def layer_collection_id(collection_id: str, layer: str) -> str:
    """``{collection}-{layer}``, the layer name made a plain id (ASCII letters, digits, -_.)."""
    ascii_name = unicodedata.normalize("NFKD", layer).encode("ascii", "ignore").decode()
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "-", ascii_name).strip("-.")[:100] or "layer"
    return f"{collection_id}-{cleaned}"


def choose(
    layers: list[SourceLayer], collection_id: str, wanted: str | None, appending: bool
) -> list[tuple[str, SourceLayer]]:
    """The layers to load and the collection each goes into."""
    if wanted is not None:
        chosen = [layer for layer in layers if layer.name == wanted]
        if not chosen:
            names = ", ".join(repr(layer.name) for layer in layers)
            raise UnknownLayer(f"the file has no layer {wanted!r}; its layers: {names}")
        return [(collection_id, chosen[0])]
    if appending and len(layers) > 1:
        names = ", ".join(repr(layer.name) for layer in layers)
        raise LayerChoiceNeeded(
            f"{collection_id!r} holds features already and the file has {len(layers)} layers "
            f"({names}): make an upload set that names the 'layer' to append"
        )
    targets = [(collection_id, layers[0])]
    taken = {collection_id}
    for layer in layers[1:]:
        target, k = layer_collection_id(collection_id, layer.name), 1
        while target in taken:  # two layer names that clean to the same id
            k += 1
            target = f"{layer_collection_id(collection_id, layer.name)}-{k}"
        taken.add(target)
        targets.append((target, layer))
    return targets


def read_upload(
    source: Path,
    fmt: Format,
    work: Path,
    out: Path,
    vector: dict[str, Any],
    settings: IngestSettings,
    progress: Callable[[int, str], None],
    log: Callable[[str], None],
) -> list[dict[str, Any]]:
    """Read the layers of ``source`` into ``out``; their descriptions for the commit."""
    limits = ZipLimits(settings.zip_max_bytes, settings.zip_max_ratio, settings.zip_max_members)
    datasets = prepare(source, fmt, work, limits)
    layers = list_layers(datasets, fmt)
    targets = choose(layers, vector["collection_id"], vector.get("layer"),
                     bool(vector.get("appending")))  # fmt: skip
    log(f"{fmt.value}: {len(layers)} layer(s); loading {len(targets)}")
    described = []
    for n, (collection_id, layer) in enumerate(targets):
        progress(5 + 90 * n // len(targets), f"reading layer {layer.name}")
        data: LayerData = read_layer(layer, out / f"layer{n}.csv",
                                     settings.vector_max_features, log)  # fmt: skip
        log(f"layer {layer.name!r}: {data.count} feature(s), {data.geometry_type}, "
            f"{data.source_crs or 'no CRS'} -> {collection_id}")  # fmt: skip
        described.append({"collection_id": collection_id, **data.to_json()})
    return described
