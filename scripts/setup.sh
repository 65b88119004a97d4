#!/usr/bin/env bash
# Set up a fresh Debian/Ubuntu machine for scg: system packages (Graphviz's `dot`
# and the Fashion-MNIST files) and the Python package with its dev extra, installed
# editable into the current Python (activate a virtual environment first if you like).
set -euo pipefail
cd "$(dirname "$0")/.."

SYSTEM_PACKAGES="graphviz dataset-fashion-mnist"
if [ "$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null; then SUDO="sudo"; else SUDO="none"; fi
if command -v apt-get >/dev/null && [ "$SUDO" != none ]; then
    missing=""
    for p in $SYSTEM_PACKAGES; do
        dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
    done
    if [ -n "$missing" ]; then
        echo "installing system packages:$missing"
        $SUDO apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing
    fi
else
    echo "note: cannot run apt-get; install Graphviz and the Fashion-MNIST IDX files yourself (see README)" >&2
fi

PYTHON="${PYTHON:-python3}"
"$PYTHON" -m pip install -q --upgrade pip
"$PYTHON" -m pip install -q -e '.[dev]'
