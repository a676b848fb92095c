"""Asking privately: a direct message on the customer's own network, never a public post.

"Ask for details privately" used to queue the question as a public reply. Here it becomes a
direct message from the same brand account the customer wrote to: an X direct message, a
Mastodon status with ``visibility="direct"`` (only the mentioned customer sees it), a Bluesky
chat message, or, where the network has no private route, an e-mail to the address on the
confirmed order record. The DM listeners bring the customer's private answer back into the
same case (see ``listeners.x.XListener`` and ``listeners.mastodon``), where an order number
given privately confirms the link (``doorstep.linking``: a private channel proves ownership).
"""

from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Iterable
from typing import Any

from doorstep.config import Config
from doorstep.models import Mention, OutboundMessage, utcnow
from doorstep.permissions import require
from doorstep.store import Store
from doorstep.text import shorten
from responders.accounts import choose_account
from responders.channels import DM_CHANNELS, PUBLIC_CHANNELS, ReplyRejected, check_limits
from responders.outbox import (
    _key,
    _privacy_check,
    _write_lock,
    check_one_answer,
    enqueue,
    is_customers_post,
    queue_reply,
)


@dataclass(frozen=True)
class PrivatePlan:
    """What "ask privately" would do, for the preview: where, from whom, to whom, about which post."""

    channel: str
    account: str | None
    #: Where the message is addressed: an X user id, "@acct", a DID, or an e-mail address.
    recipient: str
    about: Mention | None
    #: How the customer is shown in the preview ("@sienna_l").
    recipient_name: str = ""

    def describe(self) -> str:
        network = {"x_dm": "X direct message", "mastodon_dm": "Mastodon direct message",
                   "bluesky_dm": "Bluesky chat message", "email": "e-mail"}.get(self.channel, self.channel)
        sender = f"from @{self.account}" if self.account and self.channel != "email" else \
            f"from {self.account}" if self.account else "from our shared sender"
        about = ""
        if self.about is not None:
            about = f", about their post \u201c{shorten(self.about.text, 60)}\u201d"
        return f"{network} {sender} to {self.recipient_name or self.recipient}{about} (private: nothing is posted publicly)"


def _latest_own(store: Store, case: Any, channels: Iterable[str]) -> Mention | None:
    """The customer's newest post of the case on ``channels``; a stranger who answered in the
    customer's thread joins the case, but a private message goes to the customer, not to them."""
    wanted = set(channels)
    posts = [m for m in store.mentions_for_case(case.id) if not m.outbound and m.channel in wanted
             and is_customers_post(store, case, m)]
    return max(posts, key=lambda m: (m.created_at, m.id or 0)) if posts else None


def plan_private(store: Store, config: Config, case_id: int, *, channel: str | None = None,
                 account: str | None = None, about: Mention | None = None) -> PrivatePlan:
    """Where a private question for this case goes (raises ReplyRejected when nowhere)."""
    case = store.get_case(case_id)
    if case is None:
        raise ReplyRejected(f"no case {case_id}")
    if channel == "email":
        return _email_plan(store, config, case_id, account)
    network = channel.removesuffix("_dm") if channel else None
    post = about  # the agent's choice (their own post, or a stranger's: then without the customer's details)
    if post is None and channel and channel.endswith("_dm"):  # answering the customer's own DM
        post = _latest_own(store, case, [channel])
    post = post or _latest_own(store, case, [network] if network else PUBLIC_CHANNELS)
    if post is None:
        return _email_plan(store, config, case_id, account)
    dm_channel = DM_CHANNELS.get(post.channel, post.channel)
    if post.channel in PUBLIC_CHANNELS and _opted_out(store, case, "dm"):
        # Answering a DM the customer sent us is a conversation; a DM we start after STOP is not.
        raise ReplyRejected("the customer opted out of direct messages (STOP): answer them publicly or where they write")
    sender = choose_account(store, config, case, dm_channel, post, account)
    if post.channel in ("x", "x_dm"):
        recipient = post.author_id if post.author_id and post.author_id.isdigit() else f"@{post.author_handle}"
    else:
        bluesky = post.channel in ("bluesky", "bluesky_dm")
        recipient = post.author_id if bluesky and post.author_id else f"@{post.author_handle}"
    if not post.author_handle and not post.author_id:
        raise ReplyRejected(f"post {post.external_id} has no author to message privately")
    return PrivatePlan(dm_channel, sender.handle if sender else None, recipient, post,
                       f"@{post.author_handle}" if post.author_handle else recipient)


def _opted_out(store: Store, case: Any, channel: str) -> bool:
    """Whether the case's (confirmed) customer asked us not to write to them on ``channel``."""
    if not case.link_confirmed or not case.customer_id:
        return False
    customer = store.get_customer(case.customer_id)
    return customer is not None and (channel in customer.opt_out or "all" in customer.opt_out)


def _email_plan(store: Store, config: Config, case_id: int, account: str | None) -> PrivatePlan:
    case = store.get_case(case_id)
    assert case is not None
    if not case.link_confirmed or not case.customer_id:
        raise ReplyRejected("the post's network has no direct messages here, and the order record's e-mail is "
                            "only used once the order is confirmed as the customer's")
    customer = store.get_customer(case.customer_id)
    if customer is None or not customer.email:
        raise ReplyRejected("no e-mail address on the order record")
    if _opted_out(store, case, "email"):
        raise ReplyRejected("the customer opted out of e-mail")
    sender = choose_account(store, config, case, "email", None, account)
    return PrivatePlan("email", sender.handle if sender else None, customer.email, None)


def queue_private(store: Store, config: Config, case_id: int, text: str, actor: str, *,
                  plan: PrivatePlan | None = None, idempotency_key: str | None = None, force: bool = False,
                  seen_up_to: int | None = None, acknowledged_up_to: int | None = None,
                  seen_status: str | None = None) -> OutboundMessage:
    """Queue ``text`` as a private message to the case's customer (see :func:`plan_private`).

    The one-answer rule of public replies holds here too, checked the same way
    (:func:`responders.outbox.check_one_answer`): if someone answered the post (or a later one), is
    drafting, or resolved the case since the agent saw it as ``seen_status``,
    :class:`responders.outbox.AlreadyAnswered` says who, unless ``force`` (limited to what the agent
    was shown by ``acknowledged_up_to``); sent anyway on a resolved case, it reopens the case.
    """
    plan = plan or plan_private(store, config, case_id)
    if plan.channel == "email":
        return queue_reply(store, config, case_id, text, actor, channel="email", account=plan.account, force=force,
                           seen_up_to=seen_up_to, acknowledged_up_to=acknowledged_up_to, seen_status=seen_status)
    case = store.get_case(case_id)
    assert case is not None
    text = text.strip()
    _privacy_check(store, case, plan.channel, text, plan.about)  # to a stranger: none of the customer's details
    check_limits(plan.channel, text, recipient=plan.recipient)  # a Mastodon DM is posted with its @mention
    key = idempotency_key or _key("private", case_id, plan.channel, plan.recipient, text)
    with _write_lock(store):
        require(store, actor, "reply", f"send a private message on case {case_id}", services=True)
        # Same transaction as the insert (see queue_reply): nobody answers in between.
        if store.db.execute("select 1 from outbound_messages where idempotency_key = ?", [key]).fetchone():
            answered = None  # a double click: enqueue gives back the message already queued
        else:
            answered = check_one_answer(store, case, plan.about, actor, seen_up_to=seen_up_to, force=force,
                                        now=utcnow(), acknowledged_up_to=acknowledged_up_to, seen_status=seen_status)
        # The post it answers, as a public reply records it: the one-answer check counts a message naming
        # the post whenever it was queued. With none, it counted only if queued after the colleague opened
        # the case, so a DM sent 8 s before priya opened it let her public reply through (twobrands audit,
        # F3). The senders of direct messages never post it as a reply (responders.channels).
        about = plan.about.external_id if plan.about is not None else None
        message = enqueue(store, kind="reply", channel=plan.channel, text=text, actor=actor, idempotency_key=key,
                          case_id=case_id, target=plan.recipient, in_reply_to=about, account=plan.account)
        if answered is not None:
            answered.record(store, actor, message, {"channel": plan.channel})
    if answered is not None:
        answered.reopen_if_needed(store, config, actor)
    return message
