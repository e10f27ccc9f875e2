"""The aiohttp hello-world server of the raw HTTP limit: ``python -m tests.perf.hello PORT [WORKERS]``.

Answers GET /hello with a small orjson body, uvloop, no access log; with WORKERS > 1, that many
processes share the port (SO_REUSEPORT), as the broker's workers do.
"""

from __future__ import annotations

import multiprocessing
import sys

import orjson
import uvloop
from aiohttp import web

BODY = orjson.dumps({"status": "ok", "version": "hello"})


async def hello(request: web.Request) -> web.Response:
    return web.Response(body=BODY, content_type="application/json")


def serve(port: int) -> None:
    uvloop.install()
    app = web.Application()
    app.router.add_get("/hello", hello)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None, reuse_port=True)


if __name__ == "__main__":
    port, workers = int(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 1
    if workers == 1:
        serve(port)
    else:
        processes = [multiprocessing.Process(target=serve, args=(port,)) for _ in range(workers)]
        for process in processes:
            process.start()
        for process in processes:
            process.join()
