"""What each of our accounts has used today: requests, posts read, posts and messages sent.

X bills reads and posts per account, and every token has its own rate-limit windows, so the
listeners and senders count per account (one ``cursors`` row each, ``usage:<channel>:<handle>``,
reset at UTC midnight) and the console's Channels page shows it. An account with
``max_reads_per_day`` / ``max_posts_per_day`` stops reading / posting for the day when the
budget is spent, visibly (a listener error, a message that waits), never silently.
"""

from __future__ import annotations

import json
from typing import Any

from doorstep.config import Config, find_account
from doorstep.models import utcnow
from doorstep.store import Store

COUNTERS = ("requests", "reads", "posts", "rate_limited")


def _name(channel: str, handle: str) -> str:
    return f"usage:{channel}:{handle.lower().lstrip('@')}"


def account_usage(store: Store, channel: str, handle: str) -> dict[str, Any]:
    """Today's figures for one account (zeros on a new day)."""
    today = utcnow().date().isoformat()
    raw = store.get_cursor(_name(channel, handle))
    data = json.loads(raw) if raw else {}
    if data.get("day") != today:
        data = {"day": today, **{c: 0 for c in COUNTERS}, "rate": data.get("rate")}
    return data


def record_account_usage(store: Store, channel: str, handle: str, *, requests: int = 0, reads: int = 0,
                         posts: int = 0, rate_limited: int = 0, rate: dict[str, str] | None = None) -> None:
    """Add to today's counters of an account; ``rate`` is the last x-rate-limit-* headers seen."""
    if not handle:
        return
    data = account_usage(store, channel, handle)
    for name, value in (("requests", requests), ("reads", reads), ("posts", posts), ("rate_limited", rate_limited)):
        data[name] = int(data.get(name) or 0) + value
    if rate:
        data["rate"] = rate
    store.set_cursor(_name(channel, handle), json.dumps(data, separators=(",", ":")))


def account_usage_allows(store: Store, config: Config, channel: str, handle: str, what: str) -> bool:
    """False when the account's daily budget for ``what`` ("reads" or "posts") is spent."""
    account = find_account(config, channel, handle)
    if account is None:
        return True
    cap = account.max_reads_per_day if what == "reads" else account.max_posts_per_day
    return cap is None or int(account_usage(store, channel, handle).get(what) or 0) < cap
