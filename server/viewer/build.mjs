// Builds the viewer into dist/: index.html, and under assets/ the bundled script and style
// sheet (MapLibre GL JS, tus-js-client and src/) and MapLibre's worker, each named with a digest
// of its content so that the server may let browsers keep them for a year.
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

const result = await esbuild.build({
  entryPoints: [join(here, "src/main.js")],
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
});
const outputs = Object.keys(result.metafile.outputs).map((p) => basename(p));
const script = outputs.find((n) => n.endsWith(".js"));
const style = outputs.find((n) => n.endsWith(".css"));
const page = readFileSync(join(here, "src/index.html"), "utf8")
  .replace("%SCRIPT%", `assets/${script}`)
  .replace("%STYLE%", `assets/${style}`);
writeFileSync(join(dist, "index.html"), page);
console.log(`viewer built in ${dist}: ${script}, ${style}, ${worker}`);
