"""What the ingest's child hands the commit: a layer read and converted, its rows in a file.

Apart from the reader (catalog/vector/reader.py) so that the commit and the API, which only
pass it on, do not import pyarrow and pyogrio (with its own GDAL and pandas): about 100 MB of
every API worker's start-up memory.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .schema import PropertyType


@dataclass(frozen=True)
class LayerData:
    """A layer read and converted: what the commit needs, with its rows in ``path``."""

    name: str
    path: Path
    properties: list[tuple[str, PropertyType]]
    geometry_type: str
    source_crs: str | None
    count: int
    skipped: int  # features without a geometry
    empty: tuple[str, ...] = ()  # properties with no value in any feature (any type will do)

    def to_json(self) -> dict[str, Any]:
        """The form passed from the child to the commit."""
        return {
            "name": self.name,
            "path": str(self.path),
            "properties": [[n, str(t)] for n, t in self.properties],
            "geometry_type": self.geometry_type,
            "source_crs": self.source_crs,
            "count": self.count,
            "skipped": self.skipped,
            "empty": list(self.empty),
        }

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> "LayerData":
        """Read what ``to_json`` wrote."""
        return cls(
            name=value["name"],
            path=Path(value["path"]),
            properties=[(n, PropertyType(t)) for n, t in value["properties"]],
            geometry_type=value["geometry_type"],
            source_crs=value["source_crs"],
            count=value["count"],
            skipped=value["skipped"],
            empty=tuple(value.get("empty", ())),
        )
