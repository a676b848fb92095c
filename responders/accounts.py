"""Which of our accounts a reply goes out from: the one the customer wrote to, never another brand's.

Each brand has its own X, Mastodon and Bluesky accounts and e-mail address (``[[brands]]``
``accounts``/``handles`` in doorstep.toml). A reply to a post is sent from, in this order:

1. the account the post arrived on (its mentions timeline, notifications or inbox);
2. the brand account(s) the post @-mentions: one is the answer, several are ambiguous and
   the agent chooses (the composer asks);
3. the account that wrote the post it answers (a customer replying in our thread);
4. the brand that owns the case's order (a post on a courier's page names no brand);
5. the brand the post or the case is about.

A brand with no account on that network does not answer there at all: the reply is refused
rather than sent from another brand's account. A configuration without any account on the
network (an old single-account file) keeps its shared credentials.
"""

from __future__ import annotations

import re

from doorstep.config import AccountRef, Config, brand_account, brand_accounts, find_account
from doorstep.models import Case, Mention
from doorstep.store import Store
from responders.channels import ReplyRejected, network_of


class AccountChoiceNeeded(ReplyRejected):
    """The post reached more than one of our accounts: the agent says which one answers."""

    def __init__(self, reason: str, choices: list[str]):
        super().__init__(reason)
        self.choices = choices


def _mentioned(config: Config, network: str, text: str) -> list[AccountRef]:
    low = text.lower()
    found = []
    for account in brand_accounts(config, network):
        pattern = r"(?<![\w@.])@" + re.escape(account.handle.lower()) + r"(?![\w])"
        if re.search(pattern, low):
            found.append(account)
    return found


def candidate_accounts(store: Store, config: Config, case: Case, channel: str, parent: Mention | None) -> list[AccountRef]:
    """Our accounts that could answer ``parent`` on ``channel``, best evidence first (see module doc)."""
    network = network_of(channel)
    if network == "email":
        brand = _order_brand(store, case) or case.brand
        account = brand_account(config, brand, "email")
        return [account] if account else []
    if parent is not None:
        if parent.account:
            arrived = find_account(config, network, parent.account)
            if arrived:
                return [arrived]
        mentioned = _mentioned(config, network, parent.text)
        if mentioned:
            return mentioned
        if parent.in_reply_to:
            answered = store.mention_by_external_id(parent.channel, parent.in_reply_to)
            ours = find_account(config, network, answered.author_handle) if answered and answered.outbound else None
            if ours:
                return [ours]
    brand = _deciding_brand(store, config, case, parent)
    account = brand_account(config, brand, network) if brand else None
    return [account] if account else []


def _deciding_brand(store: Store, config: Config, case: Case, parent: Mention | None) -> str | None:
    """The brand a post belongs to when no account of ours is named on it: the order's, else a brand
    the post names, else the case's."""
    brands = [_order_brand(store, case)]
    if parent is not None:
        brands += [n for n in parent.matched if any(b.name == n for b in config.brands)]
    brands.append(case.brand)
    return next((brand for brand in brands if brand), None)


def _order_brand(store: Store, case: Case) -> str | None:
    if not case.order_number:
        return None
    order = store.order_summary(case.order_number)
    return order.brand if order else None


def choose_account(store: Store, config: Config, case: Case, channel: str, parent: Mention | None,
                   requested: str | None = None) -> AccountRef | None:
    """The account a reply on ``channel`` to ``parent`` goes out from; raises ReplyRejected when none may.

    ``requested`` is the agent's choice where the post is ambiguous; it must be one of the
    candidates. None is returned only when the network has no brand accounts configured at all.
    """
    network = network_of(channel)
    configured = brand_accounts(config, network)
    candidates = candidate_accounts(store, config, case, channel, parent)
    if requested:
        chosen = find_account(config, network, requested)
        if chosen is None:
            raise ReplyRejected(f"{requested} is not one of our {network} accounts")
        if candidates and chosen not in candidates:
            wrote_to = " or ".join(a.label for a in candidates)
            raise ReplyRejected(f"the customer wrote to {wrote_to}; a reply from {chosen.label} would be another brand's")
        owner = None if candidates or network == "email" else _deciding_brand(store, config, case, parent)
        if owner:  # the post is that brand's, and it has no account here: no other brand answers it either
            raise ReplyRejected(f"{owner} has no {network} account, so this post is not answered on {network} "
                                "(another brand's account must not answer it)")
        return chosen
    if len(candidates) == 1:
        return candidates[0]
    if len(candidates) > 1:
        labels = [a.label for a in candidates]
        raise AccountChoiceNeeded(f"the post reached {' and '.join(labels)}: choose the account to reply from",
                                  [a.handle for a in candidates])
    if not configured or network == "email":
        return None  # an old single-account file (or no brand address): the channel's shared sender
    brand = _deciding_brand(store, config, case, parent)
    if brand:
        raise ReplyRejected(f"{brand} has no {network} account, so this post is not answered on {network} "
                            "(another brand's account must not answer it)")
    raise ReplyRejected(f"no brand account on {network} is tied to this post; choose the account to reply from")


def note_sent(store: Store, channel: str, account: str | None) -> None:
    """Count a post or message an account sent today (X bills posts; the Channels page shows it)."""
    if account:
        from doorstep.accounts import record_account_usage

        record_account_usage(store, network_of(channel), account, posts=1, requests=1)


def posting_budget_spent(store: Store, config: Config, channel: str, account: str | None) -> bool:
    """True when the account's ``max_posts_per_day`` is used up (the message waits for tomorrow)."""
    if not account:
        return False
    from doorstep.accounts import account_usage_allows

    return not account_usage_allows(store, config, network_of(channel), account, "posts")
