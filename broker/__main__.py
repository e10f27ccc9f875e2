"""Command line: ``python -m broker`` runs the broker; ``--help`` lists the settings."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

import asyncpg
from aiohttp import web

from broker import __version__
from broker.app import create_app
from broker.config import ConfigError, help_text, load


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m broker",
        description="NGSI-LD context broker with built-in device adapters (city data hub).",
        epilog=help_text(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=__version__)
    parser.parse_args(argv)
    try:
        settings = load()
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is optional off Linux
        pass
    else:
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    try:
        web.run_app(
            create_app(settings),
            host=settings.host,
            port=settings.port,
            access_log=None,
            print=lambda text: logging.getLogger("broker").info("%s", text.strip()),
        )
    except (OSError, asyncpg.PostgresError) as exc:
        logging.getLogger("broker").error("cannot start: %s", exc)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
