"""The device pipeline's prepare step, CPU only: parse, look up, decode, map, validate, build operations.

No database, no MQTT: the messages of the golden corpus (tests/device_corpus.py) and the TTS
gauge uplink bench_ingest sends run through ``Pipeline._prepare`` in a loop, and the figure is
microseconds per message (best of ``--repeats`` rounds, each ``--rounds`` passes over the
messages; the spread is printed too). Run it on two checkouts to compare them: it prints what
the code it runs gives, beside a raw limit measured in the same run (orjson loads + dumps of the
same message bodies).

    .venv/bin/python -m tests.perf.bench_prepare [--rounds 200] [--repeats 7]
    .venv/bin/python -m tests.perf.bench_prepare --against /tmp/main-export [--alternations 5]

``--against`` runs this program in another checkout (an export of main, say) and in this one,
alternating, so both meet the same load of a shared machine, and prints the best and median of
each side's figures and the change.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import orjson

from adapters.message import Rejected
from adapters.pipeline import Inbound, Pipeline
from tests import device_corpus


def _stored(pipe: Pipeline, cases: Sequence[device_corpus.Case]) -> list[Inbound]:
    """The messages of ``cases`` the pipeline stores (refusals cost differently: measured apart)."""
    loop = asyncio.new_event_loop()
    try:
        kept = []
        for case in cases:
            try:
                if loop.run_until_complete(device_corpus.prepare(pipe, case.inbound)) is not None:
                    kept.append(case.inbound)
            except Rejected:
                pass
        return kept
    finally:
        loop.close()


async def _rounds(pipe: Pipeline, messages: Sequence[Inbound], rounds: int) -> float:
    """Seconds for ``rounds`` passes of the prepare step over ``messages``."""
    started = time.perf_counter()
    for _ in range(rounds):
        for inbound in messages:
            await device_corpus.prepare(pipe, inbound)
    return time.perf_counter() - started


def measure(pipe: Pipeline, messages: Sequence[Inbound], rounds: int, repeats: int) -> list[float]:
    """Microseconds per message of each repeat."""
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(_rounds(pipe, messages, 2))  # warm caches (term maps, names, times)
        figures = []
        for _ in range(repeats):
            gc.collect()
            seconds = loop.run_until_complete(_rounds(pipe, messages, rounds))
            figures.append(seconds / (rounds * len(messages)) * 1e6)
        return figures
    finally:
        loop.close()


def raw_limit(messages: Sequence[Inbound], rounds: int) -> float:
    """Microseconds per message of orjson loads + dumps of the JSON message bodies (the floor;
    an UltraLight body is split at its bars instead)."""
    started = time.perf_counter()
    for _ in range(rounds):
        for inbound in messages:
            if inbound.family == "iota-ul":
                inbound.body.split(b"|")
            else:
                orjson.dumps(orjson.loads(inbound.body))
    return (time.perf_counter() - started) / (rounds * len(messages)) * 1e6


_FIGURE = re.compile(r"^prepare, (?P<label>.+?): (?P<best>[\d,.]+) us/msg best", re.MULTILINE)
HERE = Path(__file__).resolve().parents[2]


def compare(other: Path, alternations: int, rounds: int) -> None:
    """This program in ``other`` and here, alternately; each side's best figures, then the change."""
    bests: dict[tuple[str, str], list[float]] = {}
    for _ in range(alternations):
        for side, tree in (("other", other), ("here", HERE)):
            command = [
                sys.executable,
                "-m",
                "tests.perf.bench_prepare",
                "--rounds",
                str(rounds),
                "--repeats",
                "3",
            ]
            out = subprocess.run(command, cwd=tree, check=True, capture_output=True, text=True).stdout
            for found in _FIGURE.finditer(out):
                bests.setdefault((side, found["label"]), []).append(float(found["best"].replace(",", "")))
    for label in dict.fromkeys(label for _, label in bests):
        old, new = bests[("other", label)], bests[("here", label)]
        print(
            f"prepare, {label}: {other} {min(old):,.1f} us/msg best ({statistics.median(old):,.1f} median), "
            f"{HERE} {min(new):,.1f} best ({statistics.median(new):,.1f} median): "
            f"{min(new) / min(old) - 1:+.0%} best, {statistics.median(new) / statistics.median(old) - 1:+.0%} median"
            f" ({alternations} alternations)"
        )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200, help="passes over the messages per repeat")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--against", type=Path, help="another checkout to compare with (alternating runs)")
    parser.add_argument("--alternations", type=int, default=5)
    args = parser.parse_args(argv)
    if args.against is not None:
        compare(args.against, args.alternations, args.rounds)
        return
    pipe = device_corpus.pipeline()
    cases = device_corpus.cases()
    every = _stored(pipe, cases)
    gauge = _stored(pipe, [c for c in cases if c.name.startswith("simulated flood")])
    gauge = [m for m in gauge if m.family == "tts"]
    for label, messages, rounds in (
        ("corpus, every stored message", every, max(1, args.rounds // 4)),
        ("TTS gauge uplinks (bench_ingest's message)", gauge, args.rounds),
    ):
        figures = measure(pipe, messages, rounds, args.repeats)
        floor = raw_limit(messages, rounds)
        best, median = min(figures), statistics.median(figures)
        print(
            f"prepare, {label}: {best:,.1f} us/msg best, {median:,.1f} median, {max(figures):,.1f} worst "
            f"({len(messages)} messages x {rounds} x {args.repeats}); {1e6 / best:,.0f} msg/s on one core; "
            f"raw orjson loads+dumps {floor:.1f} us/msg (ratio {floor / best:.1%})"
        )


if __name__ == "__main__":
    main()
