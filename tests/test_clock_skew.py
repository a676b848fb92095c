"""A network whose clock runs a few minutes fast (time audit L1): its posts are taken (up to
``MAX_FUTURE_SKEW`` ahead), but a case never opens in the future and a first response is never negative."""

from __future__ import annotations

from datetime import timedelta

from doorstep import metrics
from doorstep.models import utcnow
from doorstep.store import Store
from responders.outbox import Outbox, get_message, queue_reply

from test_outbox import SmtpSink, XEmulator, emulator, make_case, shop_config, smtp  # noqa: F401 - fixtures


def test_a_post_stamped_ahead_of_our_clock_stands_at_the_time_we_received_it(store: Store, emulator: XEmulator) -> None:
    config = shop_config()
    before = utcnow().replace(microsecond=0)  # (times are stored to the second)
    case_id = make_case(store, config, emulator, created_at=before + timedelta(minutes=4),
                        text="@LarkspurHelp my parcel never arrived, this is urgent")
    after = utcnow()
    case = store.get_case(case_id)
    assert case is not None and before <= case.opened_at <= after
    assert store.mentions_for_case(case_id)[0].created_at <= after
    message = queue_reply(store, config, case_id, "@jane so sorry, we're looking into it now", "sam")
    Outbox(store, config).send_due()
    assert get_message(store, message.id).status == "sent"  # type: ignore[arg-type]
    case = store.get_case(case_id)
    assert case is not None and case.first_response_at is not None
    assert case.first_response_at >= case.opened_at
    figures = metrics.headline(store, before - timedelta(hours=1), before + timedelta(hours=1), "Europe/London")
    assert figures["first_response_median_min"] is not None and figures["first_response_median_min"] >= 0


def test_the_two_times_of_the_repeated_hour_read_differently() -> None:
    """On 25 Oct 2026 London's 01:00-02:00 happens twice: a post at 00:30 UTC and one at 01:30 UTC both read
    "Sun 25 Oct 01:30" (time audit, left open), so a timeline seemed to go back in time. In the repeated hour
    the zone's name says which (BST, then GMT); every other time stays as the team reads it."""
    from datetime import datetime, timezone

    from doorstep.config import parse_config

    config = parse_config({"timezone": "Europe/London"})
    first = config.local_time(datetime(2026, 10, 25, 0, 30, tzinfo=timezone.utc))
    second = config.local_time(datetime(2026, 10, 25, 1, 30, tzinfo=timezone.utc))
    assert (first, second) == ("Sun 25 Oct 01:30 BST", "Sun 25 Oct 01:30 GMT")
    assert config.local_time(datetime(2026, 10, 25, 2, 30, tzinfo=timezone.utc)) == "Sun 25 Oct 02:30"
    assert config.local_time(datetime(2026, 10, 24, 23, 30, tzinfo=timezone.utc)) == "Sun 25 Oct 00:30"
    assert config.local_time(datetime(2026, 10, 25, 0, 30, tzinfo=timezone.utc), "%d %b") == "25 Oct"
