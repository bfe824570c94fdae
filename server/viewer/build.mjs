// Builds the viewer into dist/: index.html, and under assets/ the bundled script and style
// sheet (MapLibre GL JS, tus-js-client and src/), MapLibre's worker, and the feature pages' map
// (features-page.json names its files), each named with a digest of its content so that the
// server may let browsers keep them for a year.
import { createHash } from "node:crypto";
import { copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

const here = dirname(fileURLToPath(import.meta.url));
const dist = join(here, "dist");
const assets = join(dist, "assets");
rmSync(dist, { recursive: true, force: true });
mkdirSync(assets, { recursive: true });

const digest = (bytes) => createHash("sha256").update(bytes).digest("hex").slice(0, 12);
const workerSource = join(here, "node_modules/maplibre-gl/dist/maplibre-gl-worker.mjs");
const workerBytes = readFileSync(workerSource);
const worker = `maplibre-gl-worker-${digest(workerBytes)}.mjs`;
copyFileSync(workerSource, join(assets, worker));

const options = {
  bundle: true,
  format: "esm",
  target: "es2022",
  minify: true,
  sourcemap: false,
  outdir: assets,
  entryNames: "[name]-[hash]",
  metafile: true,
  legalComments: "linked",
  define: { __MAPLIBRE_WORKER__: JSON.stringify(worker) },
  logLevel: "warning",
};
const built = async (entry) => {
  const result = await esbuild.build({ ...options, entryPoints: [join(here, entry)] });
  const outputs = Object.keys(result.metafile.outputs).map((p) => basename(p));
  return [outputs.find((n) => n.endsWith(".js")), outputs.find((n) => n.endsWith(".css"))];
};
const [script, style] = await built("src/main.js");
// The map of the feature pages (f=html, ogc/feature_pages.py): its own small entry on the same
// MapLibre and worker; the server finds its files by the names written in features-page.json.
const [pageScript, pageStyle] = await built("src/features-page.js");
writeFileSync(join(dist, "features-page.json"),
  JSON.stringify({ script: `assets/${pageScript}`, style: `assets/${pageStyle}` }));
const page = readFileSync(join(here, "src/index.html"), "utf8")
  .replace("%SCRIPT%", `assets/${script}`)
  .replace("%STYLE%", `assets/${style}`);
writeFileSync(join(dist, "index.html"), page);
console.log(`viewer built in ${dist}: ${script}, ${style}, ${worker}, ${pageScript}, ${pageStyle}`);
