#!/usr/bin/env bash
# Installs the Debian packages that tests and benchmarks need, each unless its command is
# already on PATH: install_tools.sh COMMAND:PACKAGE ...
#   make test:          chromium:chromium               (the model card's browser test)
#   make bench-serving: wrk:wrk h2load:nghttp2-client   (REST and gRPC load generators)
# Needs apt-get, as root or through sudo.
set -euo pipefail
missing=()
for pair in "$@"; do
  command="${pair%%:*}"; package="${pair#*:}"
  if [ "$command" = chromium ]; then  # any of Chromium's names will do
    for name in chromium chromium-browser google-chrome; do
      if command -v "$name" >/dev/null 2>&1; then continue 2; fi
    done
  elif command -v "$command" >/dev/null 2>&1; then
    continue
  fi
  missing+=("$package")
done
if [ ${#missing[@]} -eq 0 ]; then exit 0; fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "Needed and missing: ${missing[*]} (no apt-get here: install them)" >&2
  exit 1
fi
sudo=""
if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
echo "Installing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
  || { $sudo apt-get update -qq \
       && $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }
