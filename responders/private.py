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

from doorstep.config import Config
from doorstep.models import Mention, OutboundMessage
from doorstep.store import Store
from responders.accounts import choose_account
from responders.channels import DM_CHANNELS, PUBLIC_CHANNELS, ReplyRejected, check_limits
from responders.outbox import _key, _privacy_check, enqueue, queue_reply


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
            text = self.about.text if len(self.about.text) <= 60 else self.about.text[:59] + "…"
            about = f", about their post \u201c{text}\u201d"
        return f"{network} {sender} to {self.recipient_name or self.recipient}{about} (private: nothing is posted publicly)"


def _latest_public(store: Store, case_id: int, channel: str | None = None) -> Mention | None:
    posts = [m for m in store.mentions_for_case(case_id) if not m.outbound and m.channel in PUBLIC_CHANNELS
             and (channel is None or m.channel == channel)]
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
    post = about
    if post is None and channel and channel.endswith("_dm"):  # answering the customer's own DM
        dms = [m for m in store.mentions_for_case(case_id) if not m.outbound and m.channel == channel]
        post = max(dms, key=lambda m: (m.created_at, m.id or 0)) if dms else None
    post = post or _latest_public(store, case_id, network)
    if post is None:
        return _email_plan(store, config, case_id, account)
    dm_channel = DM_CHANNELS.get(post.channel, post.channel)
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


def _email_plan(store: Store, config: Config, case_id: int, account: str | None) -> PrivatePlan:
    case = store.get_case(case_id)
    assert case is not None
    if not case.link_confirmed or not case.customer_id:
        raise ReplyRejected("no private route: the post's network has no direct messages here and the order "
                            "record's e-mail is only used once the order is confirmed as the customer's")
    customer = store.get_customer(case.customer_id)
    if customer is None or not customer.email:
        raise ReplyRejected("no e-mail address on the order record")
    sender = choose_account(store, config, case, "email", None, account)
    return PrivatePlan("email", sender.handle if sender else None, customer.email, None)


def queue_private(store: Store, config: Config, case_id: int, text: str, actor: str, *,
                  plan: PrivatePlan | None = None, idempotency_key: str | None = None) -> OutboundMessage:
    """Queue ``text`` as a private message to the case's customer (see :func:`plan_private`)."""
    plan = plan or plan_private(store, config, case_id)
    if plan.channel == "email":
        return queue_reply(store, config, case_id, text, actor, channel="email", account=plan.account)
    case = store.get_case(case_id)
    assert case is not None
    text = text.strip()
    _privacy_check(store, case, plan.channel, text)
    check_limits(plan.channel, text)
    in_reply_to = None
    key = idempotency_key or _key("private", case_id, plan.channel, plan.recipient, text)
    return enqueue(store, kind="reply", channel=plan.channel, text=text, actor=actor, idempotency_key=key,
                   case_id=case_id, target=plan.recipient, in_reply_to=in_reply_to, account=plan.account)
