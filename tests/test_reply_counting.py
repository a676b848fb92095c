"""Reply length checks count as each network counts (reply-counting audit, findings 6 to 8).

6. Mastodon counts what its ``StatusLengthValidator`` counts: a link with ``http(s)://`` as 23, a bare
   domain as the plain text it is, ``@user@domain`` as ``@user``; and direct messages have limits too
   (a Mastodon DM is a status, counted with the @mention our sender puts first; a Bluesky chat message
   is at most 1000 graphemes and 10000 bytes, ``chat.bsky.convo.defs#messageInput``).
7. X links a URL that follows a Chinese or Japanese letter directly (twitter-text's
   ``validUrlPrecedingChars`` only refuses a Latin letter, a digit, ``@``, ``$`` and ``#`` before it),
   so such a reply is a link post for "links are off" and its link weighs 23.
8. The X emulator weighs text as X does (a ZWJ family emoji weighs 2), and ``doorstep reply --send-now``
   exits 1 when the reply failed for good.
"""

from __future__ import annotations

import pytest
import requests
from click.testing import CliRunner

from doorstep.store import Store
from responders.channels import LIMITS, ReplyRejected, check_limits, weighted_length
from responders.outbox import Outbox, get_message, queue_reply
from standins.x_emulator import XEmulator
from test_outbox import emulator, make_case, shop_config  # noqa: F401 - fixture

FAMILY = "\U0001F468\u200D\U0001F469\u200D\U0001F467\u200D\U0001F466"  # one grapheme, 7 code points


# ------------------------------------------------------------------ 6: Mastodon as Mastodon counts
def test_mastodon_counts_a_bare_domain_as_its_text() -> None:
    """Mastodon's validator replaces only links with a scheme: a bare domain is counted letter by letter."""
    text = "a" * 470 + " larkspur-garden-supplies-online.co.uk"
    assert weighted_length("mastodon", text) == 508
    with pytest.raises(ReplyRejected) as err:
        check_limits("mastodon", text)
    assert "508 graphemes is over the mastodon limit of 500" in err.value.reason


def test_mastodon_counts_a_link_with_its_scheme_as_23() -> None:
    text = "a" * 470 + " https://larkspur-garden-supplies-online.co.uk/track/1Z999AA10123456784"
    assert weighted_length("mastodon", text) == 470 + 1 + 23
    check_limits("mastodon", text)


def test_mastodon_counts_a_remote_mention_as_its_local_part() -> None:
    """``@jane@mastodon.social`` counts as ``@jane`` (6 graphemes with the space, not 22)."""
    text = "a" * 490 + " @jane@mastodon.social"
    assert weighted_length("mastodon", text) == 496
    check_limits("mastodon", text)
    # An e-mail address is no mention: counted as written.
    assert weighted_length("mastodon", "write to jane@mastodon.social") == 29


def test_direct_messages_have_their_networks_limits() -> None:
    assert LIMITS["mastodon_dm"] == 500 and LIMITS["bluesky_dm"] == 1000
    with pytest.raises(ReplyRejected) as err:
        check_limits("mastodon_dm", "a" * 501)
    assert "501 graphemes is over the mastodon_dm limit of 500" in err.value.reason
    check_limits("bluesky_dm", "b" * 1000)
    with pytest.raises(ReplyRejected) as err:
        check_limits("bluesky_dm", "b" * 1001)
    assert "1001 graphemes is over the bluesky_dm limit of 1000" in err.value.reason
    # 600 family emoji are 600 graphemes but 15000 bytes: over the chat's 10000 bytes.
    with pytest.raises(ReplyRejected) as err:
        check_limits("bluesky_dm", FAMILY * 600)
    assert "15000 bytes" in err.value.reason and "10000" in err.value.reason


def test_a_mastodon_dm_is_counted_with_the_mention_it_is_posted_with(store: Store) -> None:
    """The sender puts ``@jane@mastodon.social`` first: Mastodon counts it as ``@jane`` and a space (6)."""
    from test_private import _mastodon_dm_case

    config = shop_config()
    case_id = _mastodon_dm_case(store, config)
    with pytest.raises(ReplyRejected) as err:
        queue_reply(store, config, case_id, "a" * 495, "sam", channel="mastodon_dm")
    assert "501 graphemes is over the mastodon_dm limit of 500" in err.value.reason
    assert "@jane@mastodon.social" in err.value.reason
    message = queue_reply(store, config, case_id, "a" * 494, "sam", channel="mastodon_dm")
    assert message.channel == "mastodon_dm"


# ------------------------------------------------------------------ 7: X links after CJK letters
def test_an_x_link_right_after_chinese_text_is_a_link() -> None:
    text = "详情见https://larkspur.example/track/123"
    with pytest.raises(ReplyRejected) as err:
        check_limits("x", text)
    assert "links are off" in err.value.reason and "https://larkspur.example/track/123" in err.value.reason
    assert weighted_length("x", text) == 3 * 2 + 23
    check_limits("x", text, allow_urls=True)
    # Japanese, and a bare domain (twitter-text takes its ASCII part as the link), the same.
    assert weighted_length("x", "詳細はhttps://larkspur.com/t/1") == 6 + 23
    assert weighted_length("x", "详情见larkspur.com") == 6 + 23


def test_an_x_link_ends_where_x_ends_it() -> None:
    """Chinese text or a full stop right after a link is not part of it: X weighs them as text."""
    assert weighted_length("x", "请访问https://larkspur.com/track查看") == 6 + 23 + 4
    assert weighted_length("x", "See https://ups.com/track.") == 4 + 23 + 1


def test_what_x_does_not_link_stays_text() -> None:
    """A Latin letter, digit, @, $ or # right before ``https://`` (and a bare domain after / or @) is no link."""
    for text in ("abchttps://larkspur.com/a", "mail jane@larkspur.com", "#https://larkspur.com", "see a/larkspur.com"):
        check_limits("x", text)  # not refused as a link


# ------------------------------------------------------------------ 8: the emulator weighs as X does
def test_the_x_emulator_takes_what_x_takes(emulator: XEmulator) -> None:  # noqa: F811
    auth = {"Authorization": "Bearer test"}
    family = requests.post(emulator.base_url + "/2/tweets", json={"text": "Sorry! " + FAMILY * 40}, headers=auth,
                           timeout=5)
    assert family.status_code == 201, family.text  # 287 code points, weighted 7 + 40 * 2 = 87
    link = requests.post(emulator.base_url + "/2/tweets",
                         json={"text": "Track it: https://ups.com/" + "t" * 300}, headers=auth, timeout=5)
    assert link.status_code == 201, link.text  # a link weighs 23 however long
    cjk = requests.post(emulator.base_url + "/2/tweets", json={"text": "\u65e5" * 141}, headers=auth, timeout=5)
    assert cjk.status_code == 400 and "too long" in cjk.text  # 141 code points, weighted 282


def test_a_family_emoji_reply_reaches_x(store: Store, emulator: XEmulator) -> None:  # noqa: F811
    config = shop_config()
    case_id = make_case(store, config, emulator)
    text = "Sorry! " + FAMILY * 40
    message = queue_reply(store, config, case_id, text, "sam")
    Outbox(store, config).send_due()
    sent = get_message(store, message.id)  # type: ignore[arg-type]
    assert sent.status == "sent", sent.last_error
    assert [p["text"] for p in emulator.posted] == [text]


def test_reply_send_now_exits_1_when_the_reply_failed_for_good(tmp_path, emulator: XEmulator) -> None:  # noqa: F811
    from commands.cli import cli

    db = tmp_path / "cli.db"
    store = Store(db)
    case_id = make_case(store, shop_config(), emulator)
    store.close()
    emulator.inject("403", count=5, path="/2/tweets")  # revoked write permission: not retried
    result = CliRunner().invoke(cli, ["--db", str(db), "reply", "--case", str(case_id), "--text", "@jane on it",
                                      "--as", "sam", "--send-now"])
    assert result.exit_code == 1, result.output
    assert "\tfailed\treply\tx" in result.output and "X 403" in result.output


def test_outbox_lines_stay_one_line_per_message_whatever_the_error(tmp_path) -> None:  # noqa: ANN001
    """Reply-counting fix, left over: ``--send-now`` and ``outbox list`` printed X's multi-line 403 error as is, so a
    message took several lines of a listing that is one line per message."""
    from click.testing import CliRunner

    from commands.cli import cli
    from doorstep.store import Store
    from responders.outbox import enqueue

    db = tmp_path / "d.db"
    store = Store(db)
    message = enqueue(store, kind="reply", channel="email", text="Subject: x\n\nhello", actor="ann",
                      idempotency_key="ml-1", target="a@example.com")
    store.db.execute("update outbound_messages set status = 'failed', last_error = ? where id = ?",
                     ["X 403: Forbidden\nYou are not permitted to perform this action.\n\n(code 453)", message.id])
    store.close()
    result = CliRunner().invoke(cli, ["--db", str(db), "outbox", "list", "--status", "failed"])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len([line for line in lines if "last error" in line]) == 1
    assert "Forbidden You are not permitted to perform this action. (code 453)" in result.output
