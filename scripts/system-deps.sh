#!/usr/bin/env bash
# Install the Debian packages the test suite drives for real (nginx and HAProxy in front of
# wizgy, a headless browser). Idempotent: a package already installed costs one dpkg query;
# apt-get runs only when something is missing. Needs root (CI and these VMs run as root);
# elsewhere it says what to install.
set -euo pipefail
PACKAGES=(nginx-light chromium nghttp2-client haproxy systemd)
missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
    echo "system-deps: missing Debian packages: ${missing[*]} (run: sudo apt-get install ${missing[*]})" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null
apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
echo "system-deps: installed ${missing[*]}"
