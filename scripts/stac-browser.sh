#!/usr/bin/env bash
# Builds stac-browser (npm @radiantearth/stac-browser, pinned below) once into
# var/stac-browser/<version>/dist for `make acceptance`; later runs reuse the build.
#
# The npm package ships sources without a lock file, and its caret ranges now resolve to an
# ol-stac (1.6) that no longer builds against the ol it pins (~10.6). So its package.json is
# replaced by scripts/stac-browser/package.json (ol-stac pinned to 1.1.0, nothing else changed)
# and installed with `npm ci` from scripts/stac-browser/package-lock.json. It is built in hash
# history mode (any static server serves it) with its runtime config.js enabled, so that the
# acceptance test points it at whatever port Terracat got.
set -euo pipefail
cd "$(dirname "$0")/.."

version=4.0.1
pins=scripts/stac-browser
root=var/stac-browser/$version
want=$(cat "$pins/package.json" "$pins/package-lock.json" | sha256sum | cut -d' ' -f1)
if [ -f "$root/dist/index.html" ] && [ "$(cat "$root/.terracat-built" 2>/dev/null)" = "$want" ]; then
    echo "stac-browser $version: $root/dist (cached)"
    exit 0
fi
command -v npm >/dev/null 2>&1 || { echo "stac-browser: npm is missing (make bootstrap installs it)" >&2; exit 1; }
echo "stac-browser $version: building into $root (npm ci + vue-cli build: a few minutes, once)"
rm -rf "$root"
mkdir -p "$root"
tarball=$(cd "$root" && npm pack "@radiantearth/stac-browser@$version" --silent)
tar xzf "$root/$tarball" -C "$root" --strip-components=1
rm "$root/$tarball"
cp "$pins/package.json" "$pins/package-lock.json" "$root/"
# runtime configuration: index.html loads config.js (commented out in the package)
sed -i 's#<!-- <script defer="defer" src="/config.js"></script> -->#<script src="./config.js"></script>#' \
    "$root/public/index.html"
grep -q '<script src="./config.js"></script>' "$root/public/index.html" || {
    echo "stac-browser: could not enable config.js in public/index.html" >&2; exit 1; }
(cd "$root" && npm ci --no-audit --no-fund --loglevel=error)
(cd "$root" && SB_historyMode=hash NODE_OPTIONS=--max-old-space-size=3072 \
    npx vue-cli-service build --noSourceMaps)
test -f "$root/dist/index.html"
echo "$want" > "$root/.terracat-built"
echo "stac-browser $version: built in $root/dist"
