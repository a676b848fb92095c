"""The console's reply composer and Channels page with accounts per brand (issue 13, failures 1, 5, 8)."""

from __future__ import annotations

from datetime import timedelta

from doorstep.models import Mention, utcnow
from doorstep.store import Store
from test_console_apptest import _open_case, db, demo_template, page, texts  # noqa: F401 - fixtures


def test_a_post_from_another_channel_can_be_answered_on_its_own_channel(db: Store, monkeypatch) -> None:  # noqa: F811, ANN001
    """Failure 8: an X post joined a Bluesky case; the composer offered only Bluesky and e-mail."""
    from doorstep.config import load_config
    from doorstep.pipeline import Pipeline
    from test_console_apptest import DEMO_CONFIG

    # A customer we know on Bluesky and on X opens a case on Bluesky...
    customer = db.get_customer(db.db.execute("select id from customers order by id limit 1").fetchone()[0])
    assert customer is not None
    handle = "sienna_l"
    db.upsert_customers([customer.model_copy(update={"handles": {**customer.handles, "x": handle,
                                                                 "bluesky": "sienna.bsky.social"}})])
    Pipeline(db, load_config(DEMO_CONFIG)).ingest([Mention(
        channel="bluesky", external_id="at://did:plc:sienna/app.bsky.feed.post/3kx", author_handle="sienna.bsky.social",
        text="@fettleoutdoor.bsky.social my head torch is broken", created_at=utcnow() - timedelta(minutes=10))])
    case_id = db.mention_by_external_id("bluesky", "at://did:plc:sienna/app.bsky.feed.post/3kx").case_id  # type: ignore[union-attr]
    case = db.get_case(case_id)  # type: ignore[arg-type]
    assert case is not None and case.channel == "bluesky" and case.customer_id == customer.id
    # ...and then writes on X about it: the post joins this case.
    x_post = Mention(channel="x", external_id="1900000000000000001", text="@FettleCare my head torch stopped working",
                     created_at=utcnow() - timedelta(minutes=3), author_handle=handle, case_id=case_id)
    db.insert_mention(x_post)
    at, _ = _open_case(db, "ann", case_id)
    options = at.radio(key=f"reply_channel_{case_id}").options
    assert "X" in options and "Bluesky" in options  # as the team says them
    at.radio(key=f"reply_channel_{case_id}").set_value("x").run()
    shown = "\n".join(str(t.value) for t in at.text)
    assert f"from @FettleCare, in reply to @{handle}" in shown  # who answers what, before a word is typed
    # The reply box and "Queue reply" are one form: the words arrive with the click.
    at.text_area(key=f"draft_{case_id}").input("So sorry! Could you DM us?")
    at.button(key=f"send_{case_id}").click().run()
    (message,) = [m for m in db.outbound_for_case(case_id) if m.channel == "x"]
    assert message.in_reply_to == "1900000000000000001" and message.account == "FettleCare"
    # What X receives: the answer to the X post, on X, from @FettleCare (the emulator records the token's account).
    from responders.outbox import Outbox
    from standins.x_emulator import XEmulator

    with XEmulator(accounts={"tok-fettle": {"username": "FettleCare"},
                             "tok-larkspur": {"username": "LarkspurHelp"}}) as emulator:
        emulator.add_post({"id": "1900000000000000001", "text": x_post.text, "username": handle,
                           "created_at": x_post.created_at.isoformat()})
        for name, value in {"X_API_BASE_URL": emulator.base_url, "X_API_TIMEOUT": "5", "X_BEARER_TOKEN": "app-bearer",
                            "X_API_KEY": "app-key", "X_API_SECRET": "app-secret", "X_ACCESS_TOKEN_SECRET": "app-secret",
                            "FETTLE_X_ACCESS_TOKEN": "tok-fettle", "LARKSPUR_X_ACCESS_TOKEN": "tok-larkspur"}.items():
            monkeypatch.setenv(name, value)
        monkeypatch.delenv("X_ACCESS_TOKEN", raising=False)
        Outbox(db, load_config(DEMO_CONFIG)).send_due()
        answers = [p for p in emulator.posted if (p.get("reply") or {}).get("in_reply_to_tweet_id") == x_post.external_id]
        assert [(p["account"], p["text"]) for p in answers] == [("FettleCare", "So sorry! Could you DM us?")], \
            emulator.posted


def test_ask_privately_opens_a_preview_and_queues_a_direct_message(db: Store) -> None:  # noqa: F811
    """Failure 5: "Ask for details privately" posted publicly in one click, with no preview."""
    from doorstep.config import load_config
    from doorstep.pipeline import Pipeline
    from test_console_apptest import DEMO_CONFIG

    Pipeline(db, load_config(DEMO_CONFIG)).ingest([Mention(
        channel="x", external_id="1900000000000000002", author_handle="kit_walker", author_id="4242",
        text="@FettleCare where is my head torch?", created_at=utcnow() - timedelta(minutes=5))])
    case_id = db.mention_by_external_id("x", "1900000000000000002").case_id  # type: ignore[union-attr]
    assert case_id is not None
    before = len(db.outbound_for_case(case_id))
    at, _ = _open_case(db, "ann", case_id)
    at.button(key=f"askdm_{case_id}").click().run()
    assert len(db.outbound_for_case(case_id)) == before  # a preview first, nothing queued
    shown = texts(at).replace("\u2060", "")  # escape_md keeps "@handle" from becoming a link
    assert "X direct message from @FettleCare to @" in shown
    assert "nothing is posted publicly" in shown
    at.button(key=f"askdm_send_{case_id}").click().run()
    new = db.outbound_for_case(case_id)[before:]
    assert [(m.channel, m.account) for m in new] == [("x_dm", "FettleCare")]
    # It names the post it answers (the one-answer check counts it: two-brand audit F3); it goes as a DM (x_dm),
    # whose sender never posts it as a public reply.
    assert new[0].target and new[0].in_reply_to == "1900000000000000002"


def test_channels_page_shows_each_accounts_secrets_by_name_and_usage(db: Store, monkeypatch) -> None:  # noqa: F811
    from doorstep.accounts import record_account_usage

    monkeypatch.setenv("FETTLE_X_ACCESS_TOKEN", "sekrit-fettle-token")
    record_account_usage(db, "x", "FettleCare", requests=3, reads=120, posts=2,
                         rate={"limit": "450", "remaining": "447", "reset": "0"})
    at = page("settings", "ada", db)
    frames = [f.value for f in at.dataframe]
    accounts = next(f for f in frames if "account" in f.columns)
    fettle = accounts[(accounts["account"] == "@FettleCare") & (accounts["channel"] == "x")].iloc[0]
    assert fettle["posts read today"] == 120 and fettle["sent today"] == 2 and fettle["rate limit left"] == "447/450"
    assert "FETTLE_X_ACCESS_TOKEN: set" in fettle["secrets"]
    larkspur = accounts[(accounts["account"] == "@LarkspurHelp") & (accounts["channel"] == "x")].iloc[0]
    assert "LARKSPUR_X_ACCESS_TOKEN: not set" in larkspur["secrets"] or "shared" in larkspur["secrets"]
    shown = texts(at) + "\n".join(str(f.to_dict()) for f in frames)
    assert "sekrit-fettle-token" not in shown


def _dm_case(db: Store, external_id: str = "1900000000000000003") -> int:
    from doorstep.config import load_config
    from doorstep.pipeline import Pipeline
    from test_console_apptest import DEMO_CONFIG

    Pipeline(db, load_config(DEMO_CONFIG)).ingest([Mention(
        channel="x", external_id=external_id, author_handle="kit_walker", author_id="4242",
        text="@FettleCare where is my head torch?", created_at=utcnow() - timedelta(minutes=5))])
    case_id = db.mention_by_external_id("x", external_id).case_id  # type: ignore[union-attr]
    assert case_id is not None
    return case_id


def _dms(db: Store, case_id: int) -> list[str]:
    return [m.text for m in db.outbound_for_case(case_id) if m.channel == "x_dm"]


def test_a_private_message_on_a_case_resolved_meanwhile_is_refused_and_send_anyway_reopens_it(db: Store) -> None:  # noqa: F811
    """Agents audit, left open last round: "Send privately" went out on a case a colleague had just
    resolved, and the case stayed resolved (the public reply had the check, the direct message not)."""
    case_id = _dm_case(db)
    at, _ = _open_case(db, "ann", case_id)
    at.button(key=f"askdm_{case_id}").click().run()
    before = db.get_case(case_id)
    db.update_case(case_id, before.version, "bob", status="resolved", resolved_at=utcnow())  # type: ignore[union-attr]
    at.text_area(key=f"askdm_text_{case_id}").input("Could you send us your order number here?")
    at.button(key=f"askdm_send_{case_id}").click().run()
    assert not at.exception, at.exception
    shown = " ".join(e.value for e in at.error).replace("\\", "")
    assert "bob resolved this case" in shown, shown
    assert _dms(db, case_id) == []
    at.button(key=f"askdm_send_anyway_{case_id}").click().run()
    assert not at.exception, at.exception
    assert _dms(db, case_id) == ["Could you send us your order number here?"]
    assert db.get_case(case_id).status == "open"  # type: ignore[union-attr]
    assert any(e.action == "reply.send_anyway" and e.actor == "ann" for e in db.audit_trail(case_id))


def test_a_private_message_refused_for_a_colleagues_answer_can_be_sent_anyway(db: Store) -> None:  # noqa: F811
    """A colleague answered the post publicly while ann wrote her direct message: she is told who and
    what, and "Send anyway" (audited) covers that answer only, as for public replies."""
    from responders.outbox import queue_reply

    from doorstep.config import load_config
    from test_console_apptest import DEMO_CONFIG

    case_id = _dm_case(db)
    at, _ = _open_case(db, "ann", case_id)
    at.button(key=f"askdm_{case_id}").click().run()
    queue_reply(db, load_config(DEMO_CONFIG), case_id, "@kit_walker so sorry, we're on it", "bob")
    at.text_area(key=f"askdm_text_{case_id}").input("Could you send us your order number here?")
    at.button(key=f"askdm_send_{case_id}").click().run()
    shown = " ".join(e.value for e in at.error).replace("\\", "")
    assert "bob already answered" in shown, shown
    assert _dms(db, case_id) == []
    queue_reply(db, load_config(DEMO_CONFIG), case_id, "@kit_walker a second thought", "cy", force=True)
    at.button(key=f"askdm_send_anyway_{case_id}").click().run()  # shown bob's answer, not cy's
    shown = " ".join(e.value for e in at.error).replace("\\", "")
    assert "cy already answered" in shown and _dms(db, case_id) == [], shown
    at.button(key=f"askdm_send_anyway_{case_id}").click().run()
    assert _dms(db, case_id) == ["Could you send us your order number here?"]


def test_a_channels_shared_credentials_are_said_to_be_for_brands_without_their_own(db: Store) -> None:  # noqa: F811
    """Newcomer audit: Settings -> Channels said "MASTODON_ACCESS_TOKEN: not set" above an Accounts table where
    every brand's Mastodon secrets were set and replies went out: the card named only the shared variables."""
    at = page("settings", "ada", db)
    shown = texts(at)
    assert "mastodon" in shown
    assert ("Shared credentials, used only for a brand with no mastodon account of its own (brand accounts: "
            "Accounts below): MASTODON_ACCESS_TOKEN: not set") in shown, shown
