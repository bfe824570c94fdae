// The map: a base map (none, XYZ or TileJSON), a graticule, collection footprints as vector
// tiles, search results, an item's imagery from its TileJSON, and a box drawn with the mouse.
import * as maplibregl from "maplibre-gl";
import { auth, isApiUrl, apiUrl } from "./api.js";

// MapLibre's worker, copied next to the bundle by build.mjs (its name holds a digest).
maplibregl.setWorkerUrl(new URL(`./${__MAPLIBRE_WORKER__}`, import.meta.url).href);

// A collection of features (OGC API - Features), not of STAC items.
export function isVector(c) {
  return c["terracat:kind"] === "vector";
}

const COLOURS = ["#e4572e", "#17bebb", "#ffc914", "#76b041", "#a65ad8", "#2e86de", "#ff6fb5"];
const EMPTY = { type: "FeatureCollection", features: [] };

function graticule(step) {
  const features = [];
  for (let lon = -180; lon <= 180; lon += step) {
    features.push({ type: "Feature", properties: {},
      geometry: { type: "LineString", coordinates: [[lon, -85], [lon, 0], [lon, 85]] } });
  }
  for (let lat = -80; lat <= 80; lat += step) {
    const line = [];
    for (let lon = -180; lon <= 180; lon += 10) line.push([lon, lat]);
    features.push({ type: "Feature", properties: {}, geometry: { type: "LineString", coordinates: line } });
  }
  return { type: "FeatureCollection", features };
}

function baseStyle(baseMap) {
  const sources = { graticule: { type: "geojson", data: graticule(10) } };
  const layers = [{ id: "background", type: "background", paint: { "background-color": "#eef2f5" } }];
  if (baseMap.kind === "xyz") {
    sources.base = { type: "raster", tiles: [baseMap.url], tileSize: 256, attribution: baseMap.attribution };
  } else if (baseMap.kind === "tilejson") {
    sources.base = { type: "raster", url: baseMap.url, tileSize: 256, attribution: baseMap.attribution };
  }
  if (sources.base) layers.push({ id: "base", type: "raster", source: "base" });
  layers.push({ id: "graticule", type: "line", source: "graticule",
    paint: { "line-color": "#9aa8b5", "line-width": 0.6, "line-opacity": 0.7 } });
  // no glyphs or sprites: nothing needs a font server
  return { version: 8, sources, layers };
}

export class MapView {
  constructor(container, baseMap) {
    this.footprints = new Map();  // collection id -> its colour
    this.layersOf = new Map();  // collection id -> the map layers that draw it
    this.vectorOf = new Map();  // vector collection id -> the layers of its features
    this.map = new maplibregl.Map({
      container,
      style: baseStyle(baseMap),
      center: [10, 30],
      zoom: 1,
      attributionControl: { compact: true },
      fadeDuration: 0,
      canvasContextAttributes: { preserveDrawingBuffer: true },
      // Every request to the API carries the tab's token (tiles and TileJSON included).
      // Footprint tiles are revalidated (ETag): new items show at once, not after max-age.
      transformRequest: (url) => {
        if (!isApiUrl(url)) return { url };
        const cache = url.includes("/items/tiles/") ? "no-cache" : undefined;
        return { url, headers: auth.headers(), cache };
      },
    });
    this.map.addControl(new maplibregl.NavigationControl({ showCompass: false }), "top-right");
    this.map.addControl(new maplibregl.ScaleControl(), "bottom-left");
    this.ready = new Promise((resolve) => this.map.once("load", resolve));
    this.ready.then(() => {
      this.map.addSource("results", { type: "geojson", data: EMPTY });
      this.map.addLayer({ id: "results-line", type: "line", source: "results",
        paint: { "line-color": "#1d3557", "line-width": 2 } });
      this.map.addSource("box", { type: "geojson", data: EMPTY });
      this.map.addLayer({ id: "box-line", type: "line", source: "box",
        paint: { "line-color": "#d62828", "line-width": 2, "line-dasharray": [2, 1] } });
    });
  }

  // The collections' footprints, one vector tile source each, and the features of vector
  // collections drawn with their own style; ``collections`` replaces them all.
  async setFootprints(collections) {
    await this.ready;
    for (const id of [...this.footprints.keys()]) this.removeFootprints(id);
    const styles = await Promise.all(collections.map((c) => (isVector(c) ? this.styleOf(c) : null)));
    collections.forEach((c, n) => {
      if (styles[n]) {
        this.addFeatures(c, styles[n]);
        return;
      }
      const source = `fp-${c.id}`;
      const colour = COLOURS[n % COLOURS.length];
      this.map.addSource(source, { type: "vector",
        url: apiUrl(`collections/${encodeURIComponent(c.id)}/items/tiles/WebMercatorQuad`) });
      const before = this.map.getLayer("results-line") ? "results-line" : undefined;
      this.map.addLayer({ id: `${source}-fill`, type: "fill", source, "source-layer": c.id,
        paint: { "fill-color": colour, "fill-opacity": 0.15 } }, before);
      this.map.addLayer({ id: `${source}-line`, type: "line", source, "source-layer": c.id,
        paint: { "line-color": colour, "line-width": 1.2 } }, before);
      this.footprints.set(c.id, colour);
      this.layersOf.set(c.id, [`${source}-fill`, `${source}-line`]);
    });
  }

  // The collection's MapLibre style (/collections/{id}/styles/default), or null.
  async styleOf(c) {
    try {
      const answer = await fetch(apiUrl(`collections/${encodeURIComponent(c.id)}/styles/default`),
        { headers: { ...auth.headers(), Accept: "application/vnd.mapbox.style+json, application/json" } });
      return answer.ok ? await answer.json() : null;
    } catch {
      return null;
    }
  }

  // A vector collection's features: its style's sources and layers, renamed under ``vf-{id}``
  // so that several collections' styles live in one map.
  addFeatures(c, style) {
    const prefix = `vf-${c.id}`;
    const before = this.map.getLayer("results-line") ? "results-line" : undefined;
    for (const [name, source] of Object.entries(style.sources || {})) {
      if (!this.map.getSource(`${prefix}-${name}`)) this.map.addSource(`${prefix}-${name}`, source);
    }
    const layers = [];
    let colour = "#888";
    for (const layer of style.layers || []) {
      if (!layer.source || layer.type === "background") continue;
      const id = `${prefix}-${layer.id}`;
      this.map.addLayer({ ...layer, id, source: `${prefix}-${layer.source}` }, before);
      layers.push(id);
      const paint = layer.paint || {};
      const first = paint["fill-color"] || paint["line-color"] || paint["circle-color"];
      if (typeof first === "string" && colour === "#888") colour = first;
    }
    this.footprints.set(c.id, colour);
    this.layersOf.set(c.id, layers);
    this.vectorOf.set(c.id, layers);
  }

  // The layers a click may hit: footprint fills and every layer of vector collections.
  clickable() {
    const footprints = [...this.footprints.keys()].filter((id) => !this.vectorOf.has(id)).map((id) => `fp-${id}-fill`);
    const features = [...this.vectorOf.values()].flat();
    return [...features, ...footprints].filter((l) => this.map.getLayer(l));
  }

  // Calls ``open(collection, itemId)`` when a footprint is clicked, and
  // ``openFeature(collection, featureId)`` when a vector collection's feature is.
  onFootprintClick(open, openFeature) {
    this.map.on("click", (e) => {
      const layers = this.clickable();
      if (!layers.length) return;
      const hit = this.map.queryRenderedFeatures(e.point, { layers })[0];
      if (!hit) return;
      const vector = [...this.vectorOf.entries()].find(([, ids]) => ids.includes(hit.layer.id));
      if (vector && hit.id !== undefined) openFeature(vector[0], hit.id);
      else if (hit.properties?.id) open(hit.properties.collection || hit.sourceLayer, hit.properties.id);
    });
    this.map.on("mousemove", (e) => {
      const layers = this.clickable();
      const over = layers.length && this.map.queryRenderedFeatures(e.point, { layers }).length;
      if (this.map.getCanvas().style.cursor !== "crosshair") this.map.getCanvas().style.cursor = over ? "pointer" : "";
    });
  }

  removeFootprints(id) {
    for (const layer of this.layersOf.get(id) || []) {
      if (this.map.getLayer(layer)) this.map.removeLayer(layer);
    }
    const prefixes = [`fp-${id}`, `vf-${id}-`];
    for (const source of Object.keys(this.map.getStyle()?.sources || {})) {
      if (source === prefixes[0] || source.startsWith(prefixes[1])) this.map.removeSource(source);
    }
    this.footprints.delete(id);
    this.layersOf.delete(id);
    this.vectorOf.delete(id);
  }

  // Every layer fetched with the account's rights: gone before its token is.
  forgetAccountData() {
    for (const id of [...this.footprints.keys()]) this.removeFootprints(id);
    this.hideImagery();
  }

  setFootprintsVisible(id, visible) {
    for (const layer of this.layersOf.get(id) || []) {
      if (this.map.getLayer(layer)) this.map.setLayoutProperty(layer, "visibility", visible ? "visible" : "none");
    }
  }

  async setResults(features) {
    await this.ready;
    this.map.getSource("results").setData({ type: "FeatureCollection", features });
  }

  // The item's imagery from its TileJSON URL, under the footprints' outlines.
  async showImagery(tilejson, opacity) {
    await this.ready;
    this.hideImagery();
    this.map.addSource("imagery", { type: "raster", url: tilejson, tileSize: 512 });
    const before = this.map.getLayer("results-line") ? "results-line" : undefined;
    this.map.addLayer({ id: "imagery", type: "raster", source: "imagery",
      paint: { "raster-opacity": opacity, "raster-fade-duration": 0 } }, before);
  }

  hideImagery() {
    if (this.map.getLayer("imagery")) this.map.removeLayer("imagery");
    if (this.map.getSource("imagery")) this.map.removeSource("imagery");
  }

  setImageryOpacity(opacity) {
    if (this.map.getLayer("imagery")) this.map.setPaintProperty("imagery", "raster-opacity", opacity);
  }

  fit(bbox) {
    const [west, south, east, north] = bbox.length === 6 ? [bbox[0], bbox[1], bbox[3], bbox[4]] : bbox;
    this.map.fitBounds([[west, south], [east, north]], { padding: 40, maxZoom: 16, duration: 0 });
  }

  // West, south, east, north of the view, within the world.
  viewBbox() {
    const b = this.map.getBounds();
    const clamp = (v, lo, hi) => Math.min(hi, Math.max(lo, v));
    return [clamp(b.getWest(), -180, 180), clamp(b.getSouth(), -85, 85),
      clamp(b.getEast(), -180, 180), clamp(b.getNorth(), -85, 85)].map((v) => Math.round(v * 1e6) / 1e6);
  }

  // Lets the user drag a box on the map once; resolves with its bbox.
  drawBox() {
    const map = this.map;
    map.getCanvas().style.cursor = "crosshair";
    map.dragPan.disable();
    return new Promise((resolve) => {
      let start = null;
      const ring = (a, b) => [[a.lng, a.lat], [b.lng, a.lat], [b.lng, b.lat], [a.lng, b.lat], [a.lng, a.lat]];
      const move = (e) => {
        if (!start) return;
        map.getSource("box").setData({ type: "Feature", properties: {},
          geometry: { type: "Polygon", coordinates: [ring(start, e.lngLat)] } });
      };
      const down = (e) => { start = e.lngLat; };
      const up = (e) => {
        if (!start) return;
        map.off("mousedown", down); map.off("mousemove", move); map.off("mouseup", up);
        map.dragPan.enable();
        map.getCanvas().style.cursor = "";
        const a = start, b = e.lngLat;
        resolve([Math.min(a.lng, b.lng), Math.min(a.lat, b.lat), Math.max(a.lng, b.lng), Math.max(a.lat, b.lat)]);
      };
      map.on("mousedown", down); map.on("mousemove", move); map.on("mouseup", up);
    });
  }

  showBox(bbox) {
    const [w, s, e, n] = bbox;
    this.map.getSource("box")?.setData({ type: "Feature", properties: {},
      geometry: { type: "Polygon", coordinates: [[[w, s], [e, s], [e, n], [w, n], [w, s]]] } });
  }
}
