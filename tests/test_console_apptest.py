"""The console's pages driven through Streamlit's AppTest: login, roles, inbox filters, case
actions with audit, the optimistic-locking conflict path, and user text shown literally."""

from __future__ import annotations

from datetime import timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner
from markdown_it import MarkdownIt
from streamlit.testing.v1 import AppTest

from doorstep import presence
from console.auth import ROLES, User, add_user, can, check_password, get_user
from console.widgets import WORD_JOINER, escape_md, sla_state
from doorstep.config import Config
from doorstep.models import Case, Mention, utcnow
from doorstep.store import InboxQuery, Store
from tests.conftest import DEMO_CONFIG, PAGE, REPO, console_copy, labels, run_page, template_target, texts  # noqa: F401 - shared

APP = str(REPO / "app.py")
PASSWORD = "correct horse battery"
XSS_TEXT = ("<script>alert(1)</script> <img src=x onerror=alert(2)> [click me](http://evil.example) "
            "![pic](http://evil.example/x.png) **bold** :red[colour] $x^2$ @LarkspurHelp")


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def demo_template(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The demo shop with four users and a hostile post, on SQLite and on PostgreSQL."""
    from commands.demo import build_demo
    from tests.conftest import KeywordClassifier

    path = template_target(request, tmp_path_factory.mktemp("console"), "demo.db")
    build_demo(str(path), seed=11, customers=30, orders=60, mentions=60, config_path=DEMO_CONFIG,
               classifier=KeywordClassifier())
    store = Store(path)
    for username, role in (("ann", "agent"), ("bob", "agent"), ("lee", "lead"), ("ada", "admin")):
        add_user(store, username, PASSWORD, role=role, name=username.title(), rounds=4)
    now = utcnow()
    case_id = store.insert_case(Case(status="new", priority=100.0, priority_reasons=["test (+100)"], channel="x",
                                     brand="Larkspur Home", author_handle="mallory", opened_at=now,
                                     last_activity_at=now, first_response_due=now - timedelta(minutes=5),
                                     resolution_due=now + timedelta(hours=3), mention_count=1))
    mention_id = store.insert_mention(Mention(channel="x", external_id="xss-1", text=XSS_TEXT, created_at=now,
                                              author_handle="mallory", author_name="<b>Mallory</b>", thread_id="xss-1",
                                              case_id=case_id, labels=labels("customer_service", "negative", True)))
    assert mention_id
    store.close()
    return path


@pytest.fixture
def db(demo_template: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Store:
    return console_copy(demo_template, request, monkeypatch, tmp_path)


def page(module: str, username: str, store: Store, **state: object) -> AppTest:
    return run_page(module, store, username, **state)


def sel(at: AppTest, prefix: str):  # type: ignore[no-untyped-def]
    """The selectbox whose key starts with ``prefix_`` (case forms key their widgets by version)."""
    found = [s for s in at.selectbox if s.key.startswith(prefix + "_")]
    assert len(found) == 1, [s.key for s in at.selectbox]
    return found[0]


def xss_case(store: Store) -> int:
    return store.mention_by_external_id("x", "xss-1").case_id  # type: ignore[union-attr]


# ----------------------------------------------------------------- login and roles
def log_in(at: AppTest, username: str, password: str) -> AppTest:
    """Fill streamlit-authenticator's form (found by its labels, as a person would) and submit."""
    [user_box] = [t for t in at.text_input if t.label == "Username"]
    [password_box] = [t for t in at.text_input if t.label == "Password"]
    user_box.input(username)
    password_box.input(password)
    [submit] = [b for b in at.button if b.label == "Log in"]
    return submit.click().run()


def test_login_is_required_and_wrong_password_refused(db: Store) -> None:
    at = AppTest.from_file(APP, default_timeout=30).run()
    assert not at.exception
    assert [t.value for t in at.title] == ["Doorstep"]
    assert "Inbox" not in texts(at) and "_pages" not in at.session_state
    log_in(at, "ann", "wrong password!")
    assert "Wrong username or password." in [e.value for e in at.error]
    assert "user" not in at.session_state
    failed = [e for e in db.audit_trail() if e.action == "login.failed"]
    assert failed and failed[0].actor == "ann" and "wrong password" not in str(failed[0].details)

    log_in(at, "Ann", PASSWORD)  # usernames are case-insensitive
    assert not at.exception
    assert [t.value for t in at.title] == ["Inbox"]
    assert at.session_state["user"].username == "ann"
    assert "settings" not in at.session_state["_pages"]
    assert [e.action for e in db.audit_trail(limit=1)] == ["login"]


def test_lead_gets_settings_page_in_navigation(db: Store) -> None:
    at = log_in(AppTest.from_file(APP, default_timeout=30).run(), "lee", PASSWORD)
    assert "settings" in at.session_state["_pages"]


def test_role_change_and_removal_take_effect_on_the_next_click(db: Store) -> None:
    from console.auth import remove_user, set_role

    at = log_in(AppTest.from_file(APP, default_timeout=30).run(), "bob", PASSWORD)
    assert "settings" not in at.session_state["_pages"]
    set_role(db, "bob", "lead", actor="ada")
    at.run()  # a role change ends the login (its session was granted on the old role) ...
    assert "user" not in at.session_state and [t.value for t in at.title] == ["Doorstep"]
    log_in(at, "bob", PASSWORD)  # ... and the next one has the new role
    assert "settings" in at.session_state["_pages"] and at.session_state["user"].role == "lead"
    remove_user(db, "bob", actor="ada")
    at.run()
    assert "user" not in at.session_state and [t.value for t in at.title] == ["Doorstep"]
    assert any(e.action == "logout" and e.actor == "bob" for e in db.audit_trail())


def test_passwords_are_bcrypt_hashed(db: Store) -> None:
    stored = db.db.execute("select password_hash from users where username = 'ann'").fetchone()[0]
    assert stored.startswith("$2") and PASSWORD not in stored
    assert check_password(db, "ann", PASSWORD)
    assert not check_password(db, "ann", PASSWORD + "x")
    assert not check_password(db, "nobody", PASSWORD)


def test_repeated_wrong_passwords_lock_the_user_out(db: Store) -> None:
    from console.auth import LOCKOUT_FAILURES, LOCKOUT_WINDOW, locked_out

    at = AppTest.from_file(APP, default_timeout=30).run()
    for _ in range(LOCKOUT_FAILURES):
        log_in(at, "bob", "guess-guess")
    assert locked_out(db, "bob")
    # A new browser session: the count lives in the audit log, not in the old session.
    at = log_in(AppTest.from_file(APP, default_timeout=30).run(), "bob", PASSWORD)
    assert "user" not in at.session_state  # even the right password, for a while
    assert any("Too many wrong passwords" in e.value for e in at.error)
    assert not locked_out(db, "bob", now=utcnow() + LOCKOUT_WINDOW + timedelta(seconds=1))
    at = log_in(AppTest.from_file(APP, default_timeout=30).run(), "ann", PASSWORD)
    assert at.session_state["user"].username == "ann"  # other users are unaffected


def test_single_sign_on_maps_the_verified_email_to_a_user(db: Store, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """With an [auth] section in Streamlit's secrets, the identity provider says who it is
    (AppTest seeds st.user) and the users table says what they may do."""
    from console.auth import set_email

    set_email(db, "lee", "Lee@Shop.example", actor="ada")
    streamlit_dir = tmp_path / ".streamlit"
    streamlit_dir.mkdir()
    (streamlit_dir / "secrets.toml").write_text(
        '[auth]\nredirect_uri = "http://localhost:8501/oauth2callback"\ncookie_secret = "x"\n'
        'client_id = "doorstep"\nclient_secret = "y"\n'
        'server_metadata_url = "http://127.0.0.1:9/.well-known/openid-configuration"\n')
    monkeypatch.chdir(tmp_path)

    at = AppTest.from_file(APP, default_timeout=30)
    at.user = {"is_logged_in": False}
    at.run()
    assert [b.label for b in at.button if b.label == "Log in with single sign-on"]

    at.user = {"is_logged_in": True, "email": "lee@shop.example", "name": "Lee"}
    at.run()
    assert not at.exception
    assert at.session_state["user"].username == "lee" and "settings" in at.session_state["_pages"]
    assert any(e.action == "login" and e.actor == "lee" and e.details.get("method") == "sso"
               for e in db.audit_trail())

    stranger = AppTest.from_file(APP, default_timeout=30)
    stranger.user = {"is_logged_in": True, "email": "someone@else.example"}
    stranger.run()
    assert "user" not in stranger.session_state
    assert any("not a Doorstep user" in e.value for e in stranger.error)
    assert any(e.action == "login.refused" for e in db.audit_trail())

    # [console] password_login = false: single sign-on is the only way in.
    sso_only = tmp_path / "sso-only.toml"
    sso_only.write_text(Path(DEMO_CONFIG).read_text() + "\n[console]\npassword_login = false\n")
    monkeypatch.setenv("DOORSTEP_CONFIG", str(sso_only))
    at = AppTest.from_file(APP, default_timeout=30)
    at.user = {"is_logged_in": False}
    at.run()
    assert [t.label for t in at.text_input] == []
    assert [b.label for b in at.button] == ["Log in with single sign-on"]


def test_permission_table_orders_roles() -> None:
    agent, lead, admin = (User(r, r, r) for r in ROLES)
    assert can(agent, "reply") and can(agent, "assign_self") and not can(agent, "reassign")
    assert can(lead, "reassign") and can(lead, "edit_templates") and not can(lead, "manage_users")
    assert can(admin, "manage_users") and can(admin, "reply")
    assert not can(None, "reply") and not can(admin, "no_such_action")


def test_agent_cannot_open_settings(db: Store) -> None:
    at = page("settings", "ann", db)
    assert any("cannot open this page" in e.value for e in at.error)
    assert not at.tabs


def test_lead_sees_templates_but_not_users(db: Store) -> None:
    at = page("settings", "lee", db)
    assert [t.label for t in at.tabs] == ["Templates", "Alert rules"]


def test_admin_manages_users_and_secrets_are_never_shown(db: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("X_BEARER_TOKEN", "sekrit-bearer-123")
    at = page("settings", "ada", db)
    assert [t.label for t in at.tabs] == ["Brands and couriers", "Channels", "Templates", "Alert rules", "Users"]
    shown = texts(at) + "\n".join(str(j.value) for j in at.json)
    assert "sekrit-bearer-123" not in shown
    assert "X_BEARER_TOKEN: set" in shown
    at.text_input(key="ua_username").input("newbie")
    at.text_input(key="ua_password").input("a long enough pw")
    at.selectbox(key="ua_role").select("lead")
    at.button(key="FormSubmitter:user_add-Add user").click().run()
    assert get_user(db, "newbie") == User("newbie", "newbie", "lead")
    assert at.text_input(key="ua_password").proto.type == at.text_input(key="ua_password").proto.PASSWORD
    assert "a long enough pw" not in texts(at) and check_password(db, "newbie", "a long enough pw")
    assert any(e.action == "user.add" and e.actor == "ada" for e in db.audit_trail())


# ----------------------------------------------------------------------- inbox
def _listed(at: AppTest) -> list[int]:
    return list(at.selectbox(key="inbox_pick").options and [int(o.split("#")[1].split()[0])
                                                             for o in at.selectbox(key="inbox_pick").options])


def test_inbox_filters_change_the_list(db: Store) -> None:
    at = page("inbox", "ann", db)
    everything = _listed(at)
    assert everything == [c.id for c in db.inbox(InboxQuery(limit=50))]
    brand = db.inbox(InboxQuery(limit=1, brand="Fettle Outdoor"))[0].brand
    at.selectbox(key="inbox_brand").select(brand).run()
    only = _listed(at)
    assert only == [c.id for c in db.inbox(InboxQuery(limit=50, brand=brand))]
    assert only and set(only) < set(everything)
    count = db.inbox_count(InboxQuery(brand=brand))
    assert f"{count} case(s)" in texts(at)
    # under each filter: how many open cases each value has under the *other* filters
    assert f"{count:,} of {db.inbox_count(InboxQuery()):,}: " in texts(at)
    intent = db.inbox(InboxQuery(limit=1, brand=brand))[0].intent
    at.selectbox(key="inbox_intent").select(intent).run()
    both = db.inbox_count(InboxQuery(brand=brand, intent=intent))
    # the brand's line already counts under the intent just picked (no lag of one click)
    assert f"{both:,} of {db.inbox_count(InboxQuery(intent=intent)):,}: " in texts(at)
    # a status choice survives changing other filters (labels carry no counts)
    at.multiselect(key="inbox_status").select("resolved").run()
    at.selectbox(key="inbox_intent").select("(any)").run()
    assert "resolved" in at.multiselect(key="inbox_status").value
    at.multiselect(key="inbox_status").unselect("resolved").run()

    at.selectbox(key="inbox_brand").select("(any)").run()
    at.selectbox(key="inbox_sla").select("breached").run()
    assert _listed(at) == [c.id for c in db.inbox(InboxQuery(limit=50, sla_state="breached"))]
    assert xss_case(db) in _listed(at)


def test_inbox_search_uses_full_text(db: Store) -> None:
    at = page("inbox", "ann", db)
    at.text_input(key="inbox_search").input("onerror").run()
    assert _listed(at) == [xss_case(db)]
    at.text_input(key="inbox_search").input("zzzznothing").run()
    assert any("No cases match" in i.value for i in at.info)


def test_sla_state_turns_amber_then_red() -> None:
    now = utcnow()
    case = Case(id=1, first_response_due=now + timedelta(minutes=90), resolution_due=now + timedelta(hours=5))
    assert sla_state(case, now)[0] == "green"
    assert sla_state(case, now + timedelta(minutes=45))[0] == "amber"
    colour, words = sla_state(case, now + timedelta(minutes=100))
    assert colour == "red" and words.startswith("first response overdue")


# ------------------------------------------------------------------- case view
def _open_case(db: Store, username: str = "ann", case_id: int | None = None) -> tuple[AppTest, int]:
    case_id = case_id or db.inbox(InboxQuery(limit=1, statuses=("new", "open")))[0].id
    at = page("case_view", username, db, case_id=case_id)
    assert not at.exception, at.exception
    return at, case_id


def test_case_actions_write_to_store_with_audit(db: Store) -> None:
    at, case_id = _open_case(db)
    assert [t.value for t in at.title] == [f"Case #{case_id}"]
    sel(at, f"status_sel_{case_id}").select("pending_customer")
    at.button(key=f"FormSubmitter:status_{case_id}-Set status").click().run()
    assert db.get_case(case_id).status == "pending_customer"  # type: ignore[union-attr]
    at.button(key=f"assign_me_{case_id}").click().run()
    assert db.get_case(case_id).assignee == "ann"  # type: ignore[union-attr]
    at.text_area(key=f"note_text_{case_id}").input("called the depot")
    at.button(key=f"FormSubmitter:note_{case_id}-Add note").click().run()
    assert [n.text for n in db.notes(case_id)] == ["called the depot"]
    actions = [(e.actor, e.action, e.details) for e in db.audit_trail(case_id) if e.actor == "ann"]
    assert ("ann", "case.update", {"status": "pending_customer"}) in actions
    assert ("ann", "case.update", {"assignee": "ann"}) in actions
    assert any(a[1] == "case.note" for a in actions)
    assert not at.error


def test_agent_cannot_reassign_but_lead_can(db: Store) -> None:
    at, case_id = _open_case(db, "ann")
    assert not [s for s in at.selectbox if s.key.startswith(f"assign_sel_{case_id}_")]
    at, _ = _open_case(db, "lee", case_id)
    sel(at, f"assign_sel_{case_id}").select("bob")
    at.button(key=f"FormSubmitter:assign_{case_id}-Assign").click().run()
    assert db.get_case(case_id).assignee == "bob"  # type: ignore[union-attr]


def test_conflict_shows_clear_message_and_fresh_state(db: Store) -> None:
    at, case_id = _open_case(db, "ann")
    before = db.get_case(case_id)
    assert before is not None
    db.update_case(case_id, before.version, "bob", status="escalated")  # bob got there first
    sel(at, f"status_sel_{case_id}").select("resolved")
    at.button(key=f"FormSubmitter:status_{case_id}-Set status").click().run()
    after = db.get_case(case_id)
    assert after is not None and after.status == "escalated"  # bob's change was not overwritten
    message = " ".join(e.value for e in at.error)
    assert "changed by bob" in message and "fresh state" in message
    assert at.metric[0].value == "escalated"  # the page shows the fresh state
    assert sel(at, f"status_sel_{case_id}").value == "escalated"  # and the form starts from it
    # working from the fresh version, ann's next change goes through
    sel(at, f"status_sel_{case_id}").select("resolved")
    at.button(key=f"FormSubmitter:status_{case_id}-Set status").click().run()
    assert db.get_case(case_id).status == "resolved"  # type: ignore[union-attr]


def test_presence_shows_who_else_is_on_the_case(db: Store) -> None:
    case_id = db.inbox(InboxQuery(limit=1))[0].id
    presence.touch(db, case_id, "bob", drafting=True)
    at, _ = _open_case(db, "ann", case_id)
    assert any("bob is replying" in w.value.replace("\\", "") for w in at.warning)
    assert [o["user"] for o in presence.others(db, case_id, "bob")] == ["ann"]
    later = utcnow() + timedelta(minutes=3)
    assert presence.others(db, case_id, "ann", now=later) == []


def test_user_text_is_shown_literally(db: Store) -> None:
    at, case_id = _open_case(db, "ann", xss_case(db))
    assert XSS_TEXT in [t.value for t in at.text]  # the post body: st.text, no Markdown at all
    sources = [m.value for m in at.markdown] + [c.value for c in at.caption]
    assert any("Mallory" in s for s in sources)
    md = MarkdownIt("commonmark")
    for source in sources:
        html = md.render(source)
        assert "<script" not in html and "<img" not in html and "<a " not in html and "<b>" not in html
    rendered = md.render(escape_md(XSS_TEXT)).strip().replace(WORD_JOINER, "")
    assert rendered == f"<p>{_html_escape(XSS_TEXT)}</p>"
    # bare URLs and e-mail addresses are broken up so GFM autolinking cannot make them links
    assert WORD_JOINER in escape_md("see http://evil.example") and WORD_JOINER in escape_md("www.evil.example")


def _html_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def test_label_correction_is_stored_for_retraining(db: Store) -> None:
    at, case_id = _open_case(db, "ann", xss_case(db))
    mention = db.mention_by_external_id("x", "xss-1")
    assert mention is not None
    at.session_state[f"labels_open_{mention.id}"] = True  # "Correct labels" opened: its form is drawn now
    at.run()
    at.selectbox(key=f"lab_int_{mention.id}").select("lost_or_missing")
    at.button(key=f"FormSubmitter:labels_{mention.id}-Save correction").click().run()
    rows = list(db.db.query("select * from label_corrections where old_value <> new_value"))
    assert [(r["mention_id"], r["field"], r["old_value"], r["new_value"], r["corrected_by"]) for r in rows] == [
        (mention.id, "intent", "customer_service", "lost_or_missing", "ann")]


def test_relink_to_another_order(db: Store) -> None:
    at, case_id = _open_case(db, "ann", xss_case(db))
    number = db.db.execute("select number from orders limit 1").fetchone()[0]
    at.session_state[f"relink_open_{case_id}"] = True  # "Change the linked order" opened: its form is drawn now
    at.run()
    at.text_input(key=f"relink_number_{case_id}").input(number)
    at.button(key=f"FormSubmitter:relink_{case_id}-Link this order").click().run()
    case = db.get_case(case_id)
    # Someone else's order (the author is @mallory): linked, but not confirmed, and shown in red.
    assert case is not None and case.order_number == number and case.link_method == "agent" and not case.link_confirmed
    assert any(f"Order {number} belongs to" in e.value.replace("\\", "") for e in at.error)
    at.text_input(key=f"relink_how_{case_id}").input("customer sent the order e-mail by DM")
    at.button(key=f"FormSubmitter:relink_{case_id}-Link this order").click().run()
    case = db.get_case(case_id)
    assert case is not None and case.link_confirmed
    assert any(e.action == "link.verified" for e in db.audit_trail(case_id))
    at.text_input(key=f"relink_number_{case_id}").input("NOPE-1")
    at.button(key=f"FormSubmitter:relink_{case_id}-Link this order").click().run()
    assert any("No order NOPE" in e.value.replace("\\", "") for e in at.error)


def _customer_writes_again(db: Store, config: Config, case_id: int) -> None:
    """The case's customer posts again in their thread: the demo has answered every post of theirs already."""
    from doorstep.pipeline import Pipeline
    from tests.conftest import KeywordClassifier

    last = [m for m in db.mentions_for_case(case_id) if not m.outbound and m.channel == "x"][-1]
    Pipeline(db, config, KeywordClassifier()).ingest([Mention(
        channel="x", external_id=f"again-{case_id}", text="any news on my order?", created_at=utcnow(),
        author_handle=last.author_handle, author_name=last.author_name, thread_id=last.thread_id,
        in_reply_to=last.external_id)])
    assert db.mention_by_external_id("x", f"again-{case_id}").case_id == case_id  # type: ignore[union-attr]


def test_reply_with_template_is_queued_and_shown(db: Store) -> None:
    from doorstep.config import load_config
    from responders.templates import TemplateError, list_templates, render_template

    config = load_config(DEMO_CONFIG)
    # A guessed order is never confirmed by itself: the agent confirms it by linking it (their own order).
    from doorstep.linking import override_link

    for case_id, number, version in db.db.execute(
            "select id, order_number, version from cases where link_method = 'recent_order' and channel = 'x' and "
            "status != 'resolved'").fetchall():
        override_link(db, case_id, version, "ann", order_number=number)
    rows = db.db.execute("select id, order_number from cases where link_confirmed = 1 and channel = 'x' and "
                         "status != 'resolved' and order_number is not null order by priority desc").fetchall()
    fillable = []
    for case_id, number in rows:
        for name in list_templates(config):
            try:
                text = render_template(db, config, case_id, name, agent="Ann")
            except TemplateError:
                continue
            # In public, the order number only when the author posted it (the privacy rule); the
            # parcel's state and courier always.
            if number in text or (name not in ("ask_details_privately", "thank_you") and "{{ courier }}" in
                                  list_templates(config)[name]):
                fillable.append((case_id, name))
    assert fillable, "the demo has a confirmed case whose order fills a template"
    case_id, name = fillable[0]
    _customer_writes_again(db, config, case_id)  # a post nobody answered yet (one answer per post)
    at, _ = _open_case(db, "ann", case_id)
    at.selectbox(key=f"tpl_{case_id}").select(name)
    at.button(key=f"fill_{case_id}").click().run()
    draft = at.text_area(key=f"draft_{case_id}").value
    assert draft == render_template(db, config, case_id, name, agent="Ann")
    assert any("/280 characters as x counts them" in c.value.replace("\\", "") for c in at.caption)
    at.button(key=f"send_{case_id}").click().run()
    messages = db.outbound_for_case(case_id)
    assert [(m.kind, m.status, m.created_by, m.text) for m in messages][-1] == ("reply", "queued", "ann", draft.strip())
    assert "reply via X" in texts(at)
    assert at.text_area(key=f"draft_{case_id}").value == ""  # the draft is cleared once queued


def test_failed_message_can_be_retried(db: Store) -> None:
    from responders.outbox import enqueue

    case_id = xss_case(db)
    message = enqueue(db, kind="reply", channel="x", text="sorry about that", actor="ann", idempotency_key="t-retry",
                      case_id=case_id, target="mallory", in_reply_to="xss-1")
    db.db.execute("update outbound_messages set status = 'failed', last_error = 'X 403: forbidden' where id = ?",
                  [message.id])
    at, _ = _open_case(db, "ann", case_id)
    assert "last error: X 403: forbidden" in texts(at)
    at.button(key=f"retry_{message.id}").click().run()
    assert db.db.execute("select status from outbound_messages where id = ?", [message.id]).fetchone()[0] == "queued"
    assert any(e.action == "outbox.retry" and e.actor == "ann" for e in db.audit_trail(case_id))


def test_retry_of_a_message_whose_account_left_the_config_is_refused_with_what_to_do(db: Store) -> None:
    """Retry queued it again and it failed the same way on every send; now the page says to queue a new reply."""
    from responders.outbox import enqueue

    case_id = xss_case(db)
    message = enqueue(db, kind="reply", channel="x", text="sorry about that", actor="ann", idempotency_key="t-gone",
                      case_id=case_id, target="mallory", in_reply_to="xss-1", account="GoneHelp")
    db.db.execute("update outbound_messages set status = 'failed', last_error = 'gone' where id = ?", [message.id])
    at, _ = _open_case(db, "ann", case_id)
    at.button(key=f"retry_{message.id}").click().run()
    assert db.db.execute("select status from outbound_messages where id = ?", [message.id]).fetchone()[0] == "failed"
    assert any("queue the reply again from the case" in e.value for e in at.error), [e.value for e in at.error]


# ------------------------------------------------------------------------- CLI
def test_user_cli_add_list_set_role_remove(db_url: str) -> None:
    from commands.cli import cli

    db = db_url  # a SQLite file, then a postgresql:// URL: --db switches the command's database
    runner = CliRunner()
    result = runner.invoke(cli, ["--db", db, "user", "add", "zoe", "--role", "lead", "--name", "Zoe",
                                 "--password-stdin"], input="s3cret-passphrase\n")
    assert result.exit_code == 0, result.output
    assert "s3cret" not in result.output
    result = runner.invoke(cli, ["--db", db, "user", "add", "zoe", "--password-stdin"], input="another-pass\n")
    assert result.exit_code != 0 and "already exists" in result.output
    assert runner.invoke(cli, ["--db", db, "user", "set-role", "ZOE", "admin"]).exit_code == 0  # case-insensitive
    ghost = runner.invoke(cli, ["--db", db, "user", "set-role", "ghost", "admin"])
    assert ghost.exit_code != 0 and "no user 'ghost'" in ghost.output
    listed = runner.invoke(cli, ["--db", db, "user", "list"]).output
    assert listed.strip() == "zoe\tadmin\tZoe"
    assert runner.invoke(cli, ["--db", db, "user", "set-email", "zoe", "Zoe@Shop.example"]).exit_code == 0
    assert runner.invoke(cli, ["--db", db, "user", "list"]).output.strip() == "zoe\tadmin\tZoe\tzoe@shop.example"
    sso_only = runner.invoke(cli, ["--db", db, "user", "add", "sam", "--email", "sam@shop.example", "--no-password"])
    assert sso_only.exit_code == 0, sso_only.output
    taken = runner.invoke(cli, ["--db", db, "user", "add", "sal", "--email", "SAM@shop.example", "--no-password"])
    assert taken.exit_code != 0 and "already belongs" in taken.output
    store = Store(db)
    assert check_password(store, "zoe", "s3cret-passphrase")
    store.close()
    store = Store(db)
    assert not check_password(store, "sam", "")  # no password: single sign-on only
    from console.auth import credentials
    assert set(credentials(store)["usernames"]) == {"zoe"}  # so the password form never offers sam
    store.close()
    assert runner.invoke(cli, ["--db", db, "user", "remove", "zoe"]).exit_code == 0
    assert runner.invoke(cli, ["--db", db, "user", "remove", "sam"]).exit_code == 0
    assert runner.invoke(cli, ["--db", db, "user", "list"]).output.strip().startswith("no users in ")
    short = runner.invoke(cli, ["--db", db, "user", "add", "tim", "--password-stdin"], input="short\n")
    assert short.exit_code != 0 and "at least 8" in short.output


def test_dashboard_renders_charts(db: Store) -> None:
    from zoneinfo import ZoneInfo

    from console.dashboard import window
    from doorstep import metrics

    at = page("dashboard", "lee", db)
    assert not at.exception, at.exception
    assert [t.value for t in at.title] == ["Dashboard"]
    start, end = window(7, ZoneInfo("Europe/London"))
    expected = metrics.headline(db, start, end, "Europe/London")
    assert at.metric[0].value == str(expected["mentions"]) and at.metric[1].value == str(expected["complaints"])
    assert len(at.get("vega_lite_chart")) == 5


def test_dashboard_shows_answer_rates_by_channel_and_hour(db: Store) -> None:
    from datetime import datetime, timezone

    from doorstep.contact_history import record_attempt

    now = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
    for i, (channel, hours_ago, answered) in enumerate([("sms", 80, True), ("sms", 80, False), ("email", 100, False)]):
        sent = now - timedelta(hours=hours_ago)
        cursor = db.db.execute(
            "insert into outbound_messages (kind, channel, target, text, status, attempts, idempotency_key, created_at, "
            "sent_at) values ('follow_up', ?, 'x', 'hello', 'sent', 1, ?, ?, ?)",
            [channel, f"answer-rate-test:{i}", sent.isoformat(), sent.isoformat()])
        record_attempt(db, message_id=cursor.lastrowid, case_id=None, customer_id=f"A{i}", brand=None,  # type: ignore[arg-type]
                       rule="follow_up", channel=channel, planned_at=sent, tz=ZoneInfo("Europe/London"))
        if answered:
            db.db.execute("update contact_attempts set answered_at = ?, answer_minutes = 12 where message_id = ?",
                          [(sent + timedelta(minutes=12)).isoformat(), cursor.lastrowid])
    at = page("dashboard", "lee", db)
    assert not at.exception, at.exception
    assert "Answers to our messages by channel and hour" in [s.value for s in at.subheader]
    assert "1 of 3 messages answered (33%)" in texts(at)
    assert len(at.get("vega_lite_chart")) == 6
    heat = next(c.proto for c in at.get("vega_lite_chart") if b"hour_label" in c.proto.data.data)
    assert b"SMS" in heat.data.data and b"e-mail" in heat.data.data  # the rows name the channels in words


def test_dashboard_answers_to_our_questions_follow_the_brand_filter(db: Store) -> None:
    from console.dashboard import window

    now = utcnow().replace(microsecond=0)
    for i, (brand, minutes) in enumerate([("Larkspur Home", 10), ("Larkspur Home", 50), ("Fettle Outdoor", 30),
                                          ("Fettle Outdoor", 40)]):
        case_id = db.insert_case(Case(status="open", brand=brand, channel="x", author_handle=f"q{i}", opened_at=now,
                                      last_activity_at=now, mention_count=1))
        asked = now - timedelta(hours=3, minutes=i)
        db.db.execute("insert into questions (case_id, rule, channel, target, token, asked_at, status, answered_at) "
                      "values (?, 'safe_place', 'email', 'a@example.com', ?, ?, 'answered', ?)",
                      [case_id, f"dash-brand-{i}", asked.isoformat(), (asked + timedelta(minutes=minutes)).isoformat()])
    start, end = window(7, ZoneInfo("Europe/London"))
    asked = db.db.execute(
        "select count(*) from questions q join cases c on c.id = q.case_id where c.brand = 'Larkspur Home' "
        "and q.channel = 'email' and q.asked_at >= ? and q.asked_at < ? and q.answered_at is not null",
        [start.astimezone(timezone.utc).isoformat(), end.astimezone(timezone.utc).isoformat()]).fetchone()[0]
    assert asked == 2
    at = page("dashboard", "lee", db, dash_brand="Larkspur Home")
    assert not at.exception, at.exception
    [answers] = [d.value for d in at.dataframe if "asked" in d.value.columns]
    email = answers[answers["channel"] == "e-mail"].iloc[0]
    assert (email["asked"], email["answered"]) == (2, 2)  # Larkspur's two, not all four
    assert email["median time to answer"] == "30 min"  # (10 + 50) / 2


def test_reports_page_renders_a_week_and_lists_sends(db: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tempfile

    from doorstep.reports import weeks_with_data
    from doorstep.config import load_config

    db.db.execute(
        "insert into outbound_messages (kind, channel, target, text, status, attempts, last_error, idempotency_key, "
        "created_at) values ('report', 'email', 'lead@shop.example', 'weekly', 'failed', 2, 'SMTP 451 try later', "
        "'report:2026-W46:lead@shop.example', '2026-11-16T08:00:00+00:00')"
    )
    at = page("reports", "ann", db)
    assert not at.exception, at.exception
    assert [t.value for t in at.title] == ["Weekly reports"]
    from doorstep.models import utcnow
    from doorstep.reports import last_complete_week, week_of

    config = load_config(DEMO_CONFIG)
    weeks = weeks_with_data(db, config)
    current = week_of(utcnow(), config.tz)
    # Each week says its days: a lead knows "the week of 23 November", not "2026-W48".
    from doorstep.reports import week_dates

    assert week_dates("2026-W48", "Europe/London") == "Mon 23 Nov – Sun 29 Nov 2026"
    assert week_dates("2026-W53", "Europe/London") == "Mon 28 Dec 2026 – Sun 03 Jan 2027"
    assert at.selectbox(key="report_week").options == [
        f"{w} · {week_dates(w, config.tz)}" + (" (in progress)" if w == current else "") for w in weeks]
    # The week a report is about by default is the last complete one, not the one still filling up.
    assert at.selectbox(key="report_week").value == last_complete_week(utcnow(), config.tz)
    sends = at.dataframe[0].value
    assert list(sends["status"]) == ["failed"] and list(sends["last error"]) == ["SMTP 451 try later"]
    # Each render wrote its PDF to a new folder in the system's temp folder and left it there: every report
    # anyone rendered stayed on the server's disk (found in /tmp, 2026-12-06).
    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    at.button(key="report_render").click().run()
    assert not at.exception, at.exception
    assert [b.label for b in at.get("download_button")] == ["Download HTML", "Download PDF"]
    assert list(temp.iterdir()) == []


def test_inbox_names_statuses_channels_and_intents_in_words(db: Store) -> None:
    """The filters, their counts and the rows say "where is my order", "pending customer", "X", not keys."""
    at = page("inbox", "ann", db)
    intents = at.selectbox(key="inbox_intent").options
    assert "late delivery" in intents and "none yet" in intents, intents
    assert not [o for o in intents if "_" in o or o == "(none)"], intents
    channels = at.selectbox(key="inbox_channel").options
    assert "X" in channels and "x" not in channels, channels
    statuses = at.multiselect(key="inbox_status").options
    assert "pending customer" in statuses and "pending_customer" not in statuses, statuses
    shown = texts(at)
    x_cases = db.inbox_count(InboxQuery(channel="x"))
    assert f"X {x_cases:,}" in shown and f"x {x_cases:,}" not in shown
    for key in ("late_delivery", "(none)"):
        assert key not in shown, key
    networks = at.dataframe[0].value["newest post"].str.extract(r"^\[([^\]]+)\]")[0].dropna().tolist()
    assert "X" in networks and not {"x", "bluesky", "mastodon"} & set(networks), networks  # "[Bluesky]", not "[bluesky]"
    # choosing by the words filters by the key
    at.selectbox(key="inbox_intent").select("late_delivery").run()
    assert _listed(at) == [c.id for c in db.inbox(InboxQuery(limit=50, intent="late_delivery"))]
    assert all("late delivery" in o for o in at.selectbox(key="inbox_pick").options)
    # a case we opened ourselves (a stuck parcel, no post yet) has no author: no "@-" in its name
    now = utcnow()
    own = db.insert_case(Case(status="new", priority=500.0, brand="Larkspur Home", intent="late_delivery", opened_at=now,
                              last_activity_at=now, first_response_due=now + timedelta(hours=1),
                              resolution_due=now + timedelta(hours=8)))
    at = page("inbox", "ann", db)
    assert f"#{own} — late delivery" in at.selectbox(key="inbox_pick").options


def test_a_reply_on_a_case_resolved_meanwhile_is_refused_and_send_anyway_reopens_it(db: Store) -> None:
    """Audit (two agents) finding 2, on the page: the reply went out silently and the case stayed resolved."""
    at, case_id = _open_case(db, "ann")
    before = db.get_case(case_id)
    db.update_case(case_id, before.version, "bob", status="resolved", resolved_at=utcnow())  # type: ignore[union-attr]
    at.text_area(key=f"draft_{case_id}").input("Sorry for the wait, we will update you today.")
    at.button(key=f"send_{case_id}").click().run()
    assert not at.exception, at.exception
    shown = " ".join(e.value for e in at.error).replace("\\", "")
    assert "bob resolved this case" in shown, shown
    assert db.rows("select id from outbound_messages where case_id = ? and kind = 'reply'", [case_id]) == []
    at.button(key=f"send_anyway_{case_id}").click().run()
    assert not at.exception, at.exception
    assert len(db.rows("select id from outbound_messages where case_id = ? and kind = 'reply'", [case_id])) == 1
    assert db.get_case(case_id).status == "open"  # type: ignore[union-attr]


def test_resolve_and_next_waits_for_a_colleague_who_is_replying(db: Store) -> None:
    """Agents audit, left open last round: "Resolve and go to the next case" resolved the case under a
    colleague typing a reply (their reply was then refused as "resolved since you opened it")."""
    from doorstep import presence

    at, case_id = _open_case(db, "ann")
    presence.touch(db, case_id, "bob", drafting=True)
    at.button(key=f"resolve_next_{case_id}").click().run()
    assert not at.exception, at.exception
    assert db.get_case(case_id).status != "resolved"  # type: ignore[union-attr]
    shown = " ".join(e.value for e in at.error).replace("\\", "")
    assert "bob is replying" in shown and "Set status" in shown, shown
    presence.touch(db, case_id, "bob", drafting=False)  # bob sent or stopped
    at.button(key=f"resolve_next_{case_id}").click().run()
    assert db.get_case(case_id).status == "resolved"  # type: ignore[union-attr]


def test_a_reply_naming_a_customer_of_the_shop_is_asked_about_and_sent_once_confirmed(db: Store) -> None:
    """Second code review: a fashion shop's "The Paul Smith shirts are back" was refused for good, because a customer
    is named Paul Smith. The page asks; "Not that customer: send" queues it, and the audit log says so."""
    from doorstep.models import Customer

    db.upsert_customers([Customer(id="PS1", name="Paul Smith")])
    case_id = db.inbox(InboxQuery(limit=1, statuses=("new", "open"), channel="x"))[0].id
    at, case_id = _open_case(db, "ann", case_id)
    at.text_area(key=f"draft_{case_id}").input("The Paul Smith shirts are back on Friday!")
    at.button(key=f"send_{case_id}").click().run()
    assert not at.exception, at.exception
    shown = " ".join(w.value for w in at.warning).replace("\\", "")
    assert "Paul Smith is the name of a customer of the shop" in shown, shown
    assert db.rows("select id from outbound_messages where case_id = ? and kind = 'reply'", [case_id]) == []
    at.button(key=f"names_ok_{case_id}").click().run()
    assert not at.exception, at.exception
    assert len(db.rows("select id from outbound_messages where case_id = ? and kind = 'reply'", [case_id])) == 1
    assert [e.details["names"] for e in db.audit_trail(case_id) if e.action == "reply.names_confirmed"] == \
        [["Paul Smith"]]
    assert not at.warning or "Paul Smith" not in " ".join(w.value for w in at.warning)
