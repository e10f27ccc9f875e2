"""A stub resolver: names answered from a table, so address-policy tests send no packet anywhere."""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

from aiohttp.abc import AbstractResolver


class StubDns(AbstractResolver):
    """Answers names from a table, one answer after the other; records what was asked.

    A name missing from the table fails as a name that does not exist would (OSError).
    """

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self._answers = answers
        self.asked: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[Any]:
        self.asked.append(host)
        if host not in self._answers:
            raise OSError(socket.EAI_NONAME, f"stub DNS: {host} does not exist")
        queue = self._answers[host]
        address = queue.pop(0) if len(queue) > 1 else queue[0]
        version = ipaddress.ip_address(address).version
        return [
            {
                "hostname": host,
                "host": address,
                "port": port,
                "family": socket.AF_INET6 if version == 6 else socket.AF_INET,
                "proto": 0,
                "flags": 0,
            }
        ]

    async def close(self) -> None:
        pass
