#!/bin/sh
# demo-screenshot.sh - renews docs/demo.png, the README's picture of the demo
# page: runs tests/test_185_browser_demo.py with SSE_SCREENSHOT, after
# installing the fonts its CJK and emoji need when missing. The test's
# server listens on the port of `make demo` (8788, SSE_DEMO_PORT) so the
# picture shows the URLs the demo prints: stop a running demo first.
set -e
top=$(cd "$(dirname "$0")/.." && pwd)
need=""
fc-list : family 2>/dev/null | grep -q 'Noto Color Emoji' || need="$need fonts-noto-color-emoji"
fc-list : family 2>/dev/null | grep -q 'WenQuanYi Micro Hei' || need="$need fonts-wqy-microhei"
# shellcheck disable=SC2086
sh "$top/scripts/install-deps.sh" $need
cd "$top"
SSE_SCREENSHOT="$top/docs/demo.png" ${PYTHON:-/usr/bin/python3} -m pytest -q \
    tests/test_185_browser_demo.py
echo "docs/demo.png renewed"
