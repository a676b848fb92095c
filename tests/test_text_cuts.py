"""Languages audit: quotes and snippets cut inside an emoji or a letter; right-to-left snippets losing their start.

1. The urgent-complaint alert for a post with the family emoji 👩‍👩‍👧‍👦 ended in a lone "👩" with no ellipsis
   (``text[:140]``); the inbox snippet of a Chinese post ended "👩\u200d👩…"; "ask privately" quoted the same way.
   Text was cut by code points, which splits emoji sequences, flags, keycaps, skin tones and the vowel signs and
   virama of Hindi; posts with no spaces (Chinese, Japanese) were always cut that way.
2. The inbox's "newest post" cell showed "[X] …الخدمة سيئة جدا وأري": the English label made the grid lay the cell
   out left to right, so the Arabic post's first words were the ones past the cell's right edge.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone

import pytest

from console.inbox import inbox_rows, newest_post_cell, snippet
from doorstep.models import Mention, utcnow
from doorstep.store import Store
from doorstep.text import shorten
from responders.alerts import evaluate
from responders.private import PrivatePlan
from test_alerts import alert_config
from test_outbox import make_case

FAMILY = "\U0001F469\u200d\U0001F469\u200d\U0001F467\u200d\U0001F466"  # 👩‍👩‍👧‍👦: seven code points, one emoji
FSI, PDI, ALM = "\u2068", "\u2069", "\u061c"
ARABIC = "الخدمة سيئة جدا وأريد استرجاع أموالي، الطلب لم يصل منذ أسبوعين ولم يرد أحد على رسائلي حتى الآن أبدا"


# ------------------------------------------------------------------ 1. the helper: whole letters and emoji only
@pytest.mark.parametrize(("text", "limit", "expected"), [
    ("包" * 8 + FAMILY + "包", 10, "包" * 8 + "…"),  # a ZWJ sequence is kept whole or left out
    ("\U0001F1EB\U0001F1F7\U0001F1E9\U0001F1EA\U0001F1EE\U0001F1F9", 4, "\U0001F1EB\U0001F1F7…"),  # 🇫🇷, not half of 🇩🇪
    ("ab1\ufe0f\u20e3cd", 4, "ab…"),  # keycap 1️⃣
    ("abc\U0001F44D\U0001F3FDd", 5, "abc…"),  # 👍🏽: no bare thumb without its skin tone
    ("abc\u2764\ufe0fd", 5, "abc…"),  # ❤️: no heart without its emoji-style selector
    ("ab\u0915\u093f xyz", 4, "ab…"),  # कि: the vowel sign stays on its consonant
    ("ab\u0915\u094dxyz", 4, "ab…"),  # क्: the virama stays on its consonant
    ("cafe\u0301s", 5, "caf…"),  # é written as e + combining acute
    ("ab\U0001F3F4\U000E0067\U000E0062\U000E0073\U000E0063\U000E0074\U000E007Fcd", 6, "ab…"),  # 🏴 Scotland: tags
    ("包" * 100, 90, "包" * 89 + "…"),  # no spaces: as many whole letters as fit
])
def test_shorten_never_splits_a_letter_or_an_emoji(text: str, limit: int, expected: str) -> None:
    cut = shorten(text, limit)
    assert cut == expected
    assert len(cut) <= limit


def test_shorten_prefers_a_word_boundary_near_the_end() -> None:
    assert shorten("where is my parcel please", 15) == "where is my…"
    assert shorten("where is my parcel", 12) == "where is my…"  # the cut falls on the space: no word lost
    assert shorten("a " + "x" * 40, 20) == "a " + "x" * 17 + "…"  # a boundary far back is not worth half the room
    assert shorten("fits as it is", 13) == "fits as it is" and shorten("", 5) == ""


# ------------------------------------------------------------------ 1. where the team reads them
def test_urgent_complaint_alert_quotes_whole_emoji_and_marks_the_cut(store: Store) -> None:
    config = alert_config(urgent_complaint=True, email="lead@larkspur.test")
    # "@LarkspurHelp lost " is 19 characters: code point 140 falls inside the family emoji.
    text = "@LarkspurHelp lost " + "包" * 118 + FAMILY + "后" * 20
    make_case(store, config, text=text, handle="mei", created_at=datetime.now(timezone.utc))
    (firing,) = [f for f in evaluate(store, config) if f.rule == "urgent_complaint"]
    quote = firing.why.split(': "', 1)[1].removesuffix('"')
    assert quote.endswith("包…"), quote[-6:]
    assert "\U0001F469" not in quote and len(quote) <= 140


def test_inbox_snippet_of_a_chinese_post_keeps_the_emoji_whole() -> None:
    cut = snippet("@LarkspurHelp " + "包" * 86 + FAMILY + "后" * 10)
    assert cut == "包" * 86 + "…"


def test_ask_privately_preview_quotes_whole_emoji() -> None:
    post = Mention(channel="x", external_id="1", text="包" * 57 + FAMILY + "后", created_at=utcnow())
    plan = PrivatePlan(channel="x_dm", account="FettleCare", recipient="@mei", about=post)
    assert "\u201c" + "包" * 57 + "…\u201d" in plan.describe()


# ------------------------------------------------------------------ 2. right-to-left posts in the inbox grid
#: How Streamlit's grid (glide-data-grid's ``direction()``, in streamlit/static/.../DataFrame.*.js) decides a
#: cell is right to left: a character of these Hebrew/Arabic ranges before any left-to-right letter. A cell it
#: calls "rtl" is right-aligned and laid out right to left, so what overflows is the end of the text.
_LTR = ("A-Za-z\u00C0-\u00D6\u00D8-\u00F6\u00F8-\u02B8\u0300-\u0590\u0800-\u1FFF\u200E\u2C00-\uFB1C"
        "\uFE00-\uFE6F\uFEFD-\uFFFF")
_GRID_RTL = re.compile(f"^[^{_LTR}]*[\u0591-\u07FF\uFB1D-\uFDFD\uFE70-\uFEFC]")


def test_arabic_and_hebrew_rows_keep_their_first_words_in_view(store: Store) -> None:
    config = alert_config()
    arabic = make_case(store, config, text="@LarkspurHelp " + ARABIC, handle="salma")
    hebrew = make_case(store, config, text="@LarkspurHelp ההזמנה שלי לא הגיעה כבר שבועיים", handle="noa")
    english = make_case(store, config, text="@LarkspurHelp where is my lamp", handle="jo")
    rows, _ = inbox_rows(store, config, [store.get_case(i) for i in (arabic, hebrew, english)], utcnow())
    cells = [row["newest post"] for row in rows]
    # The label first, then the post in an isolate of its own: the label cannot reorder the post's words.
    assert cells[0].lstrip(ALM).startswith("[X] " + FSI + "الخدمة سيئة جدا") and cells[0].endswith("…" + PDI)
    assert cells[1].lstrip(ALM) == "[X] " + FSI + "ההזמנה שלי לא הגיעה כבר שבועיים" + PDI
    # ... and the grid lays the row out right to left, so the cell keeps the post's first words in view.
    assert _GRID_RTL.match(cells[0]) and _GRID_RTL.match(cells[1])
    assert cells[2] == "[X] where is my lamp" and not _GRID_RTL.match(cells[2])  # English rows are as they were


def test_a_post_cannot_end_the_isolate_early() -> None:
    # Bidi controls in the post are shown as marks (console.widgets.plain), so the only isolate is ours.
    cell = newest_post_cell("x", "طلبي \u2069\u202e لم يصل")
    assert cell.count(FSI) == 1 and cell.count(PDI) == 1 and cell.endswith(PDI)
    assert "⟨PDI⟩⟨RLO⟩" in cell and "\u202e" not in cell
    assert newest_post_cell("", "طلبي لم يصل") == ALM + FSI + "طلبي لم يصل" + PDI  # no network: no label
    assert newest_post_cell("x", "") == ""


def test_the_in_reply_to_choice_keeps_an_emoji_whole() -> None:
    """Browser check: the "In reply to" choice cut at 67 characters and ended "…订👩‍👩‍..." (half a family emoji
    with a dangling joiner); so did the Split list at 60."""
    from datetime import datetime, timezone

    from console.case_view import _post_label
    from doorstep.models import Mention

    family = "\U0001F469\u200D\U0001F469\u200D\U0001F467\u200D\U0001F466"
    post = Mention(channel="x", external_id="1", text="@LarkspurHelp " + "订" * 50 + family * 4,
                   created_at=datetime(2026, 12, 7, tzinfo=timezone.utc), author_handle="wang")
    label = _post_label(post, True)
    assert "\u200d…" not in label and not label.split(": ", 1)[1].rstrip("…").endswith("\u200d"), label
    assert family in label or "订…" in label, label


# ------------------------------------------------------------------ 3. the case timeline's quotes and errors
#: A long error as the outbox keeps it (``responders/outbox.py`` stores up to 300 characters in the audit event).
LONG_ERROR = ("ConnectError: the X API could not reach the server api.x.com after 3 attempts (timeout 5 s); "
              "check the network and the proxy settings of the worker")
LONG_ANSWER = "yes please, but only after six in the evening because nobody is at home before that on weekdays at all"


def _cut_at_a_word(said: str, before: str, after: str, whole: str) -> str:
    """The part of ``said`` between ``before`` and ``after``, checked to be ``whole`` cut after a whole word with
    an ellipsis (browser check: the timeline read "…could not reach the ser" with no sign of the cut)."""
    quoted = said.split(before, 1)[1].rsplit(after, 1)[0] if after else said.split(before, 1)[1]
    assert quoted.endswith("…"), quoted
    head = quoted.removesuffix("…")
    assert whole.startswith(head) and whole[len(head)] == " ", quoted
    return head


@pytest.mark.parametrize(("action", "before", "after"), [
    ("outbox.retry_later", "failed (", "), will retry"),
    ("outbox.failed", "failed for good: ", " — retry it"),
])
def test_timeline_cuts_a_long_error_after_a_whole_word(action: str, before: str, after: str) -> None:
    from console.timeline import raw, sentence
    from doorstep.models import AuditEvent

    event = AuditEvent(actor="outbox", action=action, case_id=1,
                       details={"message_id": 9, "attempts": 2, "error": LONG_ERROR})
    said = sentence(event, {}, lambda t: "10:00")
    _cut_at_a_word(said, before, after, LONG_ERROR)
    assert LONG_ERROR in raw(event)  # the whole error stays in the raw audit events (for leads)


@pytest.mark.parametrize(("action", "field", "before", "after"), [
    ("dialogue.answered", "answer", "answered on X: “", "”, read as"),
    ("dialogue.reopened", "answer", "answered “", "” after the case"),
    ("dialogue.repeat", "answer", "again: “", "” (already"),
    ("customer.opt_out", "said", "(wrote “", "” on X)"),
])
def test_timeline_quotes_a_long_answer_after_a_whole_word(action: str, field: str, before: str, after: str) -> None:
    from console.timeline import sentence
    from doorstep.models import AuditEvent

    event = AuditEvent(actor="dialogue", action=action, case_id=1,
                       details={field: LONG_ANSWER, "channel": "x", "understood": "yes"})
    _cut_at_a_word(sentence(event, {}, lambda t: "10:00"), before, after, LONG_ANSWER)


# ------------------------------------------------------------------ 4. the inbox's flags: the column shows its start
def test_the_inbox_flags_put_a_failing_send_first(store: Store) -> None:
    """Browser audit: "★ VIP, needs review, ⚠ reply retrying" read "★ VIP, needs r" in its column; the failure goes
    first now, each failing message its own flag (tests/test_inbox_flags_browser.py measures it in Chromium)."""
    from console.inbox import row_flags
    from responders.outbox import enqueue

    config = alert_config()
    case_id = make_case(store, config, text="@LarkspurHelp where is my sofa", handle="vera")
    for n, (kind, status) in enumerate((("reply", "queued"), ("escalation", "failed"), ("reply", "queued"))):
        message = enqueue(store, kind=kind, channel="x" if kind == "reply" else "email", text="x", actor="lee",
                          idempotency_key=f"flag-{n}", case_id=case_id,
                          target="1" if kind == "reply" else "courier@ups.test")
        store.db.execute("update outbound_messages set status = ?, last_error = 'could not reach the server' "
                         "where id = ?", [status, message.id])
    rows, _ = inbox_rows(store, config, [store.get_case(case_id)], utcnow(), new_ids={case_id})
    assert rows[0]["flags"].startswith("⚠ reply retrying, ⚠ escalation failed, ● NEW"), rows[0]["flags"]
    assert row_flags("⚠ reply failed", True, True, True, "pending customer") == (
        "⚠ reply failed, ● NEW, needs review, ★ VIP, pending customer")
    assert row_flags(vip=True) == "★ VIP" and row_flags() == ""
