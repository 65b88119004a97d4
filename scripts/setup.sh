#!/usr/bin/env bash
# Set up a fresh Debian/Ubuntu machine for scg:
#   * system packages through apt-get (as root or with sudo): Graphviz's `dot`, Debian's
#     Fashion-MNIST files, a C compiler (gcc, libc6-dev: scg compiles its fused loops, scg/_kernels.c,
#     for this CPU; without one it runs numpy's slower passes), and python3-venv when this Python
#     cannot make a virtual environment;
#   * the project, installed editable (`pip install -e .`) into a virtual environment: the
#     active one if there is one, else the project's own `.venv`. With `--dev`, its dev extra as
#     well (`pip install -e '.[dev]'`: pytest, hypothesis, Jupyter's kernel, Dask's distributed),
#     which the tests need and the main job does not (it halves the install on a fresh machine).
# Afterwards `.venv/bin/python`, `.venv/bin/scg-vae` and `.venv/bin/scg-dvae` run scg from a
# fresh terminal without activating anything (with an active environment `.venv` links to it).
# pip never installs outside a virtual environment, so a Python that refuses that
# (PEP 668 "externally-managed-environment", as Debian's and Ubuntu's own) is fine.
# PYTHON=python3.12 bash scripts/setup.sh chooses the Python that makes `.venv`.
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET=.
if [ $# -gt 1 ]; then echo "error: one option at most, got $# ($*) (usage: bash scripts/setup.sh [--dev])" >&2; exit 2; fi
case "${1:-}" in
    "") ;;
    --dev) TARGET=".[dev]" ;;
    -h|--help) echo "usage: bash scripts/setup.sh [--dev]   (--dev: also the test tools, pip install -e '.[dev]')"; exit 0 ;;
    *) echo "error: unknown option '$1' (usage: bash scripts/setup.sh [--dev])" >&2; exit 2 ;;
esac

PYTHON="${PYTHON:-python3}"
VENV=.venv
SYSTEM_PACKAGES="graphviz dataset-fashion-mnist gcc libc6-dev"

if [ "$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null; then SUDO="sudo"; else SUDO="none"; fi
can_apt() { command -v apt-get >/dev/null && [ "$SUDO" != none ]; }
apt_updated=""
apt_install() {
    echo "installing system packages: $*"
    if [ -z "$apt_updated" ]; then $SUDO apt-get update -qq; apt_updated=yes; fi
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@"
}

# --- system packages ------------------------------------------------------------------------
missing=""
if can_apt; then
    for p in $SYSTEM_PACKAGES; do
        dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
    done
    # Debian and Ubuntu ship `venv` without `ensurepip` (it is in python3-venv); an active
    # environment needs neither.
    if [ -z "${VIRTUAL_ENV:-}" ] && [ ! -x "$VENV/bin/python" ]; then
        if ! command -v "$PYTHON" >/dev/null; then
            missing="$missing python3 python3-venv"
        elif ! "$PYTHON" -c "import ensurepip, venv" >/dev/null 2>&1; then
            missing="$missing python3-venv"
        fi
    fi
    if [ -n "$missing" ]; then
        # shellcheck disable=SC2086  # a list of package names
        apt_install $missing
    fi
else
    echo "note: cannot run apt-get; install Graphviz and the Fashion-MNIST IDX files yourself (see README)" >&2
fi

# --- the virtual environment ----------------------------------------------------------------
if [ -n "${VIRTUAL_ENV:-}" ]; then
    # An active environment: install into it, and let `.venv` name it so README's commands work.
    if [ ! -e "$VENV" ] || [ -L "$VENV" ]; then
        ln -sfn "$VIRTUAL_ENV" "$VENV"
    elif [ "$(cd "$VENV" && pwd -P)" != "$(cd "$VIRTUAL_ENV" && pwd -P)" ]; then
        echo "note: installing into the active environment $VIRTUAL_ENV; $VENV is another one" >&2
    fi
    VENV_PYTHON="$VIRTUAL_ENV/bin/python"
else
    if [ -L "$VENV" ] && [ ! -x "$VENV/bin/python" ]; then
        rm "$VENV"  # a link to an environment that is gone
    fi
    if ! { [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -m pip --version >/dev/null 2>&1; }; then
        if ! command -v "$PYTHON" >/dev/null; then
            echo "error: $PYTHON not found; install Python >= 3.10 (Debian/Ubuntu: apt-get install python3 python3-venv)" >&2
            exit 1
        fi
        echo "creating the virtual environment $VENV with $(command -v "$PYTHON")"
        "$PYTHON" -m venv --clear "$VENV" || {
            echo "error: '$PYTHON -m venv' failed; on Debian/Ubuntu install python3-venv (apt-get install python3-venv)" >&2
            exit 1
        }
    fi
    VENV_PYTHON="$VENV/bin/python"
fi

"$VENV_PYTHON" -m pip install -q --upgrade pip
"$VENV_PYTHON" -m pip install -q -e "$TARGET"
# Compile the fused loops now (else the first run does, ~1 s) and say whether they are in use.
"$VENV_PYTHON" -c 'import scg.kernels as k; print("scg kernels:", k.status())'
echo "scg is installed in $("$VENV_PYTHON" -c 'import sys; print(sys.prefix)'): run it as .venv/bin/python, .venv/bin/scg-vae"
