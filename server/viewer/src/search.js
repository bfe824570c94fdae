// The search panel (collection, area, dates, CQL2 text, sort; pages followed by their `next`
// links) and the item panel (properties, assets, imagery from the item's TileJSON).
import { apiUrl, getJson, request } from "./api.js";
import { isVector } from "./map.js";
import { $, h, isHttp, message } from "./ui.js";

const PAGE = 20;

// The bbox of a GeoJSON geometry (features come without one).
function bboxOf(geometry) {
  const xs = [];
  const ys = [];
  const walk = (c) => {
    if (typeof c[0] === "number") { xs.push(c[0]); ys.push(c[1]); } else c.forEach(walk);
  };
  if (geometry?.coordinates) walk(geometry.coordinates);
  for (const g of geometry?.geometries || []) { const b = bboxOf(g); if (b) { xs.push(b[0], b[2]); ys.push(b[1], b[3]); } }
  return xs.length ? [Math.min(...xs), Math.min(...ys), Math.max(...xs), Math.max(...ys)] : null;
}

// A feature's name in lists: its first short text property, else its id.
function featureTitle(feature) {
  const text = Object.values(feature.properties || {}).find((v) => typeof v === "string" && v.length <= 60);
  return text ? `${text} (#${feature.id})` : `#${feature.id}`;
}

function schemaNames(schema) {
  return Object.keys(schema?.properties || {}).sort();
}

function datetimeOf(from, to) {
  if (!from && !to) return undefined;
  const start = from ? `${from}T00:00:00Z` : "..";
  const end = to ? `${to}T23:59:59Z` : "..";
  return `${start}/${end}`;
}

// Band common names of an item's assets (eo:bands, or STAC 1.1 bands).
function commonNames(item) {
  const names = new Set();
  for (const asset of Object.values(item.assets || {})) {
    for (const band of [...(asset["eo:bands"] || []), ...(asset.bands || [])]) {
      if (band["eo:common_name"]) names.add(band["eo:common_name"]);
      if (band.common_name) names.add(band.common_name);
    }
  }
  return names;
}

export function setUpSearch(view, state, config, showItemTab, showSearchTab) {
  let drawnBox = null;
  let next = null;
  let results = [];
  let opened = null;

  // The vector collection chosen in the search form, if one is.
  function vectorChosen() {
    const id = $("search-collection").value;
    const c = state.collections.find((x) => x.id === id);
    return c && isVector(c) ? c : null;
  }

  async function loadSchemas() {
    const id = $("search-collection").value;
    const base = id ? `collections/${encodeURIComponent(id)}/` : "";
    const [queryables, sortables] = await Promise.all([
      getJson(`${base}queryables`).catch(() => ({})),
      getJson(vectorChosen() ? `${base}sortables` : "sortables").catch(() => ({})),
    ]);
    const names = schemaNames(queryables);
    $("queryables").replaceChildren(...names.map((n) => h("option", { value: n })));
    $("queryable-names").replaceChildren(...names.map((n) => h("button", {
      type: "button", className: "chip", title: `Add ${n} to the filter`,
      onclick: () => { const f = $("search-filter"); f.value = `${f.value}${f.value && !f.value.endsWith(" ") ? " " : ""}${n} `; f.focus(); },
    }, n)));
    const sort = $("search-sort");
    const previous = sort.value;
    sort.replaceChildren(h("option", { value: "" }, "(none)"),
      ...schemaNames(sortables).map((n) => h("option", { value: n }, n)));
    if ([...sort.options].some((o) => o.value === previous)) sort.value = previous;
  }

  function body() {
    const doc = { limit: PAGE };
    const collection = $("search-collection").value;
    if (collection) doc.collections = [collection];
    const area = document.querySelector('input[name="area"]:checked').value;
    if (area === "view") doc.bbox = view.viewBbox();
    if (area === "box" && drawnBox) doc.bbox = drawnBox;
    const datetime = datetimeOf($("search-from").value, $("search-to").value);
    if (datetime) doc.datetime = datetime;
    const filter = $("search-filter").value.trim();
    if (filter) Object.assign(doc, { filter, "filter-lang": "cql2-text" });
    const field = $("search-sort").value;
    if (field) doc.sortby = [{ field, direction: $("search-order").value }];
    return doc;
  }

  // The GET parameters of a vector collection's items (OGC API - Features, CQL2 text).
  function featureParams() {
    const doc = body();
    const params = { limit: PAGE };
    if (doc.bbox) params.bbox = doc.bbox.join(",");
    if (doc.datetime) params.datetime = doc.datetime;
    if (doc.filter) Object.assign(params, { filter: doc.filter, "filter-lang": "cql2-text" });
    if (doc.sortby) params.sortby = `${doc.sortby[0].direction === "desc" ? "-" : "+"}${doc.sortby[0].field}`;
    return params;
  }

  function showPage(page, append, collection) {
    const list = $("results");
    if (!append) list.replaceChildren();
    for (const item of page.features || []) {
      if (collection) {  // a feature: it names neither its collection nor a title
        item.collection = collection;
        item.isFeature = true;
        item.properties = { title: featureTitle(item), ...(item.properties || {}) };
      }
      const when = item.properties?.datetime || item.properties?.start_datetime || "";
      list.append(h("li", {}, h("button", { type: "button", className: "result",
        "data-item": item.id, onclick: () => openItem(item) },
      h("strong", {}, item.properties?.title || item.id),
      h("span", { className: "small" }, ` ${item.collection} · ${String(when).slice(0, 19)}`))));
    }
    const shown = list.children.length;
    const matched = page.numberMatched !== undefined ? ` of ${page.numberMatched}` : "";
    const noun = collection ? "features" : "items";
    $("search-status").textContent = shown ? `${shown}${matched} ${noun}` : `No ${noun.slice(0, -1)} matches.`;
    next = (page.links || []).find((l) => l.rel === "next") || null;
    $("search-more").hidden = !next;
    results = [...(append ? results : []), ...(page.features || [])];
    view.setResults(results);
  }

  let pageCollection = null;  // the vector collection the listed features are of

  async function run(append) {
    $("search-status").textContent = "searching…";
    try {
      let page;
      if (!append) pageCollection = vectorChosen()?.id || null;
      if (!append && pageCollection) {
        page = await getJson(`collections/${encodeURIComponent(pageCollection)}/items`, featureParams());
      } else if (append && next) {
        page = next.method === "POST"
          ? await request(next.href, { method: "POST", body: next.body })
          : await getJson(next.href);
      } else {
        page = await request("search", { method: "POST", body: body() });
      }
      showPage(page, append, pageCollection);
    } catch (error) {
      $("search-status").textContent = message(error);
    }
  }

  function presetsFor(item) {
    const names = commonNames(item);
    return config.presets.filter((p) => p.bands.every((alts) => alts.some((b) => names.has(b))));
  }

  function tilejsonUrl(item) {
    const preset = $("item-preset").value;
    const path = `collections/${encodeURIComponent(item.collection)}/items/${encodeURIComponent(item.id)}/WebMercatorQuad/tilejson.json`;
    return apiUrl(path, { tile_format: "png", preset });
  }

  function drawable(item) {
    return !item.isFeature && (item.links || []).some((l) => l.rel === "tilejson");
  }

  function showImagery() {
    if (!opened || !drawable(opened)) return;
    view.showImagery(tilejsonUrl(opened), Number($("item-opacity").value));
  }

  function openItem(item) {
    opened = item;
    $("item-empty").hidden = true;
    $("item-view").hidden = false;
    $("item-title").textContent = `${item.collection} / ${item.properties?.title || item.id}`;
    $("item-preset").replaceChildren(h("option", { value: "" }, "default"),
      ...presetsFor(item).map((p) => h("option", { value: p.name }, `${p.name}: ${p.title}`)));
    $("item-assets").replaceChildren(...Object.entries(item.assets || {}).map(([name, asset]) => h("li", {},
      isHttp(asset.href) ? h("a", { href: asset.href, download: "", rel: "noopener" }, asset.title || name) : (asset.title || name),
      h("span", { className: "small" }, ` ${name} · ${asset.type || ""} · ${(asset.roles || []).join(", ")}`))));
    const rows = Object.entries(item.properties || {}).map(([key, value]) => h("tr", {},
      h("th", { scope: "row" }, key), h("td", {}, typeof value === "object" ? JSON.stringify(value) : String(value))));
    $("item-properties").tBodies[0].replaceChildren(...rows);
    const box = item.bbox || bboxOf(item.geometry);
    if (box) view.fit(box);
    $("item-imagery").hidden = Boolean(item.isFeature);
    view.hideImagery();
    showImagery();
    document.body.dataset.item = `${item.collection}/${item.id}`;
    showItemTab();
  }

  $("search-form").addEventListener("submit", (e) => { e.preventDefault(); run(false); });
  $("search-more").addEventListener("click", () => run(true));
  $("search-collection").addEventListener("change", loadSchemas);
  $("draw-box").addEventListener("click", async () => {
    $("box-text").textContent = "drag a box on the map…";
    drawnBox = (await view.drawBox()).map((v) => Math.round(v * 1e5) / 1e5);
    $("box-text").textContent = drawnBox.join(", ");
    document.querySelector('input[name="area"][value="box"]').checked = true;
  });
  $("item-preset").addEventListener("change", showImagery);
  $("item-opacity").addEventListener("input", () => view.setImageryOpacity(Number($("item-opacity").value)));
  $("item-zoom").addEventListener("click", () => {
    const box = opened && (opened.bbox || bboxOf(opened.geometry));
    if (box) view.fit(box);
  });
  $("item-hide").addEventListener("click", () => view.hideImagery());

  return {
    reset() {
      opened = null;
      results = [];
      next = null;
      $("results").replaceChildren();
      $("search-status").textContent = "";
      $("search-more").hidden = true;
      $("item-empty").hidden = false;
      $("item-view").hidden = true;
      view.hideImagery();
      view.setResults([]);
      loadSchemas();
    },
    inCollection(id) {
      $("search-collection").value = id;
      document.querySelector('input[name="area"][value="none"]').checked = true;
      loadSchemas();
      showSearchTab();
    },
    openItem,
    // A feature of a vector collection, as GET /collections/{id}/items/{fid} gives it.
    openFeature(collection, feature) {
      openItem({ ...feature, collection, isFeature: true,
        properties: { title: featureTitle(feature), ...(feature.properties || {}) } });
    },
    current: () => opened,
  };
}
