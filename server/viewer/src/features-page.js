// The map of the HTML feature pages (f=html: ogc/feature_pages.py, pygeoapi's templates): the
// page's own GeoJSON, embedded in it, drawn with MapLibre from this server's files; no base map,
// fonts or sprites, so the page loads nothing from another host.
import "maplibre-gl/dist/maplibre-gl.css";
import * as maplibregl from "maplibre-gl";

maplibregl.setWorkerUrl(new URL(`./${__MAPLIBRE_WORKER__}`, import.meta.url).href);

const COLOUR = "#e4572e";
const WORLD = [-180, -85, 180, 85];
const is = (...types) => ["in", ["geometry-type"], ["literal", types]];

function extend(box, coordinates) {
  if (typeof coordinates[0] === "number") {
    const [x, y] = coordinates;
    box[0] = Math.min(box[0], x); box[1] = Math.min(box[1], y);
    box[2] = Math.max(box[2], x); box[3] = Math.max(box[3], y);
  } else {
    for (const part of coordinates) extend(box, part);
  }
}

function bounds(features) {
  const box = [Infinity, Infinity, -Infinity, -Infinity];
  for (const feature of features) {
    const geometry = feature.geometry;
    const parts = geometry?.type === "GeometryCollection" ? geometry.geometries : [geometry];
    for (const part of parts) if (part?.coordinates) extend(box, part.coordinates);
  }
  if (!Number.isFinite(box[0])) return WORLD;
  const pad = (box[2] - box[0] < 1e-6 && box[3] - box[1] < 1e-6) ? 0.01 : 0;  // one point
  return [box[0] - pad, box[1] - pad, box[2] + pad, box[3] + pad];
}

function draw() {
  const container = document.getElementById("items-map");
  const source = document.getElementById("features-geojson");
  if (!container || !source) return;
  const data = JSON.parse(source.textContent);
  const features = data.type === "Feature" ? [data] : data.features;
  container.classList.add("drawn");
  const map = new maplibregl.Map({
    container,
    style: {
      version: 8,
      sources: { features: { type: "geojson", data: { type: "FeatureCollection", features } } },
      layers: [
        { id: "background", type: "background", paint: { "background-color": "#f4f6f8" } },
        { id: "fill", type: "fill", source: "features", filter: is("Polygon", "MultiPolygon"),
          paint: { "fill-color": COLOUR, "fill-opacity": 0.5 } },
        { id: "line", type: "line", source: "features",
          filter: is("Polygon", "MultiPolygon", "LineString", "MultiLineString"),
          paint: { "line-color": COLOUR, "line-width": 2 } },
        { id: "circle", type: "circle", source: "features", filter: is("Point", "MultiPoint"),
          paint: { "circle-color": COLOUR, "circle-radius": 5,
                   "circle-stroke-color": "#ffffff", "circle-stroke-width": 1 } },
      ],
    },
    bounds: bounds(features),
    fitBoundsOptions: { padding: 24, maxZoom: 16 },
    attributionControl: false,
    fadeDuration: 0,
    canvasContextAttributes: { preserveDrawingBuffer: true },
  });
  map.addControl(new maplibregl.NavigationControl({ showCompass: false }), "top-right");
  if (data.type !== "Feature") {  // a click on a feature of a list opens its page
    for (const layer of ["fill", "line", "circle"]) {
      map.on("click", layer, (event) => {
        const id = event.features[0]?.id;
        if (id !== undefined) window.location.assign(`items/${encodeURIComponent(id)}?f=html`);
      });
    }
  }
  map.once("idle", () => { container.dataset.ready = "true"; });
  window.terracatFeatureMap = map;
}

draw();
