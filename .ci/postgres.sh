#!/usr/bin/env bash
# Install what tests/test_search_distributed.py needs: a PostgreSQL server (initdb, pg_ctl) and
# the psycopg2 driver. The test starts its own throw-away server (a temporary data folder, a
# free loopback port, run as the `postgres` user when the tests run as root) and stops it
# afterwards; this script only installs.
#
#   .ci/postgres.sh            # as root (or with sudo available)
set -euo pipefail

SUDO=""
if [ "$(id -u)" != "0" ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
        echo "postgres.sh: run as root or install sudo" >&2; exit 1; fi
fi

if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends postgresql postgresql-contrib
    # Debian's package starts a cluster of its own; the tests do not need it
    $SUDO service postgresql stop >/dev/null 2>&1 || true
fi

PY="${PYTHON:-python3}"
if ! "$PY" -c "import psycopg2" >/dev/null 2>&1; then
    "$PY" -m pip install --quiet "psycopg2-binary>=2.9"
fi

INITDB="$(ls /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -n 1 || true)"
[ -n "$INITDB" ] || INITDB="$(command -v initdb)"
echo "postgres.sh: initdb at $INITDB ($("$INITDB" --version)); psycopg2 $("$PY" -c 'import psycopg2; print(psycopg2.__version__)')"
if [ "$(id -u)" = "0" ] && ! id postgres >/dev/null 2>&1; then
    echo "postgres.sh: warning: no 'postgres' user; the tests run the server as a non-root user and will skip" >&2
fi
