"""Prometheus metrics (issue 15 item 2): bounded labels, dead letter kinds, the workers' figures adding up."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from adapters.device import DeviceConfig
from adapters.pipeline import reason_kind
from broker import metrics

# A worker: counts ``n`` PATCHes in the directory named by PROMETHEUS_MULTIPROC_DIR, as the
# broker's children do (the variable is set before they import anything).
_WORKER = """
import sys
from broker import metrics
for _ in range(int(sys.argv[1])):
    metrics.HTTP_REQUESTS.labels("PATCH", "/ngsi-ld/v1/entities/{entity_id}/attrs", "204").inc()
metrics.DB_POOL.labels("open").set(3)
"""
# Worker 0: chooses the directory after its imports (as broker/__main__.py does), counts, scrapes.
_PARENT = """
import subprocess, sys
from broker import metrics
with metrics.multiprocess_dir() as directory:
    print(directory)
    worker = subprocess.Popen([sys.executable, "-c", sys.argv[1], "2"])
    assert worker.wait() == 0
    metrics.HTTP_REQUESTS.labels("PATCH", "/ngsi-ld/v1/entities/{entity_id}/attrs", "204").inc()
    metrics.DB_POOL.labels("open").set(4)
    sys.stdout.write(metrics.exposition().decode())
    metrics.process_gone(worker.pid)
    print("# the worker marked gone")
    sys.stdout.write(metrics.exposition().decode())
"""


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted((k, v) for k, v in s.labels.items() if k != "pid"))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_the_workers_counts_add_up_and_the_directory_is_removed_after() -> None:
    env = {k: v for k, v in os.environ.items() if k != metrics.MULTIPROC_ENV}
    done = subprocess.run(
        [sys.executable, "-c", _PARENT, _WORKER],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )

    directory, _, text = done.stdout.partition("\n")
    running, _, gone = text.partition("# the worker marked gone\n")
    route = (("method", "PATCH"), ("route", "/ngsi-ld/v1/entities/{entity_id}/attrs"), ("status", "204"))
    pool = ("ngsi_db_pool_connections", (("state", "open"),))
    assert _samples(running)[("ngsi_http_requests_total", route)] == 3  # two in the worker, one in worker 0
    assert _samples(running)[pool] == 7  # both processes' pools
    # A worker that exited: its counts stay (they happened), its pool no longer does.
    assert _samples(gone)[("ngsi_http_requests_total", route)] == 3
    assert _samples(gone)[pool] == 4
    assert not Path(directory).exists()


def test_a_single_process_keeps_its_figures_in_its_registry() -> None:
    assert not metrics.multiprocess()
    before = _samples(metrics.exposition().decode())
    key = ("ngsi_notifications_total", (("outcome", "failed"), ("scheme", "mqtt")))

    metrics.notification_failed("mqtt://broker.example:1883/alerts")

    assert _samples(metrics.exposition().decode())[key] == before.get(key, 0) + 1


def test_every_metric_is_labelled_so_the_worker_zero_switch_covers_it() -> None:
    # A metric without labels creates its value when defined (at import, before worker 0 chose
    # the shared directory): it would silently count in this process alone.
    for collector in list(metrics.REGISTRY._collector_to_names):
        assert getattr(collector, "_labelnames", ()), collector


def test_a_dead_letters_kind_is_one_of_a_few_whatever_its_text() -> None:
    device = DeviceConfig.__new__(DeviceConfig)
    cases = {
        "unexpected error storing the message (KeyError: 'x'); see the broker log": "fault",
        "unknown device iota-json key/dev-9 (not provisioned, no autoprovision)": "unknown_device",
        "the message nests arrays and objects deeper than 64 levels (NGSI_MAX_JSON_DEPTH)": "too_deep",
        "the message has 70000 bytes, more than the limit of 65536": "too_large",
        "the mapped entity is not valid NGSI-LD: bad": "invalid_entity",
        "payload is not JSON: unexpected character": "unreadable",
    }
    for reason, kind in cases.items():
        assert reason_kind(reason, None) == kind, reason
    assert reason_kind("FloodMonitoring urn:x: currentLevel: -5 is less than 0", device) == "refused"


def test_notification_latency_is_measured_from_when_the_row_was_queued() -> None:
    from datetime import UTC, datetime, timedelta

    name = "ngsi_notification_latency_seconds"
    before = _samples(metrics.exposition().decode())
    count, total = (f"{name}_count", (("scheme", "http"),)), (f"{name}_sum", (("scheme", "http"),))

    metrics.notification_sent(
        "https://alerts.example/notify", [datetime.now(UTC) - timedelta(seconds=2), None]
    )

    after = _samples(metrics.exposition().decode())
    assert after[count] == before.get(count, 0) + 1
    assert 2 <= after[total] - before.get(total, 0) < 60


def test_the_sample_grafana_dashboard_names_only_metrics_the_broker_exports() -> None:
    import json
    import re

    from broker.api.observe import _Snapshot
    from broker.store.gauges import Backlog, Figures

    dashboard = json.loads((Path(__file__).parents[2] / "deploy" / "grafana-dashboard.json").read_text())
    named = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"\bngsi_[a-z_]+", target["expr"])
    }
    figures = Figures(1, 2.0, [Backlog("t", "s", 1, 2.0)], 3.0)
    exported = {sample.name for family in _Snapshot(figures).collect() for sample in family.samples}
    for collector in list(metrics.REGISTRY._collector_to_names):
        exported.update(metrics.REGISTRY._collector_to_names[collector])
    exported.update(f"{name}_bucket" for name in list(exported))
    assert named
    assert named <= exported, named - exported
