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

E-mail is the same: a brand's customers are written to From its own ``email``. The shared
``SMTP_FROM`` sends only where it cannot be another brand's address: a shop with one brand (it is
the shop's own), a file where no brand has an address (an old single-account file), or a case of
no brand at all. Cases and orders keep the brand's *name*; a brand renamed or removed in
doorstep.toml is named in the refusal, so the shop can put the name back.
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
        account = case_mailbox(store, config, case)
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


def case_mailbox(store: Store, config: Config, case: Case) -> AccountRef | None:
    """The e-mail account of the brand that owns the case's order, else of the case's brand (None: it has none)."""
    return brand_account(config, _order_brand(store, case) or case.brand, "email")


def no_account_refusal(config: Config, brand: str, network: str) -> ReplyRejected:
    """Why a post or e-mail of ``brand`` is not answered on ``network``: the brand has no account there,
    or it is not a brand of doorstep.toml any more (cases and orders keep the name they were opened
    with, so a rename leaves them with a name no brand has)."""
    what = "e-mail" if network == "email" else f"post on {network}"
    if not any(b.name == brand for b in config.brands):
        return ReplyRejected(
            f'"{brand}" is not a brand in doorstep.toml any more (renamed or removed?), and its cases and orders '
            f"keep that name, so no account of ours answers this {what} (another brand's must not); put "
            f'name = "{brand}" back in its [[brands]] entry')
    if network == "email":
        return ReplyRejected(f"{brand} has no e-mail address in doorstep.toml, so this e-mail is not sent From another "
                             f"brand's (SMTP_FROM); set email = \"...\" in the [[brands]] entry of {brand}")
    return ReplyRejected(f"{brand} has no {network} account, so this post is not answered on {network} "
                         "(another brand's account must not answer it)")


def shared_mailbox_refusal(store: Store, config: Config, case: Case) -> ReplyRejected | None:
    """Why a customer e-mail of ``case`` may not go From the shared ``SMTP_FROM`` (None: it may).

    It may in a shop with one brand (``SMTP_FROM`` is the shop's own address), where no brand has an
    address (an old single-account file), and for a case of no brand; otherwise ``SMTP_FROM`` may be
    another brand's address, and that brand must never write to this one's customers. A brand that is
    not in doorstep.toml any more is refused even where one brand is left: it may be the other brand
    of the shop, removed, and SMTP_FROM the address of the one that is left.
    """
    brand = _order_brand(store, case) or case.brand
    if not brand or not config.brands:
        return None
    if not any(b.name == brand for b in config.brands):
        return no_account_refusal(config, brand, "email")
    if len(config.brands) <= 1 or not brand_accounts(config, "email"):
        return None
    own = brand_account(config, brand, "email")
    if own is not None:
        return ReplyRejected(f"this e-mail was queued without {brand}'s address, and SMTP_FROM may be another "
                             f"brand's: queue it again from the case (it then goes from {own.handle})")
    return no_account_refusal(config, brand, "email")


def _deciding_brand(store: Store, config: Config, case: Case, parent: Mention | None) -> str | None:
    """The brand a post belongs to when no account of ours is named on it: a brand the post names, else the
    order's (a post on a courier's page names no brand), else the case's.

    The brand named first: "Larkspur, UPS says it was delivered" whose author's linked order was Fettle's was
    answered by @FettleCare while its case read Larkspur Home (two-brand browser audit)."""
    brands = [n for n in parent.matched if any(b.name == n for b in config.brands)] if parent is not None else []
    brands += [_order_brand(store, case), case.brand]
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
    candidates. None is returned only where the channel's shared sender may answer: the network has
    no brand accounts configured at all, or (e-mail) :func:`shared_mailbox_refusal` allows it.
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
        if not candidates:
            # The post is that brand's, and it has no account here: no other brand answers it either.
            refusal = shared_mailbox_refusal(store, config, case) if network == "email" else None
            owner = None if network == "email" else _deciding_brand(store, config, case, parent)
            if refusal is not None or owner:
                raise refusal or no_account_refusal(config, owner, network)  # type: ignore[arg-type]
        return chosen
    if len(candidates) == 1:
        return candidates[0]
    if len(candidates) > 1:
        labels = [a.label for a in candidates]
        raise AccountChoiceNeeded(f"the post reached {' and '.join(labels)}: choose the account to reply from",
                                  [a.handle for a in candidates])
    if network == "email":
        refusal = shared_mailbox_refusal(store, config, case)
        if refusal is not None:
            raise refusal
        return None  # one brand, no brand addresses at all, or a case of no brand: SMTP_FROM
    if not configured:
        return None  # an old single-account file: the channel's shared sender
    brand = _deciding_brand(store, config, case, parent)
    if brand:
        raise no_account_refusal(config, brand, network)
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
