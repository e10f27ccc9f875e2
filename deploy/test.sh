#!/usr/bin/env bash
# Run every check: `bash deploy/test.sh [pytest args...]`.
# deploy/setup.sh --test prepares .venv and the test database (TEST_DATABASE_URL, by default the local
# ngsi_test) and MQTT; then pytest, (without arguments) the integration tests again under
# PYTHONASYNCIODEBUG=1 and on uvloop, ruff (lint and format) and mypy --strict (code and tests) run in
# that order, all of them even when one fails, and the script exits non-zero if any failed. Extra
# arguments go to the first pytest run and skip the two extra runs.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=deploy/setup.sh
source "$REPO/deploy/setup.sh"
ngsi_setup --test

# The code under test reads DATABASE_URL: point it at the test database, never the main one.
export DATABASE_URL="$TEST_DATABASE_URL" TEST_DATABASE_URL MQTT_URL
# Keep the tools' caches out of the work tree (pytest's is disabled with -p no:cacheprovider).
export MYPY_CACHE_DIR="$REPO/.venv/.cache/mypy" RUFF_CACHE_DIR="$REPO/.venv/.cache/ruff"
cd "$REPO"

results=()
failed=0

# Usage: check NAME COMMAND...  — runs COMMAND, records "NAME ok|FAILED (exit N), seconds".
check() {
    local name=$1 rc=0 start=$SECONDS
    shift
    printf '\n== %s: %s\n' "$name" "$*" >&2
    "$@" || rc=$?
    if [[ $name == pytest && $rc -eq 5 ]]; then
        # pytest's 5 means "no tests collected": a broken collection must not pass as green.
        results+=("pytest FAILED (no tests collected), $((SECONDS - start))s")
        failed=1
    elif [[ $rc -ne 0 ]]; then
        results+=("$name FAILED (exit $rc), $((SECONDS - start))s")
        failed=1
    else
        results+=("$name ok, $((SECONDS - start))s")
    fi
}

check pytest .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
if [[ $# -eq 0 ]]; then
    # The integration suite twice more, as asyncpg's own test target does: with asyncio's debug mode
    # (never-awaited coroutines, calls from the wrong thread, unclosed transports) and on uvloop, the
    # loop the broker serves on. Only on a full run: arguments select tests for the first run alone.
    check pytest-asyncio-debug env PYTHONASYNCIODEBUG=1 \
        .venv/bin/python -m pytest -q -p no:cacheprovider tests/integration
    check pytest-uvloop env NGSI_TEST_LOOP=uvloop .venv/bin/python -m pytest -q -p no:cacheprovider tests/integration
fi
check ruff .venv/bin/ruff check broker adapters tests
check ruff-format .venv/bin/ruff format --check broker adapters tests
check mypy .venv/bin/mypy --strict broker adapters tests

summary="$(IFS=';'; echo "${results[*]}")"
if [[ $failed -eq 0 ]]; then
    printf '\ntest.sh: PASSED (%s)\n' "${summary//;/; }"
else
    printf '\ntest.sh: FAILED (%s)\n' "${summary//;/; }"
fi
exit "$failed"
