"""A newcomer's first hour (issue 18): every documented command works as written.

Each test names the item of the issue it covers. They run the real ``doorstep`` command line
(click's runner, or a subprocess where the process boundary matters) and assert on what a
person sees: the one-line error, the exit status, the files left behind.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from commands.cli import cli

REPO = Path(__file__).resolve().parent.parent


def _run(args: list[str], **kwargs):
    return CliRunner().invoke(cli, args, catch_exceptions=False, **kwargs)


# ------------------------------------------------------------------ item 8: train and evaluate
def test_train_without_the_train_extra_names_the_extra_in_one_line(monkeypatch, tmp_path):
    import classifiers.cli

    monkeypatch.setitem(classifiers.cli.TRAIN_MODULES, "no_such_module_for_doorstep", "no-such-package")
    result = _run(["--db", str(tmp_path / "x.db"), "train"])
    assert result.exit_code == 1
    assert "Traceback" not in result.output and "ModuleNotFoundError" not in result.output
    error = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(error) == 1 and "no-such-package" in error[0] and "'.[train]'" in error[0]


def test_train_writes_a_new_folder_by_default_never_the_shipped_model(monkeypatch, tmp_path):
    import classifiers.cli
    import classifiers.train
    from classifiers.onnx_backend import MODEL_DIR

    seen: dict[str, object] = {}

    def fake_train(shared, out_dir, feedback, config, log):
        seen["out"] = out_dir
        return {"ok": True}

    monkeypatch.setattr(classifiers.cli, "_require_train_extra", lambda: None)
    monkeypatch.setattr(classifiers.train, "train", fake_train)
    monkeypatch.chdir(tmp_path)
    result = _run(["--db", str(tmp_path / "x.db"), "train"])
    assert result.exit_code == 0, result.output
    out = Path(str(seen["out"])).resolve()
    assert out != Path(MODEL_DIR).resolve() and not out.is_relative_to(REPO / "classifiers")
    assert out.name.startswith("doorstep-model-")


@pytest.mark.parametrize("flags, expect_write", [([], False), (["--write"], True)])
def test_evaluate_rewrites_results_only_when_asked(monkeypatch, flags, expect_write):
    import classifiers.evaluate

    seen: dict[str, object] = {}
    monkeypatch.setattr(classifiers.evaluate, "evaluate", lambda spec, shared=None, write=True: seen.update(write=write) or {})
    result = _run(["evaluate", *flags])
    assert result.exit_code == 0, result.output
    assert seen["write"] is expect_write


# ------------------------------------------------------------------ item 4: one config check for every command
BAD_FOLLOWUP = '[responders.followup]\nafter_hours = "x"\n'


@pytest.mark.parametrize("command", [["run", "--once"], ["outbox", "send"],
                                     ["report", "weekly", "--week", "2026-W47", "--out", "reports"]])
def test_a_bad_key_is_the_same_one_line_error_naming_the_real_file(tmp_path, command):
    bad = tmp_path / "bad2.toml"
    bad.write_text(BAD_FOLLOWUP, encoding="utf-8")
    db = tmp_path / "shop.db"
    from doorstep.store import Store

    Store(db).close()
    result = CliRunner().invoke(cli, ["--db", str(db), "--config", str(bad), *command])
    assert result.exit_code == 1, result.output
    assert result.output.splitlines() == [
        f"Error: {bad}: responders.followup.after_hours: Input should be a valid number, unable to parse string as a number"]
    assert not (tmp_path / "reports").exists()


def test_a_missing_explicit_config_is_an_error(tmp_path):
    result = CliRunner().invoke(cli, ["--db", str(tmp_path / "x.db"), "--config", str(tmp_path / "missing.toml"),
                                      "user", "add", "ana", "--password-stdin"], input="a-long-password\n")
    assert result.exit_code == 1
    assert "missing.toml: file not found" in result.output
    assert not (tmp_path / "x.db").exists()


def test_help_still_works_with_a_bad_config(tmp_path):
    bad = tmp_path / "bad2.toml"
    bad.write_text(BAD_FOLLOWUP, encoding="utf-8")
    result = CliRunner().invoke(cli, ["--config", str(bad), "run", "--help"])
    assert result.exit_code == 0 and "Usage:" in result.output


# ------------------------------------------------------------------ item 7: commands as documented
def test_db_and_config_are_accepted_after_the_subcommand(tmp_path):
    db = tmp_path / "after.db"
    good = tmp_path / "good.toml"
    good.write_text('timezone = "Europe/London"\n', encoding="utf-8")
    result = CliRunner().invoke(cli, ["user", "add", "ana", "--role", "lead", "--password-stdin", "--db", str(db),
                                      "--config", str(good)], input="a-long-password\n")
    assert result.exit_code == 0, result.output
    listed = CliRunner().invoke(cli, ["user", "list", f"--db={db}"])
    assert listed.exit_code == 0 and listed.output.startswith("ana\tlead")
    bad = tmp_path / "bad2.toml"
    bad.write_text(BAD_FOLLOWUP, encoding="utf-8")
    refused = CliRunner().invoke(cli, ["outbox", "send", "--db", str(db), "--config", str(bad)])
    assert refused.exit_code == 1 and "bad2.toml: responders.followup.after_hours" in refused.output


@pytest.mark.parametrize("command", [["user", "list"], ["outbox", "list"], ["export", "mentions"],
                                     ["report", "weekly", "--week", "2026-W47", "--out", "r"],
                                     # Before: these four made an empty ./doorstep.db, then said "no case 1".
                                     ["case", "show", "1"], ["case", "split", "1", "--post", "2"],
                                     ["case", "merge", "1", "2"], ["user", "unlock", "ana"]])
def test_read_only_commands_do_not_create_a_database(tmp_path, monkeypatch, command):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DOORSTEP_DB", raising=False)
    monkeypatch.delenv("DOORSTEP_CONFIG", raising=False)
    result = CliRunner().invoke(cli, command)
    assert result.exit_code == 1
    assert "no database at doorstep.db" in result.output and "--db" in result.output
    assert list(tmp_path.iterdir()) == []


def test_reports_folder_from_the_readme_is_ignored_by_git():
    import subprocess

    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    ignored = subprocess.run(["git", "check-ignore", "-q", "reports/weekly-2026-W47.html"], cwd=REPO)
    assert ignored.returncode == 0


def test_readme_documents_reply_and_the_global_options_after_the_command():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "doorstep reply --case" in readme
    assert "make bench" in readme and "python bench/classifier_bench.py" not in readme.replace(".venv/bin/python", "")


# ------------------------------------------------------------------ item 11: help and small things
def _help(*words: str) -> str:
    result = CliRunner().invoke(cli, [*words, "--help"])
    assert result.exit_code == 0
    return result.output


def test_every_outbox_command_and_classify_option_has_help_text():
    commands = _help("outbox").split("Commands:")[1]
    for name in ("list", "retry", "cancel", "send"):
        line = next(l for l in commands.splitlines() if l.strip().startswith(name + " "))
        assert len(line.split(None, 1)[1]) > 10, line
    for name in ("list", "retry", "cancel"):
        text = _help("outbox", name)
        assert text.split("Options:")[0].strip().count("\n") >= 2, text  # a description under the usage line
    classify = _help("classify")
    for option in ("--input", "--output"):
        line = next(l for l in classify.splitlines() if option in l)
        assert "standard" in line, line


def test_escalate_help_names_its_options_not_arguments():
    text = _help("escalate")
    assert "CASE to TARGET" not in text and "--case" in text.split("Options:")[0]


def test_an_empty_user_list_says_so(tmp_path):
    from doorstep.store import Store

    Store(tmp_path / "empty.db").close()
    result = CliRunner().invoke(cli, ["--db", str(tmp_path / "empty.db"), "user", "list"])
    assert result.exit_code == 0 and "no users" in result.output


# ------------------------------------------------------------------ item 5: listen x --once
X_CONFIG = '[channels.x]\nqueries = ["larkspur"]\naccounts = ["LarkspurHelp"]\n'


class _CountingServer:
    """A TCP port that accepts and hangs up: counts how often a client tried."""

    def __init__(self) -> None:
        import socket
        import threading

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(50)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self._stop = False
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self._stop = True
        self.sock.close()


def test_listen_x_once_without_a_token_names_it_and_contacts_nobody(tmp_path, monkeypatch):
    server = _CountingServer()
    try:
        config = tmp_path / "x.toml"
        config.write_text(X_CONFIG, encoding="utf-8")
        monkeypatch.delenv("X_BEARER_TOKEN", raising=False)
        monkeypatch.delenv("DOORSTEP_SECRETS_FILE", raising=False)
        monkeypatch.setenv("X_API_BASE_URL", f"http://127.0.0.1:{server.port}")
        result = CliRunner().invoke(cli, ["--db", str(tmp_path / "x.db"), "--config", str(config), "listen", "x",
                                          "--once", "--classifier", "none"])
        assert result.exit_code == 1
        assert "X_BEARER_TOKEN is not set" in result.output and "Traceback" not in result.output
        assert server.connections == 0
    finally:
        server.close()


def test_listen_x_once_against_an_unreachable_host_gives_up_after_a_short_bounded_retry(tmp_path, monkeypatch):
    server = _CountingServer()
    try:
        config = tmp_path / "x.toml"
        config.write_text(X_CONFIG, encoding="utf-8")
        monkeypatch.setenv("X_BEARER_TOKEN", "any")
        monkeypatch.setenv("X_API_BASE_URL", f"http://127.0.0.1:{server.port}")
        result = CliRunner().invoke(cli, ["--db", str(tmp_path / "x.db"), "--config", str(config), "listen", "x",
                                          "--once", "--classifier", "none"])
        assert result.exit_code == 1
        assert "gave up after 3 attempts" in result.output
        # Two sources (the account lookup and the search), three tries each (urllib3 may retry a
        # dropped connection once itself): bounded, not minutes of back-off.
        assert 2 <= server.connections <= 12
    finally:
        server.close()


def test_listen_x_once_with_only_the_bearer_token_names_the_user_keys_direct_messages_need(tmp_path, monkeypatch,
                                                                                          caplog):
    """Before: the README's emulator recipe (X_API_BASE_URL, X_BEARER_TOKEN=any) against a config
    with direct_messages = true printed tweepy's traceback, "TypeError: Consumer key must be string
    or bytes, not NoneType", for each account's direct messages (found walking the README)."""
    import logging

    from standins.x_emulator import XEmulator

    config = tmp_path / "x.toml"
    config.write_text('[[brands]]\nname = "Larkspur Home"\nhandles = { x = "LarkspurHelp" }\n'
                      '[channels.x]\nqueries = ["larkspur"]\naccounts = ["LarkspurHelp"]\ndirect_messages = true\n',
                      encoding="utf-8")
    monkeypatch.delenv("DOORSTEP_SECRETS_FILE", raising=False)
    for name in ("API_KEY", "API_SECRET", "ACCESS_TOKEN", "ACCESS_TOKEN_SECRET"):
        monkeypatch.delenv(f"X_{name}", raising=False)
        monkeypatch.delenv(f"X_LARKSPURHELP_{name}", raising=False)
    with XEmulator(accounts={"tok": {"username": "LarkspurHelp"}}) as emulator:
        monkeypatch.setenv("X_API_BASE_URL", emulator.base_url)
        monkeypatch.setenv("X_BEARER_TOKEN", "any")
        with caplog.at_level(logging.WARNING):
            result = CliRunner().invoke(cli, ["--db", str(tmp_path / "x.db"), "--config", str(config), "listen", "x",
                                              "--once", "--classifier", "none"])
    assert result.exit_code == 1, result.output
    assert "@LarkspurHelp direct messages" in result.output and "ACCESS_TOKEN" in result.output, result.output
    assert "TypeError" not in result.output and "Traceback" not in result.output, result.output
    assert not [r for r in caplog.records if r.exc_info]


def _without_channel_secrets(monkeypatch, stem: str) -> None:
    """No shared or per-account secret of this channel (nor any brand prefix) in the environment."""
    import os

    monkeypatch.delenv("DOORSTEP_SECRETS_FILE", raising=False)
    for name in list(os.environ):
        if name.startswith((f"{stem}_", "LARKSPUR_", "FETTLE_")) or f"_{stem}_" in name:
            monkeypatch.delenv(name)


@pytest.mark.parametrize("channel, names", [
    ("mastodon", ["MASTODON_ACCESS_TOKEN", "LARKSPUR_MASTODON_ACCESS_TOKEN", "FETTLE_MASTODON_ACCESS_TOKEN"]),
    ("bluesky", ["BLUESKY_HANDLE", "BLUESKY_APP_PASSWORD", "LARKSPUR_BLUESKY_APP_PASSWORD",
                 "FETTLE_BLUESKY_APP_PASSWORD"]),
])
def test_listen_mastodon_or_bluesky_once_without_credentials_names_them_and_contacts_nobody(
        tmp_path, monkeypatch, caplog, channel, names):
    """Before: with the demo config and no credentials, `listen mastodon --once` / `listen bluesky
    --once` went to mastodon.social / bsky.social, retried, and never said a token was missing
    (Bluesky's reason was empty: "network error: ")."""
    import logging

    server = _CountingServer()
    try:
        _without_channel_secrets(monkeypatch, channel.upper())
        monkeypatch.setenv(f"{channel.upper()}_BASE_URL", f"http://127.0.0.1:{server.port}")
        with caplog.at_level(logging.INFO):
            result = CliRunner().invoke(cli, ["--db", str(tmp_path / "d.db"), "--config",
                                              str(REPO / "demo" / "doorstep.toml"), "listen", channel, "--once",
                                              "--classifier", "none"])
        assert result.exit_code == 1, result.output
        [line] = result.output.strip().splitlines()
        assert line.startswith("Error: ") and "not set" in line, line
        assert all(name in line for name in names), line
        assert "DOORSTEP_SECRETS_FILE" in line, line  # the remedy: where to set them
        assert "Traceback" not in result.output and not [r for r in caplog.records if r.exc_info]
        assert server.connections == 0
    finally:
        server.close()


def test_a_bluesky_network_error_without_a_message_names_its_type_and_host():
    """atproto raises NetworkError() with no text: the reason read "network error: " (nothing)."""
    import socket

    import httpx
    from atproto_client import exceptions

    from doorstep.clients import bluesky_client
    from listeners.bluesky import classify_error

    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens: the connection is refused
    try:
        bluesky_client(base_url=f"http://127.0.0.1:{port}", login=False).app.bsky.feed.search_posts(params={"q": "x"})
    except exceptions.NetworkError as exc:
        refused = exc
    assert str(refused) == ""  # what atproto gives: no text of its own
    try:
        try:
            raise httpx.ConnectError("", request=httpx.Request("GET", "https://bsky.social/xrpc/app.bsky.feed.searchPosts"))
        except httpx.ConnectError as cause:
            raise exceptions.NetworkError from cause
    except exceptions.NetworkError as exc:
        silent = exc
    for exc, host in ((refused, f"127.0.0.1:{port}"), (silent, "bsky.social")):
        verdict = classify_error(exc)
        assert verdict is not None and verdict[0] == "retry"
        reason = verdict[1]
        assert "NetworkError" in reason and host in reason, reason
        assert not reason.rstrip().endswith(":"), reason


@pytest.mark.parametrize("failure", ["missing", "round"])
def test_the_worker_says_a_listeners_named_failure_in_one_line(failure, caplog):
    """Before: `doorstep run --once` without X_BEARER_TOKEN printed a traceback ending in
    "listeners.x.MissingCredentials: x: X_BEARER_TOKEN is not set ...", and every listener round
    with an error a ListenerError traceback: the message already says what and why (item 5)."""
    import logging

    from commands.worker import Worker
    from listeners.health import ListenerError
    from listeners.x import MissingCredentials

    error = (MissingCredentials("x: X_BEARER_TOKEN is not set: export X_BEARER_TOKEN=...") if failure == "missing"
             else ListenerError("x: 0 fetched ...; errors: x: search: 401"))

    class Failing:
        name = "listen:x"
        interval_s = 60.0

        def run_once(self) -> None:
            raise error

    worker = Worker(store=None, config=None, pipeline=None)  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING):
        assert worker.run_job(Failing()) is False
    [record] = caplog.records
    assert record.exc_info is None and str(error) in record.getMessage() and "listen:x" in record.getMessage()


# ------------------------------------------------------------------ item 10: CI and install hygiene
def test_ci_waits_for_the_dpkg_lock_installs_chromium_and_not_poppler():
    script = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert "DPkg::Lock::Timeout=600" in script and "install" in script and "chromium" in script
    assert "poppler" not in script and "poppler" not in (REPO / "README.md").read_text(encoding="utf-8")
    assert 'CI="${CI:-true}"' in script


@pytest.mark.parametrize("ci, outcome", [("true", "Failed"), ("", "Skipped")])
def test_the_browser_test_fails_in_ci_when_chromium_is_missing(monkeypatch, tmp_path, ci, outcome):
    from tests.test_e2e_browser import chromium_or_skip

    monkeypatch.setenv("CI", ci)
    with pytest.raises(BaseException) as caught:
        chromium_or_skip(tmp_path / "no-chromium")
    assert type(caught.value).__name__ == outcome


def test_project_licence_is_an_spdx_string_and_the_apprise_warning_is_filtered(tmp_path):
    import subprocess
    import sys
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    assert project["project"]["license"] == "Apache-2.0"
    probe = tmp_path / "test_probe.py"
    probe.write_text("def test_apprise():\n    import apprise\n    apprise.Apprise().add('json://localhost/x')\n")
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-c", str(REPO / "pyproject.toml"),
                          "--rootdir", str(REPO), str(probe)], capture_output=True, text=True, cwd=REPO)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "imghdr" not in run.stdout and "warning" not in run.stdout.lower()


def test_make_installs_the_project_without_a_build_warning(tmp_path):
    """Before: every `make demo` / `make test` on a fresh clone printed setuptools' boxed
    "BuildBackendWarning: Editable installation ... Please be careful with folders in your working
    directory" (its meta-path-finder mode, chosen for a flat layout without a package-dir). The
    editable install the Makefile runs (`pip install -e .`, built in isolation as there) must be quiet."""
    import re
    import subprocess
    import sys

    from importlib.metadata import PackageNotFoundError, version

    try:
        local = int(version("setuptools").split(".")[0]) >= 77  # pyproject's build requirement
    except PackageNotFoundError:
        local = False
    target = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(target)], check=True)
    if local:  # the build backend's editable hook, as pip calls it (seconds, not a minute of pip)
        run = subprocess.run([sys.executable, "-W", "always", "-c", "import sys; from setuptools import build_meta; "
                              "print(build_meta.build_editable(sys.argv[1]))", str(tmp_path)],
                             capture_output=True, text=True, cwd=REPO, timeout=600)
    else:  # what the Makefile runs: pip, building in isolation with a fetched setuptools>=77
        run = subprocess.run([sys.executable, "-m", "pip", "--python", str(target / "bin" / "python"), "install",
                              "--quiet", "--no-deps", "-e", str(REPO)], capture_output=True, text=True,
                             cwd=tmp_path, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    # pip's own "WARNING: ..." lines are about this machine's pip settings; a Python warning
    # ("FILE.py:LINE: CATEGORY: ...", pip calls setuptools' InformationOnly a BuildBackendWarning)
    # is the build backend's, about the project.
    assert not re.search(r"\.py:\d+: \w+: ", run.stdout + run.stderr), run.stdout + run.stderr
    if local:
        import zipfile

        [wheel] = tmp_path.glob("doorstep-*.whl")
        with zipfile.ZipFile(wheel) as whl:  # installed as pip would: unpacked into site-packages
            whl.extractall(target / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages")
    packages = ["doorstep", "listeners", "classifiers", "responders", "console", "commands", "standins"]
    check = subprocess.run([str(target / "bin" / "python"), "-c", "import importlib.util, sys; "
                            "print(*(importlib.util.find_spec(p).origin for p in sys.argv[1:]))", *packages],
                           capture_output=True, text=True, cwd=tmp_path)  # found, not imported: no dependencies here
    assert check.stdout.split() == [str(REPO / p / "__init__.py") for p in packages], check.stdout + check.stderr


def test_the_readme_classify_pipe_works_from_a_real_stdin(tmp_path):
    """`echo '{...}' | doorstep classify`: a real pipe, not click's test stdin (which hid a crash)."""
    import json as json_
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    line = '{"id": 1, "text": "Parcel marked delivered but not here @UPSHelp"}\n'
    run = subprocess.run([sys.executable, "-m", "commands", "--db", str(tmp_path / "x.db"), "classify", "--model",
                          "baseline"], input=line.encode(), capture_output=True, cwd=tmp_path, env=env, timeout=120)
    assert run.returncode == 0, run.stderr.decode()
    row = json_.loads(run.stdout.decode().splitlines()[0])
    assert row["id"] == 1 and row["complaint"] is True


def test_run_once_with_a_failed_job_exits_non_zero_and_names_it(tmp_path, monkeypatch):
    """`doorstep run --once` is what a cron line or a deploy check runs: a job that failed must not
    read as success (it exited 0 with the failure only in the log)."""
    config = tmp_path / "x.toml"
    config.write_text(X_CONFIG, encoding="utf-8")
    monkeypatch.delenv("X_BEARER_TOKEN", raising=False)
    monkeypatch.delenv("DOORSTEP_SECRETS_FILE", raising=False)
    monkeypatch.setenv("X_API_BASE_URL", "http://127.0.0.1:9")
    db = ["--db", str(tmp_path / "x.db"), "--config", str(config)]
    failed = CliRunner().invoke(cli, [*db, "run", "--once"])
    assert failed.exit_code == 1, failed.output
    assert failed.output.splitlines()[-1] == (
        "Error: 1 job failed in this round: listen:x (see the log above); the other jobs ran")
    assert "Traceback" not in failed.output
    ran = CliRunner().invoke(cli, [*db, "run", "--once", "--skip", "listen:x"])
    assert ran.exit_code == 0, ran.output
