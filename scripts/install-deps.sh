#!/bin/sh
# install-deps.sh - installs from Debian what building, testing and the demo
# need, when missing, plus any packages named as arguments (bench/setup.sh
# passes the ones it found missing). Needs root (or sudo) only then.
set -e
need=""
command -v apxs >/dev/null 2>&1 || need="$need apache2-dev"
[ -x /usr/sbin/apache2 ] || need="$need apache2"
[ -f /usr/lib/apache2/modules/mod_mpm_event.so ] || need="$need apache2-bin"
command -v curl >/dev/null 2>&1 || need="$need curl"
command -v cc >/dev/null 2>&1 || need="$need gcc"
[ -f /usr/include/openssl/evp.h ] || need="$need libssl-dev"
/usr/bin/python3 -c 'import pytest' 2>/dev/null || need="$need python3-pytest"
/usr/bin/python3 -c 'import requests' 2>/dev/null || need="$need python3-requests"
for extra in "$@"; do need="$need $extra"; done
[ -z "$need" ] && exit 0
echo "installing:$need"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq $need >/dev/null
