"""The demo's case timelines tell when each case opened and who answered it.

Before (pages audit #6): every "A new post opened this case" line carried the demo's build time (case 160, a
post of Thu 19 Nov, "opened" Sun 06 Dec 19:25), and "demo set first response to Thu 19 Nov 23:03" was written
at build time on cases that hold no reply at all.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from commands.demo import DEFAULT_CONFIG, build_demo
from doorstep.config import load_config
from doorstep.store import Store, parse_time

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def demo(db_url: str) -> Store:
    from classifiers import load_classifier

    build_demo(db_url, seed=11, customers=60, orders=200, mentions=150, now=NOW, config_path=str(DEFAULT_CONFIG),
               classifier=load_classifier("baseline"))
    store = Store(db_url)
    yield store
    store.close()


def test_each_case_opened_line_says_when_its_post_opened_it(demo: Store) -> None:
    opened = {r["id"]: parse_time(r["opened_at"]) for r in demo.db.query("select id, opened_at from cases")}
    events = [e for case_id in opened for e in demo.audit_trail(case_id) if e.action == "case.open"]
    assert len(events) == len(opened) > 50
    wrong = [(e.case_id, e.at, opened[e.case_id]) for e in events if e.at != opened[e.case_id]]
    assert not wrong, f"{len(wrong)} of {len(events)} cases 'opened' at another time than their post, e.g. {wrong[:2]}"


def test_every_first_response_is_a_reply_on_the_case_by_a_team_member(demo: Store) -> None:
    cases = list(demo.db.query("select id, first_response_at from cases where first_response_at is not null"))
    assert len(cases) > 30
    unanswered = []
    for row in cases:
        answered = parse_time(row["first_response_at"])
        public = [m for m in demo.mentions_for_case(row["id"]) if m.outbound and m.created_at == answered]
        private = [m for m in demo.outbound_for_case(row["id"])
                   if m.kind == "reply" and m.status == "sent" and m.sent_at == answered]
        if not public and not private:
            unanswered.append(row["id"])
    assert not unanswered, f"cases with a first response and no reply at that time: {unanswered[:10]}"
    by_demo = demo.db.execute("select count(*) from audit_events where actor = 'demo'").fetchone()[0]
    assert by_demo == 0, f"{by_demo} audit events by 'demo' (the build), not by the team"
    late = demo.db.execute("select count(*) from audit_events where at > ?", [NOW.isoformat()]).fetchone()[0]
    assert late == 0, f"{late} audit events after the moment the shop was built at"


def test_a_privately_answered_case_reads_in_order_on_its_timeline(demo: Store) -> None:
    from console.timeline import lines

    config = load_config(Path(DEFAULT_CONFIG))
    row = demo.db.execute("select c.id from cases c join outbound_messages o on o.case_id = c.id "
                          "where c.status = 'resolved' and o.kind = 'reply' and o.status = 'sent' order by c.id "
                          "limit 1").fetchone()
    assert row is not None
    case = demo.get_case(row[0])
    messages = {m.id: m for m in demo.outbound_for_case(case.id)}
    said = lines(demo.audit_trail(case.id), demo.notes(case.id), messages, config, lambda t: t.isoformat())
    assert said[0][0] == case.opened_at and said[0][1].startswith("A new post opened this case"), said
    answer = next(m for m in messages.values() if m.kind == "reply")
    assert any(at == case.first_response_at and words.endswith(" sent") for at, words in said), said
    assert any(at == case.resolved_at and words == f"{answer.created_by} set the status to resolved" or
               at == case.resolved_at and words.startswith(f"{answer.created_by} set status to resolved")
               for at, words in said), said
    assert not any("demo" in words for _, words in said), said
