"""Which channel and local hour each customer answers at: a Beta-Bernoulli Thompson sampler.

An *arm* is a (channel, local send hour) pair, e.g. ("sms", 18). For each arm we keep a Beta
belief about the chance that this customer answers a message sent there. The belief starts from
a prior *pooled* from similar customers (the brand's, or every brand's while the brand has
fewer than ``min_pool`` settled attempts), worth ``prior_strength`` pseudo-messages, and is
updated by the customer's own history: an answer on an arm counts 1 for that arm and less for
the same channel's nearby hours (a Gaussian kernel of ``hour_bandwidth`` hours: someone who
answers SMS at noon probably reads SMS at 14:00 too, less surely at 20:00); silence likewise
counts against.

Choosing: draw one sample from every allowed arm's belief and send on the arm with the largest
draw. Arms we know little about have wide beliefs, so they win now and then (exploration); as
evidence piles up the draws concentrate on the customer's best arm (exploitation). Allowed arms
are the rule's channels for which the order record has an address and the customer has not
opted out, at configured hours outside quiet hours. Until there is anything to learn from (no
history of the customer, and fewer than ``min_pool`` settled attempts of anyone) the rule decides.

The pure part (:func:`prior_from_pool`, :func:`choose`) knows nothing of the store so that the
simulation in ``bench/channel_learner_sim.py`` runs the exact code the follow-ups run.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from doorstep.config import Config
from doorstep.contact_history import Outcome, outcomes
from doorstep.models import Customer
from doorstep.store import Store
from responders.config import ChannelLearner, QuietHours, responders_settings

#: The pooled prior looks back this far: what the brand's customers answered recently, and a bounded query.
POOL_DAYS = 180

Arm = tuple[str, int]
#: (channel, local hour, answered) - what the pure functions learn from.
Trial = tuple[str, int, bool]


@dataclass(frozen=True)
class Choice:
    channel: str
    hour: int
    #: The winning draw and the arm's belief (alpha, beta) it came from.
    sample: float
    alpha: float
    beta: float
    #: Own settled attempts and pool size behind it (for the explanation on the timeline).
    own: int
    pool: int

    def explain(self) -> str:
        mean = self.alpha / (self.alpha + self.beta)
        return (f"channel learner: {self.channel} at {self.hour:02d}:00 (expected answer rate {mean:.0%}, "
                f"from {self.own} of this customer's own messages and {self.pool} of similar customers')")


def hour_weight(sent: int, arm: int, bandwidth: float) -> float:
    """How much an answer to a message sent at local hour ``sent`` tells about hour ``arm``.

    A Gaussian kernel over the circular distance in hours: 1 for the same hour, about 0.7 two
    hours away and 0.3 four hours away with the default bandwidth of 2.5 hours.
    """
    if bandwidth <= 0:
        return 1.0 if sent == arm else 0.0
    distance = min(abs(sent - arm), 24 - abs(sent - arm))
    return math.exp(-distance * distance / (2 * bandwidth * bandwidth))


def _rates(trials: Iterable[Trial]) -> tuple[dict[Arm, list[float]], dict[str, list[float]], list[float]]:
    arms: dict[Arm, list[float]] = {}
    channels: dict[str, list[float]] = {}
    total = [0.0, 0.0]
    for channel, hour, answered in trials:
        for cell in (arms.setdefault((channel, hour), [0.0, 0.0]), channels.setdefault(channel, [0.0, 0.0]), total):
            cell[0] += answered
            cell[1] += 1
    return arms, channels, total


def prior_from_pool(pool: Iterable[Trial], arms: Sequence[Arm], strength: float) -> dict[Arm, tuple[float, float]]:
    """Beta(alpha, beta) per arm worth ``strength`` pseudo-messages, centred on the pool's rate.

    The pool's rate of an arm is shrunk toward its channel's rate, and that toward the overall
    rate (2 pseudo-messages each), so an hour the pool has never tried starts at what the channel
    usually gets, not at an optimistic 50%.
    """
    by_arm, by_channel, total = _rates(pool)
    overall = (total[0] + 1) / (total[1] + 2)
    strength = max(strength, 2.0)
    out = {}
    for arm in arms:
        s_c, n_c = by_channel.get(arm[0], (0.0, 0.0))
        channel_rate = (s_c + 2 * overall) / (n_c + 2)
        s_a, n_a = by_arm.get(arm, (0.0, 0.0))
        rate = min(max((s_a + 2 * channel_rate) / (n_a + 2), 0.02), 0.98)
        out[arm] = (strength * rate, strength * (1 - rate))
    return out


def choose(own: Sequence[Trial], prior: dict[Arm, tuple[float, float]], arms: Sequence[Arm],
           settings: ChannelLearner, rng: random.Random | None = None, pool_size: int = 0) -> Choice:
    """Thompson sampling: one draw per allowed arm from prior + own evidence; the largest draw wins.

    ``prior`` comes from :func:`prior_from_pool` (computed once per round, not per customer).
    """
    if not arms:
        raise ValueError("no arm to choose from")
    rng = rng or random.Random()
    best: Choice | None = None
    for arm in arms:
        alpha, beta = prior[arm]
        for channel, hour, answered in own:
            if channel != arm[0]:
                continue
            weight = hour_weight(hour, arm[1], settings.hour_bandwidth)
            if answered:
                alpha += weight
            else:
                beta += weight
        sample = rng.betavariate(alpha, beta)
        if best is None or sample > best.sample:
            best = Choice(arm[0], arm[1], sample, alpha, beta, len(own), pool_size)
    assert best is not None
    return best


# ------------------------------------------------------------------ the store's side
@dataclass(frozen=True)
class Plan:
    channel: str
    address: str
    send_at: datetime
    why: str


def _trials(rows: Iterable[Outcome]) -> list[Trial]:
    return [(o.channel, o.hour, o.answered) for o in rows]


def allowed_hours(settings: ChannelLearner, quiet: QuietHours | None, now: datetime, config: Config) -> list[int]:
    """Configured hours outside quiet hours (all configured hours if quiet hours cover them all)."""
    local = now.astimezone(config.tz)
    hours = [h for h in settings.hours
             if quiet is None or not quiet.contains(local.replace(hour=h, minute=0, second=0, microsecond=0))]
    return hours or list(settings.hours)


def next_at_hour(now: datetime, hour: int, config: Config) -> datetime:
    """``now`` when it is already that local hour, else the next time the local clock reads HOUR:00."""
    local = now.astimezone(config.tz)
    if local.hour == hour:
        return now
    at = local.replace(hour=hour, minute=0, second=0, microsecond=0)
    if at <= local:
        at = (at + timedelta(days=1)).replace(hour=hour)  # same wall-clock hour across a DST change
    return at.astimezone(now.tzinfo)


def plan_contact(store: Store, config: Config, customer: Customer | None, brand: str | None, channels: Sequence[str],
                 quiet: QuietHours | None, now: datetime, *, rng: random.Random | None = None,
                 cache: dict[Any, Any] | None = None) -> Plan | None:
    """The channel, address and send time for this customer's next message.

    None leaves the choice to the rule (its first channel, now): nobody to write to, or nothing
    learnt yet (no history of this customer and fewer than ``min_pool`` settled attempts of anyone,
    where sampling would only pick a random hour).
    """
    if customer is None or "all" in customer.opt_out:
        return None
    settings = responders_settings(config).channel_learner
    addresses = {"email": customer.email, "sms": customer.phone}
    usable = [c for c in channels if addresses.get(c) and c not in customer.opt_out]
    if not usable:
        return None
    window = timedelta(hours=settings.answer_window_hours)
    cache = {} if cache is None else cache
    pool = cache.get(("pool", brand))
    if pool is None:
        since = now - timedelta(days=POOL_DAYS)
        pool = _trials(outcomes(store, config.tz, now, brand=brand, since=since, window=window)) if brand else []
        if len(pool) < settings.min_pool:
            pool = cache.get(("pool", None))
            if pool is None:
                pool = cache[("pool", None)] = _trials(outcomes(store, config.tz, now, since=since, window=window))
        cache[("pool", brand)] = pool
    own = _trials(outcomes(store, config.tz, now, customer_id=customer.id, window=window))
    if not own and len(pool) < settings.min_pool:
        return None
    arms = [(c, h) for c in usable for h in allowed_hours(settings, quiet, now, config)]
    prior_key = ("prior", brand, tuple(arms))
    prior = cache.get(prior_key)
    if prior is None:
        prior = cache[prior_key] = prior_from_pool(pool, arms, settings.prior_strength)
    choice = choose(own, prior, arms, settings, rng, pool_size=len(pool))
    return Plan(choice.channel, addresses[choice.channel], next_at_hour(now, choice.hour, config),  # type: ignore[arg-type]
                choice.explain())
