"""Console hardening (issue 14 item 12): a search with nothing searchable says so instead of
listing every case; an error in a page is logged, never shown to the agent as a traceback; the
console listens on 127.0.0.1 unless told otherwise."""

from __future__ import annotations

import logging
import tomllib

import pytest
from streamlit.testing.v1 import AppTest

from doorstep.store import Store
from tests.conftest import REPO
from tests.test_console_apptest import APP, PASSWORD, db, demo_template, log_in, page  # noqa: F401 - fixtures


@pytest.mark.parametrize("search", ["!!!", "😀🙃", " ... ?? "])
def test_search_of_only_punctuation_or_emoji_shows_no_case(db: Store, search: str) -> None:
    at = page("inbox", "ann", db)
    assert at.selectbox(key="inbox_pick").options  # every case, before the search
    at.text_input(key="inbox_search").input(search).run()
    assert not at.exception
    assert any("Nothing to search for" in w.value for w in at.warning)
    assert not [s for s in at.selectbox if s.key == "inbox_pick"]  # no list of cases


def test_page_error_is_logged_not_shown(db: Store, monkeypatch: pytest.MonkeyPatch,
                                        caplog: pytest.LogCaptureFixture) -> None:
    from console import inbox

    def broken() -> None:
        raise RuntimeError(f"boom in {inbox.__file__}")

    monkeypatch.setattr(inbox, "render", broken)
    caplog.set_level(logging.ERROR)
    at = log_in(AppTest.from_file(APP, default_timeout=30).run(), "ann", PASSWORD)
    assert not at.exception  # Streamlit's own exception box (with the traceback) is not drawn
    shown = " ".join(e.value for e in at.error)
    assert "Something went wrong" in shown and "reference" in shown
    assert "console/inbox.py" not in shown and "Traceback" not in shown and "boom" not in shown
    assert "boom in" in caplog.text and "Traceback" in caplog.text  # the log has all of it


def test_streamlit_config_hides_error_details_and_binds_loopback() -> None:
    config = tomllib.loads((REPO / ".streamlit" / "config.toml").read_text(encoding="utf-8"))
    assert config["client"]["showErrorDetails"] == "none"
    assert config["server"]["address"] == "127.0.0.1"


def test_a_page_that_found_the_database_busy_says_so_not_something_went_wrong(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """Any write of any page (status, assign, reply...) that waited out [limits] busy_timeout_s reaches
    app.py's handler: the agent reads what happened and what to do, not 'Something went wrong'."""
    monkeypatch.delenv("DOORSTEP_CONFIG", raising=False)
    caplog.set_level(logging.WARNING)
    at = AppTest.from_string("import sqlite3\nfrom console.server import on_script_error\n"
                             "on_script_error(sqlite3.OperationalError('database is locked'))\n", default_timeout=30).run()
    assert not at.exception
    shown = " ".join(e.value for e in at.error).replace("\\", "")
    assert "was not saved" in shown and "busy for over 10 s" in shown and "busy_timeout_s" in shown
    assert "Something went wrong" not in shown
    assert "database is locked" in caplog.text  # still logged


def test_a_database_the_console_cannot_use_is_named_with_its_remedy(
        tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Re-run audit, regression B: on a database a newer Doorstep had upgraded, every page showed only "Something
    went wrong ... (reference ...)" while the CLI said what was wrong and what to do. A StoreError is that line."""
    from doorstep.store import Store

    db = tmp_path / "newer.db"
    store = Store(db)
    with store.transaction():
        store.db.execute("insert into _sqlite_migrations (migration_set, name, applied_at) "
                         "values ('doorstep', 'm999_from_a_newer_version', 'now')")
    store.close()
    monkeypatch.delenv("DOORSTEP_CONFIG", raising=False)
    at = AppTest.from_string(f"from console.server import on_script_error\nfrom doorstep.store import Store\n"
                             f"try:\n    Store({str(db)!r})\nexcept Exception as exc:\n    on_script_error(exc)\n",
                             default_timeout=30).run()
    assert not at.exception
    shown = " ".join(e.value for e in at.error).replace("\\", "")
    assert "upgraded by a newer Doorstep" in shown and "restore the backup" in shown, shown
    assert "Something went wrong" not in shown
