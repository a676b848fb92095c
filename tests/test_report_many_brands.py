"""A shop with many brands gets a weekly report it can read and print.

Real-posts audit, finding 2: one column group per brand in "Trend by day" made the HTML 20,018 px wide at 73
brands, and from about 30 brands the PDF failed (xhtml2pdf: "flowable given negative availWidth"), leaving a
0-byte file and an error that named neither a setting nor a fix. The busiest brands keep their own columns and
lines; the rest are summed as "Other brands (N)"."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from doorstep.models import Case, Labels, Mention
from doorstep.reports import DAILY_BRANDS_SHOWN, _daily_pivot, build_weekly_report, render_html, render_pdf
from doorstep.store import Store
from test_metrics import START, fixture_config

BRANDS = 40


def _labels(complaint: bool) -> Labels:
    sentiment = "negative" if complaint else "positive"
    return Labels(sentiment=sentiment, sentiment_scores={sentiment: 1.0}, complaint=complaint,
                  complaint_score=1.0 if complaint else 0.0, intent="failed_delivery" if complaint else "praise",
                  intent_scores={}, urgency=0.5, model="t")


def _many_brands(path: Path) -> Store:
    """Brand k has k + 1 posts (the busiest is brand 39), one in three a complaint."""
    store = Store(path)
    n = 0
    for k in range(BRANDS):
        for i in range(k + 1):
            at = START + timedelta(days=i % 7, hours=9)
            m = Mention(channel="x", external_id=str(n), text=f"post {n}", created_at=at, author_handle=f"u{n}",
                        labels=_labels(i % 3 == 0))
            n += 1
            mid = store.insert_mention(m)
            case_id = store.insert_case(Case(status="open", brand=f"Brand {k:02d}", channel="x", author_handle=f"u{n}",
                                             opened_at=at, last_activity_at=at, mention_count=1))
            store.set_mention_case(mid, case_id)
    return store


def test_forty_brands_print_and_the_rest_are_summed(tmp_path: Path) -> None:
    store = _many_brands(tmp_path / "many.db")
    try:
        report = build_weekly_report(store, fixture_config(), "2026-W47")
    finally:
        store.close()
    brands, rows = _daily_pivot(report.data["daily"])
    kept = [f"Brand {k:02d}" for k in range(BRANDS - 1, BRANDS - 1 - (DAILY_BRANDS_SHOWN - 1), -1)]
    others = BRANDS - len(kept)
    assert brands == [*kept, f"Other brands ({others})"], brands
    total = sum(cell["mentions"] for row in rows for cell in row["cells"].values())
    assert total == BRANDS * (BRANDS + 1) // 2  # nothing dropped: the others are summed, not left out
    html = render_html(report)
    trend = html[html.index('<table class="trend">'):]
    trend = trend[: trend.index("</table>")]
    header = trend[: trend.index("</tr>")]
    assert header.count("<th") == 1 + DAILY_BRANDS_SHOWN  # a column per brand shown, one cell each (was three)
    pdf = render_pdf(report, tmp_path / "many.pdf")
    assert pdf.read_bytes().startswith(b"%PDF") and pdf.stat().st_size > 20_000


def test_a_pdf_that_cannot_be_laid_out_leaves_no_empty_file_and_says_what_to_do(tmp_path: Path, monkeypatch) -> None:
    import pytest
    from xhtml2pdf import pisa

    store = _many_brands(tmp_path / "many.db")
    try:
        report = build_weekly_report(store, fixture_config(), "2026-W47")
    finally:
        store.close()
    target = tmp_path / "weekly.pdf"
    target.write_bytes(b"%PDF last week's")

    def too_wide(*args, **kwargs):
        raise ValueError("<PmlTable 9 rows x 220 cols>: flowable given negative availWidth=-5.63\nmore")

    monkeypatch.setattr(pisa, "CreatePDF", too_wide)
    with pytest.raises(RuntimeError) as failed:
        render_pdf(report, target)
    message = str(failed.value)
    assert str(target) in message and "\n" not in message and "attach_pdf = false" in message, message
    assert target.read_bytes() == b"%PDF last week's"  # the last good file stays; no 0-byte PDF
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".part"] == []
