"""The dashboard's chart titles say what each chart shows, from the same figures it draws."""

from __future__ import annotations

from console.dashboard import chart_findings


def _data(**over):
    data = {
        "daily": [
            {"day": "2026-11-30", "brand": "A", "mentions": 10, "complaints": 2, "labelled": 10, "positive": 2,
             "negative": 7, "net_sentiment": -0.5},
            {"day": "2026-11-30", "brand": "B", "mentions": 5, "complaints": 4, "labelled": 10, "positive": 4,
             "negative": 5, "net_sentiment": -0.1},
            {"day": "2026-12-01", "brand": "A", "mentions": 20, "complaints": 1, "labelled": 20, "positive": 8,
             "negative": 8, "net_sentiment": 0.0},
        ],
        "intents": [{"intent": "failed_delivery", "label": "failed delivery", "complaints": 5, "share": 0.71},
                    {"intent": "late_delivery", "label": "late delivery", "complaints": 2, "share": 0.29}],
        "couriers": [{"courier": "DPD", "complaints_per_1000": 12.4, "stands_out": True},
                     {"courier": "UPS", "complaints_per_1000": 3.0, "stands_out": False}],
    }
    data.update(over)
    return data


def test_titles_are_findings_taken_from_the_charted_figures():
    titles = chart_findings(_data())
    assert titles["mentions"] == "Busiest day: Tue 01 Dec with 20 mentions"
    assert titles["complaints"] == "Complaints peaked on Mon 30 Nov (6)"  # both brands together
    assert titles["sentiment"] == "Sentiment negative on average (-0.15)"  # (14 - 20) / 40 posts
    assert titles["intents"] == "Most complaints are about failed delivery (71 %)"
    assert titles["couriers"] == "DPD has the most complaints per 1,000 shipments (12)"


def test_an_empty_window_keeps_plain_labels():
    titles = chart_findings(_data(daily=[], intents=[], couriers=[{"courier": "DPD", "complaints_per_1000": None}]))
    assert titles == {"mentions": "Mentions per day", "complaints": "Complaints per day",
                      "sentiment": "Net sentiment per day", "intents": "Complaints by intent",
                      "couriers": "Couriers: complaints per 1,000 shipments"}


def test_sentiment_title_weighs_posts_like_the_headline():
    # One very negative post a day for a small brand, twenty mildly positive ones for a big one: the
    # average of daily ratios says -0.42; the posts say (42 - 28) / 147 = +0.10, as the headline does
    # (above +0.05, so "positive").
    daily = []
    for d in range(7):
        day = f"2026-11-{16 + d}"
        daily.append({"day": day, "brand": "Larkspur", "mentions": 1, "complaints": 1, "labelled": 1, "positive": 0,
                      "negative": 1, "net_sentiment": -1.0})
        positive = 6
        negative = 3
        daily.append({"day": day, "brand": "Fettle", "mentions": 20, "complaints": 0, "labelled": 20,
                      "positive": positive, "negative": negative, "net_sentiment": (positive - negative) / 20})
    assert sum(r["positive"] for r in daily) == 42 and sum(r["negative"] for r in daily) == 28
    assert sum(r["labelled"] for r in daily) == 147
    assert chart_findings(_data(daily=daily))["sentiment"] == "Sentiment positive on average (+0.10)"


def test_complaint_peak_ties_name_the_latest_day_and_zero_is_no_peak():
    tie = [{"day": "2026-11-16", "brand": "A", "mentions": 5, "complaints": 3},
           {"day": "2026-11-17", "brand": "A", "mentions": 2, "complaints": 1},
           {"day": "2026-11-18", "brand": "A", "mentions": 5, "complaints": 3}]
    assert chart_findings(_data(daily=tie))["complaints"] == "Complaints peaked on Wed 18 Nov (3)"
    quiet = [{"day": f"2026-11-{16 + d}", "brand": "A", "mentions": 1, "complaints": 0, "labelled": 1, "positive": 1,
              "negative": 0, "net_sentiment": 1.0} for d in range(7)]
    titles = chart_findings(_data(daily=quiet))
    assert titles["complaints"] == "Complaints per day"
    assert titles["mentions"] == "Busiest day: Sun 22 Nov with 1 mentions"


def test_courier_title_names_nobody_within_noise():
    close = [{"courier": "DPD", "complaints_per_1000": 263.6, "stands_out": False},
             {"courier": "Evri", "complaints_per_1000": 262.7, "stands_out": False}]
    assert chart_findings(_data(couriers=close))["couriers"] == (
        "No courier stands out: 263 to 264 complaints per 1,000 shipments")
