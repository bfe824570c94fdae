#!/usr/bin/env bash
# Installs what Terracat needs on a Debian machine, idempotently: system packages
# (PostgreSQL 15 + PostGIS, GDAL tools, Node.js and npm for the viewer and the browser tests,
# Chromium for the browser tests), then a .venv with Python >= 3.12 from the lock file, then the
# browser tests' JavaScript from their lock file, then the map viewer (server/viewer), built again
# only when its sources or lock file change.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_apt+=(postgresql-15)
ls /usr/share/postgresql/*/extension/postgis.control >/dev/null 2>&1 || need_apt+=(postgresql-15-postgis-3)
command -v gdalinfo >/dev/null 2>&1 || need_apt+=(gdal-bin)
# QGIS's OAPIF provider reads vector collections in tests/server/test_features_vector_clients.py
/usr/bin/python3 -c 'import qgis.core' >/dev/null 2>&1 || need_apt+=(python3-qgis qgis-providers)
# the browser tests drive Debian's Chromium through playwright (no browser download of its own)
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
# Node.js and npm: the web viewer's bundle is built here (once), MapLibre for the browser tests
command -v node >/dev/null 2>&1 || need_apt+=(nodejs)
command -v npm >/dev/null 2>&1 || need_apt+=(npm)
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "bootstrap: installing ${need_apt[*]} with apt-get"
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

find_python() {
    local candidates=()
    [ -n "${PYTHON:-}" ] && candidates+=("$PYTHON")
    candidates+=(python3.13 python3.12)
    if command -v pyenv >/dev/null 2>&1; then
        local root; root=$(pyenv root)
        candidates+=("$root"/versions/3.1[2-9]*/bin/python3)
    fi
    candidates+=(python3)
    for py in "${candidates[@]}"; do
        if "$py" -c 'import sys; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1; then
            command -v "$py" 2>/dev/null || echo "$py"
            return 0
        fi
    done
    return 1
}

stamp=.venv/.terracat-installed
want=$(cat pyproject.toml requirements.lock | sha256sum | cut -d' ' -f1)
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    if [ ! -x .venv/bin/python ]; then
        py=$(find_python) || { echo "bootstrap: Python >= 3.12 not found (set PYTHON=/path/to/python3.12)" >&2; exit 1; }
        echo "bootstrap: creating .venv with $py"
        "$py" -m venv .venv
    fi
    .venv/bin/python -m pip install -q --upgrade pip
    # uv installs the lock's ~230 packages in ~20 s where pip took ~55 s (2 cores, wheels in
    # the cache; CI makes a new venv every run): the same versions, checked with pip freeze.
    # Compiled to bytecode as pip does: where PYTHONDONTWRITEBYTECODE is set, every server,
    # worker and test process would otherwise compile its imports anew (the suite took ~20 %
    # longer). It reads the system's CA certificates as pip does here (UV_NATIVE_TLS); pip if
    # it fails.
    if ! { .venv/bin/python -m pip install -q 'uv>=0.13,<0.14' &&
           UV_NATIVE_TLS=1 .venv/bin/uv pip install -q --compile-bytecode \
               --python .venv/bin/python -c requirements.lock -e '.[test]'; }; then
        echo "bootstrap: uv could not install the packages; pip does" >&2
        .venv/bin/python -m pip install -q -c requirements.lock -e '.[test]'
    fi
    echo "$want" > "$stamp"
fi

# MapLibre GL JS for tests/server/test_maplibre.py, pinned in tests/browser/package-lock.json
browser=tests/browser
stamp=$browser/node_modules/.terracat-installed
want=$(sha256sum "$browser/package-lock.json" | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    (cd "$browser" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
    echo "$want" > "$stamp"
fi

# The map viewer served at /viewer/ (docs/viewer.md): its packages when its lock file changed,
# its build (server/viewer/dist, git-ignored) when anything it is built from changed.
viewer=server/viewer
stamp=$viewer/node_modules/.terracat-installed
want=$(cat "$viewer/package.json" "$viewer/package-lock.json" | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    (cd "$viewer" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
    echo "$want" > "$stamp"
fi
stamp=$viewer/dist/.terracat-built
want=$(cd "$viewer" && find package-lock.json build.mjs src -type f | LC_ALL=C sort | xargs cat | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    (cd "$viewer" && node build.mjs)
    echo "$want" > "$stamp"
fi
