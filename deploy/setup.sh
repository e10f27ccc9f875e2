#!/usr/bin/env bash
# Prepare everything the broker needs on this machine, idempotently:
#   - the virtualenv $REPO/.venv with `pip install -e ".[test]"` (skipped when pyproject.toml is unchanged);
#   - unless DATABASE_URL is set: PostgreSQL + PostGIS from the OS packages, cluster started, role and
#     database `ngsi` (and `ngsi_test` with --test), extension postgis in each;
#   - unless MQTT_URL is set: Mosquitto from the OS packages, started with deploy/mosquitto.conf,
#     unless something already listens on 127.0.0.1:1883;
#   - with --test: Debian's chromium for the dashboard's browser tests, when /usr/bin/chromium is missing.
#
# Two ways to use it:
#   source deploy/setup.sh && ngsi_setup [--test]   # exports DATABASE_URL, MQTT_URL (+ TEST_DATABASE_URL)
#   eval "$(bash deploy/setup.sh [--test])"         # executed: prints `export ...` lines on stdout
# Sourcing defines functions only (bash would hand the caller's arguments to a sourced file), and it
# turns on `set -euo pipefail` in the caller: meant for scripts such as run.sh and test.sh.
# Progress goes to stderr. NGSI_SKIP_INSTALL=1 forbids apt-get: a missing package is then an error.

set -euo pipefail

NGSI_REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# Local defaults; deploy/mosquitto.conf names the same runtime paths.
NGSI_DB_ROLE=ngsi
NGSI_DB_PASSWORD=ngsi
NGSI_DB_NAME=ngsi
NGSI_TEST_DB_NAME=ngsi_test
NGSI_PG_CLUSTER=main # the cluster of Debian's postgresql package; PG_VER/PG_PORT are read from it
NGSI_MQTT_PORT=1883
NGSI_MQTT_DIRS=(/var/lib/ngsi-hub/mosquitto /run/ngsi-hub /var/log/ngsi-hub)
NGSI_MQTT_LOG=/var/log/ngsi-hub/mosquitto.log
NGSI_APT_LOG=/tmp/ngsi-setup-apt.log
_ngsi_apt_updated=0

ngsi_log() { printf 'setup: %s\n' "$*" >&2; }
ngsi_die() { ngsi_log "error: $*"; exit 1; }

# A URL with its password hidden, for progress lines.
ngsi_redact() { sed -E 's#(://[^:/@]*):[^@/]*@#\1:***@#' <<<"$1"; }

# Privileged steps run directly as root, through passwordless sudo otherwise.
ngsi_as_root() {
    if [[ $EUID -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
        sudo -n "$@"
    else
        ngsi_die "'$*' needs root (or set DATABASE_URL / MQTT_URL to services you run yourself)"
    fi
}

# ---------------------------------------------------------------------------------------------- apt

# Another process (the image's provisioning) may be installing packages: wait instead of failing on
# the dpkg lock. Matches process names exactly so that command lines merely mentioning apt don't count.
ngsi_wait_for_apt() {
    local waited=0
    while pgrep -x apt-get >/dev/null || pgrep -x apt >/dev/null || pgrep -x dpkg >/dev/null; do
        if [[ $waited -eq 0 ]]; then ngsi_log "waiting for another apt-get/dpkg to finish"; fi
        if [[ $waited -ge 900 ]]; then ngsi_die "apt-get/dpkg still running after 900 s"; fi
        sleep 2
        waited=$((waited + 2))
    done
}

ngsi_apt_update_once() {
    if [[ $_ngsi_apt_updated -eq 0 ]]; then
        ngsi_wait_for_apt
        ngsi_log "apt-get update"
        ngsi_as_root apt-get update -q >>"$NGSI_APT_LOG" 2>&1 || {
            tail -n 20 "$NGSI_APT_LOG" >&2
            ngsi_die "apt-get update failed (log: $NGSI_APT_LOG)"
        }
        _ngsi_apt_updated=1
    fi
}

ngsi_apt_install() {
    if [[ ${NGSI_SKIP_INSTALL:-0} == 1 ]]; then
        ngsi_die "missing packages: $* (NGSI_SKIP_INSTALL=1 forbids installing them)"
    fi
    command -v apt-get >/dev/null || ngsi_die "no apt-get here: install $* by hand"
    ngsi_apt_update_once
    ngsi_wait_for_apt
    ngsi_log "apt-get install $*"
    # DPkg::Lock::Timeout covers a dpkg run that starts between the wait above and this call.
    ngsi_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        -o DPkg::Lock::Timeout=600 "$@" >>"$NGSI_APT_LOG" 2>&1 || {
        tail -n 20 "$NGSI_APT_LOG" >&2
        ngsi_die "apt-get install failed (log: $NGSI_APT_LOG)"
    }
}

# ------------------------------------------------------------------------------------------- python

ngsi_python_ok() { "$1" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; }

# Debian's own python3 ships venv without ensurepip until python3-venv is installed.
ngsi_create_venv() {
    local venv=$1 python=${NGSI_PYTHON:-python3}
    command -v "$python" >/dev/null || ngsi_die "$python not found (set NGSI_PYTHON to a Python >= 3.11)"
    ngsi_python_ok "$python" || ngsi_die "$python is older than 3.11 (set NGSI_PYTHON)"
    ngsi_log "python: creating $venv with $("$python" -V 2>&1)"
    rm -rf "$venv"
    if ! "$python" -m venv "$venv" >/dev/null 2>&1; then
        rm -rf "$venv"
        ngsi_apt_install python3-venv
        "$python" -m venv "$venv" || ngsi_die "python -m venv failed even with python3-venv installed"
    fi
    "$venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null 2>&1 ||
        ngsi_log "warning: could not upgrade pip; going on with $("$venv/bin/python" -m pip -V)"
}

# The editable install is redone only when pyproject.toml or the interpreter changed.
ngsi_setup_python() {
    local venv="$NGSI_REPO/.venv" want
    [[ -f "$NGSI_REPO/pyproject.toml" ]] || ngsi_die "no pyproject.toml in $NGSI_REPO"
    if ! ngsi_python_ok "$venv/bin/python"; then
        ngsi_create_venv "$venv"
    fi
    want="$({ cat "$NGSI_REPO/pyproject.toml"; "$venv/bin/python" -VV; } | sha256sum | cut -d' ' -f1)"
    if [[ -f "$venv/.installed-hash" && "$(<"$venv/.installed-hash")" == "$want" ]]; then
        ngsi_log "python: .venv up to date"
        return
    fi
    ngsi_log "python: pip install -e .[test] into .venv (log: .venv/pip-install.log)"
    rm -f "$venv/.installed-hash"
    # pip and the build backend are chatty; their output is shown only when the install fails.
    "$venv/bin/python" -m pip install --disable-pip-version-check -e "${NGSI_REPO}[test]" \
        >"$venv/pip-install.log" 2>&1 || {
        grep -v '^WARNING: Location .* is ignored' "$venv/pip-install.log" | tail -n 30 >&2
        ngsi_die "pip install -e .[test] failed (log: $venv/pip-install.log)"
    }
    printf '%s\n' "$want" >"$venv/.installed-hash"
}

# --------------------------------------------------------------------------------------- postgresql

# Sets PG_VER, PG_PORT, PG_STATUS from cluster <version>/$NGSI_PG_CLUSTER (the newest version if
# several have one). Returns 1 when no such cluster exists yet.
ngsi_pg_read_cluster() {
    local line
    PG_VER="" PG_PORT="" PG_STATUS=""
    if command -v pg_lsclusters >/dev/null; then
        # columns: Ver Cluster Port Status Owner Data-directory Log-file
        line="$(pg_lsclusters -h 2>/dev/null | awk -v c="$NGSI_PG_CLUSTER" '$2 == c' | sort -k1,1nr | head -n 1)"
        if [[ -n $line ]]; then
            read -r PG_VER _ PG_PORT PG_STATUS _ <<<"$line"
            return 0
        fi
    fi
    return 1
}

# Major version of the newest installed server, else of Debian's `postgresql` package, else 15.
ngsi_pg_pick_version() {
    local v
    v="$(find /usr/lib/postgresql -mindepth 3 -maxdepth 3 -path '*/bin/postgres' 2>/dev/null |
        awk -F/ '{print $5}' | sort -n | tail -n 1)"
    if [[ -z $v ]] && command -v apt-cache >/dev/null; then
        v="$(apt-cache depends postgresql 2>/dev/null | sed -nE 's/.*Depends: postgresql-([0-9]+)$/\1/p' | head -n 1)"
    fi
    echo "${v:-15}"
}

ngsi_pg_installed() {
    local v=$1
    [[ -x /usr/lib/postgresql/$v/bin/postgres && -f /usr/share/postgresql/$v/extension/postgis.control ]] &&
        command -v pg_ctlcluster >/dev/null && command -v psql >/dev/null
}

ngsi_pg_install() {
    local v
    ngsi_pg_read_cluster || true
    v="${PG_VER:-$(ngsi_pg_pick_version)}"
    if ngsi_pg_installed "$v"; then return; fi
    if [[ -z $PG_VER && ! -d /usr/lib/postgresql/$v && ${NGSI_SKIP_INSTALL:-0} != 1 ]]; then
        ngsi_apt_update_once # so that the version comes from the current package lists
        v="$(ngsi_pg_pick_version)"
    fi
    ngsi_apt_install postgresql postgresql-contrib "postgresql-$v" \
        "postgresql-$v-postgis-3" "postgresql-$v-postgis-3-scripts"
    ngsi_pg_installed "$v" || ngsi_die "PostgreSQL $v with PostGIS still missing after apt-get install"
    # apt may have upgraded the server's files under a running cluster (no systemd here to restart
    # it): the old postgres then fails to load the new plpgsql.so ("undefined symbol").
    NGSI_PG_PACKAGES_CHANGED=1
}

ngsi_pg_start() {
    if ! ngsi_pg_read_cluster; then
        local v
        v="$(ngsi_pg_pick_version)"
        ngsi_log "postgresql: creating cluster $v/$NGSI_PG_CLUSTER"
        # pg_createcluster runs initdb as the postgres user itself (initdb refuses root).
        ngsi_as_root pg_createcluster "$v" "$NGSI_PG_CLUSTER" >/dev/null
        ngsi_pg_read_cluster || ngsi_die "pg_createcluster $v $NGSI_PG_CLUSTER made no cluster"
    fi
    if [[ $PG_STATUS == online* && ${NGSI_PG_PACKAGES_CHANGED:-0} == 1 ]]; then
        ngsi_log "postgresql: restarting cluster $PG_VER/$NGSI_PG_CLUSTER on the packages just installed"
        ngsi_as_root pg_ctlcluster "$PG_VER" "$NGSI_PG_CLUSTER" restart >&2 ||
            ngsi_die "pg_ctlcluster $PG_VER $NGSI_PG_CLUSTER restart failed (see /var/log/postgresql/)"
    elif [[ $PG_STATUS != online* ]]; then
        ngsi_log "postgresql: starting cluster $PG_VER/$NGSI_PG_CLUSTER (port $PG_PORT)"
        # /run is empty after a container restart; the socket directory must exist.
        ngsi_as_root install -d -o postgres -g postgres -m 2775 /var/run/postgresql
        # Each broker worker keeps a pool of up to NGSI_DB_POOL_MAX (20) connections and the
        # default is one worker per core: 100 connections run out with a few processes and tests.
        ngsi_as_root pg_conftool "$PG_VER" "$NGSI_PG_CLUSTER" set max_connections 300 ||
            ngsi_log "postgresql: could not raise max_connections (keeping the cluster's setting)"
        ngsi_as_root pg_ctlcluster "$PG_VER" "$NGSI_PG_CLUSTER" start >&2 ||
            ngsi_die "pg_ctlcluster $PG_VER $NGSI_PG_CLUSTER start failed (see /var/log/postgresql/)"
    fi
    local i
    for ((i = 0; i < 60; i++)); do
        if pg_isready -q -h 127.0.0.1 -p "$PG_PORT"; then return; fi
        sleep 0.5
    done
    ngsi_die "PostgreSQL $PG_VER/$NGSI_PG_CLUSTER does not accept connections on 127.0.0.1:$PG_PORT after 30 s"
}

# True when the role can log in over TCP with its password, may create databases (tests may make
# their own), and postgis exists in every database.
ngsi_pg_ready() {
    local db
    for db in "$@"; do
        [[ "$(PGCONNECT_TIMEOUT=5 psql -XAtq "$(ngsi_pg_url "$db")" \
            -c "select 1 from pg_extension, pg_roles where extname = 'postgis'
                and rolname = current_user and rolcreatedb" 2>/dev/null)" == 1 ]] || return 1
    done
}

ngsi_pg_url() { echo "postgresql://$NGSI_DB_ROLE:$NGSI_DB_PASSWORD@127.0.0.1:$PG_PORT/$1"; }

# Role, databases and extension, as the postgres superuser over the local socket (peer auth).
# Re-running it is harmless: every statement checks first.
ngsi_pg_provision() {
    local sql db
    sql="DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$NGSI_DB_ROLE') THEN
    CREATE ROLE $NGSI_DB_ROLE;
  END IF;
END \$\$;
ALTER ROLE $NGSI_DB_ROLE WITH LOGIN CREATEDB PASSWORD '$NGSI_DB_PASSWORD';
"
    for db in "$@"; do
        # CREATE DATABASE cannot run in a DO block; \gexec runs it only when the SELECT returns a row.
        sql+="SELECT 'CREATE DATABASE $db OWNER $NGSI_DB_ROLE'
  WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$db') \\gexec
\\connect $db
CREATE EXTENSION IF NOT EXISTS postgis;
\\connect postgres
"
    done
    ngsi_log "postgresql: ensuring role $NGSI_DB_ROLE, database(s) $*, extension postgis"
    ngsi_as_root runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -p "$PG_PORT" -d postgres \
        <<<"$sql" >/dev/null || ngsi_die "provisioning the databases failed"
}

# Usage: ngsi_setup_postgres DB...  (first database becomes DATABASE_URL)
ngsi_setup_postgres() {
    ngsi_pg_install
    ngsi_pg_start
    if ngsi_pg_ready "$@"; then
        ngsi_log "postgresql: $PG_VER/$NGSI_PG_CLUSTER up on port $PG_PORT, databases $* ready"
    else
        ngsi_pg_provision "$@"
        ngsi_pg_ready "$@" || ngsi_die "role $NGSI_DB_ROLE cannot log in over TCP with its password
  (check pg_hba.conf of $PG_VER/$NGSI_PG_CLUSTER allows scram-sha-256 or md5 for host 127.0.0.1/32)"
    fi
    export DATABASE_URL
    DATABASE_URL="$(ngsi_pg_url "$1")"
}

# ------------------------------------------------------------------------------------------ mosquitto

ngsi_mqtt_listening() { timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$NGSI_MQTT_PORT" 2>/dev/null; }

# Publish a retained message and read it back: proves the broker accepts clients and routes messages,
# without racing a subscriber against a publisher. The retained message is cleared afterwards.
ngsi_mqtt_roundtrip() {
    local topic="ngsi-hub/setup/ping/$$" token got
    token="ping-$RANDOM-$(date +%s%N)"
    timeout 10 mosquitto_pub -h 127.0.0.1 -p "$NGSI_MQTT_PORT" -q 1 -r -t "$topic" -m "$token" || return 1
    got="$(timeout 10 mosquitto_sub -h 127.0.0.1 -p "$NGSI_MQTT_PORT" -t "$topic" -C 1 -W 5 || true)"
    timeout 10 mosquitto_pub -h 127.0.0.1 -p "$NGSI_MQTT_PORT" -q 1 -r -n -t "$topic" || true
    [[ $got == "$token" ]]
}

ngsi_mqtt_start() {
    local conf="$NGSI_REPO/deploy/mosquitto.conf" i
    id mosquitto >/dev/null 2>&1 || ngsi_die "no mosquitto user (the mosquitto package creates it)"
    # Mosquitto drops to the mosquitto user, then exits silently if it cannot write these.
    ngsi_as_root install -d -o mosquitto -g mosquitto -m 0755 "${NGSI_MQTT_DIRS[@]}"
    ngsi_log "mosquitto: starting with deploy/mosquitto.conf"
    ngsi_as_root mosquitto -d -c "$conf" || ngsi_die "mosquitto -c $conf failed to start"
    for ((i = 0; i < 40; i++)); do
        if ngsi_mqtt_listening; then return; fi
        sleep 0.25
    done
    tail -n 20 "$NGSI_MQTT_LOG" >&2 2>/dev/null || true
    ngsi_die "mosquitto does not listen on 127.0.0.1:$NGSI_MQTT_PORT after 10 s (log: $NGSI_MQTT_LOG)"
}

ngsi_setup_mosquitto() {
    if ! command -v mosquitto >/dev/null && ! ngsi_mqtt_listening; then
        ngsi_apt_install mosquitto mosquitto-clients
    elif ! command -v mosquitto_pub >/dev/null && [[ ${NGSI_SKIP_INSTALL:-0} != 1 ]]; then
        ngsi_apt_install mosquitto-clients # for the round-trip check below
    fi
    if ngsi_mqtt_listening; then
        ngsi_log "mosquitto: something already listens on 127.0.0.1:$NGSI_MQTT_PORT, using it"
    else
        ngsi_mqtt_start
    fi
    if ! command -v mosquitto_pub >/dev/null; then
        ngsi_log "mosquitto: listening on 127.0.0.1:$NGSI_MQTT_PORT (no mosquitto-clients: round trip not checked)"
    elif ngsi_mqtt_roundtrip; then
        ngsi_log "mosquitto: round trip ok on 127.0.0.1:$NGSI_MQTT_PORT"
    else
        ngsi_die "127.0.0.1:$NGSI_MQTT_PORT accepts connections but an MQTT publish/subscribe round trip \
failed (log: $NGSI_MQTT_LOG)"
    fi
    export MQTT_URL="mqtt://127.0.0.1:$NGSI_MQTT_PORT"
}

# ----------------------------------------------------------------------------------------- chromium

# The dashboard's browser tests (tests/browser) drive Debian's chromium through Playwright with
# executable_path=/usr/bin/chromium: no browser download (`playwright install` is not needed).
ngsi_setup_chromium() {
    if [[ -x /usr/bin/chromium ]]; then return; fi
    ngsi_apt_install chromium
    [[ -x /usr/bin/chromium ]] || ngsi_die "/usr/bin/chromium still missing after apt-get install chromium"
}

# --------------------------------------------------------------------------------------------- main

# Usage: ngsi_setup [--test]
# --test also provides TEST_DATABASE_URL: the local ngsi_test database, or DATABASE_URL when that
# was given and TEST_DATABASE_URL was not.
ngsi_setup() {
    local test=0
    case "${1:-}" in
        --test) test=1 ;;
        "") ;;
        *) ngsi_die "unknown argument: $1 (usage: ngsi_setup [--test])" ;;
    esac

    ngsi_setup_python
    if [[ $test -eq 1 ]]; then ngsi_setup_chromium; fi

    if [[ $test -eq 1 && -n ${TEST_DATABASE_URL:-} ]]; then
        ngsi_log "postgresql: using TEST_DATABASE_URL=$(ngsi_redact "$TEST_DATABASE_URL")"
    elif [[ -n ${DATABASE_URL:-} ]]; then
        ngsi_log "postgresql: using DATABASE_URL=$(ngsi_redact "$DATABASE_URL")"
        if [[ $test -eq 1 ]]; then
            ngsi_log "warning: TEST_DATABASE_URL unset: the tests will use DATABASE_URL's database"
            export TEST_DATABASE_URL="$DATABASE_URL"
        fi
    elif [[ $test -eq 1 ]]; then
        ngsi_setup_postgres "$NGSI_DB_NAME" "$NGSI_TEST_DB_NAME"
        export TEST_DATABASE_URL
        TEST_DATABASE_URL="$(ngsi_pg_url "$NGSI_TEST_DB_NAME")"
    else
        ngsi_setup_postgres "$NGSI_DB_NAME"
    fi

    if [[ -n ${MQTT_URL:-} ]]; then
        ngsi_log "mosquitto: using MQTT_URL=$(ngsi_redact "$MQTT_URL")"
    else
        ngsi_setup_mosquitto
    fi
}

# Executed rather than sourced: set up, then print the environment for `eval`.
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    ngsi_setup "$@"
    for _var in DATABASE_URL TEST_DATABASE_URL MQTT_URL; do
        if [[ -n ${!_var:-} ]]; then printf 'export %s=%q\n' "$_var" "${!_var}"; fi
    done
fi
