"""HTML pages of features (``f=html``), rendered by pygeoapi's templates.

Our engine selects the features (the same page as the GeoJSON answer); pygeoapi renders them
with its own ``collections/items`` templates through ``pygeoapi.util.render_j2_template``,
given a pygeoapi configuration built here, from our settings, when the app is made (never
pygeoapi's import-time globals). ``ogc/templates`` goes first on its template path: a frame
(``_base.html``) that loads nothing from other hosts, and the two pages with a map of their own
features in place of pygeoapi's Leaflet map (a CDN script): the page's GeoJSON, embedded in it,
drawn by a MapLibre script this server serves (the viewer's build makes it:
server/viewer/src/features-page.js). ``map_files`` says where that script and its style sheet
are (paths below the API root), or None when they are not built: the pages then have no map.
Only lon/lat pages get a map (``crs`` CRS84, geometries not skipped). pygeoapi is imported at
the first page: it costs 0.7 s of import.
"""

from collections.abc import Callable
from pathlib import Path
from typing import Any

TEMPLATES = Path(__file__).resolve().parent / "templates"
MapFiles = Callable[[], dict[str, str] | None]


class FeaturePages:
    """Renders feature collections and features as HTML with pygeoapi's templates."""

    def __init__(
        self,
        title: str,
        description: str,
        default_limit: int,
        max_limit: int,
        map_files: MapFiles | None = None,
    ) -> None:
        self.map_files = map_files
        self.config: dict[str, Any] = {
            "server": {
                "url": "",  # set per request: the API root the client reached
                "mimetype": "application/json; charset=UTF-8",
                "encoding": "utf-8",
                "language": "en-US",
                "locale_dir": str(TEMPLATES / "locale"),
                "limits": {"default_items": default_limit, "max_items": max_limit},
                "templates": {"path": str(TEMPLATES)},
            },
            "metadata": {"identification": {"title": title, "description": description}},
            "resources": {},
        }

    def _render(self, template: str, base_url: str, data: dict[str, Any]) -> str:
        from pygeoapi.util import render_j2_template  # see the module docstring

        config = {**self.config, "server": {**self.config["server"], "url": base_url.rstrip("/")}}
        page: str = render_j2_template(config, config["server"]["templates"], template, data)
        return page

    def _map(self, base_url: str, features: list[dict[str, Any]]) -> dict[str, Any] | None:
        """What the template needs to draw ``features`` (lon/lat GeoJSON), or None."""
        files = self.map_files() if self.map_files is not None else None
        if files is None or not any(f.get("geometry") for f in features):
            return None
        drawn: list[dict[str, Any]] = [
            {"type": "Feature", "id": f.get("id"), "geometry": f["geometry"], "properties": {}}
            for f in features
            if f.get("geometry")
        ]
        return {
            "script": base_url + files["script"],
            "style": base_url + files["style"],
            "geojson": {"type": "FeatureCollection", "features": drawn},
        }

    def items(
        self,
        base_url: str,
        collection_id: str,
        title: str,
        body: dict[str, Any],
        paged: bool,
        drawn: bool = True,
    ) -> str:
        """The page of a FeatureCollection answer (``paged``: it is not the first page)."""
        collection_url = f"{base_url}collections/{collection_id}"
        links = [*body["links"]]
        for link in links:
            if link["rel"] == "collection":
                link["title"] = title
        data = {
            **body,
            "links": links,
            "title": title,
            "collections_path": f"{base_url}collections",
            "dataset_path": collection_url,
            "items_path": f"{collection_url}/items",
            "itemtype": "feature",
            "offset": 1 if paged else 0,  # pygeoapi shows "Prev" when it is above 0
            "id_field": "id",
            "map": self._map(base_url, body["features"]) if drawn else None,
        }
        return self._render("terracat/items.html", base_url, data)

    def item(self, base_url: str, title: str, feature: dict[str, Any], drawn: bool = True) -> str:
        """The page of one feature."""
        links = [{**link, "title": title} if link["rel"] == "collection" else link
                 for link in feature["links"]]  # fmt: skip
        data = {
            **feature,
            "links": links,
            "collections_path": f"{base_url}collections",
            "id_field": "id",
            "title_field": None,
            "properties": dict(feature.get("properties") or {}),
            "map": self._map(base_url, [feature]) if drawn else None,
        }
        return self._render("terracat/item.html", base_url, data)


__all__ = ["TEMPLATES", "FeaturePages", "MapFiles"]
