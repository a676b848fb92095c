"""The demo shop: a believable week of social customer care, built from one seed.

Why generate instead of shipping a fixture: the console only makes sense when its
data looks live (SLA clocks ticking, posts from this morning). The shop is generated
at a fixed reference moment (:data:`REFERENCE_NOW`), so the same seed always gives the
same shop and the figures the README quotes; ``doorstep demo`` then moves every time by
the same amount to the current hour before storing, which changes no count, share or
duration, only the dates on the screen. And the stories have to hang together: a post that says
"the driver never knocked" belongs to a shipment whose tracking shows a failed
attempt an hour earlier, so linking, priority and the case view can be judged on
the demo exactly as they would be on a real shop.

Everything random comes from one ``random.Random(seed)`` consumed in a fixed
order, so the same seed and ``now`` give the same database, byte for byte in what
matters (orders, tracking, mentions, labels, cases). The people, products and
posts are invented here; no real data is used.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from doorstep import sla
from doorstep.config import Brand, Config, ConfigError, Courier, load_config
from doorstep.models import Customer, Mention, Order, Shipment, TrackingEvent, utc
from doorstep.numbers import make_tracking_number
from doorstep.dialect import is_postgres
from doorstep.store import InboxQuery, Store, database_for_children, files_beside, iso, remove_database

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = REPO_ROOT / "demo" / "doorstep.toml"
#: Where the demo's posts come from (``webhook`` carries courier tracking-page complaints).
SOCIAL_CHANNELS: tuple[str, ...] = ("x", "mastodon", "bluesky")
COURIER_PAGE_CHANNEL = "webhook"
#: The care team that signs the brand's replies and gets cases assigned (each is also a demo
#: login, role agent, so every assignee in the console is a real user).
AGENTS: tuple[str, ...] = ("Priya", "Sam", "Tom", "Amira", "Jo", "Callum")
#: The moment the demo shop is generated at (a Wednesday afternoon, so the two weeks before it
#: are complete ISO weeks with traffic: the weekly report's "last week" and "the week before").
REFERENCE_NOW = datetime(2026, 11, 25, 14, 0, tzinfo=timezone.utc)
#: How many days of posts the demo holds: three full weeks before the reference week.
DEMO_DAYS = 24.0

FIRST_NAMES = (
    "Olivia Amelia Isla Ava Mia Ivy Lily Grace Freya Emily Sophia Ella Poppy Evie Harper Sienna Ruby Daisy "
    "Chloe Alice Florence Matilda Zara Aisha Priya Niamh Siobhan Morag Ffion Carys Hannah Megan Leah Nadia "
    "Oliver George Noah Arthur Leo Harry Oscar Jack Charlie Jacob Thomas Henry William Alfie Theo Freddie "
    "Archie Joshua James Samuel Rory Callum Euan Dylan Rhys Owen Kieran Mohammed Yusuf Ravi Arjun Kwame Tomasz"
).split()
LAST_NAMES = (
    "Smith Jones Taylor Brown Williams Wilson Johnson Davies Patel Wright Robinson Thompson Evans Walker White "
    "Roberts Green Hall Wood Jackson Clarke Hughes Edwards Turner Hill Moore Cooper Ward Morris King Watson "
    "Harrison Morgan Baker Young Allen Mitchell Anderson Campbell MacDonald Stewart Murray Reid Fraser Kaur Khan "
    "Begum Hussain Ahmed Singh Okafor Mensah Kowalski Nowak O'Brien Murphy Kelly Byrne Quinn Pritchard Llewellyn"
).split()
TOWNS = (
    "London", "Manchester", "Birmingham", "Leeds", "Glasgow", "Bristol", "Cardiff", "Edinburgh", "Sheffield",
    "Nottingham", "Leicester", "Brighton", "Norwich", "York", "Exeter", "Belfast", "Newcastle upon Tyne",
    "Southampton", "Liverpool", "Aberdeen", "Oxford", "Cambridge", "Plymouth", "Swansea", "Derby", "Inverness",
    "Bath", "Reading", "Hull", "Dundee",
)
MASTODON_INSTANCES = ("", "", "mastodon.online", "mas.to", "toot.community", "mstdn.social", "mastodon.scot")

#: (name, price GBP) per catalogue; brand i uses catalogue i % 2.
CATALOGUES: tuple[tuple[tuple[str, float], ...], ...] = (
    (
        ("linen duvet cover", 79.0), ("stoneware mug set", 28.0), ("ochre wool throw", 65.0),
        ("rattan lamp shade", 45.0), ("oak serving board", 32.0), ("velvet cushion cover", 18.0),
        ("ceramic table lamp", 89.0), ("glass carafe", 22.0), ("waffle bath towel", 24.0), ("jute rug", 149.0),
        ("cast-iron casserole dish", 120.0), ("linen tea towels", 16.0), ("marble coasters", 19.0),
        ("bamboo bedding set", 135.0), ("wall mirror", 95.0),
    ),
    (
        ("trail running shoes", 110.0), ("two-person tent", 249.0), ("down jacket", 185.0),
        ("merino base layer", 55.0), ("pair of walking poles", 45.0), ("head torch", 35.0),
        ("three-season sleeping bag", 140.0), ("waterproof overtrousers", 70.0), ("insulated flask", 28.0),
        ("daypack", 80.0), ("hiking boots", 150.0), ("fleece midlayer", 60.0), ("camping stove", 48.0),
        ("wool hiking socks", 18.0), ("waterproof jacket", 165.0),
    ),
)
WAREHOUSES = ("Wakefield", "Kendal", "Milton Keynes", "Swindon")
SERVICES = (("Next day", 1), ("Standard", 3), ("Standard", 3), ("Economy", 5))

#: Shipment stories and how often they happen. Trouble is over-represented: the demo
#: is there to show how the console handles it.
SCENARIOS: tuple[tuple[str, float], ...] = (
    ("normal", 0.55), ("late", 0.09), ("failed", 0.09), ("failed_twice", 0.05), ("stuck", 0.06),
    ("damaged", 0.03), ("address", 0.03), ("arrived_damaged", 0.04),
    ("not_received", 0.03), ("wrong_item", 0.03),
)

# --------------------------------------------------------------- courier wording
_GENERIC = {
    "hubs": ("National Hub",),
    "label": "Shipping label created; we have not received the parcel yet",
    "collected": "Parcel collected from the sender",
    "hub": "Arrived at hub",
    "delayed": "Delayed: your parcel is running late",
    "depot": "Arrived at local depot",
    "ofd": "Out for delivery",
    "failed": "We tried to deliver your parcel but nobody was in",
    "held": "Held at local depot for collection",
    "damaged": "Parcel damaged in transit; the sender has been told",
    "address": "Unable to deliver: address issue",
    "delivered": ("Delivered", "Delivered to safe place", "Delivered to neighbour"),
    "returned": "Returned to sender",
}
COURIER_WORDING: dict[str, dict[str, Any]] = {
    "ups": {
        "hubs": ("Tamworth", "Heathrow", "Bellshill"),
        "label": "Shipper created a label, UPS has not received the package yet.",
        "collected": "Pickup Scan",
        "hub": "Arrived at Facility",
        "delayed": "The package was missed at a UPS facility. We're adjusting plans to deliver your package as quickly as possible.",
        "depot": "Arrived at Facility",
        "ofd": "Out For Delivery Today",
        "failed": "The receiver was not available for delivery. We'll make a second attempt the next business day.",
        "held": "Held at a UPS Access Point for collection.",
        "damaged": "Damage reported. The sender has been notified.",
        "address": "The address is incorrect. UPS is attempting to update this address.",
        "delivered": ("Delivered. Left at: Front Door", "Delivered. Received by: {surname}", "Delivered. Left with neighbour"),
        "returned": "Returning to Sender: The package will be returned to the shipper.",
    },
    "dpd": {
        "hubs": ("Hinckley Hub", "Oldbury Hub"),
        "label": "We've received your parcel information from {brand}",
        "collected": "Your parcel has been collected from {brand}",
        "hub": "Your parcel is at the DPD hub",
        "delayed": "We're sorry, your parcel is delayed. We'll have it with you as soon as possible",
        "depot": "Your parcel is at your local DPD depot",
        "ofd": "Out for delivery with {driver}. Your 1-hour window is {window}",
        "failed": "Sorry we missed you. We'll try to deliver your parcel again on the next working day",
        "held": "Your parcel is at the DPD Pickup shop for collection",
        "damaged": "Your parcel has been damaged in transit. We're in touch with {brand}",
        "address": "We're unable to deliver your parcel due to an address issue",
        "delivered": (
            "Your parcel has been delivered and received by {surname}",
            "Your parcel has been delivered to your safe place (porch)",
            "Your parcel has been delivered to your neighbour",
        ),
        "returned": "Your parcel is being returned to {brand}",
    },
    "evri": {
        "hubs": ("Barnsley Hub", "Rugby Hub", "Crick"),
        "label": "We've got your parcel details from {brand}",
        "collected": "Your parcel is with us - it's been collected from {brand}",
        "hub": "Your parcel is at our hub",
        "delayed": "Your parcel is running a little late. We'll get it to you as soon as we can",
        "depot": "Your parcel is at your local depot",
        "ofd": "Your courier has your parcel and is out delivering it today",
        "failed": "Sorry we missed you - your courier tried to deliver your parcel. We'll try again on the next working day",
        "held": "Your parcel is at your local ParcelShop for collection",
        "damaged": "Your parcel has been damaged in our network. We've let {brand} know",
        "address": "We couldn't deliver your parcel because of an address query",
        "delivered": (
            "Your parcel was delivered and left in your safe place",
            "Your parcel was delivered and handed to you",
            "Your parcel was delivered to your neighbour",
        ),
        "returned": "Your parcel is on its way back to {brand}",
    },
    "royal_mail": {
        "hubs": ("Warrington Mail Centre", "Princess Royal Distribution Centre", "Glasgow Mail Centre"),
        "label": "Sender preparing item",
        "collected": "Item received",
        "hub": "Item received at Mail Centre",
        "delayed": "Delayed: we're sorry, your item is taking longer than expected",
        "depot": "Item received at your local Delivery Office",
        "ofd": "Your item is out for delivery",
        "failed": "Sorry we missed you. We tried to deliver your item; a 'Something for You' card has been left",
        "held": "Item held at your local Delivery Office for collection",
        "damaged": "Item damaged in transit. We're contacting the sender",
        "address": "We're unable to deliver your item due to an incomplete address",
        "delivered": ("Delivered", "Delivered and signed for by {surname}", "Delivered to safe place: porch"),
        "returned": "Item being returned to sender",
    },
}
DRIVERS = ("Dave", "Marek", "Shaz", "Kev", "Tomas", "Jas", "Lee", "Bogdan")

# ------------------------------------------------------------------- post wording
#: What a customer writes, by what their shipment's tracking shows when they write.
TOPIC_POSTS: dict[str, tuple[str, ...]] = {
    "wismo": (
        "where's my order? Placed it on {weekday} and the tracking just says in transit.",
        "any idea when my {item} will turn up? Tracking hasn't told me much.",
        "is my order on its way? Need it for the weekend.",
        "hi, when will my parcel arrive? Can't see a delivery date anywhere.",
        "ordered a {item} on {weekday}, no sign of it yet. Where is it?",
    ),
    "late": (
        "my {item} was promised for {promised} and it's still not here. Not impressed.",
        "order is late. It was meant to arrive {promised}. I paid for {service} delivery!",
        "{late_days} days late now and not a word from anyone. Where is my order?",
        "still waiting for my delivery, it was due {promised}. This is the second time.",
    ),
    "failed": (
        "{courier} driver never knocked, just left a card saying I was out. I was in ALL day.",
        "apparently 'we missed you'. I was sat by the door. The driver never knocked!!",
        "missed delivery card but the doorbell never rang. Can you rebook my parcel please?",
        "{courier} claim they tried to deliver today. Nobody came to the door. Absolute joke.",
    ),
    "failed_twice": (
        "second failed delivery in two days. The {courier} driver never even knocked. I want my parcel!",
        "twice now {courier} have 'tried' to deliver while I was home. Nobody knocked either time.",
    ),
    "stuck": (
        "I think {courier} have lost my parcel. {stalled} days at {hub} and nothing since.",
        "my parcel is missing. It has sat at the {courier} hub since {weekday}, has it been lost?",
        "parcel lost? Tracking hasn't moved for {stalled} days. I think it has been lost.",
    ),
    "damaged": (
        "parcel damaged in transit, according to {courier}. What happens now? I need that {item}.",
        "{courier} have damaged my parcel. Can you send a replacement {item} please?",
    ),
    "address": (
        "{courier} couldn't find my address apparently. Same address I always use! Please sort my parcel out.",
        "parcel not delivered because of an 'address issue'. The driver just couldn't find the house. It's not hard!",
    ),
    "returned": (
        "my parcel has been returned to the sender and I never had a chance to collect it. I still want it!",
        "{courier} sent my {item} back to the sender without trying again. Resend or refund please.",
    ),
    "arrived_damaged": (
        "my {item} arrived smashed, box completely crushed. Really disappointed.",
        "opened the parcel and the {item} is broken. Packaging was soaked through.",
        "{item} arrived damaged. Do I need to send it back for a replacement?",
    ),
    "wrong_item": (
        "I ordered a {item} and got something completely different. Wrong item!",
        "wrong item in my parcel. Not what I ordered at all. How do I return it?",
    ),
    "not_received": (
        "says delivered but there's nothing here. Not with the neighbours either.",
        "{courier} says it was delivered to my safe place. What safe place? Never arrived, and the photo isn't even my door.",
        "marked as delivered yesterday, never received it. Missing parcel, please help.",
    ),
    "late_arrived": (
        "finally arrived, {late_days} days late. Lovely {item} though.",
    ),
    "praise": (
        "{item} arrived a day early and it's gorgeous. Thank you!",
        "great service, parcel came this morning. Lovely quality, thanks!",
        "really impressed with the packaging, and the {courier} driver was lovely. Thank you!",
        "love my new {item}, quick delivery too. Will order again!",
    ),
}
GENERAL_POSTS: tuple[str, ...] = (
    "can I change the delivery address on an order I placed this morning?",
    "how do I return a {item} that doesn't fit?",
    "is the {item} coming back in stock any time soon?",
    "I've been charged twice for my order. Can someone look into this please?",
    "can't log in to my account, the password reset email never arrives.",
    "do you deliver to Jersey?",
    "three emails to customer service and no reply. Is anyone there?",
    "I'd like a refund for my {item}, it's not what I expected.",
)
UNKNOWN_POSTS: tuple[str, ...] = (
    "worst customer service ever, waited an hour on the phone and gave up.",
    "is anyone else's {brand} order stuck with {courier}? Mine hasn't moved in days.",
    "{courier} have lost my parcel AGAIN. Never again.",
    "do you do gift wrapping? Buying a {item} for my sister.",
    "thinking about buying a {item} from {brand}, any good?",
    "still waiting for a refund from {brand} after two weeks. Not good enough.",
)
FOLLOW_UPS_WAITING: tuple[str, ...] = (
    "still nothing. It's been {days_since} days now.",
    "DM sent. Any update?",
    "any news? This is getting ridiculous.",
    "still waiting on a proper answer...",
    "hello?? Still no parcel and no reply to my DM.",
)
FOLLOW_UPS_RESOLVED: tuple[str, ...] = (
    "it's arrived now, thanks for sorting it!",
    "all sorted, parcel turned up today. Thank you.",
)
REPLIES: dict[str, tuple[str, ...]] = {
    "wismo": (
        "Hi {first}, thanks for getting in touch. Your parcel is with {courier}; DM us your order number and we'll check the latest for you. ^{agent}",
    ),
    "late": (
        "Sorry for the wait, {first}. We've chased {courier} and will DM you as soon as we hear back. ^{agent}",
        "That's not good enough, {first}, sorry. Please DM us your order number and we'll look into it now. ^{agent}",
    ),
    "failed": (
        "That's really frustrating, {first}, sorry. We've raised it with {courier} and asked them to rebook the delivery. We'll keep you posted by DM. ^{agent}",
    ),
    "stuck": (
        "Sorry {first}, that's not the service we want for you. We've opened an investigation with {courier}; if there's no movement in 48 hours we'll send a replacement. ^{agent}",
    ),
    "damaged": ("Oh no, sorry {first}! Please DM us a photo and we'll get a replacement out straight away. ^{agent}",),
    "address": ("Hi {first}, sorry about this. Please DM us your full address and we'll update it with {courier}. ^{agent}",),
    "returned": ("Sorry {first}. When it's back with us we'll refund or resend, whichever you prefer. Just DM us. ^{agent}",),
    "not_received": (
        "Sorry {first}, that's worrying. We've asked {courier} for the delivery photo and GPS; DM us and we'll sort it either way. ^{agent}",
    ),
    "praise": ("Thank you so much, {first}! Enjoy it. ^{agent}", "That's lovely to hear, {first}, thank you! ^{agent}"),
    "general": ("Hi {first}, happy to help. Send us a DM and we'll take a look. ^{agent}",),
}
REPLY_TOPIC = {
    "failed_twice": "failed", "arrived_damaged": "damaged", "wrong_item": "damaged", "late_arrived": "praise",
}
NOISE_POSTS: tuple[str, ...] = (
    "larkspur is my favourite flower, planting some along the fence this weekend",
    "the fettle on that old bike of mine is shocking, needs a proper clean",
    "GET 10,000 FOLLOWERS FAST!!! DM us now, works for brands like {brand} too",
    "Crypto giveaway: send 0.1 BTC, get 1 BTC back! {brand} fans only, limited time",
    "Win a free {item}!! Just click the link in our bio. Not affiliated with {brand}",
    "anyone watching the match tonight? {brand} should sponsor our five-a-side team",
)
#: Posts that exercise escaping in every view: they must be shown as text, never run.
HOSTILE_POSTS: tuple[str, ...] = ("<script>alert(1)</script> @{handle}", "![img](http://x) @{handle} look at this")


# ------------------------------------------------------------------ generated data
@dataclass
class _Person:
    customer: Customer | None
    name: str
    town: str
    followers: int
    handles: dict[str, str] = field(default_factory=dict)
    ids: dict[str, str] = field(default_factory=dict)


@dataclass
class _Parcel:
    """A shipment together with the story behind it, so posts about it can match its tracking."""

    order: Order
    shipment: Shipment
    person: _Person
    brand: Brand
    courier: Courier
    scenario: str
    item: str
    hub: str


@dataclass
class _Story:
    parcel: _Parcel
    topic: str
    at: datetime


class _Generator:
    def __init__(self, config: Config, seed: int, now: datetime):
        if not config.brands or not any(c.tracking_formats for c in config.couriers):
            raise ConfigError("the demo needs at least one [[brands]] entry and one [[couriers]] entry with tracking_formats")
        self.config = config
        self.rng = random.Random(seed)
        self.now = now
        self.tz = ZoneInfo(config.timezone)
        self.couriers = [c for c in config.couriers if c.tracking_formats]
        self.people: list[_Person] = []
        self.parcels: list[_Parcel] = []
        self.orders: list[Order] = []
        self._used_ids: set[str] = set()
        self._used_handles: set[tuple[str, str]] = set()

    # ------------------------------------------------------------ helpers
    def _local(self, moment: datetime, hour: float) -> datetime:
        """The first moment after ``moment`` when the shop's local clock shows ``hour`` (skipping Sundays)."""
        day = moment.astimezone(self.tz).date()
        for _ in range(10):
            candidate = datetime(day.year, day.month, day.day, tzinfo=self.tz) + timedelta(hours=hour)
            candidate = candidate.astimezone(timezone.utc)
            if candidate > moment and day.weekday() != 6:
                return candidate
            day += timedelta(days=1)
        raise AssertionError("no delivery day found")  # pragma: no cover

    def _recent_time(self, days: float, bias: float = 1.0) -> datetime:
        """A time in the last ``days`` days, mostly in waking hours (local), ``bias`` > 1 favours recent."""
        rng = self.rng
        back = days * rng.random() ** bias
        moment = self.now - timedelta(days=back)
        moment = self.awake(moment)
        return min(moment, self.now - timedelta(minutes=rng.randint(3, 50))).replace(microsecond=0)

    def awake(self, moment: datetime) -> datetime:
        """Move a post or reply written in the small hours to the next morning (if that is not in the future)."""
        local = moment.astimezone(self.tz)
        if local.hour >= 7:
            return moment
        morning = local.replace(hour=7, minute=0, second=0) + timedelta(minutes=self.rng.uniform(0, 600))
        morning = morning.astimezone(timezone.utc).replace(microsecond=0)
        return morning if morning <= self.now - timedelta(minutes=5) else moment

    def _unique(self, make: Any) -> str:
        for _ in range(1000):
            value = make()
            if value not in self._used_ids:
                self._used_ids.add(value)
                return value
        raise AssertionError("could not make a unique id")  # pragma: no cover

    def _handle_base(self, first: str, last: str) -> str:
        rng = self.rng
        first, last = first.lower(), "".join(c for c in last.lower() if c.isalpha())
        style = rng.randrange(5)
        if style == 0:
            base = f"{first}{last}"
        elif style == 1:
            base = f"{first}_{last[: rng.randint(1, len(last))]}"
        elif style == 2:
            base = f"{first[0]}{last}{rng.randint(1, 99)}"
        elif style == 3:
            base = f"{first}{rng.randint(70, 99)}"
        else:
            base = f"{rng.choice(['the', 'its', 'hey', 'mrs', 'mr', 'real'])}{first}{last[0]}"
        return base

    def _make_handles(self, first: str, last: str, share: tuple[float, float, float]) -> tuple[dict[str, str], dict[str, str]]:
        rng = self.rng
        handles: dict[str, str] = {}
        ids: dict[str, str] = {}
        base = self._handle_base(first, last)
        for channel, p in zip(SOCIAL_CHANNELS, share):
            if rng.random() >= p:
                continue
            for attempt in range(20):
                name = base if attempt == 0 else f"{base}{rng.randint(2, 999)}"
                if channel == "mastodon":
                    instance = rng.choice(MASTODON_INSTANCES)
                    name = f"{name}@{instance}" if instance else name
                elif channel == "bluesky":
                    name = f"{name.replace('_', '-')}.bsky.social"
                if (channel, name.lower()) not in self._used_handles:
                    self._used_handles.add((channel, name.lower()))
                    handles[channel] = name
                    break
            if channel in handles:
                if channel == "bluesky":
                    ids[channel] = "did:plc:" + "".join(rng.choice("abcdefghijklmnopqrstuvwxyz234567") for _ in range(24))
                else:
                    ids[channel] = str(rng.randint(10**8, 10**18))
        return handles, ids

    # ------------------------------------------------------------ people
    def make_people(self, n: int) -> list[Customer]:
        rng = self.rng
        customers = []
        for i in range(n):
            first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
            handles, ids = self._make_handles(first, last, (0.8, 0.3, 0.3))
            followers = int(rng.lognormvariate(5.0, 1.2))
            if rng.random() < 0.015:
                followers = rng.randint(12_000, 95_000)
            opt_out: list[str] = []
            if rng.random() < 0.06:
                opt_out = sorted(rng.sample(["email", "sms", "x", "phone"], rng.randint(1, 2)))
            local = "".join(c for c in f"{first}.{last}".lower() if c.isalpha() or c == ".")
            customer = Customer(
                id=f"C{i + 1:05d}",
                name=f"{first} {last}",
                email=f"{local}{rng.randint(1, 99)}@{rng.choice(['example.com', 'example.org', 'example.net'])}",
                phone=f"+44 7700 900{rng.randint(0, 999):03d}" if rng.random() < 0.8 else None,
                handles=handles,
                vip=rng.random() < 0.03,
                opt_out=opt_out,
            )
            customers.append(customer)
            self.people.append(_Person(customer, customer.name, rng.choice(TOWNS), followers, handles, ids))
        return customers

    def make_stranger(self) -> _Person:
        rng = self.rng
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        handles, ids = self._make_handles(first, last, (0.7, 0.2, 0.2))
        if not handles:
            handles, ids = self._make_handles(first, last, (1.0, 0.0, 0.0))
        followers = int(rng.lognormvariate(5.5, 1.4))
        return _Person(None, f"{first} {last}", rng.choice(TOWNS), followers, handles, ids)

    # ------------------------------------------------------------ orders
    def make_orders(self, n: int) -> list[Order]:
        rng, tz = self.rng, self.tz
        # A few loyal customers order often; most order once or twice.
        cumulative = list(itertools.accumulate(rng.paretovariate(1.6) for _ in self.people))
        drafts = []
        for _ in range(n):
            day_back = rng.uniform(0, 42)
            moment = self.now - timedelta(days=day_back)
            local = moment.astimezone(tz)
            hour = rng.choices(range(24), weights=[1, 1, 1, 1, 1, 1, 2, 4, 6, 7, 8, 8, 9, 9, 8, 8, 8, 9, 10, 12, 13, 12, 8, 4])[0]
            placed = local.replace(hour=hour, minute=rng.randrange(60), second=rng.randrange(60)).astimezone(timezone.utc)
            if placed > self.now - timedelta(hours=2):
                placed -= timedelta(hours=rng.uniform(3, 8))
            person = rng.choices(self.people, cum_weights=cumulative)[0]
            brand_index = 0 if len(self.config.brands) == 1 or rng.random() < 0.58 else rng.randrange(1, len(self.config.brands))
            drafts.append((placed, person, brand_index))
        drafts.sort(key=lambda d: d[0])
        serial = [0] * len(self.config.brands)
        for drafted, person, brand_index in drafts:
            placed = self._before_now(drafted)
            brand = self.config.brands[brand_index]
            serial[brand_index] += 1
            if brand_index % 2 == 0:
                number = str(100_000 + 100_000 * (brand_index // 2) + 4_200 + serial[brand_index])
            else:
                number = f"ORD-{placed.astimezone(tz).year}-{400 * brand_index + serial[brand_index]:06d}"
            self.orders.append(self._order(number, placed, person, brand, brand_index, drafted))
        # The biggest spenders are VIPs (besides the few the random draw made VIP).
        spend: dict[str, float] = {}
        for order in self.orders:
            spend[order.customer_id] = spend.get(order.customer_id, 0.0) + order.total
        for person in sorted((p for p in self.people if p.customer), key=lambda p: -spend.get(p.customer.id, 0.0))[
            : max(1, len(self.people) // 50)
        ]:
            person.customer.vip = True
        return self.orders

    def _before_now(self, drafted: datetime) -> datetime:
        """When a drafted order was placed: a draft for later tonight (its hour drawn later than now) is
        placed at the same hour on an earlier day, so no order is placed in the future, nor after its
        parcel's first scan (at most half an hour before now)."""
        placed = drafted
        while placed > self.now - timedelta(hours=1):
            placed -= timedelta(days=1)
        return placed

    def _order(self, number: str, placed: datetime, person: _Person, brand: Brand, brand_index: int,
               drafted: datetime | None = None) -> Order:
        """An order and its parcels. ``drafted``: when it was drafted, where :meth:`_before_now` placed it
        earlier; its parcels are scanned as for the draft (no earlier than the order, since the first scan
        is at most now), and drafts keep their place in the queue, so the same seed still builds the same
        shop around them (its parcels, posts and cases)."""
        dispatched = drafted or placed
        rng = self.rng
        catalogue = CATALOGUES[brand_index % len(CATALOGUES)]
        lines = []
        for name, price in rng.sample(catalogue, rng.choices([1, 2, 3, 4], weights=[50, 28, 14, 8])[0]):
            qty = rng.choices([1, 2, 3], weights=[85, 12, 3])[0]
            sku = f"{brand.name[:2].upper()}-{abs(hash_text(name)) % 100000:05d}"
            lines.append({"sku": sku, "name": name, "qty": qty, "price": price})
        subtotal = sum(line["qty"] * line["price"] for line in lines)
        shipping = 0.0 if subtotal >= 50 else 3.95
        service, days = rng.choice(SERVICES)
        promised = placed.astimezone(self.tz).date() + timedelta(days=days)
        if promised.weekday() == 6:
            promised += timedelta(days=1)
        scenario = rng.choices([s for s, _ in SCENARIOS], weights=[w for _, w in SCENARIOS])[0]
        courier = rng.choice(self.couriers)
        parcels = [self._shipment(number, dispatched, person, brand, courier, scenario, lines[0]["name"], service)]
        if len(lines) > 1 and rng.random() < 0.15:
            # Split order: the second box goes separately and (nearly always) arrives fine.
            second = rng.choice(self.couriers)
            parcels.append(
                self._shipment(number, dispatched + timedelta(hours=rng.uniform(20, 50)), person, brand, second,
                               "normal", lines[-1]["name"], "Standard")
            )
        shipments = [p.shipment for p in parcels]
        statuses = {s.status for s in shipments}
        status = "returned" if "returned" in statuses else "delivered" if statuses == {"delivered"} else "shipped"
        order = Order(
            number=number,
            customer_id=person.customer.id if person.customer else "",
            placed_at=placed,
            brand=brand.name,
            items=lines,
            total=round(subtotal + shipping, 2),
            currency="GBP",
            promised_date=promised,
            status=status,
            shipments=shipments,
        )
        for parcel in parcels:
            parcel.order = order
            self.parcels.append(parcel)
        return order

    def _shipment(self, number: str, placed: datetime, person: _Person, brand: Brand, courier: Courier, scenario: str,
                  item: str, service: str) -> _Parcel:
        rng = self.rng
        fmt = courier.tracking_formats[0]
        tracking = self._unique(lambda: make_tracking_number(fmt, rng))
        wording = COURIER_WORDING.get(fmt, _GENERIC)
        hub = rng.choice(wording["hubs"])
        warehouse = WAREHOUSES[self.config.brands.index(brand) % len(WAREHOUSES)]
        surname = person.name.split()[-1].upper()

        def say(key: str) -> str:
            text = rng.choice(wording[key]) if isinstance(wording[key], tuple) else wording[key]
            start = rng.randint(8, 18)
            return text.format(
                brand=brand.name, surname=surname, driver=rng.choice(DRIVERS),
                window=f"{start:02d}:{rng.choice([0, 15, 30, 45]):02d} - {start + 1:02d}:00",
            )

        steps: list[tuple[datetime, str, str | None, str]] = []
        t = min(placed + timedelta(minutes=rng.randint(20, 240)), self.now - timedelta(minutes=rng.randint(5, 30)))
        steps.append((t, "info_received", None, say("label")))
        t = self._local(t, rng.uniform(17.5, 20.5))
        steps.append((t, "in_transit", warehouse, say("collected")))
        t += timedelta(hours=rng.uniform(2, 6))
        steps.append((t, "in_transit", hub, say("hub")))
        if scenario == "late":
            t += timedelta(hours=rng.uniform(30, 70))
            steps.append((t, "in_transit", hub, say("delayed")))
        if scenario == "stuck":
            pass  # the parcel never leaves the hub: no scan after this one
        elif scenario == "damaged":
            t += timedelta(hours=rng.uniform(3, 20))
            steps.append((t, "exception", hub, say("damaged")))
            if rng.random() < 0.4:
                steps.append((t + timedelta(days=rng.uniform(2, 4)), "returned", hub, say("returned")))
        else:
            t += timedelta(hours=rng.uniform(2, 6))
            steps.append((t, "in_transit", f"{person.town} depot", say("depot")))
            t = self._local(t, rng.uniform(6.5, 8.5))
            steps.append((t, "out_for_delivery", person.town, say("ofd")))
            if scenario == "address":
                t += timedelta(hours=rng.uniform(2, 8))
                steps.append((t, "exception", person.town, say("address")))
                if rng.random() < 0.4:
                    steps.append((t + timedelta(days=rng.uniform(3, 6)), "returned", f"{person.town} depot", say("returned")))
            elif scenario in ("failed", "failed_twice"):
                t += timedelta(hours=rng.uniform(2, 9))
                steps.append((t, "attempt_failed", person.town, say("failed")))
                if scenario == "failed":
                    t = self._local(t, rng.uniform(6.5, 8.5))
                    steps.append((t, "out_for_delivery", person.town, say("ofd")))
                    t += timedelta(hours=rng.uniform(1.5, 9))
                    steps.append((t, "delivered", person.town, say("delivered")))
                else:
                    t = self._local(t, rng.uniform(6.5, 8.5))
                    steps.append((t, "out_for_delivery", person.town, say("ofd")))
                    t += timedelta(hours=rng.uniform(2, 9))
                    steps.append((t, "attempt_failed", person.town, say("failed")))
                    # Missed twice: held for collection for a week, then back to the sender.
                    t += timedelta(hours=rng.uniform(12, 20))
                    steps.append((t, "in_transit", f"{person.town} depot", say("held")))
                    t += timedelta(days=rng.uniform(5, 7))
                    steps.append((t, "returned", f"{person.town} depot", say("returned")))
            else:
                t += timedelta(hours=rng.uniform(1.5, 10))
                steps.append((t, "delivered", person.town, say("delivered")))
        events = [
            TrackingEvent(tracking_number=tracking, time=moment.replace(microsecond=0), status=status, location=where,
                          description=text)
            for moment, status, where, text in steps
            if moment <= self.now
        ]
        shipment = Shipment(
            tracking_number=tracking,
            order_number=number,
            courier=courier.name,
            service=service,
            status=events[-1].status if events else None,
            events=events,
        )
        placeholder = Order(number=number, customer_id="", placed_at=placed)
        return _Parcel(placeholder, shipment, person, brand, courier, scenario, item, hub)

    # ------------------------------------------------------------ stories
    def stories(self, days: float) -> tuple[list[_Story], list[_Story], list[_Story]]:
        """(trouble, where-is-it, praise) moments in the last ``days`` days someone could post about."""
        trouble: list[_Story] = []
        wismo: list[_Story] = []
        praise: list[_Story] = []
        start = self.now - timedelta(days=days)
        rng = self.rng
        for parcel in self.parcels:
            events = parcel.shipment.events
            if not events or parcel.person.customer is None:
                continue
            topic, hook = self._hook(parcel)
            delay = timedelta(hours=rng.uniform(0.3, 20) if topic != "praise" else rng.uniform(1, 30))
            at = hook + delay
            if at > self.now - timedelta(minutes=5):
                # They have not written yet. (Squeezing them into the last hours made the last
                # day look like an outage of its own, at twice the usual volume.)
                continue
            at = self.awake(at)
            if at < start:
                continue
            story = _Story(parcel, topic, at.replace(microsecond=0))
            if topic == "praise":
                if rng.random() < 0.6:
                    praise.append(story)
            elif topic == "wismo":
                wismo.append(story)
            else:
                trouble.append(story)
        return trouble, wismo, praise

    def _hook(self, parcel: _Parcel) -> tuple[str, datetime]:
        events = parcel.shipment.events
        last = events[-1]
        first_of = {}
        for event in events:
            first_of.setdefault(event.status, event)
        scenario = parcel.scenario
        if scenario in ("failed", "failed_twice") and "attempt_failed" in first_of:
            if "returned" in first_of:
                return "returned", first_of["returned"].time
            failures = [e for e in events if e.status == "attempt_failed"]
            return ("failed_twice" if len(failures) > 1 else "failed"), failures[-1].time
        if scenario in ("damaged", "address") and "exception" in first_of:
            return scenario, first_of["exception"].time
        if scenario == "stuck" and last.status == "in_transit":
            stalled = self.now - last.time
            if stalled > timedelta(days=2):
                return "stuck", last.time + timedelta(hours=self.rng.uniform(48, min(96, stalled.total_seconds() / 3600)))
        if last.status == "delivered":
            if scenario in ("arrived_damaged", "not_received", "wrong_item"):
                return scenario, last.time
            promised = parcel.order.promised_date
            if scenario == "late" and promised and last.time.astimezone(self.tz).date() > promised:
                return "late_arrived", last.time
            return "praise", last.time
        promised = parcel.order.promised_date
        if promised:
            due = datetime(promised.year, promised.month, promised.day, 18, tzinfo=self.tz).astimezone(timezone.utc)
            if self.now > due and last.status != "delivered":
                return "late", max(due, last.time)
        return "wismo", last.time


def hash_text(text: str) -> int:
    """A stable hash (``hash()`` of a str changes between runs)."""
    return int(hashlib.sha1(text.encode()).hexdigest()[:12], 16)


# ------------------------------------------------------------------ mention writer
class _Posts:
    """Turns stories into posts, replies and follow-ups on the channels people use."""

    def __init__(self, gen: _Generator):
        self.gen = gen
        self.rng = gen.rng
        self.now = gen.now
        self.mentions: list[Mention] = []
        self._page_serial = 0
        self._known_orders = {o.number for o in gen.orders}

    # ids that look like each network's own
    def _external_id(self, channel: str, person_id: str, at: datetime) -> str:
        rng = self.rng
        ms = int(at.timestamp() * 1000)
        if channel == "x":
            return self.gen._unique(lambda: str(((ms - 1288834974657) << 22) + rng.getrandbits(22)))
        if channel == "mastodon":
            return self.gen._unique(lambda: str((ms << 16) + rng.getrandbits(16)))
        if channel == "bluesky":
            alphabet = "234567abcdefghijklmnopqrstuvwxyz"
            def tid() -> str:
                value = (ms * 1000 + rng.randrange(1000)) << 10 | rng.getrandbits(10)
                return "".join(alphabet[(value >> (5 * i)) & 31] for i in reversed(range(13)))
            return self.gen._unique(lambda: f"at://{person_id}/app.bsky.feed.post/{tid()}")
        self._page_serial += 1
        return f"courier-page-{self._page_serial:06d}"

    def _url(self, channel: str, handle: str, external_id: str) -> str | None:
        if channel == "x":
            return f"https://x.com/{handle}/status/{external_id}"
        if channel == "mastodon":
            user, _, instance = handle.partition("@")
            return f"https://{instance or 'mastodon.social'}/@{user}/{external_id}"
        if channel == "bluesky":
            return f"https://bsky.app/profile/{handle}/post/{external_id.rsplit('/', 1)[-1]}"
        return None

    def post(self, person: _Person, channel: str, text: str, at: datetime, *, story: str,
             order: str | None = None, root: Mention | None = None, parent: Mention | None = None,
             topic: str | None = None) -> Mention:
        handle = person.handles.get(channel)
        author_id = person.ids.get(channel)
        external_id = self._external_id(channel, author_id or "did:plc:unknown", at)
        mention = Mention(
            channel=channel,
            external_id=external_id,
            text=text,
            created_at=at,
            author_id=author_id,
            author_handle=handle,
            author_name=person.name,
            author_followers=person.followers,
            language="en",
            url=self._url(channel, handle, external_id) if handle else None,
            thread_id=root.external_id if root else None,
            in_reply_to=(parent or root).external_id if (parent or root) else None,
            # What the generator meant, so tests and curious agents can check the linking.
            raw={"demo": {"story": story, "order": order, "topic": topic}},
        )
        self.mentions.append(mention)
        return mention

    def reply(self, brand: Brand, root: Mention, parent: Mention, topic: str, first: str, courier: str, at: datetime) -> Mention:
        rng = self.rng
        channel = root.channel
        handle = brand.handles.get(channel, brand.name.replace(" ", ""))
        agent = rng.choice(AGENTS)
        body = rng.choice(REPLIES.get(REPLY_TOPIC.get(topic, topic), REPLIES["general"]))
        text = body.format(first=first, courier=courier, agent=agent)
        if parent.author_handle:
            text = f"@{parent.author_handle} {text}"
        external_id = self._external_id(channel, f"did:plc:{hash_text(brand.name):024x}"[:32], at)
        mention = Mention(
            channel=channel,
            external_id=external_id,
            text=text,
            created_at=at,
            author_id=f"brand-{hash_text(brand.name) % 10**8}",
            author_handle=handle,
            author_name=brand.name,
            author_followers=rng.randint(8_000, 40_000),
            language="en",
            url=self._url(channel, handle, external_id),
            thread_id=root.external_id,
            in_reply_to=parent.external_id,
            outbound=True,
            raw={"demo": {"story": "brand_reply", "agent": agent}},
        )
        self.mentions.append(mention)
        return mention

    # -------------------------------------------------------------- wording
    def _fill(self, template: str, story: _Story | None, brand: Brand, courier: Courier) -> str:
        rng = self.rng
        gen = self.gen
        item = story.parcel.item if story else rng.choice(CATALOGUES[gen.config.brands.index(brand) % 2])[0]
        values: dict[str, Any] = {
            "item": item,
            "brand": brand.name,
            "courier": courier.name,
            "weekday": (story.parcel.order.placed_at if story else self.now - timedelta(days=3)).astimezone(gen.tz).strftime("%A"),
            "service": (story.parcel.shipment.service or "standard").lower() if story else "standard",
            "hub": story.parcel.hub if story else "the depot",
            "promised": "yesterday",
            "late_days": 2,
            "stalled": 3,
        }
        if story:
            promised = story.parcel.order.promised_date
            at_local = story.at.astimezone(gen.tz).date()
            if promised:
                values["promised"] = f"{promised:%A} {promised.day} {promised:%B}" if (at_local - promised).days > 1 else "yesterday"
                values["late_days"] = max(2, (at_local - promised).days)
            events = [e for e in story.parcel.shipment.events if e.time <= story.at]
            if events:
                values["stalled"] = max(2, (story.at - events[-1].time).days)
        return template.format(**values)

    def _address(self, channel: str, brand: Brand, courier: Courier | None = None) -> str:
        """How the post gets our attention: the brand's handle, or its name, sometimes the courier's too."""
        rng = self.rng
        target = f"@{brand.handles[channel]}" if channel in brand.handles and rng.random() < 0.8 else brand.name
        if courier is not None and target.startswith("@") and "x" in courier.handles and rng.random() < 0.3 and channel == "x":
            target += f" @{courier.handles['x']}"
        return target

    @staticmethod
    def _order_ref(order: Order) -> str:
        return f"#{order.number}" if order.number.isdigit() else order.number

    def _compose(self, address: str, body: str, ref: str | None) -> str:
        rng = self.rng
        body = body[0].upper() + body[1:]
        if not address.startswith("@"):
            # No handle: the post names the brand in words or as a hashtag.
            if ref is None and rng.random() < 0.3:
                return f"{body} #{address.replace(' ', '')}"
            body = body[0].lower() + body[1:] if not body.startswith("I ") else body
            address += ","
        if ref is None:
            return f"{address} {body}" if rng.random() < 0.75 or address.endswith(",") else f"{body} {address}"
        style = rng.randrange(4)
        if style == 0:
            return f"{address} {body} Order {ref}"
        if style == 1:
            return f"{address} {ref} - {body}"
        if style == 2:
            return f"{address} {body} ({ref})"
        return f"{body} {address.rstrip(',')} ref {ref}"

    # -------------------------------------------------------------- stories
    def customer_story(self, story: _Story, kind: str, other: Order | None = None) -> int:
        """A customer's post about their parcel, maybe our reply and their follow-up; returns posts written."""
        rng, parcel = self.rng, story.parcel
        person = parcel.person
        channels = [c for c in SOCIAL_CHANNELS if c in person.handles]
        if not channels:
            # Not on social media: they complain on the courier's tracking page instead.
            return self.courier_page(story) if story.topic != "praise" else 0
        channel = channels[0] if rng.random() < 0.7 else rng.choice(channels)
        body = self._fill(rng.choice(TOPIC_POSTS[story.topic]), story, parcel.brand, parcel.courier)
        order_ref: str | None = None
        if kind == "other_order" and other is None:
            kind = "handle_only"
        if kind == "own_order":
            order_ref = self._order_ref(parcel.order)
        elif kind == "own_tracking":
            order_ref = parcel.shipment.tracking_number
        elif kind == "other_order" and other is not None:
            order_ref = self._order_ref(other)
            body = rng.choice(("Ordered this for my mum.", "It's my partner's order.", "Asking for my dad.")) + " " + body
        elif kind == "mistyped":
            order_ref = self._mistype(parcel)
        address = self._address(channel, parcel.brand, parcel.courier)
        text = self._compose(address, body, order_ref)
        quoted = other.number if other is not None else parcel.order.number
        root = self.post(person, channel, text, story.at, story=kind, order=quoted, topic=story.topic)
        written = 1
        written += self._thread(root, person, parcel, story.topic, reply_p=0.5, follow_p=0.4)
        return written

    def _thread(self, root: Mention, person: _Person, parcel: _Parcel | None, topic: str, reply_p: float,
                follow_p: float, brand: Brand | None = None) -> int:
        rng = self.rng
        brand = brand or (parcel.brand if parcel else self.gen.config.brands[0])
        courier = parcel.courier.name if parcel else rng.choice(self.gen.couriers).name
        first = person.name.split()[0]
        written = 0
        reply_at = self.gen.awake(root.created_at + timedelta(minutes=rng.uniform(12, 300)))
        if rng.random() >= reply_p or reply_at > self.now:
            return 0
        ours = self.reply(brand, root, root, topic, first, courier, reply_at.replace(microsecond=0))
        written += 1
        follow_at = self.gen.awake(reply_at + timedelta(hours=rng.uniform(0.5, 30)))
        if rng.random() >= follow_p or follow_at > self.now or topic == "praise":
            return written
        events = [e for e in parcel.shipment.events if e.time <= follow_at] if parcel else []
        settled = bool(events) and events[-1].status == "delivered" and topic not in (
            "arrived_damaged", "wrong_item", "not_received", "damaged")
        days_since = max(2, (follow_at - (parcel.order.placed_at if parcel else root.created_at)).days)
        text = rng.choice(FOLLOW_UPS_RESOLVED if settled else FOLLOW_UPS_WAITING).format(days_since=days_since)
        address = f"@{ours.author_handle}" if root.channel != "webhook" else brand.name
        follow = self.post(person, root.channel, f"{address} {text}", follow_at.replace(microsecond=0),
                           story="follow_up", order=parcel.order.number if parcel else None, root=root, parent=ours)
        written += 1
        second_at = self.gen.awake(follow_at + timedelta(minutes=rng.uniform(10, 240)))
        if not settled and rng.random() < 0.35 and second_at <= self.now:
            self.reply(brand, root, follow, topic, first, courier, second_at.replace(microsecond=0))
            written += 1
        return written

    def _mistype(self, parcel: _Parcel) -> str:
        """A customer's number with one digit wrong that matches no order (or a bad check digit)."""
        rng = self.rng
        if rng.random() < 0.5:
            tracking = parcel.shipment.tracking_number
            for _ in range(20):
                i = len(tracking) - 1 - (2 if tracking[-2:].isalpha() else 0) - rng.randrange(3)
                digit = tracking[i]
                if digit.isdigit():
                    wrong = tracking[:i] + str((int(digit) + rng.randint(1, 9)) % 10) + tracking[i + 1:]
                    if wrong != tracking:
                        return wrong
        number = parcel.order.number
        for _ in range(50):
            i = len(number) - 1 - rng.randrange(3)
            wrong = number[:i] + str((int(number[i]) + rng.randint(1, 9)) % 10) + number[i + 1:]
            if wrong not in self._known_orders:
                return self._order_ref(parcel.order.model_copy(update={"number": wrong}))
        return self._order_ref(parcel.order) + "0"

    def courier_page(self, story: _Story) -> int:
        """A complaint left on the courier's tracking page about one of our parcels, forwarded by webhook."""
        rng, parcel = self.rng, story.parcel
        body = self._fill(rng.choice(TOPIC_POSTS[story.topic]), story, parcel.brand, parcel.courier)
        text = f"[{parcel.courier.name} tracking page] {parcel.brand.name} parcel {parcel.shipment.tracking_number}: {body}"
        page_person = _Person(None, parcel.person.name, parcel.person.town, 0)
        self.post(page_person, COURIER_PAGE_CHANNEL, text, story.at, story="courier_page", order=parcel.order.number,
                  topic=story.topic)
        return 1

    def general(self, person: _Person, at: datetime) -> int:
        rng = self.rng
        channel = rng.choice(list(person.handles)) if person.handles else "x"
        brand = rng.choice(self.gen.config.brands)
        courier = rng.choice(self.gen.couriers)
        body = self._fill(rng.choice(GENERAL_POSTS), None, brand, courier)
        root = self.post(person, channel, self._compose(self._address(channel, brand), body, None), at, story="general")
        return 1 + self._thread(root, person, None, "general", reply_p=0.6, follow_p=0.2, brand=brand)

    def stranger(self, at: datetime) -> int:
        rng = self.rng
        person = self.gen.make_stranger()
        channel = rng.choice(list(person.handles))
        brand = rng.choice(self.gen.config.brands)
        courier = rng.choice(self.gen.couriers)
        body = self._fill(rng.choice(UNKNOWN_POSTS), None, brand, courier)
        address = self._address(channel, brand)
        if rng.random() < 0.25:
            # A stranger quoting an order number we have never issued.
            body += f" Order ORD-{at.year}-9{rng.randrange(10**5):05d}."
        root = self.post(person, channel, self._compose(address, body, None), at, story="unknown")
        return 1 + self._thread(root, person, None, "general", reply_p=0.4, follow_p=0.2, brand=brand)

    def noise(self, at: datetime, text: str | None = None) -> int:
        rng = self.rng
        person = self.gen.make_stranger()
        channel = rng.choice(list(person.handles))
        brand = rng.choice(self.gen.config.brands)
        if text is None:
            text = self._fill(rng.choice(NOISE_POSTS), None, brand, rng.choice(self.gen.couriers))
        self.post(person, channel, text, at, story="noise")
        return 1


# --------------------------------------------------------------------- building
def resolve_config_path(config_path: str | os.PathLike[str] | None = None) -> Path:
    """The demo's config: the one given, else ``$DOORSTEP_CONFIG``, else ``demo/doorstep.toml`` in the repo."""
    chosen = config_path or os.environ.get("DOORSTEP_CONFIG")
    if chosen:
        path = Path(chosen)
        if not path.exists() and not path.is_absolute() and (REPO_ROOT / path).exists():
            path = REPO_ROOT / path
        return path
    return DEFAULT_CONFIG


def _remove_database(db_path: str) -> None:
    remove_database(db_path)


def _mentions(gen: _Generator, total: int, days: float | None = None) -> list[Mention]:
    """About ``total`` posts (exactly ``total`` when it is at least 2) over the last ``days`` days.

    ``days`` defaults to about 40 posts a day, at most :data:`DEMO_DAYS` (the full demo's three
    weeks) and at least a day and a half, so a small demo (tests) is a busy day or two, not a quiet month.
    """
    rng = gen.rng
    posts = _Posts(gen)
    if total <= 0:
        return []
    if days is None:
        days = min(DEMO_DAYS, max(1.5, total / 40))
    trouble, wismo, praise = gen.stories(days)
    pools = {"trouble": trouble, "wismo": wismo, "praise": praise}
    for pool in pools.values():
        rng.shuffle(pool)
    cursors = {name: 0 for name in pools}

    def draw(name: str) -> _Story | None:
        """The next unused story; each parcel is posted about once (later contact goes in its thread)."""
        for pool_name in (name, "trouble", "wismo") if name != "praise" else (name,):
            pool = pools[pool_name]
            if cursors[pool_name] < len(pool):
                cursors[pool_name] += 1
                return pool[cursors[pool_name] - 1]
        return None

    # An order someone else quotes is one nobody posts about themselves: otherwise the two
    # posts would meet in one case and the test of "not confirmed" would test the merge instead.
    borrowed: set[str] = {story.parcel.order.number for pool in pools.values() for story in pool}
    with_handles = [p for p in gen.people if p.handles]

    def someone_elses_order(exclude: str) -> Order | None:
        for _ in range(30):
            order = rng.choice(gen.orders)
            if order.customer_id != exclude and order.number not in borrowed:
                borrowed.add(order.number)
                return order
        return None

    kinds = (
        ("own_order", 15), ("own_tracking", 10), ("handle_only", 22), ("mistyped", 3), ("other_order", 2),
        ("courier_page", 6), ("praise", 9), ("general", 6), ("unknown", 10), ("noise", 5),
    )
    reserved = min(2, total)  # the two hostile posts, always present
    # Every kind of post once first, so even a tiny demo shows each of them.
    first_round = [k for k, _ in kinds]
    written = misses = 0
    while written < total - reserved:
        if first_round:
            kind = first_round.pop(0)
        else:
            kind = rng.choices([k for k, _ in kinds], weights=[w for _, w in kinds])[0]
        left = total - reserved - written
        if left < 4 and kind not in ("noise", "courier_page"):
            kind = "noise"  # single posts fill the tail so the total comes out exact
        elif misses > 50 and kind not in ("noise", "courier_page", "unknown", "general"):
            kind = rng.choice(("unknown", "general"))  # every parcel story is told: people write about other things
        if kind in ("own_order", "own_tracking", "handle_only", "mistyped", "other_order"):
            story = draw("trouble" if rng.random() < 0.78 else "wismo")
            if story is None:
                misses += 1
                continue
            other = someone_elses_order(story.parcel.order.customer_id) if kind == "other_order" else None
            added = posts.customer_story(story, kind, other)
            misses += added == 0
            written += added
        elif kind == "courier_page":
            story = draw("trouble")
            if story is None:
                kind = "noise"
            else:
                written += posts.courier_page(story)
                continue
        elif kind == "praise":
            story = draw("praise")
            if story is None:
                misses += 1
                continue
            added = posts.customer_story(story, "praise")
            misses += added == 0
            written += added
        elif kind == "general":
            if not with_handles:
                misses += 1
                continue
            written += posts.general(rng.choice(with_handles), gen._recent_time(days))
        elif kind == "unknown":
            written += posts.stranger(gen._recent_time(days))
        if kind == "noise":
            written += posts.noise(gen._recent_time(days, 1.0))
    for template in HOSTILE_POSTS[:reserved]:
        brand = rng.choice(gen.config.brands)
        posts.noise(gen._recent_time(days, 1.5), template.format(handle=brand.handles.get("x", brand.name)))
    mentions = posts.mentions
    # Threads can overshoot by a post or two; drop the newest stand-alone posts to land on the total.
    while len(mentions) > total:
        index = next((i for i in range(len(mentions) - 1, -1, -1)
                      if mentions[i].raw and mentions[i].raw["demo"]["story"] == "noise"
                      and "<" not in mentions[i].text and "![" not in mentions[i].text), None)
        if index is None:
            break
        mentions.pop(index)
    mentions.sort(key=lambda m: (m.created_at, m.channel, m.external_id))
    return mentions


def _settle_cases(store: Store, rng: random.Random, now: datetime, config: Config) -> None:
    """Give older cases the state a team that keeps up would have left them in.

    Nearly every case is answered within its first-response SLA (publicly or by DM) and
    resolved before its resolution SLA once the customer's last word is in; a few slip, so the
    SLA views have something to show. Cases waiting on the customer are pending, praise and
    chatter are closed, and every open case has an owner from the care team.

    The team's pace is in calendar time (the band's first-response minutes; three calendar
    minutes per resolution minute, since a working day of 8 hours passes in at most 24), not in
    the business-hours deadlines, so moving the shop to another weekday changes its deadlines but
    not one status or count; and at most 8 open hours pass per calendar day, so a case handled at
    this pace is always within its business-hours SLA.
    """
    for row in list(store.db.query("select id from cases order by id")):
        case = store.get_case(row["id"])
        assert case is not None
        mentions = store.mentions_for_case(row["id"])
        last = mentions[-1] if mentions else None
        opened = case.opened_at or now
        activity = case.last_activity_at or opened
        changes: dict[str, Any] = {}
        # The few the team has not got to in time: only recent ones (older ones were caught up on).
        slips = rng.random() < 0.08 and opened > now - timedelta(hours=36)
        quiet = not case.complaint and case.intent in (None, "other", "praise") and activity < now - timedelta(days=1)
        target = config.sla_target(sla.band_of(case.priority, config.priority), case.brand)
        first_due = opened + timedelta(minutes=target.first_response)
        if case.first_response_at is None and not (slips and first_due < now):
            # Answered by DM or email within the SLA (the reply is not a public post, but the clock stopped).
            window = max(60.0, (first_due - opened).total_seconds())
            answered = opened + timedelta(seconds=window * rng.uniform(0.15, 0.85))
            if answered <= now - timedelta(minutes=2) and (first_due < now or rng.random() < 0.5):
                changes["first_response_at"] = answered.replace(microsecond=0)
        answered = case.first_response_at is not None or "first_response_at" in changes
        resolution_due = opened + timedelta(minutes=3 * target.resolution)
        # Resolved before the deadline; until then the case is still being worked.
        settled = answered and not slips and resolution_due < now
        caught_up = resolution_due < now - timedelta(days=1)  # old cases are all closed by now
        if (settled and (caught_up or rng.random() < 0.97)) or quiet:
            latest = max(activity, changes.get("first_response_at") or case.first_response_at or activity)
            room = max(0.0, min((resolution_due - latest).total_seconds(), 10 * 3600.0))
            resolved_at = latest + timedelta(seconds=max(300.0, room * rng.uniform(0.2, 0.9)))
            changes.update(status="resolved", resolved_at=min(resolved_at, now - timedelta(minutes=1)).replace(microsecond=0))
        elif last is not None and last.outbound:
            changes["status"] = "pending_customer"
        elif answered:
            changes["status"] = "open"
        if changes.get("status") != "resolved" and (rng.random() < 0.8 or answered):
            changes["assignee"] = rng.choice(AGENTS).lower()
        if changes:
            # A case handed to the customer by our last reply has been paused since that reply.
            at = last.created_at if changes.get("status") == "pending_customer" and last is not None else now
            changes = sla.follow(case, changes, at, config)
            store.update_case(case.id, case.version, "demo", **changes)  # type: ignore[arg-type]
            _tell_history(store, case, changes, mentions, now, config)


#: What the demo's team wrote when it answered a case privately (a direct message, or an e-mail for a post
#: on a courier's tracking page): the reply the case's first response stands for.
PRIVATE_ANSWER = ("Hi {first}, it's {agent} from {brand}. Thanks for getting in touch: we're looking into this "
                  "for you now and will come back to you here.")


def _tell_history(store: Store, case: Any, changes: dict[str, Any], mentions: list[Mention], now: datetime,
                  config: Config) -> None:
    """Write what :func:`_settle_cases` did to ``case`` as the team's own actions, each when it happened.

    The settle is one update at build time by "demo"; a newcomer reading the timeline would see every case
    answered and resolved "today", by nobody, and a first response with no reply anywhere on the case. In
    the story the team did it over three weeks: the agent took the case, answered privately (a sent direct
    message or e-mail, now on the case), and resolved it or handed it to the customer. That update's audit
    event is replaced by those actions, stamped with their times.
    """
    row = store.db.execute("select id, details from audit_events where case_id = ? and action = 'case.update' "
                           "and actor = 'demo' order by id desc limit 1", [case.id]).fetchone()
    if row is None:
        return
    details: dict[str, Any] = json.loads(row[1]) if isinstance(row[1], str) else dict(row[1] or {})
    agent = str(changes.get("assignee") or case.assignee or AGENTS[case.id % len(AGENTS)]).lower()
    opened = case.opened_at or now
    answered: datetime | None = changes.get("first_response_at")
    events: list[tuple[datetime, str, str, dict[str, Any]]] = []
    if "assignee" in details:  # the agent took the case soon after it came in, before answering it
        took = min(opened + timedelta(minutes=5), answered or now, now)
        events.append((took, agent, "case.update", {"assignee": details.pop("assignee")}))
    if answered is not None and "first_response_at" in details:
        message_id = _private_answer(store, case, mentions, agent, answered, config)
        update = {"first_response_at": details.pop("first_response_at")}
        if details.get("status") == "open":  # a first answer opens a new case (responders.outbox._after_reply)
            update["status"] = details.pop("status")
        if message_id is not None:
            channel, target, account, external_id = store.db.execute(
                "select channel, target, account, external_id from outbound_messages where id = ?", [message_id]).fetchone()
            events += [(answered, agent, "outbox.queue.reply",
                        {"message_id": message_id, "channel": channel, "target": target,
                         **({"account": account} if account else {})}),
                       (answered, "outbox", "outbox.sent", {"message_id": message_id, "external_id": external_id,
                                                            "recovered": False, "kind": "reply", "channel": channel})]
            update["because"] = {"message_id": message_id, "message_by": agent}
            events.append((answered, "outbox", "case.update", update))
        else:
            events.append((answered, agent, "case.update", update))
    if details:
        status = details.get("status")
        last = mentions[-1] if mentions else None
        when = (changes.get("resolved_at") if status == "resolved" else
                last.created_at if status == "pending_customer" and last is not None else answered or now)
        events.append((min(when or now, now), agent, "case.update", details))
    with store.transaction():
        store.db.execute("delete from audit_events where id = ?", [row[0]])
        store.audit_many([(iso(at), actor, action, case.id, d)
                          for at, actor, action, d in sorted(events, key=lambda e: e[0])])


def _private_answer(store: Store, case: Any, mentions: list[Mention], agent: str, at: datetime,
                    config: Config) -> int | None:
    """Store, as sent at ``at`` by ``agent``, the private answer a first response with no public reply stands
    for: a direct message to the customer on their network, or an e-mail to the order's customer for a
    post on a courier's tracking page. Its id, or None when the case gives nobody to write to."""
    if any(m.outbound for m in mentions):
        return None  # a public reply of ours is on the case: that was the answer
    post = next((m for m in mentions if not m.outbound), None)
    if post is None:
        return None
    brand = next((b for b in config.brands if b.name == case.brand), config.brands[0])
    first = (post.author_name or post.author_handle or "there").split()[0]
    if post.channel in ("x", "mastodon", "bluesky"):
        channel = f"{post.channel}_dm"
        if post.channel == "x":
            target = post.author_id if post.author_id and post.author_id.isdigit() else f"@{post.author_handle}"
        else:
            target = post.author_id if post.channel == "bluesky" and post.author_id else f"@{post.author_handle}"
        account = brand.handles.get(post.channel)
    else:
        order = store.get_order(case.order_number) if case.order_number else None
        customer = store.get_customer(order.customer_id) if order is not None and order.customer_id else None
        if customer is None or not customer.email:
            return None
        channel, target, account = "email", customer.email, None
        first = (customer.name or first).split()[0]
    text = PRIVATE_ANSWER.format(first=first, agent=agent.capitalize(), brand=brand.name)
    sent = iso(at)
    cursor = store.db.execute(
        "insert into outbound_messages (case_id, kind, channel, target, text, in_reply_to, status, attempts, "
        "idempotency_key, external_id, created_by, created_at, sent_at, account) "
        "values (?, 'reply', ?, ?, ?, ?, 'sent', 1, ?, ?, ?, ?, ?, ?)",
        [case.id, channel, target, text, post.external_id if channel != "email" else None,
         f"demo:private_answer:{case.id}", f"demo-{channel}-{case.id}", agent, sent, sent, account])
    return int(cursor.lastrowid)


def _stamp_pipeline_events(store: Store, posts: Sequence[Mention]) -> None:
    """Stamp each post's "opened this case" / "reopened" / "answered outside Doorstep" audit event with the post's time.

    In the demo's story the listener stored every post as it was written; the build stores three weeks of
    them at once, so the pipeline stamped them all with the build's clock and every case read "opened today".
    A case opens with its first post, so its opening is the case's ``opened_at`` (the event's post id may be
    masked: a Bluesky post's at:// address reads as a credential to the audit's redaction); a reopen is
    stamped with its post's time where the event names the post."""
    written = {(m.channel, m.external_id): m.created_at for m in posts}
    rows = store.db.execute("select a.id, a.action, a.details, c.channel, c.opened_at from audit_events a "
                            "join cases c on c.id = a.case_id where a.action in ('case.open', 'case.reopen', "
                            "'case.answered')").fetchall()
    with store.transaction():
        for event_id, action, raw, channel, opened_at in rows:
            details = json.loads(raw) if isinstance(raw, str) else dict(raw or {})
            if action == "case.open":
                at = opened_at
            elif action == "case.answered":  # our reply typed on the network: its own time
                at = details.get("posted_at")
            else:
                at = iso(written.get((channel, details.get("external_id"))))
            if at is not None:
                store.db.execute("update audit_events set at = ? where id = ?", [at, event_id])


def build_demo(
    db_path: str,
    seed: int = 7,
    customers: int = 500,
    orders: int = 2000,
    mentions: int = 1000,
    config_path: str | None = None,
    now: datetime | None = None,
    classifier: Any | None = None,
    x_feed_path: str | Path | None = None,
    x_live_posts: int = 40,
    shift_to: datetime | None = None,
    live: bool = True,
) -> str:
    """Replace ``db_path`` with a freshly generated demo shop and return a short summary.

    ``now`` is the moment the shop is generated at (default :data:`REFERENCE_NOW`, so the same
    seed gives the same shop on any day). ``shift_to`` moves every time in it by
    ``shift_to - now`` before storing; without ``now`` and ``shift_to``, ``live`` moves it to the
    current hour, so the demo looks live (``live=False`` keeps the reference dates). Moving
    changes no count, share or duration, only dates. ``classifier`` defaults to the configured one.

    With ``x_feed_path``, every X post of the demo is written there as the X API emulator's
    feed (so a reply to any X case reaches a post the emulator knows), and the newest
    ``x_live_posts`` stand-alone customer posts that the configured X queries match are not
    stored: the running demo's X listener fetches them through tweepy, as from the real API.
    Every Mastodon and Bluesky post goes beside it (:func:`standin_feed_path`), the feeds of the
    local Mastodon and Bluesky stand-ins, so a reply to any case on those networks answers a
    post the stand-in knows.
    """
    from doorstep.pipeline import Pipeline

    if customers < 2 or orders < 1:
        raise ValueError("the demo needs at least 2 customers and 1 order")
    config = load_config(resolve_config_path(config_path))
    if shift_to is None and now is None and live:
        shift_to = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
    now = utc(now) if now else REFERENCE_NOW
    if classifier is None:
        from classifiers import load_classifier

        classifier = load_classifier(config.classifier)

    gen = _Generator(config, seed, now)
    people = gen.make_people(customers)
    shop_orders = gen.make_orders(orders)
    posts = _mentions(gen, mentions)
    if shift_to is not None:
        delta = utc(shift_to).replace(second=0, microsecond=0) - now
        shop_orders = [_shifted(order, delta) for order in shop_orders]
        posts = [_shifted(post, delta) for post in posts]
        now += delta
    if x_feed_path is not None:
        posts = _write_x_feed(posts, Path(x_feed_path), x_live_posts, config)
        _write_standin_feeds(posts, Path(x_feed_path))

    _remove_database(db_path)
    if not is_postgres(db_path):
        Path(db_path).parent.mkdir(parents=True, exist_ok=True)
    store = Store(db_path)
    try:
        with store.transaction():
            store.upsert_customers(people)
            store.upsert_orders(shop_orders)
        Pipeline(store, config, classifier).ingest(posts)
        _stamp_pipeline_events(store, posts)
        with store.transaction():
            _settle_cases(store, gen.rng, now, config)
        return summarise(store, config)
    finally:
        store.close()


def _shifted(record: Any, delta: timedelta) -> Any:
    """A copy of an order, shipment, event or mention with every time moved by ``delta``.

    Dates (an order's promised day) move by the whole days of ``delta`` rounded, so a promise
    stays on the same side of its delivery.
    """
    days = timedelta(days=round(delta.total_seconds() / 86400))
    update: dict[str, Any] = {}
    for name, value in record:
        if isinstance(value, datetime):
            update[name] = value + delta
        elif isinstance(value, date):
            update[name] = value + days
        elif isinstance(value, list) and value and hasattr(value[0], "model_copy"):
            update[name] = [_shifted(item, delta) for item in value]
    return record.model_copy(update=update)


def _x_feed_row(post: Mention) -> dict[str, Any]:
    return {
        "id": post.external_id, "text": post.text, "username": post.author_handle, "name": post.author_name,
        "followers": post.author_followers, "created_at": post.created_at.isoformat(),
        **({"conversation_id": post.thread_id} if post.thread_id else {}),
        **({"referenced_tweets": [{"type": "replied_to", "id": post.in_reply_to}]} if post.in_reply_to else {}),
    }


def matches_x_queries(text: str, queries: Sequence[str], username: str = "") -> bool:
    """Whether one of the X listener's search queries finds ``text`` (the emulator's own matcher)."""
    from standins.x_emulator import compile_query

    post = {"_lower": text.lower(), "username": username, "referenced_tweets": None, "lang": "en",
            "conversation_id": "", "_to": ""}
    return any(compile_query(query)(post) for query in queries)


def _write_x_feed(posts: list[Mention], path: Path, count: int, config: Config) -> list[Mention]:
    """Write every X post to ``path`` (JSONL, the emulator's feed); return the posts to store.

    The newest ``count`` stand-alone customer posts that the configured queries find are held
    back (not returned): the listener fetches them from the emulator once the demo runs.
    """
    queries = list(config.channels.get("x", {}).get("queries", []))
    answered = {p.in_reply_to for p in posts if p.in_reply_to}
    candidates = [
        p for p in posts
        if p.channel == "x" and not p.outbound and p.in_reply_to is None and p.external_id not in answered
        and p.author_handle and (not queries or matches_x_queries(p.text, queries, p.author_handle))
    ]
    newest = sorted(candidates, key=lambda p: p.created_at)[-count:] if count > 0 else []
    live = {p.external_id for p in newest}
    # They arrive as the demo starts: written in the last ten minutes (in their order), so the
    # team meets them fresh, not already past their SLA and escalated at once.
    now = max((p.created_at for p in posts), default=None)
    fresh = {}
    if newest and now is not None:
        step = timedelta(minutes=10) / len(newest)
        fresh = {p.external_id: now - timedelta(minutes=10) + step * (i + 1) for i, p in enumerate(newest)}
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for p in posts:
            if p.channel == "x":
                row = _x_feed_row(p)
                if p.external_id in fresh:
                    row["created_at"] = fresh[p.external_id].replace(microsecond=0).isoformat()
                fh.write(json.dumps(row) + "\n")
    return [p for p in posts if p.external_id not in live]


def standin_feed_path(x_feed_path: str | Path, channel: str) -> Path:
    """Where the posts of the ``channel`` stand-in go: beside the X feed (``demo.x-feed.jsonl`` ->
    ``demo.mastodon-feed.jsonl``)."""
    path = Path(x_feed_path)
    stem = path.name.removesuffix(".x-feed.jsonl") if path.name.endswith(".x-feed.jsonl") else path.name
    return path.with_name(f"{stem}.{channel}-feed.jsonl")


def _write_standin_feeds(posts: list[Mention], x_feed_path: Path) -> None:
    """Every stored Mastodon and Bluesky post (customers' and the brands'), as the stand-ins' feeds."""
    rows: dict[str, list[dict[str, Any]]] = {"mastodon": [], "bluesky": []}
    for p in posts:
        if p.channel == "mastodon":
            rows["mastodon"].append({
                "id": p.external_id, "text": p.text, "username": p.author_handle or "someone",
                "created_at": p.created_at.isoformat(), **({"in_reply_to_id": p.in_reply_to} if p.in_reply_to else {})})
        elif p.channel == "bluesky" and p.external_id.startswith("at://"):
            reply = {"root": p.thread_id or p.in_reply_to, "parent": p.in_reply_to} if p.in_reply_to else None
            rows["bluesky"].append({
                "uri": p.external_id, "text": p.text, "handle": p.author_handle or "someone.bsky.social",
                "created_at": p.created_at.isoformat(), **({"reply": reply} if reply else {})})
    for channel, lines in rows.items():
        with standin_feed_path(x_feed_path, channel).open("w", encoding="utf-8") as fh:
            for row in lines:
                fh.write(json.dumps(row) + "\n")


def summarise(store: Store, config: Config) -> str:
    counts = {t: store.count(t) for t in ("customers", "orders", "shipments", "tracking_events", "mentions", "cases")}
    open_cases = store.inbox_count()
    lines = [
        f"demo shop: {counts['customers']} customers, {counts['orders']} orders, {counts['shipments']} shipments, "
        f"{counts['tracking_events']} tracking events",
        f"{counts['mentions']} mentions -> {counts['cases']} cases, {open_cases} open",
    ]
    for case in store.inbox(InboxQuery(limit=3)):
        reasons = ", ".join(case.priority_reasons[:3])
        lines.append(
            f"  case {case.id}: priority {case.priority:g} {case.intent or '-'} "
            f"({case.brand or '-'} / {case.courier or '-'}, {case.channel}) {reasons}"
        )
    return "\n".join(lines)


def digest(store: Store) -> str:
    """A fingerprint of the demo's content (orders, tracking, mentions, labels, cases), to compare builds."""
    from doorstep.store import mention_export_row

    h = hashlib.sha256()
    for mention in store.iter_mentions():
        h.update(json.dumps(mention_export_row(mention), sort_keys=True, default=str).encode())
    for row in store.db.query("select number from orders order by number"):
        order = store.get_order(row["number"])
        assert order is not None
        h.update(order.model_dump_json().encode())
    for row in store.db.query("select * from cases order by id"):
        h.update(json.dumps({k: v for k, v in row.items() if k not in ("resolved_at", "updated_by")}, sort_keys=True,
                            default=str).encode())
    return h.hexdigest()


# ---------------------------------------------------------------------- running
@dataclass(frozen=True)
class DemoPorts:
    """The local ports a running demo needs; each can be changed (``make demo PORT=8600 ...``)."""

    console: int = 8501
    x: int = 8765
    smtp: int = 8025
    sinks: int = 8767
    mastodon: int = 8768
    bluesky: int = 8769

    def named(self) -> dict[str, int]:
        return {"console": self.console, "X API emulator": self.x, "SMTP sink": self.smtp, "webhook sink": self.sinks,
                "Mastodon stand-in": self.mastodon, "Bluesky stand-in": self.bluesky}


#: What each port is called on the ``make demo`` and ``doorstep demo`` command lines.
PORT_SETTINGS = {"console": "PORT= / --port", "X API emulator": "X_PORT= / --x-port",
                 "SMTP sink": "SMTP_PORT= / --smtp-port", "webhook sink": "SINK_PORT= / --sink-port",
                 "Mastodon stand-in": "MASTODON_PORT= / --mastodon-port",
                 "Bluesky stand-in": "BLUESKY_PORT= / --bluesky-port"}


class DemoError(RuntimeError):
    """The demo cannot run; the message says why and what to change."""


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something already listens on ``port`` (on any interface, as a server would bind)."""
    import socket

    for family, address in ((socket.AF_INET, ""), (socket.AF_INET, host)):
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((address, port))
            except OSError:
                return True
    return False


def check_ports(ports: DemoPorts) -> None:
    """Refuse to start (DemoError naming the port and the setting) when a port is taken."""
    seen: dict[int, str] = {}
    for name, port in ports.named().items():
        if port in seen:
            raise DemoError(f"the {name} and the {seen[port]} cannot share port {port}; set {PORT_SETTINGS[name]}")
        seen[port] = name
        if not 0 < port < 65536:
            raise DemoError(f"{port} is not a port number for the {name}; set {PORT_SETTINGS[name]}")
        if port_in_use(port):
            raise DemoError(f"port {port} for the demo's {name} is already in use (another demo or program?); "
                            f"stop it or choose another port: {PORT_SETTINGS[name]}, "
                            f"e.g. `make demo {PORT_SETTINGS[name].split('=')[0]}={port + 10}`")


def _wait_for_port(port: int, child: subprocess.Popen[bytes], timeout_s: float) -> bool:
    """Wait until ``child`` accepts connections on ``port``; False if it exits or time runs out."""
    import socket

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if child.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.2)
    return False


def standin_accounts(config: Path | Config) -> dict[str, dict[str, str]]:
    """The brand accounts the demo's Mastodon and Bluesky stand-ins know: channel -> {secret: handle}.

    Each brand answers from its own account (demo/doorstep.toml [[brands]] accounts): a Mastodon
    access token, a Bluesky app password, made up here and known only to the local stand-ins.
    """
    from doorstep.config import brand_accounts

    loaded = config if isinstance(config, Config) else load_config(config)
    out: dict[str, dict[str, str]] = {"mastodon": {}, "bluesky": {}}
    for channel in out:
        for account in brand_accounts(loaded, channel):
            slug = account.prefix.lower().replace("_", "-")
            out[channel][f"demo-{slug}"] = account.handle
    return out


def _standin_environment(config: Path, ports: DemoPorts) -> dict[str, str]:
    """Mastodon and Bluesky pointed at the local stand-ins, with each brand account's credentials.

    The per-account names (``LARKSPUR_MASTODON_ACCESS_TOKEN``, ``..._BASE_URL``) are set as well as
    the shared ones, so a real credential or instance in the shell that starts the demo is never used.
    """
    from doorstep.config import brand_accounts

    loaded = load_config(config)
    urls = {"mastodon": f"http://127.0.0.1:{ports.mastodon}", "bluesky": f"http://127.0.0.1:{ports.bluesky}"}
    env = {"MASTODON_BASE_URL": urls["mastodon"], "BLUESKY_BASE_URL": urls["bluesky"]}
    secrets = {channel: {handle: secret for secret, handle in accounts.items()}
               for channel, accounts in standin_accounts(loaded).items()}
    for channel in ("mastodon", "bluesky"):
        for account in brand_accounts(loaded, channel):
            env[f"{account.prefix}_BASE_URL"] = urls[channel]
            if channel == "mastodon":
                env[f"{account.prefix}_ACCESS_TOKEN"] = secrets[channel][account.handle]
            else:
                env[f"{account.prefix}_HANDLE"] = account.handle
                env[f"{account.prefix}_APP_PASSWORD"] = secrets[channel][account.handle]
    return env


def demo_environment(db_path: str, config: Path, ports: DemoPorts, sink_dir: Path, with_x: bool) -> dict[str, str]:
    """The environment the demo's worker and console run in: everything outbound stays on 127.0.0.1."""
    sink = f"http://127.0.0.1:{ports.sinks}"
    env = {
        **os.environ,
        "DOORSTEP_DB": database_for_children(db_path), "DOORSTEP_CONFIG": str(config.resolve()),
        "DOORSTEP_DEMO_SINK_DIR": str(sink_dir.resolve()),
        # Mail goes to the local SMTP sink; Slack and courier webhooks to the local HTTP sink.
        "SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(ports.smtp), "SMTP_FROM": "care@larkspur-home.example",
        "SMTP_SSL": "0", "SMTP_STARTTLS": "0",
        "SLACK_ALERTS_WEBHOOK": f"{sink}/slack/alerts", "SLACK_TEAM_WEBHOOK": f"{sink}/slack/care-team",
        "REPORTS_SLACK_WEBHOOK_URL": f"{sink}/slack/reports",
        "COURIER_WEBHOOK_SECRET": os.environ.get("COURIER_WEBHOOK_SECRET", "demo-courier-webhook-secret"),
        "DEMO_COURIER_WEBHOOK": f"{sink}/courier",
        # Text messages: the twilio client talks to the same HTTP sink (its /twilio/ answers Twilio's
        # REST API), so an approved SMS shows on the Sent mail page and never reaches api.twilio.com.
        "TWILIO_BASE_URL": f"{sink}/twilio", "TWILIO_ACCOUNT_SID": "ACdemo00000000000000000000000000",
        "TWILIO_AUTH_TOKEN": "demo-twilio-auth-token", "TWILIO_FROM": "+447700900000",
    }
    # Mastodon.py and atproto talk to the local stand-ins, never mastodon.social or bsky.social.
    env.update(_standin_environment(config, ports))
    for shared in ("MASTODON_ACCESS_TOKEN", "BLUESKY_HANDLE", "BLUESKY_APP_PASSWORD"):
        env.pop(shared, None)  # a real account of the shell's never stands in for a brand's demo one
    if with_x:
        # The demo never talks to the real X: tweepy is pointed at the local emulator.
        env.update(
            X_API_BASE_URL=f"http://127.0.0.1:{ports.x}", X_BEARER_TOKEN="demo-bearer", X_API_KEY="demo",
            X_API_SECRET="demo", X_ACCESS_TOKEN="demo", X_ACCESS_TOKEN_SECRET="demo",
        )
    return env


def run_demo(db_path: str, port: int = 8501, config_path: str | None = "demo/doorstep.toml",
             x_feed_path: str | Path | None = None, x_port: int = 8765, ports: DemoPorts | None = None,
             console_timeout_s: float = 120.0) -> int:
    """Run the sinks, the X emulator, the Mastodon and Bluesky stand-ins, the worker and the console
    until Ctrl-C or SIGTERM.

    Each runs as a child process so a crash in one is visible (the others are then stopped
    too) and stopping the demo never leaves a worker polling behind. Returns the exit status:
    0 after Ctrl-C, 1 when a part stopped or the console never answered (the reason is printed).
    """
    ports = ports or DemoPorts(console=port, x=x_port)
    check_ports(ports)
    config = resolve_config_path(config_path)
    app = REPO_ROOT / "app.py"
    if not app.exists():
        raise DemoError(f"{app}: the console app is missing; run the demo from a full Doorstep checkout")
    sink_dir = files_beside(db_path, ".sent") if is_postgres(db_path) else Path(str(Path(db_path).resolve()) + ".sent")
    if sink_dir.exists():
        for old in sink_dir.iterdir():
            old.unlink()
    env = demo_environment(db_path, config, ports, sink_dir, x_feed_path is not None)
    python = [sys.executable, "-m"]
    commands: dict[str, list[str]] = {
        "mail and webhook sinks": [*python, "standins.sinks", "--dir", str(sink_dir), "--smtp-port",
                                   str(ports.smtp), "--http-port", str(ports.sinks)],
    }
    if x_feed_path is not None:
        # Each brand answers from its own account (demo/doorstep.toml [[brands]] accounts).
        env.update(LARKSPUR_X_ACCESS_TOKEN="demo-larkspur", FETTLE_X_ACCESS_TOKEN="demo-fettle")
        commands["X API emulator"] = [*python, "commands", "emulate", "x", "--feed", str(Path(x_feed_path).resolve()),
                                      "--port", str(ports.x), "--me", "LarkspurHelp",
                                      "--account", "demo-larkspur=LarkspurHelp", "--account", "demo-fettle=FettleCare"]
    commands |= standin_commands(config, ports, x_feed_path)
    commands |= {
        "worker": [*python, "commands", "--db", database_for_children(db_path), "--config", str(config.resolve()), "run"],
        # No usage statistics: the demo must not talk to anything beyond this machine.
        "console": [*python, "streamlit", "run", str(app), "--server.port", str(ports.console),
                    "--server.headless", "true", "--browser.gatherUsageStats", "false"],
    }
    waits = {"mail and webhook sinks": ports.sinks, "X API emulator": ports.x,
             "Mastodon stand-in": ports.mastodon, "Bluesky stand-in": ports.bluesky}
    children: dict[str, subprocess.Popen[bytes]] = {}

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        for name, command in commands.items():
            children[name] = subprocess.Popen(command, cwd=REPO_ROOT, env=env)
            if name in waits and not _wait_for_port(waits[name], children[name], 30.0):
                print(f"error: the demo's {name} did not start on port {waits[name]}; stopping the demo",
                      file=sys.stderr, flush=True)
                return 1
        if not _wait_for_port(ports.console, children["console"], console_timeout_s):
            code = children["console"].poll()
            why = f"exited with code {code}" if code is not None else f"did not answer within {console_timeout_s:.0f} s"
            print(f"error: the console {why} on port {ports.console}; stopping the demo", file=sys.stderr, flush=True)
            return 1
        print(f"Doorstep demo console: http://localhost:{ports.console}  (Ctrl-C to stop). Sent e-mail, Slack "
              f"and webhooks land in {sink_dir} (the console's Sent mail page)", flush=True)
        while True:
            for name, child in children.items():
                code = child.poll()
                if code is not None:
                    print(f"error: the {name} stopped (exit code {code}); stopping the demo", file=sys.stderr, flush=True)
                    return 1
            time.sleep(0.5)
    except KeyboardInterrupt:
        print("stopping the demo...", file=sys.stderr, flush=True)
        return 0
    finally:
        _stop_children(list(children.values()))
        signal.signal(signal.SIGTERM, previous)


def standin_commands(config: Path, ports: DemoPorts, x_feed_path: str | Path | None) -> dict[str, list[str]]:
    """The command lines of the Mastodon and Bluesky stand-ins: their port, the demo's posts, the brand accounts."""
    accounts = standin_accounts(config)
    out: dict[str, list[str]] = {}
    for channel, name, port in (("mastodon", "Mastodon stand-in", ports.mastodon),
                                ("bluesky", "Bluesky stand-in", ports.bluesky)):
        command = [sys.executable, "-m", f"standins.{channel}", "--port", str(port)]
        if x_feed_path is not None:
            command += ["--feed", str(standin_feed_path(Path(x_feed_path).resolve(), channel))]
        for secret, handle in accounts[channel].items():
            command += ["--account", f"{secret}={handle}"]
        out[name] = command
    return out


def _stop_children(children: Sequence[subprocess.Popen[bytes]], grace_s: float = 10.0) -> None:
    for child in children:
        if child.poll() is None:
            child.terminate()
    deadline = time.monotonic() + grace_s
    for child in children:
        try:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
