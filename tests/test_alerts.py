"""Complaint alerts: spike detection on synthetic traffic, rules, dedup, rate limit, delivery."""

from __future__ import annotations

import json
import math
import random
from datetime import datetime, timedelta, timezone

import pytest

from doorstep.config import WEEKDAYS, parse_config
from doorstep.models import Case, Mention
from doorstep.store import Store, iso
from responders.alerts import AlertEngine, detect_spikes, evaluate, poisson_tail, spike_test
from responders.outbox import Outbox, list_messages

from conftest import labels
from test_outbox import RecordingServer, later, make_case

#: A Monday, 10:00 UTC: "the last hour" is Monday 09:00-10:00, the weekly rush after the weekend.
NOW = datetime(2026, 11, 16, 10, 0, tzinfo=timezone.utc)
assert NOW.weekday() == 0


def alert_config(**alerts: object):
    rules = {"urgent_complaint": False, "vip_author": False, "sla_breach": False, "listener_unhealthy": False,
             "spike": {"enabled": False}}
    rules.update(alerts)
    # A team that works around the clock: these tests run at today's time, and SLA alerts must not
    # depend on whether that is a weekend (business hours have their own tests, test_sla_clock.py).
    always = {day: "00:00-24:00" for day in WEEKDAYS}
    return parse_config({"brands": [{"name": "Larkspur", "handles": {"x": "LarkspurHelp"}},
                                    {"name": "Fettle", "handles": {"x": "FettleCare"}}],
                         "alerts": rules, "business_hours": {**always, "country": ""}})


# ------------------------------------------------------------------ statistics
def test_poisson_tail_matches_the_exact_sum() -> None:
    def exact(n: int, lam: float) -> float:
        return 1 - sum(math.exp(-lam) * lam**k / math.factorial(k) for k in range(n))

    for n, lam in [(0, 3.0), (1, 0.5), (3, 3.0), (10, 3.0), (7, 12.0)]:
        assert poisson_tail(n, lam) == pytest.approx(exact(n, lam), rel=1e-9, abs=1e-15)
    far = poisson_tail(60, 3.0)  # 1 - cdf would be 0.0 in floating point; the tail sum is not
    assert 0 < far < 1e-40


def test_spike_test_known_spike_and_known_non_spike() -> None:
    quiet_history = [2, 3, 1, 2]
    assert spike_test(20, quiet_history, []).spike
    assert not spike_test(5, quiet_history, []).spike  # unusual but tiny: below min_count
    busy_history = [19, 22, 18, 21]  # this hour of the week is always busy
    result = spike_test(24, busy_history, [2] * 24)
    assert not result.spike and result.expected == pytest.approx(20.0)
    # The same hour judged against the last day's level alone *would* look like a spike.
    assert spike_test(24, [], [2] * 24).spike
    assert not spike_test(40, [], [0, 1]).spike  # two hours of history are no baseline


def _poisson(rng: random.Random, lam: float) -> int:
    limit, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def synthetic_traffic(store: Store, now: datetime, current: dict[str, int], seed: int = 11) -> None:
    """Four weeks of hourly complaints for two brands: Larkspur has a Monday 09-10 rush of ~20,
    everything else runs at ~2 an hour. ``current``: the complaints of the last hour per brand."""
    rng = random.Random(seed)
    case_ids = {brand: store.insert_case(Case(brand=brand, channel="x", opened_at=now - timedelta(weeks=5)))
                for brand in ("Larkspur", "Fettle")}
    complaint = labels("late_delivery", "negative", True, 0.4)
    serial = 0
    with store.transaction():
        for hours_back in range(4 * 168, -1, -1):
            start = now - timedelta(hours=hours_back + 1)
            for brand, case_id in case_ids.items():
                if hours_back == 0:
                    count = current[brand]
                else:
                    rush = brand == "Larkspur" and start.weekday() == 0 and start.hour == 9
                    count = _poisson(rng, 20.0 if rush else 2.0)
                for i in range(count):
                    serial += 1
                    store.insert_mention(Mention(
                        channel="x", external_id=f"s{serial}", text=f"{brand} where is my order", labels=complaint,
                        created_at=start + timedelta(seconds=(i * 3600) // max(count, 1)), case_id=case_id,
                        author_handle=f"user{serial % 97}"))


def test_detect_spikes_on_synthetic_traffic(store: Store) -> None:
    config = alert_config(spike={"dimensions": ["brand"]})
    synthetic_traffic(store, NOW, {"Larkspur": 24, "Fettle": 20})
    results = {value: result for _, value, result in detect_spikes(store, config, NOW)}
    assert results["Fettle"].spike, results["Fettle"]  # 20 where ~2 is normal
    assert not results["Larkspur"].spike, results["Larkspur"]  # 24 in the Monday rush is normal
    assert results["Larkspur"].expected > 10 and results["Fettle"].expected < 5
    assert "same hour of week, 4-week mean" in results["Larkspur"].method


def test_an_intent_spike_is_named_in_words() -> None:
    """A user check (2026-12-06): the demo's lead got "[Doorstep ALERT] Spike: intent failed_delivery"."""
    from responders.alerts import subject_words

    assert subject_words("spike", "intent:failed_delivery") == "Spike: intent failed delivery"
    assert "about intent failed delivery in the last hour" in spike_test(20, [1] * 4, []).why("intent", "failed_delivery")
    assert subject_words("spike", "courier:Royal Mail") == "Spike: courier Royal Mail"


def test_spike_alert_fires_once_for_one_incident(store: Store) -> None:
    config = alert_config(spike={"dimensions": ["brand"]}, apprise="json://127.0.0.1:9/unused")
    synthetic_traffic(store, NOW, {"Larkspur": 24, "Fettle": 20})
    engine = AlertEngine(store, config, now=lambda: NOW)
    first = engine.run_once()
    assert len(first) == 1
    text = list_messages(store, kind="alert")[0].text
    assert "[Doorstep ALERT] Spike: brand Fettle" in text and "Rule: spike" in text and "20 complaints about brand Fettle" in text
    assert AlertEngine(store, config, now=lambda: NOW + timedelta(minutes=5)).run_once() == []


# ------------------------------------------------------------------ rules and delivery
def test_urgent_and_vip_complaints_alert_once_through_apprise_and_slack(store: Store) -> None:
    with RecordingServer() as hook, RecordingServer() as slack:
        config = alert_config(urgent_complaint=True, vip_author=True, followers_threshold=5000,
                              apprise=f"json://{hook.url.removeprefix('http://')}/alerts",
                              slack_webhook_url=slack.url + "/services/T/B/C")
        engine = AlertEngine(store, config)
        assert engine.run_once() == []  # nothing yet; history from now on
        case_id = make_case(store, config, text="@LarkspurHelp my parcel is lost AGAIN", handle="bigvoice",
                            created_at=datetime.now(timezone.utc), followers=120_000)
        make_case(store, config, text="@LarkspurHelp thanks for the help", handle="happy", created_at=datetime.now(timezone.utc))
        queued = engine.run_once()
        assert len(queued) == 4  # two rules x two routes
        hook.fail("500")
        Outbox(store, config).send_due()
        Outbox(store, config, now=later(10)).send_due()
        assert len(hook.received) == 2 and len(slack.received) == 2
        bodies = hook.json_bodies()
        titles = sorted(b["title"] for b in bodies)
        # The subject in the team's words; the rule's key stays in the body ("Rule: vip_author") for mail filters.
        assert titles == [f"[Doorstep ALERT] Urgent complaint: case #{case_id}", f"[Doorstep ALERT] VIP customer: case #{case_id}"]
        vip = next(b for b in bodies if "VIP customer" in b["title"])
        assert "Rule: vip_author" in vip["message"]
        assert "120,000 followers >= 5,000" in vip["message"] and "lost AGAIN" in vip["message"]
        assert "@bigvoice on X (" in vip["message"]  # the network in words, not its key "x"
        assert "urgency 0.80 &gt;= 0.8" in json.loads(slack.received[0]["body"])["text"] + \
            json.loads(slack.received[1]["body"])["text"]
        # The same case complaining again is the same incident: no new alert.
        make_case(store, config, text="@LarkspurHelp still lost!!", handle="bigvoice", created_at=datetime.now(timezone.utc))
        assert engine.run_once() == []
        audit = [e for e in store.audit_trail() if e.action == "alert.new"]
        assert {e.details["rule"] for e in audit} == {"urgent_complaint", "vip_author"}


def test_sla_incident_updates_after_cooldown_only_when_it_changes(store: Store) -> None:
    config = alert_config(sla_breach=True, sla_warn_minutes=15, cooldown_minutes=60, email="lead@larkspur.test")
    case_id = make_case(store, config, created_at=datetime.now(timezone.utc))
    due = store.get_case(case_id).first_response_due  # type: ignore[union-attr]

    def at(minutes_before_due: float) -> list[int]:
        return AlertEngine(store, config, now=lambda: due - timedelta(minutes=minutes_before_due)).run_once()  # type: ignore[operator]

    assert len(at(10)) == 1
    assert at(5) == []          # same incident, same level
    assert at(-5) == []         # overdue now, but within the cooldown
    update = at(-61)            # overdue, cooldown over: one update
    assert len(update) == 1
    messages = list_messages(store, kind="alert")
    assert "[Doorstep UPDATE]" in messages[0].text and "overdue since" in messages[0].text
    assert "[Doorstep ALERT]" in messages[1].text and "due at" in messages[1].text
    # the lead reads the time in the team's zone, not an ISO stamp in UTC
    assert f"due at {due.astimezone(config.tz):%a %d %b %H:%M} ({config.timezone})" in messages[1].text
    assert "+00:00" not in messages[1].text
    assert at(-200) == []


def test_rate_limit_holds_a_storm_back(store: Store) -> None:
    config = alert_config(sla_breach=True, max_per_hour=2, email="lead@larkspur.test")
    now = datetime.now(timezone.utc)
    for i in range(5):
        make_case(store, config, handle=f"c{i}", text=f"@LarkspurHelp where is order {i}", created_at=now - timedelta(hours=2))
    assert len(AlertEngine(store, config, now=lambda: now).run_once()) == 2
    assert AlertEngine(store, config, now=lambda: now + timedelta(minutes=30)).run_once() == []
    later_batch = AlertEngine(store, config, now=lambda: now + timedelta(minutes=61)).run_once()
    assert len(later_batch) == 2
    messages = list_messages(store, kind="alert")  # newest first
    assert all("held back" not in m.text for m in messages[2:])  # nothing was held yet when these went
    assert "[Doorstep ALERT]" in messages[1].text and "[Doorstep ALERT]" in messages[0].text  # not "updates"
    assert "(2 further incident(s) held back by the rate limit of 2/hour" in messages[1].text
    assert "(1 further incident(s) held back" in messages[0].text
    assert len(AlertEngine(store, config, now=lambda: now + timedelta(minutes=122)).run_once()) == 1  # the 5th


def test_listener_unhealthy(store: Store) -> None:
    config = alert_config(listener_unhealthy=True, listener_stale_minutes=15, email="ops@larkspur.test")
    now = datetime.now(timezone.utc)
    store.db["listener_health"].insert({"name": "x", "last_success_at": iso(now - timedelta(minutes=40)),
                                        "last_error_at": iso(now - timedelta(minutes=1)),
                                        "last_error": "401 Unauthorized", "errors": 3})
    store.db["listener_health"].insert({"name": "mastodon", "last_success_at": iso(now - timedelta(minutes=1))})
    firings = evaluate(store, config, now)
    assert [f.subject for f in firings] == ["listener:x"]
    assert "401 Unauthorized" in firings[0].why and "no successful round since" in firings[0].why
    assert len(AlertEngine(store, config, now=lambda: now).run_once()) == 1


def test_config_errors_name_the_key() -> None:
    from doorstep.config import ConfigError
    from responders.config import alert_settings, responders_settings

    with pytest.raises(ConfigError, match=r"alerts\.spike\.dimensions: unknown dimension 'postcode'"):
        alert_settings(alert_config(spike={"dimensions": ["postcode"]}))
    with pytest.raises(ConfigError, match=r"alerts\.cooldown_mins: Extra inputs are not permitted"):
        alert_settings(alert_config(cooldown_mins=5))
    bad = parse_config({"responders": {"followup": {"after_hours": "soon"}, "tracking_urls": {"UPS": "https://ups.test"}}})
    with pytest.raises(ConfigError) as err:
        responders_settings(bad)
    assert "responders.followup.after_hours: Input should be a valid number" in str(err.value)
    assert "responders.tracking_urls.UPS: pattern must contain {tracking_number}" in str(err.value)


def test_vip_customer_without_followers(store: Store) -> None:
    from test_outbox import add_order

    config = alert_config(vip_author=True, email="lead@larkspur.test")
    AlertEngine(store, config).run_once()
    order = add_order(store, vip=True)
    case_id = make_case(store, config, order=order, text="@LarkspurHelp my parcel is lost", handle="quietvip",
                        created_at=datetime.now(timezone.utc), followers=3)
    make_case(store, config, text="@LarkspurHelp lost my parcel too", handle="nobody", created_at=datetime.now(timezone.utc))
    firings = evaluate(store, config, last_mention_id=0)
    assert [(f.rule, f.case_id) for f in firings] == [("vip_author", case_id)]
    assert "(VIP customer)" in firings[0].why
