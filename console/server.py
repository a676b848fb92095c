"""The console's HTTP side: the routes that set and clear the HttpOnly login cookie, and the
handler that keeps tracebacks away from agents.

Why routes at all: a Streamlit script talks to the browser over a websocket and can only set
cookies through JavaScript, and a cookie JavaScript can write, JavaScript can read (any script
injected into the page could send it elsewhere). Streamlit's ASGI app (``st.App``, which
``streamlit run app.py`` serves since app.py defines one) takes ordinary Starlette routes, and
an HTTP response can set an ``HttpOnly`` cookie. So a login works like this:

1. the login form (in the Streamlit page) checks the password and opens a server-side session
   (``console_sessions``, :func:`console.auth.start_session`) with a one-time grant;
2. the page has the browser fetch ``/auth/session?grant=...`` while it draws the console (no
   reload; a failed fetch sends the tab there instead); this route redeems the grant (once,
   within two minutes), sets ``doorstep_session`` = a random token, ``HttpOnly``,
   ``SameSite=Lax``, ``Secure`` when the request came over HTTPS, and redirects back;
3. every console run checks the token's session row: not expired, not ended, and the user's
   password hash and role unchanged (:func:`console.auth.session_by_token`).

``/auth/logout`` clears the cookie; the session row is already ended by then, so a copy of the
cookie kept elsewhere logs nobody in either.
"""

from __future__ import annotations

import logging
import os
import secrets
from typing import Any

from console import auth
from console.login import COOKIE_NAME

log = logging.getLogger("doorstep.console")

#: Where the browser may be sent back to after the cookie is set: paths on this server only.
#: A path and a plain query (``/case?id=224``, so a shared case link survives the login); no ``%``, ``\\`` or ``:``.
_SAFE_NEXT = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/_-?=&")


def _store() -> Any:
    from doorstep.config import default_db_path
    from doorstep.store import Store

    return Store(default_db_path())


def _next_path(value: str | None) -> str:
    """Only a local path made of plain characters: never another site (no open redirect)."""
    if not value or not value.startswith("/") or value.startswith("//") or not set(value) <= _SAFE_NEXT:
        return "/"
    return value


def _secure(request: Any) -> bool:
    if os.environ.get("DOORSTEP_COOKIE_SECURE", "").lower() in ("1", "true", "yes"):
        return True
    return request.url.scheme == "https" or request.headers.get("x-forwarded-proto", "").lower() == "https"


def session_route(request: Any) -> Any:
    """``GET /auth/session?grant=...``: turn a fresh login into the browser's HttpOnly cookie."""
    from starlette.responses import RedirectResponse

    response = RedirectResponse(_next_path(request.query_params.get("next")), status_code=303)
    response.headers["Cache-Control"] = "no-store"
    grant = request.query_params.get("grant") or ""
    store = _store()
    try:
        redeemed = auth.redeem_grant(store, grant) if grant else None
    finally:
        store.close()
    if redeemed is None:
        return response  # an old or reused grant: the page asks for the password again
    token, expires = redeemed
    from doorstep.models import utcnow

    response.set_cookie(COOKIE_NAME, token, max_age=max(1, int((expires - utcnow()).total_seconds())), path="/",
                        httponly=True, secure=_secure(request), samesite="lax")
    return response


def logout_route(request: Any) -> Any:
    """``GET /auth/logout``: clear the cookie (the session it named was ended by the page)."""
    from starlette.responses import RedirectResponse

    # "?ended=1": the login ended elsewhere (a password or role change), and the login page says so.
    response = RedirectResponse("/?ended=1" if request.query_params.get("ended") == "1" else "/", status_code=303)
    response.headers["Cache-Control"] = "no-store"
    response.delete_cookie(COOKIE_NAME, path="/", httponly=True, secure=_secure(request), samesite="lax")
    return response


def routes() -> list[Any]:
    from starlette.routing import Route

    return [Route("/auth/session", session_route, methods=["GET"]),
            Route("/auth/logout", logout_route, methods=["GET"])]


def _database_unreachable(exc: BaseException) -> bool:
    """PostgreSQL refused the connection or dropped it (a restart, a failover, the network): waiting cures it.
    Not a missing database, a wrong password or a statement PostgreSQL refused, which waiting does not."""
    import psycopg

    seen: BaseException | None = exc
    while seen is not None:  # (a StoreError raised while opening the store names the psycopg error as its cause)
        if isinstance(seen, psycopg.OperationalError):
            state = getattr(seen, "sqlstate", None) or ""
            if state:  # the server answered: only its "connection ended" states (admin/crash shutdown, starting up)
                return state.startswith("08") or state in ("57P01", "57P02", "57P03", "57P05")
            text = str(seen)
            return not any(words in text for words in ("does not exist", "authentication failed",
                                                       "no password supplied", "invalid"))
        seen = seen.__cause__
    return False


def on_script_error(exc: BaseException) -> bool:
    """An exception in a page: logged in full (secrets masked), the agent sees a short note.

    Returns True so Streamlit shows nothing of its own (``client.showErrorDetails = "none"`` in
    ``.streamlit/config.toml`` is the second fence for errors raised outside a page).
    """
    import streamlit as st

    from console.widgets import busy_message, escape_md

    busy = busy_message(exc)
    if busy is not None:  # a write that waited out the busy timeout: nothing was written; say so
        log.warning("console: %s (%s)", busy, exc)
        st.error(escape_md(busy))
        return True
    if _database_unreachable(exc):  # PostgreSQL restarting or away: every page failed the same way; say why
        log.warning("console: the database cannot be reached (%s: %s)", type(exc).__name__, " ".join(str(exc).split()))
        st.error("The database cannot be reached right now; this page works again when it is back "
                 "— try again in a moment.")
        return True
    from doorstep.store import StoreError

    if isinstance(exc, StoreError):  # the database cannot be used as it is (a newer schema, a full disk...): the
        log.warning("console: %s", exc)  # one line says what and what to do, as the CLI says it
        st.error(escape_md(str(exc)))
        return True
    reference = secrets.token_hex(4)
    log.error("console error %s", reference, exc_info=(type(exc), exc, exc.__traceback__))
    st.error(f"Something went wrong on this page and it was logged (reference {reference}). "
             "Try again; if it keeps happening, give the reference to your admin.")
    return True


#: True in the process that `streamlit run app.py` serves (app.py sets it when uvicorn imports it);
#: False in tests (AppTest) and the CLI, whose objects are not the console's to freeze.
SERVED = False

#: Set once this server process has frozen what the console's first run left alive (see below).
_frozen = False


def freeze_after_first_console_run() -> None:
    """Once per served process, at the end of the first run that drew the console: collect, then
    ``gc.freeze()`` what is left (Streamlit, pandas, pyarrow, the console's modules, caches).

    Why: Python's full garbage collections walk every object the process holds. In the served
    console at 1M cases they came every ~2 s under use and took 70-500 ms each (measured with
    ``gc.callbacks`` during bench/console_firstpaint.py), stalling whichever agent's run was under
    way: a first load after login or a filter now and then took 0.1-0.5 s longer. With what the
    first console run left alive frozen (~196k objects) they took 0.6-5 ms. Only what exists then is frozen
    (live modules and caches, none of it garbage: ``gc.collect()`` runs first); later objects are
    collected as before. Only when :data:`SERVED`: never in tests (AppTest) or the CLI.
    """
    global _frozen
    if _frozen or not SERVED:
        return
    _frozen = True
    import gc

    gc.collect()
    gc.freeze()
