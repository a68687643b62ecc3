#!/bin/sh
# setup.sh - installs from Debian (and npm, for better-sse) what `make bench` needs, only when it is missing.
set -e
cd "$(dirname "$0")"
need=""
command -v nginx >/dev/null 2>&1 || need="$need nginx-light"
[ -f /usr/lib/nginx/modules/ngx_nchan_module.so ] || need="$need libnginx-mod-nchan"
/usr/bin/python3 -c 'import matplotlib' 2>/dev/null || need="$need python3-matplotlib"
command -v node >/dev/null 2>&1 || need="$need nodejs"
command -v npm >/dev/null 2>&1 || need="$need npm"
# the tls1k scenario's certificate
command -v openssl >/dev/null 2>&1 || need="$need openssl"
# what building mod_sse needs (with redis-server and libhiredis-dev, which
# the redis2 scenario uses too), plus the above; Debian may start its own
# nginx on port 80, the bench uses ports 18790-18792 (and 18800-18801
# for plain publishes in tls1k, 18810-18811 and 18820-18821 for redis2's
# second servers and redis-servers) and leaves it be
# shellcheck disable=SC2086
sh ../scripts/install-deps.sh $need
# the lock file pins better-sse; a copy of another version is replaced
want=$(sed -n 's/.*"better-sse": *"\([^"]*\)".*/\1/p' better-sse/package.json)
have=$(sed -n 's/^  "version": *"\([^"]*\)".*/\1/p' better-sse/node_modules/better-sse/package.json 2>/dev/null || true)
if [ "$want" != "$have" ]; then
    echo "bench: npm ci for better-sse $want"
    (cd better-sse && npm ci --no-audit --no-fund --loglevel=error)
fi
