#!/usr/bin/env bash
# Run the broker on its embedded default: `bash deploy/run.sh [broker args...]`.
# deploy/setup.sh prepares .venv and, unless DATABASE_URL / MQTT_URL are set, a local PostgreSQL+PostGIS
# and Mosquitto; the broker (127.0.0.1:1026 by default) then reads DATABASE_URL and MQTT_URL from the
# environment.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=deploy/setup.sh
source "$REPO/deploy/setup.sh"
ngsi_setup

ngsi_log "starting the broker: DATABASE_URL=$(ngsi_redact "$DATABASE_URL") MQTT_URL=$(ngsi_redact "$MQTT_URL")"
exec "$REPO/.venv/bin/python" -m broker "$@"
