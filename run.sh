#!/usr/bin/env bash
# The README's two commands. Each sets up everything on a fresh machine first:
#   ./run.sh demo [backmark demo options]   runs the demo on Fashion-MNIST
#   ./run.sh test [pytest options]          runs lint, type checks and the test suite
# Set BACKMARK_TORCH to choose the torch build to install (default: the CPU wheel pinned below).
set -euo pipefail
cd "$(dirname "$0")"
VENV=${BACKMARK_VENV:-.venv}
TORCH=${BACKMARK_TORCH:-torch==2.13.0}

setup() {
    if [ ! -x "$VENV/bin/python" ]; then
        python3 -m venv "$VENV"
    fi
    if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
        echo "installing $TORCH into $VENV" >&2
        "$VENV/bin/pip" install -q --disable-pip-version-check "$TORCH"
    fi
    "$VENV/bin/pip" install -q --disable-pip-version-check -e '.[dev]'
    # Fashion-MNIST from Debian's package where we can; otherwise backmark downloads it (SHA-256 checked).
    if [ ! -d /usr/share/datasets/fashion-mnist ] && [ -z "${BACKMARK_DATA:-}" ] \
        && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
        echo "installing Debian's dataset-fashion-mnist" >&2
        apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist >/dev/null
    fi
    # PostgreSQL for the registry's tests (they start their own throwaway server; SQLite needs nothing).
    if ! command -v initdb >/dev/null && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 \
        && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
        echo "installing Debian's postgresql" >&2
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            postgresql >/dev/null
    fi
}

case "${1:-}" in
    demo)
        setup
        shift
        exec "$VENV/bin/backmark" demo "$@"
        ;;
    test)
        setup
        shift
        "$VENV/bin/ruff" check src tests benchmarks
        "$VENV/bin/ruff" format --check src tests benchmarks
        "$VENV/bin/mypy"
        exec "$VENV/bin/pytest" "$@"
        ;;
    *)
        echo "usage: ./run.sh demo [--fast] [--out DIR] | ./run.sh test [pytest options]" >&2
        exit 2
        ;;
esac
