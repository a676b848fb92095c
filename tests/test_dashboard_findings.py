"""The dashboard's chart titles say what each chart shows, from the same figures it draws."""

from __future__ import annotations

from console.dashboard import chart_findings


def _data(**over):
    data = {
        "daily": [
            {"day": "2026-11-30", "brand": "A", "mentions": 10, "complaints": 2, "net_sentiment": -0.5},
            {"day": "2026-11-30", "brand": "B", "mentions": 5, "complaints": 4, "net_sentiment": -0.1},
            {"day": "2026-12-01", "brand": "A", "mentions": 20, "complaints": 1, "net_sentiment": 0.2},
        ],
        "intents": [{"intent": "failed_delivery", "label": "failed delivery", "complaints": 5, "share": 0.71},
                    {"intent": "late_delivery", "label": "late delivery", "complaints": 2, "share": 0.29}],
        "couriers": [{"courier": "DPD", "complaints_per_1000": 12.4}, {"courier": "UPS", "complaints_per_1000": 3.0}],
    }
    data.update(over)
    return data


def test_titles_are_findings_taken_from_the_charted_figures():
    titles = chart_findings(_data())
    assert titles["mentions"] == "Busiest day: Tue 01 Dec with 20 mentions"
    assert titles["complaints"] == "Complaints peaked on Mon 30 Nov (6)"  # both brands together
    assert titles["sentiment"] == "Sentiment negative on average (-0.13)"
    assert titles["intents"] == "Most complaints are about failed delivery (71 %)"
    assert titles["couriers"] == "DPD has the most complaints per 1,000 shipments (12)"


def test_an_empty_window_keeps_plain_labels():
    titles = chart_findings(_data(daily=[], intents=[], couriers=[{"courier": "DPD", "complaints_per_1000": None}]))
    assert titles == {"mentions": "Mentions per day", "complaints": "Complaints per day",
                      "sentiment": "Net sentiment per day", "intents": "Complaints by intent",
                      "couriers": "Couriers: complaints per 1,000 shipments"}
