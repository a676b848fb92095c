"""The channel learner on customers whose true preferences we know.

Each simulated customer has a true chance of answering a message on each (channel, local hour)
arm: a preferred channel with a peak hour (morning e-mail readers, lunchtime or evening SMS
readers, evening e-mail readers, in population shares that differ by brand), a weaker second
channel with its own peak, and individual noise. Every customer gets ``interactions`` messages,
one per round; within a round customers come in batches (a day's follow-ups), and a batch sees
the outcomes of every earlier batch (answers settle before the next day).

Three policies send the same messages:

* ``fixed``: always e-mail at 10:00 (what the follow-up rule does without the learner);
* ``learner``: responders.channel_learner.choose, the code the follow-ups run, with the pooled
  prior from the customer's brand (every brand's while the brand has fewer than min_pool);
* ``oracle``: each customer's truly best arm (the ceiling).

Reported: the answer rate of the 1st, 3rd and 10th message per customer, mean over seeds.

    python bench/channel_learner_sim.py --seeds 5 --customers 1000
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from responders.channel_learner import Arm, Trial, choose, prior_from_pool  # noqa: E402
from responders.config import ChannelLearner  # noqa: E402

CHANNELS = ("email", "sms")
#: (preferred channel, peak hour) -> population share, per brand.
SEGMENTS: dict[str, dict[tuple[str, int], float]] = {
    "Larkspur": {("email", 9): 0.30, ("sms", 12): 0.25, ("sms", 19): 0.30, ("email", 19): 0.15},
    "Fettle": {("email", 9): 0.15, ("sms", 12): 0.20, ("sms", 19): 0.45, ("email", 19): 0.20},
}


@dataclass
class Customer:
    id: int
    brand: str
    truth: dict[Arm, float]


def make_customers(n: int, rng: random.Random, hours: list[int]) -> list[Customer]:
    out = []
    for i in range(n):
        brand = "Larkspur" if i % 2 == 0 else "Fettle"
        segments = SEGMENTS[brand]
        (channel, peak), = rng.choices(list(segments), weights=list(segments.values()))
        peak += rng.choice((-1, 0, 0, 1))
        other = "sms" if channel == "email" else "email"
        other_peak = rng.choice((9, 12, 19))
        base = {channel: rng.uniform(0.55, 0.85), other: rng.uniform(0.05, 0.30)}
        peaks = {channel: peak, other: other_peak}
        truth = {}
        for c in CHANNELS:
            for h in hours:
                truth[(c, h)] = min(0.95, 0.03 + base[c] * math.exp(-((h - peaks[c]) ** 2) / (2 * 2.5 ** 2)))
        out.append(Customer(i, brand, truth))
    return out


def simulate(seed: int, customers: int = 1000, interactions: int = 10, batch: int = 100,
             settings: ChannelLearner | None = None) -> dict[str, list[float]]:
    """Answer rate of the k-th message per customer (k = 1..interactions) under each policy."""
    settings = settings or ChannelLearner(enabled=True)
    hours = list(settings.hours)
    arms: list[Arm] = [(c, h) for c in CHANNELS for h in hours]
    world = random.Random(seed)
    people = make_customers(customers, world, hours)
    outcome_rng = random.Random(seed + 1)
    choice_rng = random.Random(seed + 2)
    own: dict[int, list[Trial]] = {p.id: [] for p in people}
    pools: dict[str, list[Trial]] = {"Larkspur": [], "Fettle": []}
    rates: dict[str, list[float]] = {"fixed": [], "learner": [], "oracle": []}
    for _ in range(interactions):
        order = people[:]
        world.shuffle(order)
        answered = {"fixed": 0, "learner": 0, "oracle": 0}
        for start in range(0, len(order), batch):
            group = order[start:start + batch]
            priors = {}
            for brand, pool in pools.items():
                source = pool if len(pool) >= settings.min_pool else [t for p in pools.values() for t in p]
                priors[brand] = (prior_from_pool(source, arms, settings.prior_strength), len(source))
            settled: list[tuple[str, Trial]] = []
            for person in group:
                prior, size = priors[person.brand]
                if not own[person.id] and size < settings.min_pool:
                    arm = ("email", 10)  # nothing learnt yet: the rule decides (plan_contact returns None)
                else:
                    pick = choose(own[person.id], prior, arms, settings, choice_rng, pool_size=size)
                    arm = (pick.channel, pick.hour)
                # One uniform draw per customer and round decides all three policies: common random numbers.
                u = outcome_rng.random()
                yes = u < person.truth[arm]
                own[person.id].append((arm[0], arm[1], yes))
                settled.append((person.brand, (arm[0], arm[1], yes)))
                answered["learner"] += yes
                answered["fixed"] += u < person.truth[("email", 10)]
                answered["oracle"] += u < max(person.truth.values())
            for brand, trial in settled:
                pools[brand].append(trial)
        for policy in rates:
            rates[policy].append(answered[policy] / len(people))
    return rates


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--customers", type=int, default=1000)
    parser.add_argument("--interactions", type=int, default=10)
    parser.add_argument("--json", type=Path, help="also write the per-seed figures here")
    args = parser.parse_args(argv)
    runs = [simulate(seed, args.customers, args.interactions) for seed in range(args.seeds)]
    print(f"{args.customers} customers, {args.seeds} seeds; answer rate of the k-th message (mean ± sd over seeds)")
    print(f"{'k':>3} {'fixed e-mail 10:00':>20} {'learner':>16} {'oracle':>16}")
    for k in sorted({1, 3, min(10, args.interactions), args.interactions}):
        cells = []
        for policy in ("fixed", "learner", "oracle"):
            values = [r[policy][k - 1] for r in runs]
            cells.append(f"{statistics.mean(values):.3f} ± {statistics.pstdev(values):.3f}")
        print(f"{k:>3} {cells[0]:>20} {cells[1]:>16} {cells[2]:>16}")
    if args.json:
        args.json.write_text(json.dumps(runs, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
