"""The weekly report says which of its figures rest on the model's guesses (intl audit, finding B).

The classifier reads English only; a post in another language (or one it is unsure of) is flagged for review, and
the console says of it "written in German: labels are a guess". The report said nothing: "Most complaints were about
refund or return (67 %)" when those posts were a lost Hermes parcel and a Turkish "not delivered", and German praise
was counted as negative."""

from __future__ import annotations

from datetime import timedelta

import pytest

from doorstep import metrics
from doorstep.models import Case, Labels, Mention
from doorstep.reports import build_weekly_report, render_html
from doorstep.store import Store
from test_metrics import START, fixture_config

WEEK = "2026-W47"


def _labels(sentiment: str, complaint: bool, intent: str, *, review: bool = False,
            language: str | None = None) -> Labels:
    return Labels(sentiment=sentiment, sentiment_scores={sentiment: 0.9}, complaint=complaint,
                  complaint_score=0.9 if complaint else 0.1, intent=intent, intent_scores={intent: 0.9},
                  urgency=0.5, needs_review=review, other_language=language, model="t")


#: The audit's week: a lost Hermes parcel in German and a Turkish "not delivered", both read as refunds; German
#: praise read as a negative post; one English complaint and one English thank-you the model is sure of.
AUDIT_WEEK = [
    ("@Larkspur Hermes hat mein Paket verloren!!! Bitte neu liefern.",
     _labels("negative", True, "refund_or_return", review=True, language="de"), None),
    ("@Larkspur Paketim hâlâ gelmedi, teslim edildi diyor ama kapıda bir şey yok.",
     _labels("negative", True, "refund_or_return", review=True, language="tr"), None),
    ("@Larkspur where is my order? It's been two weeks", _labels("negative", True, "where_is_my_order"), None),
    ("@Larkspur Vielen Dank, die Pflanzen sind super angekommen!",
     _labels("negative", False, "praise", review=True, language="de"), None),
    ("@Larkspur thank you, arrived early and beautifully packed", _labels("positive", False, "praise"), None),
]


def week_store(url: str, posts: list[tuple[str, Labels, str | None]]) -> Store:
    """``posts``: (text, labels, the network's language tag) of one week, each its own case."""
    store = Store(url)
    for i, (text, labels, tag) in enumerate(posts):
        at = START + timedelta(days=1, hours=9 + i)
        mid = store.insert_mention(Mention(channel="x", external_id=f"g{i}", text=text, created_at=at,
                                           author_handle=f"u{i}", language=tag, labels=labels))
        case_id = store.insert_case(Case(status="open", brand="Larkspur", channel="x", complaint=labels.complaint,
                                         author_handle=f"u{i}", opened_at=at, last_activity_at=at, mention_count=1))
        store.set_mention_case(mid, case_id)
    return store


@pytest.fixture
def audit_store(db_url: str) -> Store:
    store = week_store(db_url, AUDIT_WEEK)
    yield store
    store.close()


def test_the_report_says_which_figures_are_the_models_guess(audit_store: Store) -> None:
    report = build_weekly_report(audit_store, fixture_config(), WEEK, charts=False)
    html = render_html(report)
    findings = " ".join(report.findings)
    # Beside the complaint figures: how many are a guess, and why.
    assert ("2 of 3 complaints were written in German or Turkish: their topics are the model's guess until someone "
            "reviews them.") in findings
    # "Most complaints were about refund or return (67 %)" is no fact when both its posts are guesses.
    assert "Most complaints were about" not in findings and "Most complaints were about" not in html
    assert ("The model guesses that most complaints were about refund or return (67 %), but 2 of those 2 are "
            "unreviewed guesses") in findings
    # Under the headline figures it touches (the mood: German praise read as negative).
    assert report.guesses["card:complaints"] == "2 of 3 the model's guess (German, Turkish)"
    assert report.guesses["card:negative_share"] == "3 of 5 the model's guess (German, Turkish)"
    assert "3 of 5 the model&#39;s guess (German, Turkish)" in html
    assert ("3 of 5 mentions were written in German or Turkish: their labels (complaint or not, mood, topic) are the "
            "model&#39;s guess") in html
    assert "refund or return 2 of 2" in html  # of each topic, under Complaints by intent
    # The Slack summary says it too.
    assert "Complaints: 3 (no data the week before) - 2 of 3 the model's guess (German, Turkish)" in report.summary_text()


def test_the_intents_chart_title_is_no_fact_when_its_posts_are_guesses(audit_store: Store) -> None:
    report = build_weekly_report(audit_store, fixture_config(), WEEK)
    chart = next(c for c in report.charts if c.name == "intents")
    assert chart.title == "The model guesses refund or return drove 67 % of complaints"
    assert "2 of those 2 are the model's guess, not yet reviewed" in chart.alt


def test_reviewed_posts_are_no_guess(audit_store: Store) -> None:
    """Once a person has read a post its labels are no guess (the console's rule): the report states the figure."""
    audit_store.db.execute("update mentions set needs_review = 0")
    report = build_weekly_report(audit_store, fixture_config(), WEEK, charts=False)
    assert "Most complaints were about refund or return (67 %)." in report.findings
    assert report.guesses == {}
    assert "the model&#39;s guess" not in render_html(report)


def test_a_few_guesses_are_counted_but_the_known_top_topic_is_stated(db_url: str) -> None:
    posts = [(f"@Larkspur where is my order {i}?", _labels("negative", True, "where_is_my_order"), None)
             for i in range(4)]
    posts.append(("@Larkspur wo ist mein Paket?", _labels("negative", True, "where_is_my_order", review=True), "de"))
    posts.append(("@Larkspur refund please??", _labels("negative", True, "refund_or_return", review=True), None))
    store = week_store(db_url, posts)
    try:
        report = build_weekly_report(store, fixture_config(), WEEK, charts=False)
    finally:
        store.close()
    findings = " ".join(report.findings)
    assert "Most complaints were about where is my order (83 %; 1 of those 5 is the model's guess)." in findings
    # A language from the network's own tag ("de"); an English post the model was unsure of.
    assert ("2 of 6 complaints were written in German (1) or read by the model with too little confidence (1): their "
            "topics are the model's guess") in findings
    assert report.guesses["card:complaints"] == "2 of 6 the model's guess (German; 1 unsure)"


def test_label_guesses_agree_with_plain_sql(audit_store: Store) -> None:
    start, end = metrics.week_window(WEEK, "Europe/London")
    guesses = metrics.label_guesses(audit_store, start, end, "Europe/London")
    (flagged,) = audit_store.db.execute("select count(*) from mentions where needs_review = 1").fetchone()
    assert guesses["mentions"]["posts"] == flagged == 3
    assert guesses["mentions"]["languages"] == [{"language": "German", "posts": 2}, {"language": "Turkish", "posts": 1}]
    assert guesses["complaints"] == {"posts": 2, "unsure": 0, "languages": [{"language": "German", "posts": 1},
                                                                         {"language": "Turkish", "posts": 1}]}
    intents = {row["intent"]: row["guessed"] for row in metrics.complaints_by_intent(audit_store, start, end, "Europe/London")}
    assert intents == {"refund_or_return": 2, "where_is_my_order": 0}


def test_a_standout_courier_resting_on_guesses_is_said_so() -> None:
    from doorstep.reports import _findings

    league = [{"courier": "UPS", "complaints_per_1000": 270.5, "stands_out": True, "unlinked_complaints": 0,
               "complaints": 10, "complaints_guessed": 6},
              {"courier": "DPD", "complaints_per_1000": 48.1, "stands_out": False, "unlinked_complaints": 0,
               "complaints": 3, "complaints_guessed": 0}]
    data = {"headline": {"complaints": {"value": None}, "sla_attainment": {"value": None}}, "intents": [],
            "couriers": league, "tracking_problem_complaints": 0}
    assert ("By the model's guess, UPS had the most complaints per 1,000 shipments (270.5); 6 of its 10 complaints are "
            "the model's guess.") in _findings(data)


def test_courier_and_intent_guesses_agree_with_plain_sql(db_url: str) -> None:
    """The metrics fixture's week with every third complaint read as German: each courier's and each intent's
    guessed complaints are what straight SQL counts (both stores)."""
    from test_metrics import END, build_fixture

    store = Store(db_url)
    try:
        with store.transaction():
            build_fixture(store)
        store.db.execute("update mentions set needs_review = 1, read_language = 'de' where complaint = 1 and id % 3 = 0")
        start, end = metrics.week_window(WEEK, "Europe/London")
        assert end == END
        window = "m.outbound = 0 and m.created_at >= ? and m.created_at < ? and coalesce(m.by_customer, 1) = 1 " \
                 "and coalesce(c.closed_as, '') != 'spam'"
        lo, hi = metrics._bounds(start, end)
        by_courier = dict(store.db.execute(
            "select s.courier, count(*) from mentions m join cases c on c.id = m.case_id join shipments s "
            f"on s.tracking_number = c.tracking_number where {window} and m.complaint = 1 and m.needs_review = 1 "
            "group by s.courier", [lo, hi]).fetchall())
        by_intent = dict(store.db.execute(
            "select m.intent, count(*) from mentions m left join cases c on c.id = m.case_id "
            f"where {window} and m.complaint = 1 and m.needs_review = 1 group by m.intent", [lo, hi]).fetchall())
        league = metrics.courier_league(store, start, end, "Europe/London")
        intents = metrics.complaints_by_intent(store, start, end, "Europe/London")
        guesses = metrics.label_guesses(store, start, end, "Europe/London")
    finally:
        store.close()
    assert sum(by_courier.values()) > 0
    assert {r["courier"]: r["complaints_guessed"] for r in league if r["complaints_guessed"]} == by_courier
    assert {r["intent"]: r["guessed"] for r in intents if r["guessed"]} == by_intent
    assert guesses["complaints"]["posts"] == sum(by_intent.values())


def test_top_intent_wording() -> None:
    """No guess: stated as before, ties included. A guess that decides the top topic: the model's guess."""
    from doorstep.reports import top_intent_known

    def row(intent: str, n: int, guessed: int = 0) -> dict:
        return {"intent": intent, "complaints": n, "guessed": guessed}

    assert top_intent_known([row("late_delivery", 2), row("where_is_my_order", 2)])
    assert top_intent_known([row("late_delivery", 5, 1), row("where_is_my_order", 3)])
    assert not top_intent_known([row("late_delivery", 5, 1), row("where_is_my_order", 4)])  # 4 sure ones tie
    assert not top_intent_known([row("late_delivery", 5, 3), row("where_is_my_order", 1)])  # mostly guesses
