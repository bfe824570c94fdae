// The viewer: collections, search, an item's imagery, uploads and jobs, over Terracat's API.
import "maplibre-gl/dist/maplibre-gl.css";
import "./style.css";
import { ApiError, apiUrl, auth, getJson, postJson } from "./api.js";
import { cubeControls } from "./cube.js";
import { setUpJobs } from "./jobs.js";
import { MapView, isVector } from "./map.js";
import { setUpSearch } from "./search.js";
import { $, h, isHttp, message, setUpTabs } from "./ui.js";
import { setUpUploads } from "./upload.js";

const state = { config: null, collections: [], account: null };

function collectionType(c) {
  if (isVector(c)) return "vector";
  if (c["cube:dimensions"]) return "datacube";
  const keywords = (c.keywords || []).map((k) => String(k).toLowerCase());
  if (keywords.includes("pictures") || keywords.includes("photos")) return "pictures";
  if ((c.links || []).some((l) => l.rel === "tilejson")) return "raster";
  if (keywords.includes("vector")) return "vector";
  return "footprints";
}

function extentText(c) {
  const bbox = c.extent?.spatial?.bbox?.[0];
  const interval = c.extent?.temporal?.interval?.[0] || [];
  const day = (v) => (v ? String(v).slice(0, 10) : "open");
  const box = bbox ? bbox.map((v) => Number(v).toFixed(2)).join(", ") : "no extent";
  return `${box} · ${day(interval[0])} to ${day(interval[1])}`;
}

function thumbnailOf(c) {
  const assets = Object.values(c.assets || {});
  const asset = assets.find((a) => (a.roles || []).includes("thumbnail")) || (c.assets || {}).thumbnail;
  if (asset && isHttp(asset.href)) return asset.href;
  const link = (c.links || []).find((l) => l.rel === "preview" && isHttp(l.href));
  return link ? link.href : null;
}

// A collection without a thumbnail of its own shows its newest item's.
async function newestThumbnail(c, placeholder) {
  try {
    const page = await getJson(`collections/${encodeURIComponent(c.id)}/items`, { limit: 1 });
    const assets = Object.values(page.features?.[0]?.assets || {});
    const asset = assets.find((a) => (a.roles || []).includes("thumbnail"));
    if (asset && isHttp(asset.href)) placeholder.replaceWith(h("img", { src: asset.href, alt: "", className: "thumb" }));
  } catch {
    // no thumbnail then
  }
}

function renderCollections(view, search) {
  const list = $("collections");
  list.replaceChildren();
  if (!state.collections.length) list.append(h("li", { className: "hint" }, "No collection to show."));
  for (const c of state.collections) {
    const thumb = thumbnailOf(c);
    const colour = view.footprints.get(c.id) || "#888";
    const shown = h("input", { type: "checkbox", checked: true,
      onchange: (e) => view.setFootprintsVisible(c.id, e.target.checked) });
    const picture = thumb ? h("img", { src: thumb, alt: "", className: "thumb", loading: "lazy" }) : h("div", { className: "thumb none" });
    if (!thumb && !isVector(c)) newestThumbnail(c, picture);
    list.append(h("li", { className: "card", "data-collection": c.id }, picture,
      h("div", { className: "card-body" },
        h("h2", {}, h("span", { className: "swatch", style: `background:${colour}` }), c.title || c.id),
        h("p", { className: "small" }, h("span", { className: "badge" }, collectionType(c)), ` ${c.id}`),
        h("p", { className: "small" }, extentText(c)),
        h("div", { className: "row" },
          h("label", { className: "small" }, shown, isVector(c) ? " features" : " footprints"),
          h("button", { type: "button", onclick: () => { const b = c.extent?.spatial?.bbox?.[0]; if (b) view.fit(b); } }, "Zoom to"),
          h("button", { type: "button", onclick: () => search.inCollection(c.id) }, "Search")),
        collectionType(c) === "datacube" ? cubeControls(c, view, state.config) : null)));
  }
}

function fillSelect(select, options, keep) {
  const previous = select.value;
  select.replaceChildren(...keep.map((o) => h("option", { value: o[0] }, o[1])),
    ...options.map((c) => h("option", { value: c.id }, c.title || c.id)));
  if ([...select.options].some((o) => o.value === previous)) select.value = previous;
}

async function loadCollections(view, search) {
  try {
    const page = await getJson("collections", { limit: 1000 });
    state.collections = page.collections || [];
  } catch (error) {
    state.collections = [];
    $("collections").replaceChildren(h("li", { className: "error" }, message(error)));
    return;
  }
  await view.setFootprints(state.collections);
  if (!state.fitted) {  // the first time: the view shows every collection
    const boxes = state.collections.map((c) => c.extent?.spatial?.bbox?.[0]).filter((b) => b && b.length === 4);
    if (boxes.length) {
      state.fitted = true;
      view.fit([Math.min(...boxes.map((b) => b[0])), Math.min(...boxes.map((b) => b[1])),
        Math.max(...boxes.map((b) => b[2])), Math.max(...boxes.map((b) => b[3]))]);
    }
  }
  renderCollections(view, search);
  fillSelect($("search-collection"), state.collections, [["", "all"]]);
  fillSelect($("upload-collection"), state.collections, []);
  fillSelect($("export-target"), state.collections, [["", "the open item"]]);
}

async function refreshAccount() {
  state.account = null;
  if (auth.token) {
    try {
      state.account = await getJson("users/me");
    } catch (error) {
      if (error instanceof ApiError && error.status === 401) auth.token = "";
      $("account-status").textContent = message(error);
    }
  }
  const signedIn = Boolean(state.account);
  $("who").textContent = signedIn ? `signed in as ${state.account.name || state.account.role}` : "not signed in";
  $("sign-out").hidden = !signedIn;
  $("login-form").hidden = signedIn;
  $("token-form").hidden = signedIn;
  document.body.classList.toggle("signed-in", signedIn);
}

function setUpAccount(reload, view) {
  $("login-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    $("account-status").textContent = "signing in…";
    try {
      const session = await postJson("auth/login", { name: $("login-name").value, password: $("login-password").value });
      auth.token = session.token;
      auth.session = session.token_id;
      $("login-password").value = "";
      $("account-status").textContent = `signed in until ${session.expires}`;
      await reload();
    } catch (error) {
      $("account-status").textContent = message(error);
    }
  });
  $("token-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    auth.token = $("token-value").value.trim();
    auth.session = "";
    $("token-value").value = "";
    $("account-status").textContent = "";
    await reload();
  });
  $("sign-out").addEventListener("click", async () => {
    const { token, session } = auth;
    // Sources made with the token would fetch tiles without it from now on (404s): drop them.
    view.forgetAccountData();
    auth.token = "";
    auth.session = "";
    $("account-status").textContent = "signed out";
    await reload();  // the map's sources are made again, without the token
    if (session) {  // the password sign-in's token ends here; a given API token stays valid
      await fetch(apiUrl(`users/me/tokens/${session}`), {
        method: "DELETE", headers: { Authorization: `Bearer ${token}` },
      }).catch(() => null);
    }
  });
}

async function boot() {
  // Without the token: a stale one would be refused (401) even on this public route.
  const answer = await fetch(new URL("config.json", window.location.href));
  if (!answer.ok) throw new Error(`viewer/config.json: ${answer.status}`);
  state.config = await answer.json();
  const { config } = state;
  document.title = config.title;
  $("title").textContent = config.title;
  if (config.logo_url) Object.assign($("logo"), { src: config.logo_url, hidden: false });
  const view = new MapView($("map"), config.base_map);
  window.terracatViewer = { view, state };  // for tests and the curious
  const jobs = setUpJobs(view, state);
  const search = setUpSearch(view, state, config, () => showTab("item"), () => showTab("search"));
  state.search = search;
  const showTab = setUpTabs((name) => {
    if (name === "jobs") jobs.refresh();
    view.map.resize();
  });
  const reload = async () => {
    await refreshAccount();
    search.reset();
    await loadCollections(view, search);
    jobs.refresh();
  };
  setUpAccount(reload, view);
  setUpUploads(view, state, () => loadCollections(view, search), search);
  const itemPath = (collection, id) => `collections/${encodeURIComponent(collection)}/items/${encodeURIComponent(id)}`;
  view.onFootprintClick(async (collection, id) => {
    try {
      search.openItem(await getJson(itemPath(collection, id)));
    } catch (error) {
      $("search-status").textContent = message(error);
    }
  }, async (collection, fid) => {
    try {
      search.openFeature(collection, await getJson(itemPath(collection, fid)));
    } catch (error) {
      $("search-status").textContent = message(error);
    }
  });
  await reload();
  document.body.dataset.ready = "true";
}

boot().catch((error) => {
  document.body.prepend(h("p", { className: "error", role: "alert" }, `The viewer could not start: ${message(error)}`));
});
