"""Console users, passwords and what each role may do.

Users live in the store's ``users`` table (username, name, role, password_hash, created_at)
so one SQLite file holds everything a deployment needs and ``doorstep user ...`` manages them.

Why not streamlit-authenticator: it keeps credentials in a YAML/dict that it rewrites itself
and remembers logins in a browser cookie set through a custom component (which Streamlit's
AppTest cannot drive). Our users are rows in SQLite, and the session lives only in Streamlit's
server-side session state (a reload asks for the password again), so the only generic part we
need is password hashing, and that is bcrypt's (a maintained, well-reviewed library). Verifying
always runs one bcrypt check, even for an unknown user, so timing does not reveal user names.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import bcrypt

from doorstep.models import utcnow
from doorstep.store import Store, iso

ROLES: tuple[str, ...] = ("agent", "lead", "admin")

#: The least role allowed to do each action; roles are ordered agent < lead < admin.
PERMISSIONS: dict[str, str] = {
    "reply": "agent",
    "escalate": "agent",
    "note": "agent",
    "assign_self": "agent",
    "status": "agent",
    "snooze": "agent",
    "correct_labels": "agent",
    "relink": "agent",
    "retry_message": "agent",
    "view_dashboard": "agent",
    "reassign": "lead",
    "edit_templates": "lead",
    "edit_alerts": "lead",
    "view_settings": "lead",
    "manage_users": "admin",
    "manage_channels": "admin",
    "manage_brands": "admin",
}

#: bcrypt only reads the first 72 bytes of a password; refuse longer ones instead of truncating silently.
MAX_PASSWORD_BYTES = 72
MIN_PASSWORD_LENGTH = 8
#: Wrong passwords allowed per username in LOCKOUT_WINDOW before logins are refused for a while.
LOCKOUT_FAILURES = 5
LOCKOUT_WINDOW = timedelta(minutes=10)

# A real hash to compare against when the user does not exist (constant-time-ish refusal).
_DUMMY_HASH = bcrypt.hashpw(b"doorstep-no-such-user", bcrypt.gensalt(rounds=4))


class AuthError(ValueError):
    """A user operation was refused; the message says why (never contains the password)."""


@dataclass(frozen=True)
class User:
    username: str
    name: str
    role: str

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
    return role_rank(user.role) >= role_rank(PERMISSIONS[action])


def hash_password(password: str, rounds: int = 12) -> str:
    data = password.encode("utf-8")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AuthError(f"password must be at least {MIN_PASSWORD_LENGTH} characters")
    if len(data) > MAX_PASSWORD_BYTES:
        raise AuthError(f"password must be at most {MAX_PASSWORD_BYTES} bytes")
    return bcrypt.hashpw(data, bcrypt.gensalt(rounds=rounds)).decode("ascii")


def add_user(store: Store, username: str, password: str, *, role: str = "agent", name: str | None = None,
             actor: str = "cli", rounds: int = 12) -> User:
    username = username.strip()
    if not username or not username.replace(".", "").replace("_", "").replace("-", "").isalnum():
        raise AuthError(f"username {username!r}: use letters, digits, '.', '_' or '-'")
    role_rank(role)
    if get_user(store, username) is not None:
        raise AuthError(f"user {username!r} already exists")
    hashed = hash_password(password, rounds=rounds)
    with store.transaction():
        store.db["users"].insert(
            {"username": username, "name": name or username, "role": role, "password_hash": hashed,
             "created_at": iso(utcnow())}
        )
        store.audit(actor, "user.add", None, {"username": username, "role": role})
    return User(username, name or username, role)


def get_user(store: Store, username: str) -> User | None:
    row = store.db.execute("select username, name, role from users where username = ?", [username]).fetchone()
    return User(row[0], row[1] or row[0], row[2]) if row else None


def list_users(store: Store) -> list[User]:
    rows = store.db.execute("select username, name, role from users order by username").fetchall()
    return [User(r[0], r[1] or r[0], r[2]) for r in rows]


def remove_user(store: Store, username: str, *, actor: str = "cli") -> None:
    with store.transaction():
        cursor = store.db.execute("delete from users where username = ?", [username])
        if cursor.rowcount == 0:
            raise AuthError(f"no user {username!r}")
        store.audit(actor, "user.remove", None, {"username": username})


def set_role(store: Store, username: str, role: str, *, actor: str = "cli") -> User:
    role_rank(role)
    with store.transaction():
        cursor = store.db.execute("update users set role = ? where username = ?", [role, username])
        if cursor.rowcount == 0:
            raise AuthError(f"no user {username!r}")
        store.audit(actor, "user.set_role", None, {"username": username, "role": role})
    user = get_user(store, username)
    assert user is not None
    return user


def set_password(store: Store, username: str, password: str, *, actor: str = "cli", rounds: int = 12) -> None:
    hashed = hash_password(password, rounds=rounds)
    with store.transaction():
        cursor = store.db.execute("update users set password_hash = ? where username = ?", [hashed, username])
        if cursor.rowcount == 0:
            raise AuthError(f"no user {username!r}")
        store.audit(actor, "user.set_password", None, {"username": username})


def locked_out(store: Store, username: str, *, now: Any = None) -> bool:
    """True after LOCKOUT_FAILURES wrong passwords for ``username`` within LOCKOUT_WINDOW.

    Counted from the audit log, so the limit holds across browser sessions and restarts.
    """
    since = iso((now or utcnow()) - LOCKOUT_WINDOW)
    row = store.db.execute(
        "select count(*) from audit_events where action = 'login.failed' and actor = ? and at >= ?",
        [username.strip()[:64], since],
    ).fetchone()
    return int(row[0]) >= LOCKOUT_FAILURES


def verify(store: Store, username: str, password: str) -> User | None:
    """The user if ``password`` is theirs, else None (same work either way).

    Refused without checking while the username is locked out (see :func:`locked_out`).
    """
    if locked_out(store, username):
        store.audit(username.strip()[:64] or "(empty)", "login.locked_out", None, {})
        return None
    row = store.db.execute("select username, name, role, password_hash from users where username = ?",
                           [username.strip()]).fetchone()
    stored = row[3].encode("ascii") if row and row[3] else _DUMMY_HASH
    data = password.encode("utf-8")[:MAX_PASSWORD_BYTES]
    try:
        ok = bcrypt.checkpw(data, stored)
    except ValueError:
        ok = False
    if not ok or row is None:
        store.audit(username.strip()[:64] or "(empty)", "login.failed", None, {})
        return None
    store.audit(row[0], "login", None, {})
    return User(row[0], row[1] or row[0], row[2])
