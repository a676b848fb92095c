"""Erasing a person's personal data at their request (GDPR / UK GDPR article 17, the right to erasure).

``doorstep customer erase`` is a thin wrapper of :func:`find_person`, :func:`preview_erasure` and
:func:`erase_customer`; the case page's "Erase this person's data" of :func:`person_of_case` and the same two.

The person is a :class:`Person`: a customer record (with their handles, e-mail and phone), or, since most
people who write to a shop on X, Mastodon or Bluesky are in no customer record, the author of posts
(their handle on one or more networks, or an e-mail address or phone number no customer has). Both go
through the one erasure below; for an author alone there is no record to delete and no order to keep.
What goes, in one transaction (all of it, or nothing):

* **the customer record**: name, e-mail, phone and handles (the ``customers`` row and its
  ``customer_handles``). Doorstep keeps no postal address.
* **their posts** (posts by one of their handles, e-mail address or phone number, and the posts of
  their cases that speak for them) and **our public posts in their cases or in reply to them**: the text becomes
  :data:`MARKER`; author handle, name and network id, the post's address and its raw payload are
  cleared. The rows stay, with their ids, times, channel, labels and case: counts, SLA figures and
  weekly reports stay true. The (channel, external id) stays too: it is how every listener and
  import tells a post it already has (``Store.existing_mention_ids``), so polling the same post again
  is a duplicate and never brings its text back. Posts of other people in their cases and
  conversations keep their words, with the customer's name, handles, e-mail and phone masked.
  Their cases are those confirmed to their record and those they wrote, except a case they wrote where
  another author's posts speak for its customer (confirmed to someone else who wrote there too): that
  one loses only their author handle, their posts and our answers to them; its notes are masked.
* **messages to them or about them** (replies, follow-ups, questions, alerts and escalations on their
  cases, anything addressed to their e-mail, phone or handle or answering one of their posts): the
  text becomes :data:`MARKER` and the
  address is cleared where it was theirs. Every one not sent yet (queued, being sent, awaiting
  approval, failed) is cancelled with :data:`CANCEL_REASON`: nothing leaves after the erasure. Open
  questions and call backs are cancelled; an alert the hourly cap still holds back is dropped.
* **their answers** to our questions: text and sender. The (channel, external id) stays, so a
  redelivered SMS or e-mail is a duplicate.
* **notes on their cases** become :data:`MARKER`; the audit details of their cases lose every free-text
  value (an answer, a quote, a reason, an address); elsewhere (notes on other cases, audit details,
  listener health, import runs, the worker's saved state, posts waiting in the job queue) each known
  value (name, e-mail, phone, handles) is masked as :data:`MASK`.
* **links**: Doorstep's own records (cases, questions, contact history, automatic messages) lose the
  customer id.

What stays, and why: **orders** (number, items, total, dates, shipments and tracking) are the shop's
own records, which it must keep for its accounts and for consumer law whatever Doorstep does. They
keep the shop's customer id, a number from the shop's own system, but nothing in Doorstep leads from
it to a name, an address, a handle or a post any more. A later order import that names the same
person creates a customer again: that is the shop's data, imported by the shop.

Not done here: the bytes of old row versions until the database reuses their space (SQLite's free
pages and full-text index segments, PostgreSQL's dead rows until VACUUM), and backups. The README
says how to purge them (section "Erasing a customer's data").
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from doorstep.dialogue import MIN_NATIONAL_DIGITS, phones_match
from doorstep.models import channel_name
from doorstep.permissions import require
from doorstep.store import PHONE_DIGITS_SQL, Store
from doorstep.store.base import _chunks, _marks
from doorstep.store.orders import HANDLE_CHANNEL

#: What replaces an erased post's or message's text, and an erased note.
MARKER = "[erased at the customer's request]"
#: What replaces a known value (their name, e-mail, phone, handle) inside text that is kept.
MASK = "[erased]"
#: Why a message, question or call back was cancelled.
CANCEL_REASON = "the customer's personal data was erased at their request"
#: The ``last_error`` of a message the erasure cancelled: such a message is never sent again
#: (``responders.outbox.retry`` refuses it; its text is the marker, its address gone).
CANCELLED_BY_ERASURE = f"cancelled: {CANCEL_REASON}"


def is_erased(post: Any) -> bool:
    """Whether ``post`` (a Mention) is one an erasure emptied: nobody may answer it any more (its author asked
    to be forgotten, and its handle is gone)."""
    return getattr(post, "text", None) == MARKER and not getattr(post, "author_handle", None)
#: The worker's alert state (``responders/alerts.py`` STATE_CURSOR): incidents say why, held alerts wait to be sent.
ALERT_STATE_CURSOR = "alerts.state"
#: Messages that have not left yet: cancelled by an erasure (a failed one could be retried by hand).
UNSENT = ("queued", "sending", "awaiting_approval", "failed")
#: Message kinds written to the customer (their address is theirs); alerts and escalations go to us or a courier.
TO_CUSTOMER = ("reply", "follow_up", "outreach")
#: Keys of audit details that hold a customer's words or address even when they are one word.
FREE_TEXT_KEYS = frozenset({"answer", "text", "said", "target", "sender", "slot", "quote", "why", "how"})


class ErasureError(ValueError):
    """The customer cannot be erased as asked: one line saying why and what to do."""


class NoSuchCustomer(ErasureError):
    """No customer record has the id, handle, e-mail or phone given (an author of posts still may)."""


@dataclass(frozen=True)
class Person:
    """Whose personal data an erasure takes: a customer record, or (``customer_id`` None) the author of
    posts no record has, by their (network, handle) pairs (lower case, no @), e-mail address or phone."""

    customer_id: str | None = None
    handles: frozenset[tuple[str, str]] = frozenset()
    email: str | None = None
    phone: str | None = None

    def __str__(self) -> str:
        """"customer c-17", "X author with no customer record": never personal data (it is printed and shown)."""
        if self.customer_id:
            return f"customer {self.customer_id}"
        where = ("e-mail" if self.email else "SMS" if self.phone
                 else " and ".join(channel_name(n) for n in sorted({n for n, _ in self.handles})))
        return f"{where} author with no customer record"


@dataclass(frozen=True)
class Erasure:
    """What an erasure changes (or changed): counts only, never personal data."""

    customer_id: str | None
    cases: int = 0
    posts: int = 0
    messages: int = 0
    cancelled: int = 0
    notes: int = 0
    answers: int = 0
    orders: int = 0

    def counts(self) -> str:
        """E.g. "12 posts, 3 messages (1 cancelled), 2 cases, 1 note, 0 answers; 4 orders kept"."""
        def n(count: int, word: str) -> str:
            return f"{count} {word}{'' if count == 1 else 's'}"

        return (f"{n(self.posts, 'post')}, {n(self.messages, 'message')} ({self.cancelled} cancelled), "
                f"{n(self.cases, 'case')}, {n(self.notes, 'note')}, {n(self.answers, 'answer')}; "
                f"{n(self.orders, 'order')} kept")

    def details(self) -> dict[str, Any]:
        """The audit event's details."""
        return {"customer_id": self.customer_id, "cases": self.cases, "posts": self.posts, "messages": self.messages,
                "cancelled": self.cancelled, "notes": self.notes, "answers": self.answers, "orders_kept": self.orders}


# ------------------------------------------------------------------ finding the customer
def _digits_sql(column: str) -> str:
    """``column``'s digits, as PHONE_DIGITS_SQL takes them from ``phone``."""
    return PHONE_DIGITS_SQL.replace("(phone,", f"({column},")


def _phone_core(phone: str) -> str:
    """The last digits every spelling of the number shares ("+44 7700 900123", "07700 900123")."""
    return re.sub(r"\D", "", phone)[-MIN_NATIONAL_DIGITS:]


def _handle(value: str) -> tuple[str | None, str]:
    """"x:@JaneDoe" -> ("x", "janedoe"); "@JaneDoe" -> (None, "janedoe"), as customer handles are stored."""
    network, sep, handle = value.partition(":")
    if not sep or "@" in network or "." in network:
        network, handle = "", value
    return network.strip().lower() or None, handle.strip().lower().lstrip("@")


def find_customer(store: Store, *, customer_id: str | None = None, handle: str | None = None,
                  email: str | None = None, phone: str | None = None) -> str:
    """The id of the one customer named by exactly one of: customer id, handle ("@jane", "x:@jane"),
    e-mail or phone (any spelling of the number). Raises :class:`ErasureError` when none or several match."""
    given = [(what, value) for what, value in (("customer id", customer_id), ("handle", handle), ("e-mail", email),
                                              ("phone", phone)) if value is not None]
    if len(given) != 1:
        raise ErasureError("name the customer by exactly one of: customer id, handle, e-mail or phone")
    what, value = given[0][0], given[0][1].strip()
    if not value:
        raise ErasureError(f"the {what} is empty")
    if what == "customer id":
        found = [r["id"] for r in store.rows("select id from customers where id = ?", [value])]
    elif what == "handle":
        network, name = _handle(value)
        if not name:
            raise ErasureError(f"the handle {value!r} is empty")
        sql = "select distinct customer_id from customer_handles where handle = ?"
        found = [r["customer_id"] for r in (store.rows(sql + " and channel = ?", [name, network]) if network
                                            else store.rows(sql, [name]))]
    elif what == "e-mail":
        found = [r["id"] for r in store.rows("select id from customers where lower(email) = ?", [value.lower()])]
    else:
        if len(re.sub(r"\D", "", value)) < MIN_NATIONAL_DIGITS:
            raise ErasureError(f"the phone {value!r} has fewer than {MIN_NATIONAL_DIGITS} digits")
        found = [r["id"] for r in store.rows(f"select id, phone from customers where {_digits_sql('phone')} like ?",
                                              ["%" + _phone_core(value)]) if phones_match(r["phone"], value)]
    found = sorted(set(found))
    if not found:
        raise NoSuchCustomer(f"no customer has the {what} {value}")
    if len(found) > 1:
        raise ErasureError(f"{len(found)} customers have the {what} {value} (ids {', '.join(found[:5])}"
                           f"{' ...' if len(found) > 5 else ''}): name one by its customer id")
    return found[0]


def _ours(config: Any, handle: str | None) -> None:
    """Refuse a handle that is one of our brands' or a courier's accounts (``config``'s handles): an imported post
    by @LarkspurHelp, or a courier's post a listener stored like anyone's, made it a "person", and erasing it
    erased our replies on other customers' cases (erasure audit)."""
    if config is None or not handle:
        return
    name = _handle(handle)[1]
    ours = {h.strip().lower().lstrip("@") for entity in [*config.brands, *config.couriers]
            for h in entity.handles.values() if h}
    if name in ours:
        raise ErasureError(f"@{name} is one of our own accounts or a courier's: nothing to erase")


def find_person(store: Store, *, customer_id: str | None = None, handle: str | None = None,
                email: str | None = None, phone: str | None = None, config: Any = None) -> Person:
    """The person named by exactly one of customer id, handle, e-mail or phone: the customer
    :func:`find_customer` finds, else the author of the posts written from a handle, e-mail address or
    phone number no customer has (most people who write to a shop are in no customer record).

    A handle without a network whose posts are on several networks is refused (one line asking for
    ``network:@handle``): @janedoe on X and @janedoe on Mastodon may be two people. One customer who has
    the handle on each network is that customer. Our own posts are never anyone's, and with ``config`` our
    brands' and the couriers' handles are refused."""
    _ours(config, handle)
    try:
        return Person(customer_id=find_customer(store, customer_id=customer_id, handle=handle, email=email,
                                                phone=phone))
    except NoSuchCustomer:
        if customer_id is not None:
            raise
        person = _author(store, handle=handle, email=email, phone=phone)
        if person is None:
            raise
        return person


def _author(store: Store, *, handle: str | None, email: str | None, phone: str | None) -> Person | None:
    """The author of the posts from ``handle`` (any network but e-mail and SMS), ``email`` or ``phone``; None
    when there is none. Raises :class:`ErasureError` for a handle without a network found on several."""
    inbound = "select channel, author_handle from mentions where outbound = 0 and "
    if email is not None:
        address = email.strip().lower()
        found = store.db.execute(inbound + "channel = 'email' and lower(author_handle) = ?", [address]).fetchall()
        return Person(email=address) if found else None
    if phone is not None:
        found = store.db.execute(inbound + f"channel = 'sms' and {_digits_sql('author_handle')} like ?",
                                 ["%" + _phone_core(phone)]).fetchall()
        return Person(phone=phone.strip()) if any(phones_match(r[1], phone) for r in found) else None
    network, name = _handle(handle or "")
    rows = store.db.execute(inbound + "channel not in ('email', 'sms') and lower(author_handle) in (?, ?)",
                            [name, "@" + name]).fetchall()
    networks = sorted({HANDLE_CHANNEL.get(r[0], r[0]) for r in rows})
    if network is not None:
        networks = [n for n in networks if n == network]
    if len(networks) > 1:
        raise ErasureError(f"the handle @{name} has posts on {' and '.join(channel_name(n) for n in networks)} and "
                           f"no customer record: name the network, as "
                           + " or ".join(f"{n}:@{name}" for n in networks))
    return Person(handles=frozenset((n, name) for n in networks)) if networks else None


def person_of_case(store: Store, case_id: int, config: Any = None) -> Person:
    """Whose data the case page's "Erase this person's data" erases: the customer the case is confirmed
    to, else its author (their customer record where one has their handle, e-mail or phone)."""
    rows = store.rows("select customer_id, link_confirmed, channel, author_handle from cases where id = ?", [case_id])
    if not rows:
        raise ErasureError(f"no case {case_id}")
    case = rows[0]
    if case["customer_id"] and case["link_confirmed"]:
        return Person(customer_id=case["customer_id"])
    author, channel = (case["author_handle"] or "").strip(), case["channel"]
    if not author or not channel:
        raise ErasureError(f"case {case_id} has no customer or author left to erase")
    if channel == "email":
        return find_person(store, email=author, config=config)
    if channel == "sms":
        return find_person(store, phone=author, config=config)
    return find_person(store, handle=f"{HANDLE_CHANNEL.get(channel, channel)}:{author}", config=config)


# ------------------------------------------------------------------ what is theirs
@dataclass
class _Scope:
    """Everything of one person's that an erasure touches (ids), and how to mask their known values."""

    customer_id: str | None
    cases: list[int] = field(default_factory=list)
    #: Cases they wrote that speak for another customer too: only their handle, posts and our answers go.
    shared: list[int] = field(default_factory=list)
    linked_cases: list[int] = field(default_factory=list)
    posts: list[int] = field(default_factory=list)
    post_keys: set[tuple[str, str]] = field(default_factory=set)
    others: list[int] = field(default_factory=list)
    messages: list[int] = field(default_factory=list)
    to_them: set[int] = field(default_factory=set)
    unsent: list[int] = field(default_factory=list)
    answers: list[int] = field(default_factory=list)
    questions: list[int] = field(default_factory=list)
    notes: list[int] = field(default_factory=list)
    orders: int = 0
    mask: Callable[[str], str] = str
    #: (network, handle) pairs, e-mail and phone: what a post's, answer's or message's author or address is matched by.
    handles: set[tuple[str, str]] = field(default_factory=set)
    email: str | None = None
    phone: str | None = None
    #: Their names (record and posts) of two words or more (a first name alone would find other people).
    names: set[str] = field(default_factory=set)

    def is_theirs(self, channel: str, address: str | None) -> bool:
        """Whether a post's author or a message's address on ``channel`` is this customer."""
        if not address:
            return False
        if channel == "email":
            return bool(self.email) and address.strip().lower() == self.email
        if channel == "sms":
            return bool(self.phone and phones_match(self.phone, address))
        return (HANDLE_CHANNEL.get(channel, channel), address.strip().lower().lstrip("@")) in self.handles

    def erasure(self) -> Erasure:
        return Erasure(self.customer_id, cases=len(self.cases) + len(self.shared), posts=len(self.posts),
                       messages=len(self.messages), cancelled=len(self.unsent), notes=len(self.notes),
                       answers=len(self.answers), orders=self.orders)


def _ids(store: Store, sql: str, params: Sequence[Any] = ()) -> list[int]:
    return [row[0] for row in store.db.execute(sql, list(params)).fetchall()]


def _in(store: Store, sql: str, ids: Iterable[Any], params: Sequence[Any] = ()) -> list[tuple]:
    """Rows of ``sql`` (which ends in ``in ({})``) for ``ids``, in chunks short enough for one statement."""
    rows: list[tuple] = []
    for chunk in _chunks(ids):
        rows += store.db.execute(sql.format(_marks(chunk)), [*params, *chunk]).fetchall()
    return rows


def _masker(names: Iterable[str | None], addresses: Iterable[str | None], phone: str | None) -> Callable[[str], str]:
    """A function that masks every known value in a text, in any case: a name of two words or more and a
    handle as whole words, an e-mail address anywhere, a phone number in any spelling of its last nine digits.

    A one-word name ("Jane") is not masked: in a note on another case it is most likely another Jane."""
    words = {n.strip() for n in names if n and len(n.split()) > 1}
    words |= {a.strip().lstrip("@") for a in addresses if a and len(a.strip().lstrip("@")) >= 3}
    parts = []
    for value in words:
        word = re.escape(value)
        parts.append(word if "@" in value and "." in value else rf"(?<![\w@])@?{word}(?![\w@])")
    core = re.sub(r"\D", "", phone or "")[-9:]
    if len(core) >= MIN_NATIONAL_DIGITS:  # up to four digits before the core: a country code, a trunk 0
        parts.append(r"(?<![\d+])\+?(?:\d[\s().-]*){0,4}" + r"[\s().-]*".join(core) + r"(?!\d)")
    if not parts:
        return lambda text: text
    pattern = re.compile("|".join(sorted(parts, key=len, reverse=True)), re.IGNORECASE)
    return lambda text: pattern.sub(MASK, text) if isinstance(text, str) else text


def _scope(store: Store, person: Person) -> _Scope:
    """What of ``person``'s an erasure touches, read now (inside the erasure's transaction when it erases)."""
    customer: dict[str, Any] = {}
    if person.customer_id is not None:
        rows = store.rows("select id, name, email, phone from customers where id = ?", [person.customer_id])
        if not rows:
            raise ErasureError(f"no customer has the customer id {person.customer_id}")
        customer = rows[0]
    customer_id = person.customer_id
    scope = _Scope(customer_id, email=(customer.get("email") or person.email or "").strip().lower() or None,
                   phone=(customer.get("phone") or person.phone or "").strip() or None)
    scope.handles = set(person.handles) | {(r["channel"], r["handle"]) for r in store.rows(
        "select channel, handle from customer_handles where customer_id = ?", [customer_id])}
    # Their cases: confirmed to them, or written by one of their handles or addresses.
    cases = set(_ids(store, "select id from cases where customer_id = ? and link_confirmed = 1", [customer_id]))
    scope.linked_cases = _ids(store, "select id from cases where customer_id = ?", [customer_id])
    authors: dict[str, list[str]] = {}  # channel -> their author handles there, lower case, with and without @
    for network, handle in scope.handles:
        for channel in [network, *(dm for dm, net in HANDLE_CHANNEL.items() if net == network)]:
            authors.setdefault(channel, []).extend([handle, "@" + handle])
    if scope.email:
        authors["email"] = [scope.email]
    wrote: set[int] = set()
    for channel, names in authors.items():
        wrote |= {r[0] for r in _in(store, "select id from cases where channel = ? and lower(author_handle) in ({})",
                                    names, [channel])}
    # A phone may be a household's: what it reached on a case linked to another customer is that customer's
    # (erasing Jane erased her housemate's SMS, our follow-up to her and her answer; erasure audit).
    def linked_to_others(case_ids: Iterable[Any]) -> set[Any]:
        return {r[0] for r in _in(store, "select id from cases where customer_id is not null and customer_id != ? "
                                         "and id in ({})", sorted({c for c in case_ids if c is not None}),
                                  [customer_id or ""])}

    if scope.phone:
        by_phone = {r[0] for r in store.db.execute(
            f"select id, author_handle from cases where channel = 'sms' and {_digits_sql('author_handle')} like ?",
            ["%" + _phone_core(scope.phone)]).fetchall() if scope.is_theirs("sms", r[1])}
        wrote |= by_phone - linked_to_others(by_phone)
    # A case they wrote where another author's posts speak for its customer is that customer's too.
    shared = {r[0] for r in _in(store, "select case_id, channel, author_handle from mentions where outbound = 0 and "
                                       "coalesce(by_customer, 1) = 1 and author_handle is not null and case_id in ({})",
                                sorted(wrote - cases)) if not scope.is_theirs(r[1], r[2])}
    scope.cases, scope.shared = sorted(cases | (wrote - shared)), sorted(shared)

    # Their posts, ours in their cases or answering them: erased. Others' in their cases and threads: masked.
    posts = {r[0] for r in _in(store, "select id from mentions where (outbound = 1 or by_customer is null or "
                                      "by_customer = 1) and case_id in ({})", scope.cases)}
    for channel, names in authors.items():
        posts |= {r[0] for r in _in(store, "select id from mentions where outbound = 0 and channel = ? and "
                                           "lower(author_handle) in ({})", names, [channel])}
    if scope.phone:
        texts = [r for r in store.db.execute(
            f"select id, author_handle, case_id from mentions where channel = 'sms' and "
            f"{_digits_sql('author_handle')} like ?", ["%" + _phone_core(scope.phone)]).fetchall()
            if scope.is_theirs("sms", r[1])]
        elsewhere = linked_to_others(r[2] for r in texts)
        posts |= {r[0] for r in texts if r[2] not in elsewhere}
    keys = {(r[0], r[1]) for r in _in(store, "select channel, external_id from mentions where outbound = 0 and "
                                              "id in ({})", posts)}
    posts |= {r[0] for r in _in(store, "select id, channel, in_reply_to from mentions where outbound = 1 and "
                                       "in_reply_to in ({})", sorted({k for _, k in keys})) if (r[1], r[2]) in keys}
    scope.posts = sorted(posts)
    seen = _in(store, "select channel, external_id, thread_id, author_name, author_handle, author_id, outbound "
                      "from mentions where id in ({})", scope.posts)
    scope.post_keys = {(r[0], r[1]) for r in seen}
    threads = {(r[0], r[2]) for r in seen if r[2]}
    others = {r[0] for r in _in(store, "select id from mentions where by_customer = 0 and case_id in ({})",
                                scope.cases + scope.shared)}
    for channel in {c for c, _ in threads}:
        others |= {r[0] for r in _in(store, "select id from mentions where channel = ? and thread_id in ({})",
                                     [t for c, t in threads if c == channel], [channel])}
    scope.others = sorted(others - posts)

    # Messages on their cases, to their addresses or answering their posts; the unsent ones are cancelled.
    columns = "select id, status, kind, target, case_id, channel, in_reply_to from outbound_messages where "
    author_ids = {r[5] for r in seen if r[5] and not r[6] and r[0] not in ("email", "sms")}
    messages = {r[0]: r for r in _in(store, columns + "case_id in ({})", scope.cases)}
    addresses = {scope.email, *(h for _, h in scope.handles), *("@" + h for _, h in scope.handles), *author_ids}
    addressed = [r for r in _in(store, columns + "lower(target) in ({})", sorted(a.lower() for a in addresses if a))
                 if scope.is_theirs(r[5], r[3]) or r[3] in author_ids]
    if scope.phone:
        sms = [r for r in store.db.execute(columns + f"channel = 'sms' and {_digits_sql('target')} like ?",
                                           ["%" + _phone_core(scope.phone)]).fetchall() if scope.is_theirs("sms", r[3])]
        elsewhere = linked_to_others(r[4] for r in sms)
        addressed += [r for r in sms if r[4] not in elsewhere]
    networks = {(HANDLE_CHANNEL.get(c, c), k) for c, k in keys}
    addressed += [r for r in _in(store, columns + "in_reply_to in ({})", sorted({k for _, k in keys}))
                  if (HANDLE_CHANNEL.get(r[5], r[5]), r[6]) in networks]
    messages.update({r[0]: r for r in addressed})
    scope.messages = sorted(messages)
    scope.to_them = {r[0] for r in addressed} | {m for m, r in messages.items() if r[2] in TO_CUSTOMER}
    scope.unsent = sorted(m for m, r in messages.items() if r[1] in UNSENT)

    # Their answers to our questions, the questions asked of them, the notes on their cases.
    answers = {r[0] for r in _in(store, "select id from answers where case_id in ({})", scope.cases)}
    answers |= {r[0] for r in _in(store, "select id, channel, sender from answers where lower(sender) in ({})",
                                  sorted(a.lower() for a in addresses if a)) if scope.is_theirs(r[1], r[2])}
    if scope.phone:
        heard = [r for r in store.db.execute(
            f"select id, channel, sender, case_id from answers where {_digits_sql('sender')} like ?",
            ["%" + _phone_core(scope.phone)]).fetchall() if scope.is_theirs(r[1], r[2])]
        elsewhere = linked_to_others(r[3] for r in heard)
        answers |= {r[0] for r in heard if r[3] not in elsewhere}
    scope.answers = sorted(answers)
    questions = set(_ids(store, "select id from questions where customer_id = ?", [customer_id]))
    questions |= {r[0] for r in _in(store, "select id from questions where case_id in ({})", scope.cases)}
    questions |= {r[0] for r in _in(store, "select id from questions where message_id in ({})", scope.messages)}
    scope.questions = sorted(questions)
    scope.notes = sorted(r[0] for r in _in(store, "select id from notes where case_id in ({})", scope.cases))
    scope.orders = int(store.db.execute("select count(*) from orders where customer_id = ?",
                                        [customer_id]).fetchone()[0])
    theirs = [r for r in seen if not r[6]]  # (not our own posts in their cases)
    names = [customer.get("name"), *(r[3] for r in theirs)]
    scope.names = {n.strip() for n in names if n and len(n.split()) > 1}
    scope.mask = _masker(names, [scope.email, *(h for _, h in scope.handles), *(r[4] for r in theirs if r[0] != "sms")],
                         scope.phone)
    return scope


def _person(who: str | Person) -> Person:
    """A customer id as the customer's :class:`Person`."""
    return who if isinstance(who, Person) else Person(customer_id=who)


def preview_erasure(store: Store, who: str | Person) -> Erasure:
    """What :func:`erase_customer` would change now (counts only); writes nothing. ``who``: a customer id or a
    :class:`Person`."""
    return _scope(store, _person(who)).erasure()


# ------------------------------------------------------------------ erasing
def _mask_json(value: Any, mask: Callable[[str], str], all_text: bool = False, key: str = "") -> Any:
    """``value`` (parsed JSON) with every string masked; ``all_text``: strings that may be someone's words
    (more than one word, an address, or under a key in FREE_TEXT_KEYS) become MARKER."""
    if isinstance(value, dict):
        return {k: _mask_json(v, mask, all_text, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask_json(v, mask, all_text, key) for v in value]
    if not isinstance(value, str):
        return value
    if all_text and not value.startswith("$") and (key in FREE_TEXT_KEYS or re.search(r"[\s@]", value)):
        return MARKER  # ("$SLACK_WEBHOOK_URL": a reference to our own address, never someone's words)
    return mask(value)


def _mask_text(text: str | None, mask: Callable[[str], str], all_text: bool = False) -> str | None:
    """A stored text or JSON text with the known values masked (see :func:`_mask_json`)."""
    if not text:
        return text
    try:
        parsed = json.loads(text)
    except ValueError:
        return MARKER if all_text else mask(text)
    if not isinstance(parsed, (dict, list)):
        return MARKER if all_text else mask(text)
    masked = _mask_json(parsed, mask, all_text)
    return text if masked == parsed else json.dumps(masked, ensure_ascii=False, separators=(",", ":"))


def _mask_rows(store: Store, table: str, key: str, columns: Sequence[str], where: str = "", params: Sequence[Any] = (),
               mask: Callable[[str], str] = str, all_text: bool = False) -> int:
    """Mask ``columns`` of the rows of ``table`` that ``where`` selects (all rows without it); the rows changed."""
    changed = 0
    sql = f"select {key}, {', '.join(columns)} from {table}" + (f" where {where}" if where else "")
    for row in store.rows(sql, params):
        new = {c: _mask_text(row[c], mask, all_text) for c in columns}
        new = {c: v for c, v in new.items() if v != row[c]}
        if new:
            store.db.execute(f"update {table} set {', '.join(f'{c} = ?' for c in new)} where {key} = ?",
                             [*new.values(), row[key]])
            changed += 1
    return changed


def _update(store: Store, sql: str, ids: Iterable[Any], params: Sequence[Any] = ()) -> None:
    """``sql`` (ending in ``in ({})``) for ``ids``, chunk by chunk."""
    for chunk in _chunks(ids):
        store.db.execute(sql.format(_marks(chunk)), [*params, *chunk])


def _forget_alerts(store: Store, scope: _Scope) -> None:
    """The alert state: incidents of their cases keep their time but not why; held alerts about them are dropped."""
    rows = store.rows("select value from cursors where name = ?", [ALERT_STATE_CURSOR])
    if not rows or not rows[0]["value"]:
        return
    try:
        state = json.loads(rows[0]["value"])
    except ValueError:
        return
    if not isinstance(state, dict):
        return
    cases, before = set(scope.cases), json.dumps(state)
    if isinstance(state.get("held"), list):
        state["held"] = [h for h in state["held"]
                         if not (isinstance(h, dict) and (h.get("firing") or {}).get("case_id") in cases)]
    for name, incident in (state.get("incidents") or {}).items():
        if isinstance(incident, dict) and any(name.endswith(f":case:{case_id}") for case_id in cases):
            incident["why"] = MARKER
    if json.dumps(state) != before:
        store.db.execute("update cursors set value = ? where name = ?", [json.dumps(state), ALERT_STATE_CURSOR])


def _forget_staged_posts(store: Store, scope: _Scope) -> None:
    """Posts waiting in the job queue (PostgreSQL workers): theirs are dropped, others' masked."""
    for row in store.rows("select id, posts from job_batches"):
        try:
            posts = json.loads(row["posts"])
        except ValueError:
            continue
        kept = [p for p in posts if not (isinstance(p, dict) and (
            (p.get("channel"), p.get("external_id")) in scope.post_keys
            or scope.is_theirs(str(p.get("channel")), p.get("author_handle"))))]
        masked = _mask_json(kept, scope.mask)
        if masked != posts:
            store.db.execute("update job_batches set posts = ? where id = ?",
                             [json.dumps(masked, separators=(",", ":")), row["id"]])


def erase_customer(store: Store, who: str | Person, actor: str, *, permission_of: str | None = None) -> Erasure:
    """Erase one person's personal data (``who``: a customer id or a :class:`Person`; see the module's
    docstring), in one transaction, and audit it by ``actor`` without personal data ("customer.erase":
    counts only). Returns what was erased.

    Only an admin may (permission "erase_personal_data"), checked here, in the transaction, so a page
    that forgot its check erases nothing. ``permission_of``: whose permission is checked when that is not
    ``actor``'s: the command line passes "cli" (whoever runs it holds the database already) and records
    its ``--as`` name, often the data protection officer's and no console user, as ``actor``."""
    person = _person(who)
    customer_id = person.customer_id
    with store.write_transaction():
        require(store, permission_of or actor, "erase_personal_data", "erase personal data")
        scope = _scope(store, person)
        mask = scope.mask
        cancelled = CANCELLED_BY_ERASURE
        _update(store, "update mentions set text = ?, author_handle = null, author_name = null, author_id = null, "
                       "url = null, raw = null where id in ({})", scope.posts, [MARKER])
        _update(store, "update label_corrections set text = ? where mention_id in ({})", scope.posts, [MARKER])
        for chunk in _chunks(scope.others):
            _mask_rows(store, "mentions", "id", ("text", "author_name", "raw"), f"id in ({_marks(chunk)})", chunk, mask)
        _update(store, "update outbound_messages set status = 'cancelled', last_error = ?, next_attempt_at = null "
                       "where id in ({})", scope.unsent, [cancelled])
        _update(store, "update automatic_messages set cancel_reason = ? where message_id in ({})", scope.unsent,
                [CANCEL_REASON])
        _update(store, "update outbound_messages set text = ? where id in ({})", scope.messages, [MARKER])
        _update(store, "update outbound_messages set target = null where id in ({})", scope.to_them)
        for chunk in _chunks(scope.messages):
            _mask_rows(store, "outbound_messages", "id", ("last_error", "idempotency_key"),
                       f"id in ({_marks(chunk)})", chunk, mask)
        _update(store, "update answers set text = ?, sender = null where id in ({})", scope.answers, [MARKER])
        for chunk in _chunks(scope.answers):
            _mask_rows(store, "answers", "id", ("outcome",), f"id in ({_marks(chunk)})", chunk, mask)
        _update(store, "update questions set status = 'cancelled' where status = 'open' and id in ({})",
                scope.questions)
        _update(store, "update questions set target = null, address_key = null, customer_id = null, "
                       "answer = case when answer is null then null else ? end where id in ({})",
                scope.questions, [MARKER])
        _update(store, "update callbacks set status = 'cancelled' where status in ('offered', 'scheduled') "
                       "and case_id in ({})", scope.cases)
        _update(store, "update callbacks set phone = null, slot_text = case when slot_text is null then null else ? "
                       "end where case_id in ({})", scope.cases, [MARKER])
        for chunk in _chunks(scope.cases):
            _mask_rows(store, "callbacks", "id", ("reason",), f"case_id in ({_marks(chunk)})", chunk, mask)
            _mask_rows(store, "courier_updates", "id", ("text",), f"case_id in ({_marks(chunk)})", chunk, mask)
            _mask_rows(store, "audit_events", "id", ("details",), f"case_id in ({_marks(chunk)})", chunk, mask,
                       all_text=True)
        _update(store, "update notes set text = ? where id in ({})", scope.notes, [MARKER])
        _mask_rows(store, "notes", "id", ("text",), mask=mask)
        _mask_audit_elsewhere(store, scope)
        _mask_rows(store, "tracking_events", "id", ("location", "description"),
                   "tracking_number in (select tracking_number from shipments where order_number in "
                   "(select number from orders where customer_id = ?))", [customer_id], mask)
        _mask_rows(store, "listener_health", "name", ("last_error", "last_warning"), mask=mask)
        _mask_rows(store, "import_runs", "id", ("message",), mask=mask)
        _forget_alerts(store, scope)
        handles = {h for _, h in scope.handles}
        for row in store.rows("select name from cursors"):  # a cache keyed by their handle ("x:user:<handle>")
            if row["name"].lower().rsplit(":", 1)[-1].lstrip("@") in handles:
                store.db.execute("delete from cursors where name = ?", [row["name"]])
        _mask_rows(store, "cursors", "name", ("value",), mask=mask)
        _forget_staged_posts(store, scope)
        store.db.execute("update contact_attempts set customer_id = null where customer_id = ?", [customer_id])
        store.db.execute("update automatic_messages set customer_id = null where customer_id = ?", [customer_id])
        _update(store, "update cases set author_handle = null, version = version + 1, updated_by = ? where id in ({})",
                scope.cases + scope.shared, [actor])
        _update(store, "update cases set customer_id = null, version = version + 1, updated_by = ? where id in ({})",
                scope.linked_cases, [actor])
        store.db.execute("delete from customer_handles where customer_id = ?", [customer_id])
        store.db.execute("delete from customers where id = ?", [customer_id])
        erasure = scope.erasure()
        for case_id in scope.cases + scope.shared:
            store.audit(actor, "customer.erase", case_id, {"customer_id": customer_id})
        store.audit(actor, "customer.erase", None, erasure.details())
    return erasure


def _mask_audit_elsewhere(store: Store, scope: _Scope) -> None:
    """Audit details outside their cases that name them (an agent's words on another case, an answer from
    their phone that found no case): found by their known values, and by the ids of their answers and messages."""
    needles = {v.lower() for v in (scope.email, scope.phone, *scope.names, *(h for _, h in scope.handles))
               if v and len(v) >= 3}
    if scope.phone:
        needles.add(_phone_core(scope.phone))
    if needles:
        where = " or ".join(["lower(details) like ?"] * len(needles))
        _mask_rows(store, "audit_events", "id", ("details",), where, [f"%{n}%" for n in sorted(needles)], scope.mask)
    ours = {("reply_id", i) for i in scope.answers} | {("message_id", i) for i in scope.messages}
    if not ours:
        return
    for row in store.rows("select id, details from audit_events where case_id is null and "
                          "(details like ? or details like ?)", ['%"reply_id":%', '%"message_id":%']):
        try:
            details = json.loads(row["details"] or "{}")
        except ValueError:
            continue
        if isinstance(details, dict) and any((k, details.get(k)) in ours for k in ("reply_id", "message_id")):
            store.db.execute("update audit_events set details = ? where id = ?",
                             [_mask_text(row["details"], scope.mask, all_text=True), row["id"]])
