"""Seconds to read the numbers in one long post, at about 1,000, 5,000 and 25,000 characters (the import limit).

    PYTHONPATH=$PWD .venv/bin/python bench/numbers_bench.py [--sizes 1000,5000,25000] [--give-up 60]

Why: a post listing its order numbers ("Hallo, hier meine offenen Bestellungen: 100251 100252 …") made the
scan try every stretch of the run of digit groups, i to j, and one post at 25,000 characters stalled an
import or the live pipeline for minutes (code review). Each post is read as the pipeline reads it,
``doorstep.linking.find_numbers`` (order numbers, checked tracking numbers, mistyped ones, and the DHL Paket
and Hermes numbers to look up), for a German shop whose couriers name the ``dhl``, ``evri``, ``ups``, ``usps``
and ``dpd`` formats. Three shapes of post:

- ``order list``: the reported post, six-digit order numbers one space apart;
- ``pairs``: "Sendung 12 12 12 …", the checked formats' worst case found in the review;
- ``messages``: ordinary messages with parcel numbers of several couriers, one after another.

Run it against another checkout (the code before a change) by putting that first on PYTHONPATH, e.g.
``git archive 7d44ce9 doorstep | tar -x -C /tmp/before && PYTHONPATH=/tmp/before:$PWD …``. A reading that
takes longer than ``--give-up`` seconds is stopped and printed as ``> N s``. No assertion here: the tests
count work (tests/test_numbers_long_posts.py), wall-clock times belong in bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import statistics
import time
from collections.abc import Callable
from types import FrameType

import doorstep.numbers
from doorstep.config import Config, parse_config
from doorstep.linking import find_numbers


def _config() -> Config:
    return parse_config({
        "timezone": "Europe/Berlin",
        "brands": [{"name": "Gärtnerei Grünfink", "handles": {"x": "GruenfinkHilfe"}, "keywords": ["grünfink"]}],
        "couriers": [
            {"name": "DHL", "handles": {"x": "DHLPaket"}, "tracking_formats": ["dhl"]},
            {"name": "Hermes", "handles": {"x": "HermesParcelDE"}, "tracking_formats": ["evri"]},
            {"name": "UPS", "handles": {"x": "UPSHelp"}, "tracking_formats": ["ups", "usps"]},
            {"name": "DPD", "handles": {"x": "DPD_DE"}, "tracking_formats": ["dpd"]},
        ],
    })


def _order_list(size: int) -> str:
    text, n = "Hallo, hier meine offenen Bestellungen:", 0
    while len(text) < size:
        text += f" {100251 + n}"
        n += 1
    return text


def _pairs(size: int) -> str:
    text = "Sendung"
    while len(text) < size:
        text += " 12"
    return text


def _messages(size: int) -> str:
    parts, k = [], 0
    while sum(len(p) + 1 for p in parts) < size:
        parts.append(f"Hallo, Bestellung #{100251 + k} ist noch nicht da. DHL Sendung 0034 0434 {k % 10000:04d} 3456 7890, "
                     f"Hermes 1234567890{k % 10000:04d}, UPS 1Z 999 AA1 01 2345 6784, Tel. 0171 2223334, 3,50 €.")
        k += 1
    return " ".join(parts)[:size]


POSTS: dict[str, Callable[[int], str]] = {"order list": _order_list, "pairs": _pairs, "messages": _messages}


class _GaveUp(Exception):
    pass


def _give_up(signum: int, frame: FrameType | None) -> None:
    raise _GaveUp


def _seconds(text: str, config: Config, give_up: float) -> float | None:
    """Median seconds of a few readings of ``text`` (one where a reading takes over a second); None: gave up."""
    timings: list[float] = []
    signal.signal(signal.SIGALRM, _give_up)
    while len(timings) < 5 and sum(timings) < 1.0:
        signal.setitimer(signal.ITIMER_REAL, give_up)
        try:
            start = time.perf_counter()
            find_numbers(text, config)
            timings.append(time.perf_counter() - start)
        except _GaveUp:
            return None
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    return statistics.median(timings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1000,5000,25000", help="post lengths in characters, comma-separated")
    parser.add_argument("--give-up", type=float, default=60.0, help="seconds after which a reading is stopped")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    config = _config()
    print(f"doorstep.numbers from {doorstep.numbers.__file__}")
    print(f"{platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} cores, "
          f"load {' '.join(f'{x:.1f}' for x in os.getloadavg())} (1, 5, 15 min)")
    print(f"{'post':<12}" + "".join(f"{size:>12,} ch" for size in sizes))
    for name, make in POSTS.items():
        cells = []
        for size in sizes:
            seconds = _seconds(make(size), config, args.give_up)
            cells.append(f"> {args.give_up:g} s" if seconds is None else f"{seconds:.4f} s")
        print(f"{name:<12}" + "".join(f"{cell:>15}" for cell in cells))
    print(f"load after {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
