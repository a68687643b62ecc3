#!/bin/sh
# install-deps.sh - installs from Debian what building, testing and the demo
# need, when missing, plus any packages named as arguments (bench/setup.sh
# passes the ones it found missing). Needs root (or sudo) only then.
# The browser tests (tests/browser/README.md) also need Debian's chromium,
# node and npm, and tests/browser/node_modules from its package-lock.json.
set -e
root=$(cd "$(dirname "$0")/.." && pwd)
need=""
command -v apxs >/dev/null 2>&1 || need="$need apache2-dev"
[ -x /usr/sbin/apache2 ] || need="$need apache2"
[ -f /usr/lib/apache2/modules/mod_mpm_event.so ] || need="$need apache2-bin"
command -v curl >/dev/null 2>&1 || need="$need curl"
command -v cc >/dev/null 2>&1 || need="$need gcc"
[ -f /usr/include/openssl/evp.h ] || need="$need libssl-dev"
# SSERedis: the hiredis client; the tests start a redis-server of their own
[ -f /usr/include/hiredis/hiredis.h ] || need="$need libhiredis-dev"
command -v redis-server >/dev/null 2>&1 || [ -x /usr/bin/redis-server ] \
    || need="$need redis-server"
# make deb (tests/test_995_deb.py): dpkg-buildpackage and dh; dh_apache2
# comes with apache2-dev. No fakeroot: debian/control says
# Rules-Requires-Root: no
command -v dpkg-buildpackage >/dev/null 2>&1 || need="$need dpkg-dev"
command -v dh >/dev/null 2>&1 || need="$need debhelper"
# make fuzz / fuzz-smoke: clang with libFuzzer; make asan: gcc's sanitizers
command -v clang >/dev/null 2>&1 || need="$need clang"
ls /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a \
    >/dev/null 2>&1 || need="$need libclang-rt-dev"
[ -e "$(gcc -print-file-name=libasan.so 2>/dev/null)" ] || need="$need libasan8"
[ -e "$(gcc -print-file-name=libubsan.so 2>/dev/null)" ] || need="$need libubsan1"
locale -a 2>/dev/null | grep -q . && [ -d /usr/share/i18n/locales ] \
    || need="$need locales"
/usr/bin/python3 -c 'import pytest' 2>/dev/null || need="$need python3-pytest"
/usr/bin/python3 -c 'import requests' 2>/dev/null || need="$need python3-requests"
# the TLS and HTTP/2 tests (tests/test_945_tls_h2.py): a certificate made
# with openssl, and an HTTP/2 client that resets single streams
command -v openssl >/dev/null 2>&1 || need="$need openssl"
/usr/bin/python3 -c 'import h2' 2>/dev/null || need="$need python3-h2"
[ -x /usr/bin/chromium ] || need="$need chromium"
command -v node >/dev/null 2>&1 || need="$need nodejs"
command -v npm >/dev/null 2>&1 || need="$need npm"
for extra in "$@"; do need="$need $extra"; done
if [ -n "$need" ]; then
    echo "installing:$need (apt-get: a few minutes on a fresh machine)"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    # shellcheck disable=SC2086
    $SUDO apt-get install -y -qq $need >/dev/null
fi
# The pinned playwright-core, eventsource and undici need Node 20 or later;
# Debian bookworm's nodejs is 18. Then Node 20 comes from the npm registry
# (the node-linux-<cpu> package holds the official binary) into
# tests/browser/.node, which the tests prefer (tests/sse_env.py, node_path).
b="$root/tests/browser"
NODE_PIN=20.20.2
node_major() { "$1" -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }
case "$(uname -m)" in
    x86_64) node_cpu=x64 ;;
    aarch64) node_cpu=arm64 ;;
    *) node_cpu="" ;;
esac
local_node="$b/.node/node_modules/node-linux-$node_cpu/bin/node"
if [ "$(node_major node)" -lt 20 ] && [ -n "$node_cpu" ] \
   && [ "$(node_major "$local_node")" -lt 20 ]; then
    echo "node $(node --version) is older than 20: node $NODE_PIN from npm into tests/browser/.node"
    npm install --prefix "$b/.node" --no-save --no-audit --no-fund --loglevel=error \
        "node-linux-$node_cpu@$NODE_PIN"
fi
[ -x "$local_node" ] && PATH="$(dirname "$local_node"):$PATH" && export PATH
# playwright-core (and eventsource + undici for the HTTP/2 client of
# tests/test_945_tls_h2.py), as pinned by the lock file; npm writes
# node_modules/.package-lock.json last, so its absence means no complete
# install. playwright-core never downloads a browser (the tests use
# /usr/bin/chromium); the variable makes sure of it.
if [ ! -f "$b/node_modules/.package-lock.json" ] \
   || [ "$b/package-lock.json" -nt "$b/node_modules/.package-lock.json" ]; then
    echo "tests/browser: npm ci"
    (cd "$b" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
fi
