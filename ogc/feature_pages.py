"""HTML pages of features (``f=html``), rendered by pygeoapi's templates.

Our engine selects the features (the same page as the GeoJSON answer); pygeoapi renders them
with its own ``collections/items`` templates through ``pygeoapi.util.render_j2_template``,
given a pygeoapi configuration built here, from our settings, when the app is made (never
pygeoapi's import-time globals). ``ogc/templates`` goes first on its template path: a frame
(``_base.html``) that loads nothing from other hosts, and the two pages without their Leaflet
map (a CDN script). pygeoapi is imported at the first page: it costs 0.7 s of import.
"""

from pathlib import Path
from typing import Any

TEMPLATES = Path(__file__).resolve().parent / "templates"


class FeaturePages:
    """Renders feature collections and features as HTML with pygeoapi's templates."""

    def __init__(self, title: str, description: str, default_limit: int, max_limit: int) -> None:
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

    def items(
        self, base_url: str, collection_id: str, title: str, body: dict[str, Any], paged: bool
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
        }
        return self._render("terracat/items.html", base_url, data)

    def item(self, base_url: str, title: str, feature: dict[str, Any]) -> str:
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
        }
        return self._render("terracat/item.html", base_url, data)


__all__ = ["TEMPLATES", "FeaturePages"]
