"""/metrics of a broker with two workers: either worker answers with the figures of both, and the
directory their values live in is the broker's own, gone once it stops (issue 15 item 2)."""

from __future__ import annotations

import signal
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import database_url
from tests.e2e.test_process import broker_process, free_port, wait_ready, worker_pids

REQUESTS = 30
HEALTH = {"method": "GET", "route": "/health", "status": "200"}


async def health_count(session: aiohttp.ClientSession, port: int) -> float:
    async with session.get(f"http://127.0.0.1:{port}/metrics", headers={"Connection": "close"}) as response:
        assert response.status == 200
        text = await response.text()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "ngsi_http_requests_total" and sample.labels == HEALTH:
                return sample.value
    return 0.0


def multiproc_dir(pid: int) -> Path:
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    (entry,) = [e for e in environ if e.startswith(b"PROMETHEUS_MULTIPROC_DIR=")]
    return Path(entry.partition(b"=")[2].decode())


async def test_either_worker_answers_metrics_with_the_requests_of_both() -> None:
    port = free_port()
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:
        with broker_process(port, database_url(), {"NGSI_WORKERS": "2"}) as parent:
            await wait_ready(session, port, parent)
            await worker_pids(session, port, 2)  # both workers serve
            before = await health_count(session, port)
            pids = set()
            for _ in range(REQUESTS):  # a connection each: the kernel spreads them over both workers
                async with session.get(f"http://127.0.0.1:{port}/health") as response:
                    pids.add((await response.json())["pid"])
            assert len(pids) == 2
            directory = multiproc_dir(next(pid for pid in pids if pid != parent.pid))
            assert directory.is_dir()

            counts = {await health_count(session, port) for _ in range(8)}

            # Every scrape, whichever worker answers it, tells the total of both.
            assert counts == {before + REQUESTS}
            parent.send_signal(signal.SIGTERM)
            assert parent.wait(timeout=30) == 0
    assert not directory.exists()
