"""Console users, their passwords, and what each role may do.

Users live in the store's ``users`` table (username, name, role, email, password_hash,
created_at) so one SQLite file holds everything a deployment needs, and ``doorstep user ...``
and the admin's Settings page manage them. Checking a password at login is not done here: the
console hands :func:`credentials` to streamlit-authenticator (see ``console/login.py``), or
Streamlit's own OIDC login identifies the person and :func:`user_by_email` maps them to a role.
What stays here is what those libraries do not know about: roles and permissions, bcrypt
hashes in SQLite, and a lockout counted from the audit log so it holds across browser
sessions and restarts.
"""

from __future__ import annotations

import hashlib
import secrets as _secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import bcrypt

from doorstep.models import OPEN_CASE_STATUSES, utcnow
from doorstep.permissions import PERMISSIONS, ROLES, SERVICE_ACTORS, SYSTEM_ACTORS, NotAllowed, allows, require
from doorstep.store import Store, iso, parse_time

# ROLES and PERMISSIONS live in the core (doorstep/permissions.py), where the action functions check them
# too (doorstep.team_settings among them); imported above so the console finds them here as it always has.

#: bcrypt only reads the first 72 bytes of a password; refuse longer ones instead of truncating silently.
MAX_PASSWORD_BYTES = 72
MIN_PASSWORD_LENGTH = 8
#: Wrong passwords allowed per username in LOCKOUT_WINDOW before logins are refused for a while.
LOCKOUT_FAILURES = 5
LOCKOUT_WINDOW = timedelta(minutes=10)

class AuthError(ValueError):
    """A user operation was refused; the message says why (never contains the password)."""


@dataclass(frozen=True)
class User:
    username: str
    name: str
    role: str
    email: str | None = None

    def __repr__(self) -> str:  # keeps the hash out of any debug output by construction
        return f"User({self.username!r}, role={self.role!r})"


def role_rank(role: str) -> int:
    if role not in ROLES:
        raise AuthError(f"unknown role {role!r}; roles are {', '.join(ROLES)}")
    return ROLES.index(role)


def can(user: User | None, action: str) -> bool:
    """Whether ``user`` may do ``action`` (see PERMISSIONS). Unknown actions are refused."""
    if user is None or action not in PERMISSIONS:
        return False
    role_rank(user.role)  # an unknown role is an error, as it always was
    return allows(user.role, action)


#: zxcvbn's score (0-4) a password must reach: 0 and 1 are "too guessable" / "very guessable" (a top-10 password,
#: "aaaaaaaa", a keyboard row, the user's own name with a year).
MIN_PASSWORD_SCORE = 2


def hash_password(password: str, rounds: int = 12, *, known: Sequence[str] = ()) -> str:
    """The bcrypt hash of an acceptable ``password``; ``known``: words a guesser knows (username, name).

    Eight characters alone let "12345678", "password" and "aaaaaaaa" in (security audit, 2026-12-06): the
    strength is estimated by zxcvbn, which knows common passwords, names, keyboard patterns and repeats."""
    from zxcvbn import zxcvbn

    data = password.encode("utf-8")
    if password != password.strip():
        # The login form strips what is typed, so such a password could never be entered.
        raise AuthError("password must not start or end with a space")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AuthError(f"password must be at least {MIN_PASSWORD_LENGTH} characters")
    if len(data) > MAX_PASSWORD_BYTES:
        raise AuthError(f"password must be at most {MAX_PASSWORD_BYTES} bytes")
    strength = zxcvbn(password, user_inputs=[w for w in known if w])
    if strength["score"] < MIN_PASSWORD_SCORE:
        warning = strength["feedback"].get("warning") or "it is a common pattern"
        raise AuthError(f"password is too easy to guess ({warning.rstrip('.')}); use a few uncommon words, "
                        "e.g. a short phrase only you would think of")
    return bcrypt.hashpw(data, bcrypt.gensalt(rounds=rounds)).decode("ascii")


def _clean_email(email: str | None) -> str | None:
    if email is None or not email.strip():
        return None
    email = email.strip().lower()
    local, at, domain = email.partition("@")
    if not at or not local or "." not in domain or " " in email:
        raise AuthError(f"e-mail {email!r} does not look like an address")
    return email


def add_user(store: Store, username: str, password: str | None, *, role: str = "agent", name: str | None = None,
             email: str | None = None, actor: str = "cli", rounds: int = 12) -> User:
    """Add a user. Usernames are lower-case (the login form lower-cases what is typed).

    ``password`` may be None for a user who only ever logs in through single sign-on. ``actor``
    must be an admin (or a system actor such as the CLI): checked here as well as by the page.
    """
    username = username.strip().lower()
    if not username or not username.replace(".", "").replace("_", "").replace("-", "").isalnum():
        raise AuthError(f"username {username!r}: use letters, digits, '.', '_' or '-'")
    if username in SYSTEM_ACTORS or username in SERVICE_ACTORS:
        # A user of that name would act as (or be refused as) the CLI or the product's machinery (the
        # outbox, the dialogue, ...): the two must never be confused, in the checks or the audit log.
        raise AuthError(f"username {username!r} is kept for the {username} actor in the audit log; choose another")
    role_rank(role)
    email = _clean_email(email)
    hashed = hash_password(password, rounds=rounds, known=[username, name or ""]) if password is not None else None
    with store.write_transaction():
        require(store, actor, "manage_users", "add users")
        if get_user(store, username) is not None:
            raise AuthError(f"user {username!r} already exists")
        if email and user_by_email(store, email) is not None:
            raise AuthError(f"e-mail {email!r} already belongs to another user")
        store.db["users"].insert(
            {"username": username, "name": name or username, "role": role, "email": email,
             "password_hash": hashed, "created_at": iso(utcnow())}
        )
        store.audit(actor, "user.add", None, {"username": username, "role": role, "email": email})
    return User(username, name or username, role, email)


_USER_COLUMNS = "username, name, role, email"


def _user(row: Sequence[Any]) -> User:
    return User(row[0], row[1] or row[0], row[2], row[3])


def get_user(store: Store, username: str) -> User | None:
    row = store.db.execute(f"select {_USER_COLUMNS} from users where username = ?",
                           [username.strip().lower()]).fetchone()
    return _user(row) if row else None


def user_by_email(store: Store, email: str) -> User | None:
    """The user single sign-on identified by ``email`` (case-insensitive), if there is one."""
    row = store.db.execute(f"select {_USER_COLUMNS} from users where email = ?",
                           [email.strip().lower()]).fetchone()
    return _user(row) if row else None


def list_users(store: Store) -> list[User]:
    rows = store.db.execute(f"select {_USER_COLUMNS} from users order by username").fetchall()
    return [_user(r) for r in rows]


def _change_user(store: Store, username: str, sql: str, params: list[Any], *, actor: str, action: str,
                 details: dict[str, Any]) -> None:
    """Run one statement on ``username``'s row and audit it, refusing an unknown user."""
    username = username.strip().lower()
    with store.transaction():
        if store.db.execute(sql, [*params, username]).rowcount == 0:
            raise AuthError(f"no user {username!r}")
        store.audit(actor, action, None, {"username": username, **details})


def _keep_an_admin(store: Store, username: str) -> None:
    """Refuse to take the admin role from the only admin: nobody would be left to manage users in the console.

    Only for a console user's change (the caller knows): at the machine, ``doorstep user`` can add an
    admin back at any time, so the CLI may remove or demote the last one."""
    row = store.db.execute("select role from users where username = ?", [username]).fetchone()
    if row is not None and row[0] == "admin" and \
            store.db.execute("select count(*) from users where role = 'admin'").fetchone()[0] == 1:
        raise NotAllowed(f"{username} is the only admin: make another user admin first")


def set_email(store: Store, username: str, email: str | None, *, actor: str = "cli") -> User:
    """Set the e-mail single sign-on identifies ``username`` by; ``actor`` must be an admin (or the CLI)."""
    email = _clean_email(email)
    with store.write_transaction():
        require(store, actor, "manage_users", "change e-mail addresses")
        holder = user_by_email(store, email) if email else None
        if holder is not None and holder.username != username.strip().lower():
            raise AuthError(f"e-mail {email!r} already belongs to {holder.username}")
        _change_user(store, username, "update users set email = ? where username = ?", [email],
                     actor=actor, action="user.set_email", details={"email": email})
    return get_user(store, username)  # type: ignore[return-value]


def remove_user(store: Store, username: str, *, actor: str = "cli") -> list[int]:
    """Remove ``username``, end their logins and hand their open cases back to the queue (unassigned, each audited
    as ``actor``'s change, "<name> was removed"); the ids of those cases. ``actor`` must be an admin (or the CLI),
    and an admin must remain.

    Why the cases: left with someone who no longer exists, a leaver's open cases, some never answered, were
    nobody's to take: an agent read "tom has this case; a lead can reassign it" and the lead's Assign box read
    "(nobody)" (lead audit). Resolved cases keep who worked them."""
    name = username.strip().lower()
    with store.write_transaction():
        if require(store, actor, "manage_users", "remove users") is not None:
            _keep_an_admin(store, name)
        open_cases = [row[0] for row in store.db.execute(
            f"select id from cases where assignee = ? and status in ({', '.join('?' * len(OPEN_CASE_STATUSES))}) "
            "order by id", [name, *OPEN_CASE_STATUSES]).fetchall()]
        _change_user(store, username, "delete from users where username = ?", [], actor=actor, action="user.remove",
                     details={"open_cases_handed_back": len(open_cases)})
        for case_id in open_cases:
            case = store.get_case(case_id)
            if case is not None:
                store.update_case(case_id, case.version, actor, because={"why": f"{name} was removed"},
                                  action="reassign", assignee=None)
        end_sessions(store, username, reason="user removed")
    return open_cases


def set_role(store: Store, username: str, role: str, *, actor: str = "cli") -> User:
    """Give ``username`` ``role`` (their logins end); ``actor`` must be an admin (or the CLI), and an admin must remain."""
    role_rank(role)
    with store.write_transaction():
        if require(store, actor, "manage_users", "change roles") is not None and role != "admin":
            _keep_an_admin(store, username.strip().lower())
        _change_user(store, username, "update users set role = ? where username = ?", [role],
                     actor=actor, action="user.set_role", details={"role": role})
        end_sessions(store, username, reason="role changed")
    return get_user(store, username)  # type: ignore[return-value]


def _known_words(store: Store, username: str) -> list[str]:
    """The user's username and name: what a guesser tries first."""
    user = get_user(store, username)
    return [username, *([user.name] if user is not None and user.name else [])]


def set_password(store: Store, username: str, password: str, *, actor: str = "cli", rounds: int = 12) -> None:
    """Set ``username``'s password (their logins end): a user may change their own, an admin (or the CLI) anyone's."""
    hashed = hash_password(password, rounds=rounds, known=_known_words(store, username))  # slow: before the lock
    username = username.strip().lower()
    with store.write_transaction():
        if actor.strip().lower() != username or get_user(store, username) is None:
            require(store, actor, "manage_users", f"change {username}'s password")
        _change_user(store, username, "update users set password_hash = ? where username = ?", [hashed], actor=actor,
                     action="user.set_password", details={})
        end_sessions(store, username, reason="password changed")


def _lock_resets(store: Store) -> str:
    """Audit actions that end a run of wrong passwords for a username: its own login, or an admin's unlock."""
    return ("(s.actor = f.actor and s.action = 'login') "
            f"or (s.action = 'user.unlock' and {store.dialect.json_field('s.details', 'username')} = f.actor)")


def _failure_times(store: Store, *, now: Any = None, username: str | None = None) -> list[tuple[str, str]]:
    """(username, time) of each wrong password within LOCKOUT_WINDOW since that username's last
    login or unlock. Unknown usernames count like known ones, so a lock tells nobody which exist."""
    since = iso((now or utcnow()) - LOCKOUT_WINDOW)
    only = "and f.actor = ?" if username is not None else ""
    return [(r[0], r[1]) for r in store.db.execute(
        f"""select actor, at from audit_events f
           where f.action = 'login.failed' and f.at >= ? {only}
             and f.at > coalesce((select max(s.at) from audit_events s where {_lock_resets(store)}), '')
           order by at desc""",
        [since, *([username.strip().lower()] if username is not None else [])],
    ).fetchall()]


def recent_failures(store: Store, *, now: Any = None) -> dict[str, int]:
    """Wrong passwords per username within LOCKOUT_WINDOW, counted from the audit log.

    Since a successful login or an admin's unlock, that is: either resets the count, as a lockout should.
    """
    counts: dict[str, int] = {}
    for actor, _ in _failure_times(store, now=now):
        counts[actor] = counts.get(actor, 0) + 1
    return counts


def locked_out(store: Store, username: str, *, now: Any = None) -> bool:
    """True after LOCKOUT_FAILURES wrong passwords for ``username`` within LOCKOUT_WINDOW."""
    return lock_ends(store, username, now=now) is not None


def lock_ends(store: Store, username: str, *, now: Any = None) -> datetime | None:
    """When ``username``'s lock ends (the LOCKOUT_FAILURES-th newest wrong password leaves the
    window), or None if it is not locked. Attempts while locked are audited as ``login.locked``,
    not as failures, so they do not prolong it."""
    times = _failure_times(store, now=now, username=username)
    if len(times) < LOCKOUT_FAILURES:
        return None
    return parse_time(times[LOCKOUT_FAILURES - 1][1]) + LOCKOUT_WINDOW  # type: ignore[operator]


def unlock_user(store: Store, username: str, *, actor: str = "cli") -> bool:
    """Lift ``username``'s lockout (audited as ``user.unlock``); returns whether it was locked.

    Only existing users: an admin has no business with the names strangers typed. ``actor`` must be an
    admin (or the CLI).
    """
    username = username.strip().lower()
    with store.write_transaction():
        require(store, actor, "manage_users", "unlock users")
        if get_user(store, username) is None:
            raise AuthError(f"no user {username!r}")
        was_locked = locked_out(store, username)
        store.audit(actor, "user.unlock", None, {"username": username, "was_locked": was_locked})
    return was_locked


def credentials(store: Store) -> dict[str, Any]:
    """The users as streamlit-authenticator's ``credentials`` dict, built fresh for each run.

    Built from the table every time so a removed user or a changed role takes effect on the
    next click, and seeded with each user's recent failures so the library's
    ``max_login_attempts`` enforces :data:`LOCKOUT_FAILURES` across sessions. Users without a
    password (single sign-on only) are left out.
    """
    failures = recent_failures(store)
    rows = store.db.execute(
        "select username, name, role, email, password_hash from users where password_hash is not null"
    ).fetchall()
    return {
        "usernames": {
            r[0]: {"name": r[1] or r[0], "roles": [r[2]], "email": r[3], "password": r[4],
                   "failed_login_attempts": failures.get(r[0], 0)}
            for r in rows
        }
    }


def check_password(store: Store, username: str, password: str) -> bool:
    """Whether ``password`` is ``username``'s (for the CLI and tests; the console's form uses
    streamlit-authenticator, which does the same bcrypt check)."""
    row = store.db.execute("select password_hash from users where username = ?",
                           [username.strip().lower()]).fetchone()
    if not row or not row[0]:
        return False
    try:
        return bcrypt.checkpw(password.encode("utf-8")[:MAX_PASSWORD_BYTES], row[0].encode("ascii"))
    except ValueError:
        return False


# ------------------------------------------------------------------ console sessions
#: How long the row of an expired login is kept before the next login deletes it.
SESSION_ROWS_KEPT = timedelta(days=30)
#: Seconds a login grant (the one-time code that turns a login into the browser's HttpOnly cookie) lives.
GRANT_SECONDS = 120


def _digest(token: str) -> str:
    """Only digests of tokens are stored: a copy of the database logs nobody in."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def credential_stamp(store: Store, username: str) -> str | None:
    """A digest of what a login was granted on: the user's password hash and role.

    A session remembers the stamp it was opened with and is refused once it differs, so a password
    change, a role change or the user's removal ends every open login, whichever way it was made
    (CLI, Settings page, or an edit of the database).
    """
    row = store.db.execute("select password_hash, role from users where username = ?",
                           [username.strip().lower()]).fetchone()
    if row is None:
        return None
    return _digest(f"{row[0] or ''}\0{row[1]}")[:32]


@dataclass(frozen=True)
class Session:
    """One login: ``id`` names it inside the server (``st.session_state``), never in a browser."""

    id: str
    username: str
    method: str


def start_session(store: Store, username: str, *, hours: float, method: str = "password",
                  now: datetime | None = None) -> tuple[Session, str]:
    """Open a login for ``username`` lasting ``hours``; returns it and a one-time grant code.

    The grant (valid :data:`GRANT_SECONDS`, single use) is what the browser exchanges at
    ``/auth/session`` for its HttpOnly cookie (``console/server.py``).
    """
    now = now or utcnow()
    session_id = _secrets.token_urlsafe(24)
    # Rows of logins that ended long ago are no use to anyone (the audit log keeps who logged in when).
    store.db.execute("delete from console_sessions where expires_at < ?", [iso(now - SESSION_ROWS_KEPT)])
    store.db.execute(
        "insert into console_sessions (id, username, method, stamp, created_at, expires_at) values (?, ?, ?, ?, ?, ?)",
        [session_id, username, method, credential_stamp(store, username), iso(now), iso(now + timedelta(hours=hours))],
    )
    return Session(session_id, username, method), new_grant(store, session_id, now=now)


def new_grant(store: Store, session_id: str, *, now: datetime | None = None) -> str:
    """A fresh one-time code for the browser's cookie exchange of ``session_id`` (replacing any earlier one)."""
    now = now or utcnow()
    grant = _secrets.token_urlsafe(24)
    store.db.execute("update console_sessions set grant_digest = ?, grant_expires_at = ? where id = ?",
                     [_digest(grant), iso(now + timedelta(seconds=GRANT_SECONDS)), session_id])
    return grant


def redeem_grant(store: Store, grant: str, *, now: datetime | None = None) -> tuple[str, datetime] | None:
    """Exchange a grant for the browser's session token (and its expiry), once; None if it is not valid."""
    now = now or utcnow()
    token = _secrets.token_urlsafe(32)
    with store.transaction():
        row = store.db.execute(
            "select id, expires_at from console_sessions where grant_digest = ? and grant_expires_at > ? "
            "and revoked_at is null", [_digest(grant), iso(now)]).fetchone()
        if row is None:
            return None
        store.db.execute("update console_sessions set token_digest = ?, grant_digest = null where id = ?",
                         [_digest(token), row[0]])
    if _valid_row(store, row[0], now) is None:
        return None
    return token, parse_time(row[1])  # type: ignore[return-value]


def _valid_row(store: Store, session_id: str, now: datetime) -> Session | None:
    row = store.db.execute(
        "select id, username, method, stamp, expires_at, revoked_at from console_sessions where id = ?",
        [session_id]).fetchone()
    if row is None or row[5] is not None or row[4] <= iso(now):
        return None
    if row[3] != credential_stamp(store, row[1]):
        return None
    return Session(row[0], row[1], row[2])


def session_by_id(store: Store, session_id: str | None, *, now: datetime | None = None) -> Session | None:
    """The open login ``session_id`` (checked on every console run), or None once it has ended."""
    return _valid_row(store, session_id, now or utcnow()) if session_id else None


def expired_session_user(store: Store, session_id: str | None, *, now: datetime | None = None) -> str | None:
    """The user of login ``session_id`` if it ended only because its time ran out; else None.

    Why: an expiry ends nothing the user did or had done to them, so the console keeps their draft and page
    for their next login (console/login.py); a login ended by a logout, a password or role change or the
    user's removal (revoked, or granted on another password hash or role) is None here and keeps nothing.
    """
    if not session_id:
        return None
    row = store.db.execute(
        "select username, stamp, expires_at, revoked_at from console_sessions where id = ?", [session_id]).fetchone()
    if row is None or row[3] is not None or row[2] > iso(now or utcnow()):
        return None
    return row[0] if row[1] == credential_stamp(store, row[0]) else None


def session_by_token(store: Store, token: str | None, *, now: datetime | None = None) -> Session | None:
    """The open login a browser's cookie token belongs to, or None (unknown, expired, revoked, stale)."""
    if not token:
        return None
    row = store.db.execute("select id from console_sessions where token_digest = ?", [_digest(token)]).fetchone()
    return _valid_row(store, row[0], now or utcnow()) if row else None


def end_session(store: Store, session_id: str | None, *, reason: str = "logout") -> None:
    """End one login: its cookie, wherever a copy of it is kept, no longer logs anyone in."""
    if session_id:
        store.db.execute("update console_sessions set revoked_at = ?, revoked_reason = ? where id = ? "
                         "and revoked_at is null", [iso(utcnow()), reason, session_id])


def end_sessions(store: Store, username: str, *, reason: str) -> int:
    """End every login of ``username`` (password or role changed, user removed)."""
    cursor = store.db.execute("update console_sessions set revoked_at = ?, revoked_reason = ? where username = ? "
                              "and revoked_at is null", [iso(utcnow()), reason, username.strip().lower()])
    return cursor.rowcount
