// A datacube collection's card controls: a layer (its bands, and the indices and composites
// its bands allow) and a date (or the whole time span, averaged), drawn from the collection's
// tiles (/collections/{id}/tiles/WebMercatorQuad/tilejson.json?layers=&datetime=).
import { apiUrl, getJson } from "./api.js";
import { h, message } from "./ui.js";

// The presets whose every band is a layer of the cube, by common name or Sentinel-2 id.
export function derivedLayers(layers, config) {
  const names = new Set(layers.map((l) => l.common_name || config.sentinel2_bands[String(l.name).toUpperCase()]).filter(Boolean));
  return config.presets.filter((p) => p.bands.every((alts) => alts.some((b) => names.has(b))));
}

export function cubeTileJson(collectionId, layer, datetime) {
  const params = { tile_format: "png", layers: layer };
  if (datetime) params.datetime = datetime;
  return apiUrl(`collections/${encodeURIComponent(collectionId)}/tiles/WebMercatorQuad/tilejson.json`, params);
}

// The controls of one card; they fill in once the capabilities document arrives.
export function cubeControls(c, view, config) {
  const layer = h("select", { "aria-label": `layer of ${c.id}`, className: "cube-layer" });
  const date = h("select", { "aria-label": `date of ${c.id}`, className: "cube-date" });
  const status = h("span", { className: "small" }, "loading layers…");
  const show = () => view.showImagery(cubeTileJson(c.id, layer.value, date.value), 1);
  const button = h("button", { type: "button", onclick: show, disabled: true }, "Show");
  layer.addEventListener("change", () => { if (!button.disabled) show(); });
  date.addEventListener("change", () => { if (!button.disabled) show(); });
  getJson(`collections/${encodeURIComponent(c.id)}/capabilities`).then((caps) => {
    const layers = caps.layers || [];
    const derived = derivedLayers(layers, config);
    layer.replaceChildren(
      ...derived.map((p) => h("option", { value: p.name }, `${p.name.toUpperCase()}: ${p.title}`)),
      ...layers.map((l) => h("option", { value: l.name }, l.common_name ? `${l.name} (${l.common_name})` : l.name)));
    const times = caps.time?.values || [];
    const span = times.length > 1 ? [h("option", { value: `${times[0]}/${times[times.length - 1]}` }, "all dates (mean)")] : [];
    date.replaceChildren(...[...times].reverse().map((t) => h("option", { value: t }, String(t).slice(0, 10))), ...span);
    status.textContent = `${layers.length} layers, ${times.length} dates`;
    button.disabled = false;
  }).catch((error) => { status.textContent = message(error); });
  return h("div", { className: "row cube-controls" },
    h("label", { className: "small" }, "Layer ", layer),
    h("label", { className: "small" }, "Date ", date), button, status);
}
