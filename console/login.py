"""Who is at the keyboard: single sign-on or username + password, each through a library.

* **Single sign-on** is Streamlit's own OIDC login (``st.login``), switched on by an
  ``[auth]`` section in ``.streamlit/secrets.toml`` (client id and secret, the provider's
  metadata URL, a cookie secret; see the README). The identity provider says who the person
  is; the ``users`` table says what they may do: their verified e-mail must belong to a
  Doorstep user (``doorstep user add NAME --email ...``), else they are refused.
* **Username + password** is streamlit-authenticator's login form, fed with the users from
  the store (:func:`console.auth.credentials`). It checks the bcrypt hash, keeps the login in
  a signed cookie for ``[console] session_hours`` and enforces the lockout we seed it with.
  The cookie is signed with ``DOORSTEP_COOKIE_KEY`` (environment or secrets file); without one a
  random key is made per server process, so a restart logs everyone out.

Either way the result is a :class:`console.auth.User` re-read from the store on every run
(``st.session_state["user"]``), so a removed user or a changed role takes effect at once, and
every login, failure, lockout and logout is written to the audit log.
"""

from __future__ import annotations

import secrets as _secrets
from typing import Any

import jwt
import streamlit as st

from console import auth
from doorstep.config import Config, secret
from doorstep.store import Store, parse_time

COOKIE_NAME = "doorstep_session"
#: The login form's labels; the browser test and the console bench find the fields by them.
FORM_FIELDS = {"Form name": "Log in", "Username": "Username", "Password": "Password", "Login": "Log in"}


def sso_configured() -> bool:
    """Whether Streamlit's OIDC login is set up (an ``[auth]`` section in its secrets)."""
    try:
        return "auth" in st.secrets
    except Exception:  # no secrets.toml at all: Streamlit raises instead of answering no
        return False


@st.cache_resource(show_spinner=False)
def _process_cookie_key() -> str:
    return _secrets.token_urlsafe(32)


def _authenticator(store: Store, config: Config) -> Any:
    import streamlit_authenticator as stauth

    key = secret("DOORSTEP_COOKIE_KEY") or _process_cookie_key()
    return stauth.Authenticate(
        auth.credentials(store), COOKIE_NAME, key, config.console.session_hours / 24,
        auto_hash=False,  # hashes come from the store; a plain-text password there is a bug, not input
        login_sleep_time=0,  # cookies are read from the request (st.context), nothing to wait for
    )


def current_user(store: Store, config: Config) -> auth.User | None:
    """The logged-in user, drawing the login page (and returning None) when there is none."""
    user = _sso_user(store) if sso_configured() else None
    if user is None and config.console.password_login:
        user = _password_user(store, config)
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


def _sso_user(store: Store) -> auth.User | None:
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
    return user


def _password_user(store: Store, config: Config) -> auth.User | None:
    from streamlit_authenticator.utilities.exceptions import LoginError

    authenticator = _authenticator(store, config)
    st.session_state["_authenticator"] = authenticator
    if st.session_state.pop("_delete_cookie", False):
        # After a logout's rerun, so the cookie component's message reaches the browser.
        authenticator.cookie_controller.delete_cookie()
    username = st.session_state.get("username") if st.session_state.get("authentication_status") else None
    if username:
        user = auth.get_user(store, username)
        if user is None:
            logout(store, reason="user removed")  # removed while logged in
            return None
        if not st.session_state.get("_login_checked"):
            if not st.session_state.get("_form_login") and _cookie_revoked(store, user.username, config):
                logout(store, reason="cookie from before a logout")
                return None
            st.session_state["_login_checked"] = True
        if st.session_state.pop("_set_cookie", False):
            # Set on the first console run, not the login run: that run ends in st.rerun(),
            # which could drop the cookie component's message before the browser got it.
            authenticator.cookie_controller.set_cookie()
        return user

    before = {name: u["failed_login_attempts"] for name, u in authenticator.authentication_controller
              .authentication_model.credentials["usernames"].items()}
    with _login_column():
        st.title("Doorstep")
        st.caption("Social customer care — please log in.")
        if not auth.list_users(store):
            st.warning("No users yet. Create one on the server: doorstep user add NAME --role admin")
        try:
            authenticator.login(location="main", max_login_attempts=auth.LOCKOUT_FAILURES, fields=FORM_FIELDS,
                                key="login", callback=lambda event: _form_login(store, event["username"]))
        except LoginError as exc:
            if "attempts" in str(exc):
                st.error("Too many wrong passwords for this user: try again in a few minutes.")
            else:
                st.error(str(exc))
        after = authenticator.authentication_controller.authentication_model.credentials["usernames"]
        for name, entry in after.items():
            if entry.get("failed_login_attempts", 0) > before.get(name, 0):
                store.audit(name, "login.failed", None, {"method": "password"})
        if st.session_state.get("authentication_status") is False:
            st.error("Wrong username or password.")
    username = st.session_state.get("username") if st.session_state.get("authentication_status") else None
    if username:
        st.session_state["_set_cookie"] = True
        st.rerun()  # draw the console instead of the form in this same click
    return None


def _form_login(store: Store, username: str) -> None:
    st.session_state["_form_login"] = True
    store.audit(username, "login", None, {"method": "password"})


def _cookie_revoked(store: Store, username: str, config: Config) -> bool:
    """Whether this session's login cookie was issued before the user's last logout.

    The cookie is a signed token the browser keeps; logging out deletes it there, and this
    check makes a copy kept elsewhere (another browser, a stolen token) useless too.
    """
    token = st.context.cookies.get(COOKIE_NAME)
    key = secret("DOORSTEP_COOKIE_KEY") or _process_cookie_key()
    try:
        expires = float(jwt.decode(token, key, algorithms=["HS256"])["exp_date"]) if token else None
    except (jwt.PyJWTError, KeyError, TypeError, ValueError):
        return True
    if expires is None:
        return False
    issued = expires - config.console.session_hours * 3600
    row = store.db.execute("select max(at) from audit_events where action = 'logout' and actor = ?",
                           [username]).fetchone()
    if not row or not row[0]:
        return False
    return issued <= parse_time(row[0]).timestamp()


def logout(store: Store, *, reason: str = "button") -> None:
    """End the session: the library forgets the login and deletes its cookie; SSO logs out."""
    user = st.session_state.get("user")
    authenticator = st.session_state.get("_authenticator")
    if authenticator is not None and st.session_state.get("authentication_status"):
        authenticator.logout(location="unrendered")
    if user is not None:
        store.audit(user.username, "logout", None, {"reason": reason})
    keep = {"_store", "logout"}  # "logout" stops the library re-reading the old cookie in this session
    for key in list(st.session_state.keys()):
        if key not in keep:
            del st.session_state[key]
    st.session_state["_delete_cookie"] = True
    if sso_configured() and st.user.is_logged_in:
        st.logout()
    st.rerun()
