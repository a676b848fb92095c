"""The Doorstep console: ``streamlit run app.py`` (DOORSTEP_DB, DOORSTEP_CONFIG pick the data).

Nothing is shown before login. Pages a role may not open are not in the navigation, and each
page checks the role again itself (a URL is not a permission).
"""

from __future__ import annotations

import streamlit as st

from console import auth
from console.widgets import escape_md, get_config, get_store


def login(store: object) -> None:
    with st.columns([1, 2, 1])[1]:
        _login_form(store)


def _login_form(store: object) -> None:
    st.title("Doorstep")
    st.caption("Social customer care — please log in.")
    if not auth.list_users(store):  # type: ignore[arg-type]
        st.warning("No users yet. Create one on the server: doorstep user add NAME --role admin")
    with st.form("login"):
        username = st.text_input("Username", key="login_username")
        password = st.text_input("Password", type="password", key="login_password")
        if st.form_submit_button("Log in", type="primary"):
            user = auth.verify(store, username, password)  # type: ignore[arg-type]
            if user is None and auth.locked_out(store, username):  # type: ignore[arg-type]
                st.error("Too many wrong passwords for this user: try again in a few minutes.")
            elif user is None:
                st.error("Wrong username or password.")
            else:
                st.session_state["user"] = user
                st.session_state.pop("login_password", None)
                st.rerun()


def logout() -> None:
    for key in list(st.session_state.keys()):
        if key != "_store":
            del st.session_state[key]
    st.rerun()


def main() -> None:
    st.set_page_config(page_title="Doorstep", page_icon=":material/package_2:", layout="wide")
    store = get_store()
    get_config()  # a broken doorstep.toml stops here with the file and key named
    user = st.session_state.get("user")
    if user is None:
        login(store)
        return
    from console import case_view, dashboard, inbox, reports, settings

    pages = {
        "inbox": st.Page(inbox.render, title="Inbox", icon=":material/inbox:", url_path="inbox", default=True),
        "case": st.Page(case_view.render, title="Case", icon=":material/assignment:", url_path="case"),
        "dashboard": st.Page(dashboard.render, title="Dashboard", icon=":material/monitoring:", url_path="dashboard"),
        "reports": st.Page(reports.render, title="Reports", icon=":material/summarize:", url_path="reports"),
    }
    if auth.can(user, "view_settings"):
        pages["settings"] = st.Page(settings.render, title="Settings", icon=":material/settings:", url_path="settings")
    st.session_state["_pages"] = pages
    with st.sidebar:
        st.caption(escape_md(f"Signed in as {user.name} ({user.role})"))
        if st.button("Log out", key="logout"):
            logout()
    st.navigation(list(pages.values())).run()


main()
