"""The simulated devices as IoT Agent provisioning requests (/iot/services, /iot/devices)."""

from __future__ import annotations

from typing import Any

import aiohttp

from tests.simulate.core import Scenario, SimDevice

DEVICES_PER_REQUEST = 100


def provisioning_requests(scenario: Scenario, service_path: str = "/") -> list[tuple[str, dict[str, Any]]]:
    """(path, body) pairs to POST, in order: the service group, then the devices in batches.

    The one place that decides what the broker is told about simulated devices; field names
    follow the IoT Agent provisioning API plus the LPWA fields of adapters.device.DeviceConfig.
    """
    group = {
        "apikey": scenario.apikey,
        "entity_type": scenario.entity_type,
        "resource": "/iot/json",
        "autoprovision": False,
    }
    requests: list[tuple[str, dict[str, Any]]] = [("/iot/services", {"services": [group]})]
    devices = [device_payload(d, scenario.apikey) for d in scenario.devices]
    for first in range(0, len(devices), DEVICES_PER_REQUEST):
        requests.append(("/iot/devices", {"devices": devices[first : first + DEVICES_PER_REQUEST]}))
    return requests


def device_payload(device: SimDevice, apikey: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "device_id": device.device_id,
        "entity_name": device.entity_name,
        "entity_type": device.entity_type,
        "apikey": apikey,
        "protocol": device.protocol,
        "codec": device.codec,
        "model": device.model,
        "model_params": device.model_params,
    }
    if device.dev_eui:
        body["dev_eui"] = device.dev_eui
    if device.layout:
        body["layout"] = list(device.layout)
    if device.commands:
        body["commands"] = list(device.commands)
    return body


async def provision(base_url: str, tenant: str, scenario: Scenario) -> list[str]:
    """POST the scenario's devices to the broker; returns the problems (empty: all provisioned).

    409 (already provisioned) is not a problem: running a scenario twice keeps its devices.
    """
    headers = {"fiware-service": tenant, "fiware-servicepath": "/", "Content-Type": "application/json"}
    problems: list[str] = []
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for path, body in provisioning_requests(scenario):
            url = base_url.rstrip("/") + path
            try:
                async with session.post(url, json=body, headers=headers) as response:
                    text = await response.text()
                    if response.status >= 300 and response.status != 409:
                        problems.append(f"POST {url}: HTTP {response.status} {text[:300]}")
            except (aiohttp.ClientError, TimeoutError) as exc:
                problems.append(f"POST {url}: {type(exc).__name__} {exc}")
            if problems:
                break
    return problems
