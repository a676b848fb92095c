"""Who is at the keyboard: single sign-on or username + password, each through a library,
and a login kept on the server, checked on every run.

* **Single sign-on** is Streamlit's own OIDC login (``st.login``), switched on by an
  ``[auth]`` section in ``.streamlit/secrets.toml`` (client id and secret, the provider's
  metadata URL, a cookie secret; see the README). The identity provider says who the person
  is; the ``users`` table says what they may do: their verified e-mail must belong to a
  Doorstep user (``doorstep user add NAME --email ...``), else they are refused.
* **Username + password** is streamlit-authenticator's login form, fed with the users from
  the store (:func:`console.auth.credentials`). It checks the bcrypt hash and enforces the
  lockout we seed it with. Its own JavaScript-set cookie is switched off (:class:`_NoCookies`):
  a cookie JavaScript can write, any injected script can read.

Either way a login is a row in ``console_sessions`` (:mod:`console.auth`), named in this
browser session's server-side state and, to survive a reload, in an ``HttpOnly`` cookie the
server sets over plain HTTP (``console/server.py``: ``/auth/session``). Every run re-checks
that row: a logout (here or in another browser holding a copy of the cookie), a password or
role change and the user's removal end it on the next click. The user is re-read from the
store on every run (``st.session_state["user"]``), and every login, failure, lockout and
logout is written to the audit log.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import streamlit as st

from console import auth
from doorstep.config import Config
from doorstep.store import Store

COOKIE_NAME = "doorstep_session"
#: The tab's icon, a file served by the console itself: a Material or emoji ``page_icon`` makes the
#: browser fetch the icon from fonts.gstatic.com or a CDN, a request leaving the machine (issue 17).
FAVICON = str(Path(__file__).resolve().parent / "assets" / "favicon.png")
#: The login form's labels; the browser test and the console bench find the fields by them.
FORM_FIELDS = {"Form name": "Log in", "Username": "Username", "Password": "Password", "Login": "Log in"}


def sso_configured() -> bool:
    """Whether Streamlit's OIDC login is set up (an ``[auth]`` section in its secrets)."""
    try:
        return "auth" in st.secrets
    except Exception:  # no secrets.toml at all: Streamlit raises instead of answering no
        return False


#: Set by app.py when it runs under its own server (``st.App`` with the cookie routes); under
#: AppTest or a bare ``streamlit run`` of a page, a login lasts as long as the browser session.
COOKIE_ROUTES = False
#: Streamlit's URL for the browser's cookie exchange (console/server.py).
SESSION_ROUTE = "/auth/session"
LOGOUT_ROUTE = "/auth/logout"


class _NoCookies:
    """Stands in for streamlit-authenticator's cookie model: it reads and writes nothing.

    The library would keep the login in a cookie set by JavaScript (readable by any script on
    the page) and log in whoever presents a validly signed copy, with no way to end it early.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def get_cookie(self) -> None:
        return None

    def set_cookie(self) -> None:
        pass

    def delete_cookie(self) -> None:
        pass


def _authenticator(store: Store) -> Any:
    import streamlit_authenticator as stauth
    from streamlit_authenticator.controllers import cookie_controller

    cookie_controller.CookieModel = _NoCookies  # type: ignore[assignment, misc]
    return stauth.Authenticate(
        auth.credentials(store), "doorstep_unused", "unused", 0,
        auto_hash=False,  # hashes come from the store; a plain-text password there is a bug, not input
        login_sleep_time=0,
    )


def browser_token() -> str | None:
    """The session token the browser sent (its HttpOnly cookie), if any. Tests replace this."""
    value = st.context.cookies.get(COOKIE_NAME)
    return value if isinstance(value, str) else None  # outside a browser (AppTest) cookies are not strings


def current_user(store: Store, config: Config) -> auth.User | None:
    """The logged-in user, drawing the login page (and returning None) when there is none."""
    # The page's first element in every run, logged in or not: the login form is drawn in it, and the
    # run whose click logs in empties it and draws the console below it. Were it there only in that
    # run, every element of the console would sit one place lower than in the next run, and the
    # browser would build the whole page again on the agent's first click (300 ms, issue 17).
    slot = st.empty()
    user = _sso_user(store, config) if sso_configured() else None
    if user is None and config.console.password_login:
        user = _password_user(store, config, slot)
    if user is None:
        st.session_state.pop("user", None)
        if sso_configured() and not st.user.is_logged_in:
            with _login_column():
                st.button("Log in with single sign-on", type="primary", on_click=st.login, key="sso_login")
        return None
    st.session_state["user"] = user
    return user


def _login_column() -> Any:
    return st.columns([1, 2, 1])[1]


def _sso_user(store: Store, config: Config) -> auth.User | None:
    if not st.user.is_logged_in:
        return None
    email = str(st.user.get("email") or "")
    user = auth.user_by_email(store, email) if email else None
    if user is None:
        with _login_column():
            st.error(f"{email or 'This account'} is not a Doorstep user. Ask an admin to add it: "
                     "doorstep user add NAME --email ADDRESS")
            st.button("Log out", on_click=st.logout, key="sso_refused_logout")
        if st.session_state.get("_sso_refused") != email:
            st.session_state["_sso_refused"] = email
            store.audit(email[:64] or "(no e-mail)", "login.refused", None, {"method": "sso"})
        return None
    if st.session_state.get("_sso_audited") != user.username:
        st.session_state["_sso_audited"] = user.username
        store.audit(user.username, "login", None, {"method": "sso"})
        _open_session(store, config, user.username, "sso")
        return user
    return _session_user(store)  # a role change or removal ends the single sign-on login too


def _session_hours(config: Config) -> float:
    return config.console.session_hours or 12.0  # 0: no cookie, the login lasts this browser session


def _open_session(store: Store, config: Config, username: str, method: str) -> None:
    session, grant = auth.start_session(store, username, hours=_session_hours(config), method=method)
    st.session_state["_session_id"] = session.id
    _resume_after_expiry(store, username)
    if method == "password" and config.console.session_hours > 0:
        st.session_state["_grant"] = grant


def _session_user(store: Store) -> auth.User | None:
    """The user of this browser session's open login, re-checked now; ends the session if it ended."""
    session_id = st.session_state.get("_session_id")
    if not session_id:
        return None
    session = auth.session_by_id(store, session_id)
    user = auth.get_user(store, session.username) if session else None
    if user is None:
        expired_for = auth.expired_session_user(store, session_id)
        if expired_for is not None:  # its time ran out: the draft and the page wait for the same user's next login
            logout(store, reason="session expired", ended=True, kept_for=expired_for)
        else:
            logout(store, reason="session ended (logged out elsewhere, password or role changed, or user removed)",
                   ended=True)
    return user


#: Session state: what an expired login left for its user's next login in this browser session:
#: ``{"user": username, "drafts": {"draft_<case id>": text}}``. Only this key holds it while nobody is logged in.
KEPT_AFTER_EXPIRY = "_kept_after_expiry"
#: The session-state keys of reply drafts (console/case_view.py: ``draft_{case_id}``).
DRAFT_PREFIX = "draft_"


def _resume_after_expiry(store: Store, username: str) -> None:
    """Give ``username`` back the drafts their expired login left in this browser session, if they log in on the
    credentials that login was granted on; anyone else gets nothing, and the drafts are gone for good (a colleague
    logging in on the same browser never sees them). The name alone was not enough: a user removed and added again
    (another person), or whose password was reset or role changed while the tab showed the login page, got them
    (security audit of today's changes)."""
    kept = st.session_state.pop(KEPT_AFTER_EXPIRY, None)
    if not isinstance(kept, dict) or kept.get("user") != username:
        return
    if kept.get("stamp") is None or kept.get("stamp") != auth.credential_stamp(store, username):
        return
    for key, text in (kept.get("drafts") or {}).items():
        if key not in st.session_state:
            st.session_state[key] = text


def acting_user(store: Store, action: str) -> auth.User | None:
    """The user a click acts for, re-checked against the store as it acts; None if they may not.

    Streamlit runs a widget's callback (``on_click``, ``on_change``) *before* the script, so before
    app.py checks the login: without this, a page drawn while someone could still act would act
    for them after they were removed, demoted or had their password changed (a removed admin's
    open Settings page added a new admin). Every callback that writes or reads customer data asks
    here first and does nothing when refused; the run that follows ends the login and draws the
    login page.
    """
    session = auth.session_by_id(store, st.session_state.get("_session_id"))
    user = auth.get_user(store, session.username) if session is not None else None
    return user if auth.can(user, action) else None


def signed_in(store: Store) -> bool:
    """Whether this browser session's login still holds (for the live parts, which run without app.py)."""
    session = auth.session_by_id(store, st.session_state.get("_session_id"))
    return session is not None and auth.get_user(store, session.username) is not None


def _remember_page_asked() -> None:
    """Note the page the login form stands in front of (a shared link such as ``/case?id=224``)."""
    from urllib.parse import urlparse

    url = st.context.url
    st.session_state[PAGE_ASKED] = urlparse(url).path.rstrip("/").rsplit("/", 1)[-1] if url else ""


#: Session state: the page the browser asked for when the login form was shown (its URL path's last part).
PAGE_ASKED = "_page_asked"


def page_asked_before_login() -> str | None:
    """The page (``url_path``) a login form stood in front of, once, after the login; else None.

    Why: the console is drawn in the same page after the login (no reload through /auth/session, which
    used to carry the address back), and the run after the login form opens the default page: a
    shared case link (``/case?id=224``) must still open that case (issue 17). The query (``id=224``)
    stays with the session by itself.
    """
    return st.session_state.pop(PAGE_ASKED, None) or None


#: Session state: this tab was sent its login cookie without a reload (logout must clear it).
COOKIE_SENT = "_cookie_sent"


def send_cookie() -> None:
    """After a password login (the grant :func:`_open_session` kept), have the browser fetch
    /auth/session so the server sets the HttpOnly cookie, without leaving the page. Called by
    app.py at the foot of the sidebar, once the console is drawn around it.

    Why a fetch and not a page load: the cookie only has to outlive this tab (a reload, a new tab);
    this tab's session already knows its login (``_session_id``, re-checked on every run). Sending
    the whole tab through /auth/session and back made every login load the console twice, a new
    page and a new websocket session that drew the inbox again (1.2-1.4 s of the 1.6-2.0 s first
    load at 1M cases, bench/RESULTS.md issue 17). The cookie is still set only by the server's
    HTTP response (``HttpOnly``: no script can read it). If the fetch fails, the tab goes through
    /auth/session as before.
    """
    import json

    grant = st.session_state.pop("_grant", None)
    if not grant or not COOKIE_ROUTES:
        return
    target = json.dumps(f"{SESSION_ROUTE}?grant={grant}")
    st.session_state[COOKIE_SENT] = True
    script = ("<script>const w = window.parent; const go = () => { const m = w.document.createElement('meta');"
              f"m.httpEquiv = 'refresh'; m.content = '0;url=' + {target} + '&next=' + "
              "encodeURIComponent(w.location.pathname + w.location.search); w.document.head.appendChild(m); };"
              f"w.fetch({target}, {{credentials: 'same-origin', redirect: 'manual', cache: 'no-store'}})"
              ".then(r => { if (r.type !== 'opaqueredirect' && !r.ok) go(); }, go);</script>")
    _html(script)


def _navigate_top(url: str) -> None:
    """Send the whole tab to ``url`` on this server (a component's iframe may not navigate its
    parent itself, so it adds a refresh to the parent page, which the parent then follows)."""
    import json

    target = json.dumps(url)
    script = ("<script>const w = window.parent; const m = w.document.createElement('meta');"
              f"m.httpEquiv = 'refresh'; m.content = '0;url=' + {target};"
              "w.document.head.appendChild(m);</script>")
    _html(script)


def _html(script: str) -> None:
    """A script run in a frame of its own (same origin: it may act on the page around it), taking no room."""
    from console.widgets import run_script

    run_script(script)


def _password_user(store: Store, config: Config, form: Any) -> auth.User | None:
    from streamlit_authenticator.utilities.exceptions import LoginError

    user = _session_user(store)
    if user is not None:
        return user  # the console is drawn in this same run; send_cookie() then asks for the cookie
    session = auth.session_by_token(store, browser_token())
    if session is not None and (user := auth.get_user(store, session.username)) is not None:
        st.session_state["_session_id"] = session.id
        _resume_after_expiry(store, user.username)  # logged in again in another tab of this browser
        return user

    _remember_page_asked()
    authenticator = _authenticator(store)
    st.session_state["_authenticator"] = authenticator
    attempt = _watch_attempts(store, authenticator)
    with form.container(), _login_column():  # taken away again when this run's click logs in (below)
        st.title("Doorstep")
        st.caption("Social customer care — please log in.")
        ended = st.session_state.pop("_ended", None)
        if ended == "expired":
            st.info("Your login expired. Please log in again: you will be back where you were, with what you "
                    "were writing.")
        elif ended or st.query_params.get("ended") == "1":
            st.info("Your login ended (logged out elsewhere, or your password or role changed). Please log in again.")
            if "ended" in st.query_params:
                del st.query_params["ended"]  # said once: not again after the next login's logout
        if not auth.list_users(store):
            st.warning("No users yet. Create one on the server: doorstep user add NAME --role admin")
        try:
            authenticator.login(location="main", max_login_attempts=auth.LOCKOUT_FAILURES, fields=FORM_FIELDS,
                                key="login", callback=lambda event: _form_login(store, config, event["username"]))
        except LoginError as exc:
            if "locked" not in attempt:
                st.error(str(exc))
        if "locked" in attempt:
            st.error(lock_message(attempt["locked"]))
        elif attempt.get("ok") is False:  # this click's attempt, not a failure left over from an earlier one
            st.error("Wrong username or password.")
    if st.session_state.get("_session_id"):
        # Logged in by this click: the form goes and the console is drawn below it in this same run.
        # Why not st.rerun(): a rerun ends this run and starts another, 130-170 ms between the two on
        # these cores before the inbox even starts (bench/console_trace.py), on the first load after
        # login, the one interaction that missed 1 s at 1M cases (issue 17).
        form.empty()
        return _session_user(store)
    _load_table_code()
    return None


#: The key of the hidden container that makes the login page load the table's code (see below).
TABLE_CODE_KEY = "table_code"


def _load_table_code() -> None:
    """An empty table, select boxes, a button and a frame in a hidden container on the login page, so
    the browser loads the code the inbox draws with (Streamlit's data grid alone is ~30 JavaScript
    modules, loaded on a page's first table; 12 more for its other elements) while the agent types
    the password, not after the login, when the inbox is waiting for it.

    Why: the console is drawn in the same page after the login (:func:`send_cookie`); loading and
    compiling those modules when the inbox arrived was a large part of the first load after login
    on two busy cores (issue 17). Nothing of it is seen, read out or used: the container is not
    displayed and its widgets are disabled.
    """
    import pandas as pd

    with st.container(key=TABLE_CODE_KEY):
        st.html(f"<style>.st-key-{TABLE_CODE_KEY} {{ display: none; }}</style>")
        st.dataframe(pd.DataFrame({"": []}), hide_index=True)
        st.selectbox("table code", ["-"], key=f"{TABLE_CODE_KEY}_select", disabled=True, label_visibility="collapsed")
        st.multiselect("table code", ["-"], key=f"{TABLE_CODE_KEY}_multi", disabled=True, label_visibility="collapsed")
        st.button("table code", key=f"{TABLE_CODE_KEY}_button", disabled=True)
        _html("")


def lock_message(ends: Any) -> str:
    """The same words for every username, known or not, with how long a lock lasts and how long is left."""
    from doorstep.models import utcnow

    window = int(auth.LOCKOUT_WINDOW.total_seconds() // 60)
    left = max(1, -int(-(ends - utcnow()).total_seconds() // 60))
    return (f"Too many wrong passwords for this username: logins are refused for {window} minutes after "
            f"{auth.LOCKOUT_FAILURES} wrong ones; try again in {left} minute{'s' if left != 1 else ''}, "
            "or ask an admin to unlock it.")


#: A bcrypt hash checked for usernames that do not exist, so they take as long to refuse as wrong passwords.
_DUMMY_HASH = b"$2b$12$C6UzMDM.H6dfI/f/IKxGhu4YbsWnC.Yp4AVEkQ7VGeV0dwS3WqVeC"


def _watch_attempts(store: Store, authenticator: Any) -> dict[str, Any]:
    """Put the lockout and its audit in front of the library's check of a typed username + password.

    streamlit-authenticator counts wrong passwords only for usernames it knows, and its own lock
    would tell a stranger which usernames exist. Here every typed username is treated alike: a
    locked one is refused before the password is looked at (audited ``login.locked``), and a wrong
    password for any username is audited ``login.failed``, which is what :func:`auth.locked_out`
    counts. Returns what this run's attempt came to (``ok``, or ``locked``: when the lock ends).
    """
    from streamlit_authenticator.utilities.exceptions import LoginError

    model = authenticator.authentication_controller.authentication_model
    checked = model.login
    attempt: dict[str, Any] = {}

    def login(username: str, password: str, *args: Any, **kwargs: Any) -> Any:
        if not username:
            return checked(username, password, *args, **kwargs)
        name = str(username).strip().lower()[:64]
        ends = auth.lock_ends(store, name)
        if ends is not None:
            attempt["locked"] = ends
            store.audit(name, "login.locked", None, {"method": "password"})
            raise LoginError("locked")
        if name not in model.credentials["usernames"]:
            import bcrypt

            bcrypt.checkpw(str(password or "").encode("utf-8")[:auth.MAX_PASSWORD_BYTES], _DUMMY_HASH)
        ok = checked(name, password, *args, **kwargs)
        attempt["ok"] = bool(ok)
        if not ok:
            store.audit(name, "login.failed", None, {"method": "password"})
            if (ends := auth.lock_ends(store, name)) is not None:
                attempt["locked"] = ends  # that was the last one allowed: say so now
        return ok

    model.login = login
    return attempt


def _form_login(store: Store, config: Config, username: str) -> None:
    store.audit(username, "login", None, {"method": "password"})
    _open_session(store, config, username, "password")


def logout(store: Store, *, reason: str = "button", ended: bool = False, kept_for: str | None = None) -> None:
    """End the session: its row is ended (so every copy of its cookie is dead), the browser's
    cookie is cleared, the library forgets the login, and single sign-on logs out.

    ``kept_for``: the login expired (``auth.expired_session_user``): the reply drafts are set aside for that user's
    next login in this browser session (:func:`_resume_after_expiry`; nobody else gets them), and the tab is not
    sent through /auth/logout, whose reload lost the page (a case's address) and the session's state: the expired
    cookie logs nobody in, and the next login's cookie replaces it. Why: an agent whose login expired mid-reply
    lost the reply and the case, and was told they had been logged out elsewhere (keyboard audit, 2026-12-07)."""
    user = st.session_state.get("user")
    cookie_sent = bool(st.session_state.get(COOKIE_SENT))
    drafts = {key: value for key, value in st.session_state.items()
              if kept_for and str(key).startswith(DRAFT_PREFIX) and isinstance(value, str) and value.strip()}
    auth.end_session(store, st.session_state.get("_session_id"), reason=reason)
    if user is not None:
        store.audit(user.username, "logout", None, {"reason": reason})
    for key in list(st.session_state.keys()):
        if key != "_store":
            del st.session_state[key]
    if ended:
        st.session_state["_ended"] = "expired" if kept_for else True
    if kept_for:
        st.session_state[KEPT_AFTER_EXPIRY] = {"user": kept_for, "stamp": auth.credential_stamp(store, kept_for),
                                               "drafts": drafts}
    if sso_configured() and st.user.is_logged_in:
        st.logout()
    if COOKIE_ROUTES and (browser_token() or cookie_sent) and not kept_for:  # a cookie this tab came with, or was sent
        # The reload through /auth/logout starts a new session: "?ended=1" carries the reason across it (a lead
        # demoted while on Settings met a bare login page; browser check).
        _navigate_top(LOGOUT_ROUTE + ("?ended=1" if ended else ""))
        st.stop()
    st.rerun()
