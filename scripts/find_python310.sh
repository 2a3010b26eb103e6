#!/usr/bin/env bash
# Prints the path of a Python 3.10 interpreter: python3.10 on PATH, else pyenv's newest 3.10.
# TFX 1.16 supports Python 3.9 and 3.10 only.
set -u
is_310() { "$1" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 10))' >/dev/null 2>&1; }
if command -v python3.10 >/dev/null 2>&1 && is_310 python3.10; then
  command -v python3.10; exit 0
fi
if command -v pyenv >/dev/null 2>&1; then
  version=$(pyenv versions --bare 2>/dev/null | grep -E '^3\.10(\.[0-9]+)?$' | sort -V | tail -n 1)
  if [ -n "$version" ]; then
    path=$(PYENV_VERSION="$version" pyenv which python3.10 2>/dev/null)
    if [ -n "$path" ] && is_310 "$path"; then echo "$path"; exit 0; fi
  fi
fi
echo "error: Python 3.10 not found (TFX 1.16 needs 3.9 or 3.10). Install it, e.g." \
     "'pyenv install 3.10', or set PYTHON=/path/to/python3.10." >&2
exit 1
