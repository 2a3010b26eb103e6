#!/usr/bin/env bash
# Installs Chromium (Debian's package) for the tests that render pages in a real browser,
# unless a Chromium is already on PATH. Needs apt-get, as root or through sudo.
set -euo pipefail
for name in chromium chromium-browser google-chrome; do
  if command -v "$name" >/dev/null 2>&1; then exit 0; fi
done
if ! command -v apt-get >/dev/null 2>&1; then
  echo "Chromium is needed by the browser tests: install it (no apt-get here)" >&2
  exit 1
fi
sudo=""
if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
echo "Installing Chromium (Debian's package) for the browser tests"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get install -y -qq --no-install-recommends chromium >/dev/null \
  || { $sudo apt-get update -qq && $sudo apt-get install -y -qq --no-install-recommends chromium >/dev/null; }
