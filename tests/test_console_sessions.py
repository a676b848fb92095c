"""Console logins are server-side sessions checked on every run: a password change, a role
change, a removal or a logout elsewhere ends them, an old cookie logs nobody in, and the
cookie itself is set by the server as HttpOnly (never by JavaScript)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from streamlit.testing.v1 import AppTest

from console import auth, login
from doorstep.store import Store
from tests.test_console_apptest import APP, PASSWORD, db, demo_template, log_in  # noqa: F401 - fixtures

NEW_PASSWORD = "a brand new passphrase"


def _browser_with_cookie(monkeypatch: pytest.MonkeyPatch, token: str | None) -> AppTest:
    """A new browser tab that sends ``token`` as its doorstep_session cookie."""
    monkeypatch.setattr(login, "browser_token", lambda: token)
    return AppTest.from_file(APP, default_timeout=30).run()


def _cookie_of(at: AppTest, store: Store) -> str:
    """What /auth/session would put in the browser's cookie for this login."""
    grant = auth.new_grant(store, at.session_state["_session_id"])
    redeemed = auth.redeem_grant(store, grant)
    assert redeemed is not None
    return redeemed[0]


def _logged_in(at: AppTest) -> bool:
    return "user" in at.session_state and [t.value for t in at.title] != ["Doorstep"]


def test_password_change_ends_open_logins_and_old_cookies(db: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    from commands.cli import cli

    at = log_in(AppTest.from_file(APP, default_timeout=30).run(), "ann", PASSWORD)
    assert _logged_in(at)
    token = _cookie_of(at, db)
    other = _browser_with_cookie(monkeypatch, token)
    assert _logged_in(other) and other.session_state["user"].username == "ann"  # the cookie works

    result = CliRunner().invoke(cli, ["--db", str(db.path), "user", "set-password", "ann", "--password-stdin"],
                                input=NEW_PASSWORD + "\n")
    assert result.exit_code == 0, result.output
    at.run()
    assert not _logged_in(at) and any("login ended" in i.value for i in at.info)
    other.run()
    assert not _logged_in(other)  # the open tab with the cookie, on its next click
    assert not _logged_in(_browser_with_cookie(monkeypatch, token))  # and the old cookie in a new tab
    monkeypatch.setattr(login, "browser_token", lambda: None)
    assert _logged_in(log_in(AppTest.from_file(APP, default_timeout=30).run(), "ann", NEW_PASSWORD))


def test_logout_elsewhere_ends_every_copy_of_the_login(db: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    at = log_in(AppTest.from_file(APP, default_timeout=30).run(), "bob", PASSWORD)
    token = _cookie_of(at, db)
    copy = _browser_with_cookie(monkeypatch, token)
    assert _logged_in(copy)
    monkeypatch.setattr(login, "browser_token", lambda: None)
    at.button(key="logout_button").click().run()
    assert not _logged_in(at)
    monkeypatch.setattr(login, "browser_token", lambda: token)
    copy.run()
    assert not _logged_in(copy)
    assert not _logged_in(_browser_with_cookie(monkeypatch, token))


def test_role_change_and_removal_end_cookie_logins(db: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    at = log_in(AppTest.from_file(APP, default_timeout=30).run(), "bob", PASSWORD)
    token = _cookie_of(at, db)
    auth.set_role(db, "bob", "lead", actor="ada")
    assert not _logged_in(_browser_with_cookie(monkeypatch, token))
    at = log_in(_browser_with_cookie(monkeypatch, None), "bob", PASSWORD)
    token = _cookie_of(at, db)
    auth.remove_user(db, "bob", actor="ada")
    assert not _logged_in(_browser_with_cookie(monkeypatch, token))


def test_forged_or_expired_cookie_logs_nobody_in(db: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    from datetime import timedelta

    from doorstep.models import utcnow

    assert not _logged_in(_browser_with_cookie(monkeypatch, "made-up-token"))
    session, grant = auth.start_session(db, "ann", hours=1)
    token, _ = auth.redeem_grant(db, grant)  # type: ignore[misc]
    assert auth.session_by_token(db, token) == session
    assert auth.session_by_token(db, token, now=utcnow() + timedelta(hours=2)) is None
    assert auth.redeem_grant(db, grant) is None  # a grant works once
    stored = db.db.execute("select * from console_sessions").fetchall()
    assert token not in str(stored) and grant not in str(stored)  # only digests are kept


def test_session_route_sets_an_httponly_cookie_and_only_once(db: Store) -> None:
    from starlette.applications import Starlette
    from starlette.testclient import TestClient

    from console.server import routes

    client = TestClient(Starlette(routes=routes()), base_url="https://console.example")
    _, grant = auth.start_session(db, "ann", hours=1)
    response = client.get(f"/auth/session?grant={grant}&next=/case", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/case"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("doorstep_session=") and "HttpOnly" in cookie and "Secure" in cookie
    assert "samesite=lax" in cookie.lower()
    token = cookie.split(";")[0].split("=", 1)[1]
    assert auth.session_by_token(db, token) is not None
    again = client.get(f"/auth/session?grant={grant}", follow_redirects=False)
    assert "set-cookie" not in again.headers  # replayed grant: nothing
    evil = client.get(f"/auth/session?grant=x&next=//evil.example/", follow_redirects=False)
    assert evil.headers["location"] == "/"  # never a redirect to another site
    out = client.get("/auth/logout", follow_redirects=False)
    assert 'doorstep_session=""' in out.headers["set-cookie"] and "Max-Age=0" in out.headers["set-cookie"]


def test_a_shared_case_link_survives_the_login(db: Store) -> None:
    """Opening /case?id=224 while logged out comes back to case 224 after the login, not to /case."""
    from urllib.parse import quote

    from starlette.applications import Starlette
    from starlette.testclient import TestClient

    from console.server import routes

    client = TestClient(Starlette(routes=routes()), base_url="https://console.example")
    _, grant = auth.start_session(db, "ann", hours=1)
    response = client.get(f"/auth/session?grant={grant}&next={quote('/case?id=224', safe='')}", follow_redirects=False)
    assert response.headers["location"] == "/case?id=224"
    for evil in ("//evil.example/?id=1", "/\\evil.example", "https://evil.example/case?id=1"):
        out = client.get(f"/auth/session?grant=x&next={quote(evil, safe='')}", follow_redirects=False)
        assert out.headers["location"] == "/"


def test_login_never_sets_a_javascript_cookie(db: Store) -> None:
    """streamlit-authenticator's cookie component (JavaScript) is never drawn."""
    at = log_in(AppTest.from_file(APP, default_timeout=30).run(), "ann", PASSWORD)
    assert _logged_in(at)
    at.run()
    assert not [c for c in at.get("component_instance") if "cookie" in str(c.proto).lower()]


def test_the_login_run_draws_the_console_and_fetches_the_cookie_without_a_reload(
        db: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """Served by `streamlit run app.py`, the run after the password draws the console in the same
    session and has the browser *fetch* /auth/session for the HttpOnly cookie: the tab no longer
    goes through /auth/session and back, which loaded the console twice (a new page and a new
    session: 1.2-1.4 s of the first load at 1M cases, issue 17). Only a failed fetch navigates."""
    monkeypatch.setattr(login, "COOKIE_ROUTES", True)
    at = log_in(AppTest.from_file(APP, default_timeout=30).run(), "ann", PASSWORD)
    assert "_session_id" in at.session_state and at.session_state[login.COOKIE_SENT]
    assert "Inbox" in [t.value for t in at.title]
    assert not any("Logging you in" in c.value for c in at.caption)
    [script] = [e.proto.srcdoc for e in at.get("iframe") if "/auth/session?grant=" in e.proto.srcdoc]
    grant = script.split("/auth/session?grant=")[1].split('"')[0]
    assert "fetch(" in script and "credentials: 'same-origin'" in script
    assert auth.redeem_grant(db, grant) is not None  # the grant it fetches is this login's, redeemable once
    at.run()  # the next click: the grant is not sent again
    assert not [e for e in at.get("iframe") if "/auth/session" in e.proto.srcdoc]
    assert "Inbox" in [t.value for t in at.title]


def test_the_login_click_draws_the_console_in_one_run_without_the_form(
        db: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 17: the click on "Log in" ran the script twice: the form's run ended in ``st.rerun()``
    and a second run drew the console, 130-170 ms apart on two busy cores (bench/console_trace.py)
    on the one interaction that missed 1 s at 1M cases. Now the run that checks the password takes
    the form away and draws the console itself: one run, and nothing of the login page left."""
    at = AppTest.from_file(APP, default_timeout=30).run()
    runs = []
    checked = login.current_user
    monkeypatch.setattr(login, "current_user", lambda *a, **k: runs.append(1) or checked(*a, **k))
    at = log_in(at, "ann", PASSWORD)
    assert len(runs) == 1, f"the login click ran the script {len(runs)} times"
    assert "Inbox" in [t.value for t in at.title] and "Doorstep" not in [t.value for t in at.title]
    assert not [t for t in at.text_input if t.label in ("Username", "Password")]
    assert not [b for b in at.button if b.label == "Log in" or b.key == f"{login.TABLE_CODE_KEY}_button"]
    at.run()  # the next click: still the console, the form does not come back
    assert "Inbox" in [t.value for t in at.title] and not [t for t in at.text_input if t.label == "Password"]


def test_the_console_keeps_its_places_from_the_login_click_to_the_next_click(db: Store) -> None:
    """The login click's run draws the console below the emptied form; the next run must put every
    element in the same place (the same delta path), or the browser builds the whole page again on the
    agent's first click: the brand filter after login took 742 ms instead of 431 at 1M cases."""
    def places(at: AppTest) -> list[tuple[int, str]]:
        return [(i, type(node).__name__ + ":" + str(getattr(node, "value", "")))
                for i, node in sorted(at.main.children.items())]

    at = log_in(AppTest.from_file(APP, default_timeout=30).run(), "ann", PASSWORD)
    after_login = places(at)
    at.run()
    assert places(at) == after_login
    assert any("Inbox" in name for _, name in after_login)


def test_the_served_console_freezes_its_start_up_objects_once_after_its_first_console_run(
        db: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """Full garbage collections in the served console walked every object of Streamlit, pandas and
    the console, 70-500 ms every ~2 s at 1M cases (issue 17): the first run that draws the console
    freezes what is alive then, once per process; the login page alone, and tests' AppTest runs
    (not served), freeze nothing."""
    import gc

    from console import server

    monkeypatch.setattr(server, "_frozen", False)
    monkeypatch.setattr(server, "SERVED", True)
    frozen = []
    monkeypatch.setattr(gc, "freeze", lambda: frozen.append(gc.get_count()))
    at = AppTest.from_file(APP, default_timeout=30).run()
    assert frozen == []  # the login page: the console's modules are not even imported yet
    at = log_in(at, "ann", PASSWORD)
    assert len(frozen) == 1 and "Inbox" in [t.value for t in at.title]
    at.run()
    assert len(frozen) == 1  # once per process
    monkeypatch.setattr(server, "_frozen", False)
    monkeypatch.setattr(server, "SERVED", False)
    monkeypatch.setattr(login, "COOKIE_ROUTES", True)  # as tests of the cookie routes set it
    log_in(AppTest.from_file(APP, default_timeout=30).run(), "ann", PASSWORD)
    assert len(frozen) == 1  # not served: nothing frozen


def test_logout_clears_a_cookie_the_tab_fetched(db: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """The tab that fetched its cookie never saw it come in (its session began without it): logging
    out still sends it through /auth/logout, so no dead cookie is left in the browser."""
    monkeypatch.setattr(login, "COOKIE_ROUTES", True)
    monkeypatch.setattr(login, "browser_token", lambda: None)
    at = log_in(AppTest.from_file(APP, default_timeout=30).run(), "ann", PASSWORD)
    at.button(key="logout_button").click().run()
    assert [e for e in at.get("iframe") if login.LOGOUT_ROUTE in e.proto.srcdoc]


def test_the_login_page_loads_the_inboxs_code_out_of_sight(db: Store) -> None:
    """Issue 17: with the console drawn in the same page after the login, the browser loaded the data
    grid's and the select boxes' code only when the inbox arrived. The login page now holds one of
    each (table, select box, multiselect, button, frame) in a container that is not displayed, with
    every widget disabled; the console does not."""
    at = AppTest.from_file(APP, default_timeout=30).run()
    key = login.TABLE_CODE_KEY
    assert [s.disabled for s in at.selectbox if s.key == f"{key}_select"] == [True]
    assert [m.disabled for m in at.multiselect if m.key == f"{key}_multi"] == [True]
    assert [b.disabled for b in at.button if b.key == f"{key}_button"] == [True]
    assert len(at.dataframe) == 1 and at.get("iframe")
    assert any(f".st-key-{key} {{ display: none; }}" in h.proto.body for h in at.get("html"))
    at = log_in(at, "ann", PASSWORD)
    assert not [s for s in at.selectbox if s.key and s.key.startswith(key)]
    assert not [h for h in at.get("html") if key in h.proto.body]


# ---------------------------------------------------------------- a click on a page drawn before the login ended
# Streamlit runs a button's callback before the script, so before app.py checks the login: a page
# drawn while the user could still act must not act for them once they were removed, demoted or had
# their password changed (security audit, 2026-12-06: a removed admin's open Settings page added a
# new admin).
ENDINGS = {
    "removed": lambda store, name: auth.remove_user(store, name, actor="ada"),
    "demoted": lambda store, name: auth.set_role(store, name, "agent", actor="ada"),
    "password changed": lambda store, name: auth.set_password(store, name, NEW_PASSWORD, actor="ada", rounds=4),
}


def _on_page(username: str, page: str, **query: str) -> AppTest:
    at = log_in(AppTest.from_file(APP, default_timeout=30).run(), username, PASSWORD)
    at.session_state[login.PAGE_ASKED] = page
    for key, value in query.items():
        at.query_params[key] = value
    return at.run()


@pytest.mark.parametrize("ending", ["removed", "demoted", "password changed"])
def test_a_page_drawn_before_the_login_ended_adds_no_user(db: Store, ending: str) -> None:
    auth.add_user(db, "root", PASSWORD, role="admin", rounds=4)  # someone left to remove the first admin
    at = _on_page("ada", "settings")
    assert [t.value for t in at.title] == ["Settings"]
    at.text_input(key="ua_username").input("mallory")
    at.text_input(key="ua_password").input("mallory-password")
    at.selectbox(key="ua_role").select("admin")
    ENDINGS[ending](db, "ada")
    at.button(key="FormSubmitter:user_add-Add user").click().run()
    assert auth.get_user(db, "mallory") is None
    assert not [e for e in db.audit_trail(limit=20) if e.action == "user.add" and "mallory" in str(e.details)]
    assert [t.value for t in at.title] == ["Doorstep"]  # and the login page is what they see


@pytest.mark.parametrize("ending", ["removed", "password changed"])
def test_a_case_page_drawn_before_the_login_ended_sends_and_escalates_nothing(db: Store, ending: str) -> None:
    from doorstep.store import InboxQuery

    case_id = db.inbox(InboxQuery(limit=1, statuses=("new", "open")))[0].id
    before = len(db.outbound_for_case(case_id))
    at = _on_page("ann", "case", id=str(case_id))
    assert [t.value for t in at.title] == [f"Case #{case_id}"]
    at.text_area(key=f"draft_{case_id}").input("We are on it")
    at.text_area(key=f"esc_note_{case_id}").input("please look")
    ENDINGS[ending](db, "ann")
    at.button(key=f"send_{case_id}").click().run()
    assert len(db.outbound_for_case(case_id)) == before
    assert [t.value for t in at.title] == ["Doorstep"]

    at = _on_page("bob", "case", id=str(case_id))  # the same with Escalate and Ask privately
    at.text_area(key=f"esc_note_{case_id}").input("please look")
    ENDINGS[ending](db, "bob")
    at.button(key=f"FormSubmitter:escalate_{case_id}-Escalate").click().run()
    assert len(db.outbound_for_case(case_id)) == before
    at = _on_page("lee", "case", id=str(case_id))
    at.button(key=f"askdm_{case_id}").click().run()
    if f"askdm_send_{case_id}" in [b.key for b in at.button]:  # a case with a private route
        ENDINGS[ending](db, "lee")
        at.button(key=f"askdm_send_{case_id}").click().run()
        assert len(db.outbound_for_case(case_id)) == before


def test_a_login_ended_elsewhere_still_says_why_after_the_tab_reloads(db: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """Browser check (2026-12-07): a lead demoted while on Settings met a bare login page. The tab goes through
    /auth/logout to clear its cookie, and that reload lost the "Your login ended ..." line; it rides along now."""
    from starlette.applications import Starlette
    from starlette.testclient import TestClient

    from console.server import routes

    at = log_in(AppTest.from_file(APP, default_timeout=30).run(), "ann", PASSWORD)
    token = _cookie_of(at, db)
    monkeypatch.setattr(login, "COOKIE_ROUTES", True)
    tab = _browser_with_cookie(monkeypatch, token)
    assert _logged_in(tab)
    auth.set_role(db, "ann", "lead")  # (by the CLI: ends her logins)
    tab.run()
    assert [e for e in tab.get("iframe") if f"{login.LOGOUT_ROUTE}?ended=1" in e.proto.srcdoc]
    client = TestClient(Starlette(routes=routes()), base_url="https://console.example")
    out = client.get(f"{login.LOGOUT_ROUTE}?ended=1", follow_redirects=False)
    assert out.headers["location"] == "/?ended=1"
    monkeypatch.setattr(login, "browser_token", lambda: None)
    reloaded = AppTest.from_file(APP, default_timeout=30)
    reloaded.query_params["ended"] = "1"
    reloaded.run()
    assert not _logged_in(reloaded) and any("login ended" in i.value for i in reloaded.info)
