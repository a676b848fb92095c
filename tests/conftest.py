"""Shared fixtures: a fresh store, a small shop configuration, and helpers to build records."""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from doorstep.config import Config, parse_config
from doorstep.models import INTENTS, Labels, Mention
from doorstep.store import Store

REPO = Path(__file__).resolve().parent.parent

try:
    from playwright.sync_api import expect as _browser_expect
except ImportError:  # the browser tests skip (or fail under CI=true) on their own
    pass
else:
    # A browser test's assertion waits up to 15 s for the console's answer, not Playwright's default 5: on a CI
    # host with busy neighbours a click's two script runs (the action, then the redraw) once took longer.
    # A click that is lost still fails, 10 s later.
    _browser_expect.set_options(timeout=15_000)

_real_exit = os._exit
_test_run_pid: int | None = None


def _exit_outside_the_test_run(status: int) -> None:
    """``os._exit`` in the pytest process ends the whole run with no summary and status 0 (CI at 7e55864 ended
    silently inside tests/test_pg_outage.py: a worker's stop path took pytest's threads for stuck jobs). In that
    process it raises, so the test that reached it fails by name; a child process (forked, or spawned and importing
    this module) still exits."""
    if os.getpid() == _test_run_pid:
        raise RuntimeError(f"os._exit({status}) called inside the test run: it would end pytest silently")
    _real_exit(status)


def pytest_configure(config: pytest.Config) -> None:
    """Only the process pytest runs in gets the guard (a spawned child imports this module but configures nothing)."""
    global _test_run_pid
    _test_run_pid = os.getpid()
    os._exit = _exit_outside_the_test_run  # type: ignore[assignment]


T0 = datetime(2026, 11, 16, 9, 0, tzinfo=timezone.utc)


def shared_dir() -> Path:
    return Path(os.environ.get("DOORSTEP_SHARED", REPO.parent / "shared"))


def require_shared(relative: str) -> Path:
    """Path to a file under ../shared, or skip the test saying how to provide it."""
    path = shared_dir() / relative
    if not path.exists():
        pytest.skip(f"{path} not found: set DOORSTEP_SHARED to the shared material folder to run this test")
    return path


@pytest.fixture
def config() -> Config:
    return parse_config(
        {
            "timezone": "Europe/London",
            "brands": [
                {"name": "Larkspur", "handles": {"x": "LarkspurHelp"}, "keywords": ["larkspur"]},
                {"name": "Fettle", "handles": {"x": "FettleCare"}, "keywords": ["fettle"]},
            ],
            "couriers": [
                {"name": "UPS", "handles": {"x": "UPSHelp"}, "keywords": ["ups"], "tracking_formats": ["ups"]},
                {"name": "Royal Mail", "handles": {"x": "RoyalMailHelp"}, "tracking_formats": ["royal_mail"]},
            ],
        }
    )


#: The PostgreSQL the two-backend tests use; each test gets a schema of its own in it.
POSTGRES_URL = os.environ.get("DOORSTEP_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
_postgres_problem: list[str] = []


def postgres_problem() -> str | None:
    """Why PostgreSQL cannot be used for tests (None when it can); asked once per run."""
    if not _postgres_problem:
        import psycopg

        try:
            psycopg.connect(POSTGRES_URL, connect_timeout=3).close()
            _postgres_problem.append("")
        except psycopg.Error as exc:
            _postgres_problem.append(
                f"PostgreSQL is not reachable at {POSTGRES_URL} ({' '.join(str(exc).split())[:200]}): start it with "
                "`pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start` or point "
                "DOORSTEP_TEST_POSTGRES_URL at one")
    return _postgres_problem[0] or None


def require_postgres() -> None:
    """Skip (outside CI) or fail (CI=true) the test when PostgreSQL is not there."""
    problem = postgres_problem()
    if problem:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(problem)
        pytest.skip(problem)


def _with_schema(url: str, schema: str) -> str:
    return url + ("&" if "?" in url else "?") + f"options=-csearch_path%3D{schema}"


def new_postgres_schema() -> str:
    """The URL of a new, empty schema in the test PostgreSQL (see :func:`drop_postgres_schema`)."""
    import uuid

    import psycopg

    require_postgres()
    schema = f"test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
        admin.execute(f"create schema {schema}")
    return _with_schema(POSTGRES_URL, schema)


def _schema_of(url: str) -> str:
    return url.rsplit("search_path%3D", 1)[1].split("&")[0]


def drop_postgres_schema(url: str) -> None:
    import psycopg

    with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
        # A connection a test left open (a console thread, say) must not hold the run up.
        admin.execute("set lock_timeout = '10s'")
        try:
            admin.execute(f"drop schema {_schema_of(url)} cascade")
        except psycopg.Error:
            pass


def copy_postgres_schema(source: str, target: str) -> None:
    """Copy every table of one test schema into another (as tests copy a template SQLite file)."""
    import psycopg

    src, dst = _schema_of(source), _schema_of(target)
    with psycopg.connect(POSTGRES_URL, autocommit=True) as admin, admin.transaction():
        tables = [r[0] for r in admin.execute(
            "select table_name from information_schema.tables where table_schema = %s and table_type = 'BASE TABLE'",
            [src]).fetchall()]
        for table in tables:
            admin.execute(f'create table {dst}."{table}" (like {src}."{table}" including all)')
            admin.execute(f'insert into {dst}."{table}" overriding system value select * from {src}."{table}"')
            for (column,) in admin.execute(
                    "select column_name from information_schema.columns where table_schema = %s and table_name = %s "
                    "and is_identity = 'YES'", [dst, table]).fetchall():
                admin.execute(f"select setval(pg_get_serial_sequence('{dst}.\"{table}\"', '{column}'), "
                              f'coalesce((select max({column}) from {dst}."{table}"), 0) + 1, false)')
    if "change_marks" in tables:
        # ``like ... including all`` copies no triggers: those that keep the search mark (m019) again
        from doorstep.postgres import PgDatabase
        from doorstep.store.migrations import install_search_mark_triggers

        db = PgDatabase(target)
        try:
            with db.atomic():
                install_search_mark_triggers(db)
        finally:
            db.close()


@pytest.fixture
def postgres_url() -> str:
    """A PostgreSQL URL whose connections work in a fresh schema of their own, dropped afterwards."""
    url = new_postgres_schema()
    yield url
    drop_postgres_schema(url)


def template_target(request: pytest.FixtureRequest, folder: Path, name: str) -> str:
    """For a parametrised (``"sqlite"``/``"postgresql"``) template fixture: where to build the
    template, a file in ``folder`` or a new PostgreSQL schema (dropped when the fixture ends)."""
    if request.param == "postgresql":
        url = new_postgres_schema()
        request.addfinalizer(lambda: drop_postgres_schema(url))
        return url
    return str(folder / name)


def copy_of(template: str, path: Path, request: pytest.FixtureRequest) -> str:
    """A test's own copy of a template database: the file copied to ``path``, or the schema
    copied into a new one (dropped after the test)."""
    if template.startswith("postgresql://"):
        url = new_postgres_schema()
        request.addfinalizer(lambda: drop_postgres_schema(url))
        copy_postgres_schema(template, url)
        return url
    import shutil

    shutil.copy(template, path)
    return str(path)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a test's store lives, once per backend: a SQLite file, then a PostgreSQL schema."""
    if request.param == "postgresql":
        return request.getfixturevalue("postgres_url")
    return str(tmp_path / "test.db")


@pytest.fixture
def store(db_url: str) -> Store:
    """A fresh store, on SQLite and on PostgreSQL (the test runs once for each)."""
    s = Store(db_url)
    yield s
    s.close()


def labels(intent: str = "other", sentiment: str = "neutral", complaint: bool = False, urgency: float = 0.2) -> Labels:
    """Labels as a classifier would give them, for tests that fix the reading of a post."""
    sent = {s: (0.8 if s == sentiment else 0.1) for s in ("negative", "neutral", "positive")}
    intents = {i: (0.55 if i == intent else 0.05) for i in INTENTS}
    return Labels(
        sentiment=sentiment,
        sentiment_scores=sent,
        complaint=complaint,
        complaint_score=0.9 if complaint else 0.1,
        intent=intent,
        intent_scores=intents,
        urgency=urgency,
        model="test",
    )


class KeywordClassifier:
    """A test double: complaint + intent from a couple of words, so tests control the labels."""

    name = "test-keywords"

    def classify(self, texts: Sequence[str]) -> list[Labels]:
        out = []
        for text in texts:
            low = text.lower()
            if "lost" in low:
                out.append(labels("lost_or_missing", "negative", True, 0.8))
            elif "where" in low or "late" in low:
                out.append(labels("late_delivery", "negative", True, 0.5))
            elif "thank" in low:
                out.append(labels("praise", "positive", False, 0.0))
            else:
                out.append(labels())
        return out


def mention(external_id: str, text: str, minutes: int = 0, **fields) -> Mention:
    fields.setdefault("channel", "x")
    fields.setdefault("author_handle", "someone")
    return Mention(external_id=external_id, text=text, created_at=T0 + timedelta(minutes=minutes), **fields)


# ------------------------------------------------------------------ console pages under AppTest
#: The demo shop's configuration, which the console's pages read in these tests.
DEMO_CONFIG = str(REPO / "demo" / "doorstep.toml")
#: A page module run on its own, as Streamlit's AppTest runs a script.
PAGE = """
from console import {module}
{module}.render()
"""


def console_store(path: str | Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch,
                  config: str | None = DEMO_CONFIG) -> Store:
    """The store at ``path`` (a file or a PostgreSQL URL), where the console's pages will open it
    (DOORSTEP_DB; DOORSTEP_CONFIG too unless ``config`` is None); closed when the test ends."""
    monkeypatch.setenv("DOORSTEP_DB", str(path))
    if config is not None:
        monkeypatch.setenv("DOORSTEP_CONFIG", config)
    store = Store(path)
    request.addfinalizer(store.close)
    return store


def console_copy(template: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                 name: str = "console.db") -> Store:
    """A test's own copy of a template database (:func:`copy_of`, on either backend), opened by
    :func:`console_store` for the console's pages."""
    return console_store(copy_of(template, tmp_path / name, request), request, monkeypatch)


def sign_in(at: "AppTest", store: Store, username: str) -> None:
    """Log ``username`` in to ``at`` as the login page would: the user and an open login (a
    ``console_sessions`` row), which the live parts and every click's action check again."""
    from console.auth import get_user, start_session

    at.session_state["user"] = get_user(store, username)
    at.session_state["_session_id"] = start_session(store, username, hours=1)[0].id


def run_page(module: str, store: Store, username: str = "ann", query: dict[str, str] | None = None,
             **state: object) -> "AppTest":
    """``console.<module>`` run once through AppTest as ``username``, with ``state`` in the session and
    ``query`` in the address."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_string(PAGE.format(module=module), default_timeout=30)
    sign_in(at, store, username)
    for key, value in state.items():
        at.session_state[key] = value
    for key, value in (query or {}).items():
        at.query_params[key] = value
    return at.run()


def texts(at: "AppTest") -> str:
    """Every text a page shows (Markdown escapes taken out), one element a line."""
    parts = []
    for kind in ("markdown", "caption", "error", "warning", "info", "success", "title", "subheader", "text"):
        parts += [str(e.value) for e in getattr(at, kind)]
    return "\n".join(parts).replace("\\", "")
