#!/bin/sh
# demo.sh - runs a standalone demo httpd with mod_sse on 127.0.0.1:8788
# (conf-examples/demo.conf), with its runtime files under build/demo (or in
# a new directory in /tmp when its children, which run as nobody under root,
# could not enter the clone), until Ctrl-C. Never touches /etc/apache2.
set -e
top=$(cd "$(dirname "$0")/.." && pwd)
port=${SSE_DEMO_PORT:-8788}
dir="$top/build/demo"
if [ "$(id -u)" -eq 0 ] && command -v runuser >/dev/null 2>&1 \
   && ! runuser -u nobody -- test -x "$top"; then
    # the children run as nobody, who cannot enter the clone (under /root,
    # mode 700 on Debian): the page would answer 403
    dir=$(mktemp -d /tmp/mod_sse-demo.XXXXXX)
    echo "nobody cannot enter $top: the demo's server directory is $dir"
fi
mkdir -p "$dir/conf" "$dir/logs" "$dir/run" "$dir/htdocs"
cp "$top/.libs/mod_sse.so" "$dir/mod_sse.so"
cp "$top/conf-examples/demo.html" "$dir/htdocs/index.html"
sed -e "s#@SERVER_DIR@#$dir#g" -e "s#@PORT@#$port#g" \
    "$top/conf-examples/demo.conf" > "$dir/conf/httpd.conf"
if [ "$(id -u)" -eq 0 ]; then
    # children run as nobody: they must reach the server dir
    printf 'User nobody\nGroup nogroup\n' >> "$dir/conf/httpd.conf"
    chmod 755 "$dir" "$dir/htdocs" "$dir/run" "$dir/logs"
    chmod 644 "$dir/htdocs/index.html"
    [ "$dir" != "$top/build/demo" ] || chmod 755 "$top/build" 2>/dev/null || true
fi
/usr/sbin/apache2 -f "$dir/conf/httpd.conf" -t
base="http://127.0.0.1:$port"
cat <<MSG

mod_sse demo on $base/  (open it in a browser for a live page)

  subscribe:  curl -N $base/events/news
  publish:    curl -d 'hello world' $base/sse-admin/channels/news
  JSON:       curl -H 'Content-Type: application/json' -d '{"event":"price","data":{"eur":1.08}}' $base/sse-admin/channels/news
  resume:     curl -N -H 'Last-Event-ID: <an id you saw>' $base/events/news
  stats:      curl $base/sse-admin/status

Logs: $dir/logs/error_log.  Ctrl-C stops the server.

MSG
exec /usr/sbin/apache2 -f "$dir/conf/httpd.conf" -DFOREGROUND
