"""Resource limits of templates and the classify command's errors (issue 14 item 12)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from commands.cli import cli
from doorstep.config import parse_config
from responders.config import responders_settings
from responders.templates import TemplateError, render_source


@pytest.mark.parametrize("source", [
    "{% for i in range(100001) %}x{% endfor %}",
    "{% for i in range(9000) %}{% for j in range(9000) %}{% endfor %}{% endfor %}",
    "{{ 'a' * 10**8 }}",
    "{{ 'a'|center(100000000) }}",
    "{{ '%0100000000d' % 1 }}",
    "{% for i in range(5000) %}0123456789{% endfor %}",
    "{{ (10 ** 100000) ** 100000 }}",
])
def test_template_that_builds_too_much_is_a_template_error(source: str) -> None:
    with pytest.raises(TemplateError, match="template_limits"):
        render_source(source, {}, confirmed=True)


def test_template_limits_are_configured_in_doorstep_toml() -> None:
    config = parse_config({"responders": {"template_limits": {"max_output_chars": 100}}})
    limits = responders_settings(config).template_limits
    assert limits.max_output_chars == 100 and limits.max_loop_iterations == 10_000  # the safe default
    assert render_source("{{ 'ab' * 50 }}", {}, confirmed=True, limits=limits) == "ab" * 50
    with pytest.raises(TemplateError, match="at most 100 "):
        render_source("{{ 'ab' * 51 }}", {}, confirmed=True, limits=limits)
    assert render_source("Hi {{ name }}, {{ range(3)|join(',') }}", {"name": "Jo"}, confirmed=True) == "Hi Jo, 0,1,2"


def _lines(n: int) -> bytes:
    return b"".join(json.dumps({"id": i, "text": f"where is my parcel number {i}?"}).encode() + b"\n"
                    for i in range(1, n + 1))


@pytest.mark.parametrize("via_stdin", [False, True])
def test_classify_bad_utf8_names_the_line_and_keeps_the_good_prefix(tmp_path: Path, via_stdin: bool) -> None:
    data = _lines(300) + b'{"id": 301, "text": "caf\xe9 au lait"}\n' + _lines(2)
    source = tmp_path / "posts.jsonl"
    source.write_bytes(data)
    out = tmp_path / "labels.jsonl"
    args = ["classify", "--model", "baseline", "-o", str(out)] + ([] if via_stdin else ["-i", str(source)])
    result = CliRunner().invoke(cli, args, input=data if via_stdin else None)
    assert result.exit_code == 1
    assert "line 301: not valid UTF-8" in result.output and "Traceback" not in result.output
    written = [json.loads(line)["id"] for line in out.read_text(encoding="utf-8").splitlines()]
    assert written == list(range(1, 301))  # every good line before it, in order, nothing after


def test_classify_missing_model_is_one_line(tmp_path: Path) -> None:
    source = tmp_path / "posts.jsonl"
    source.write_bytes(_lines(1))
    result = CliRunner().invoke(cli, ["classify", "-i", str(source), "--model", "/nonexistent"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "Error: --model /nonexistent: no such model directory; give baseline, onnx, a local model directory "
        "or a Hugging Face model id"]


def test_classify_takes_the_folder_doorstep_train_wrote(tmp_path: Path) -> None:
    """`doorstep train` ends with "use it with --model <folder>"; before, that folder was read as a Hugging
    Face model and failed ("Unrecognized model ... Should have a `model_type` key"). A folder holding
    model.onnx is an ONNX model, as ``onnx:<folder>`` is."""
    import shutil

    from classifiers import MODEL_DIR

    if not (MODEL_DIR / "model.onnx").is_file():
        pytest.skip("the shipped model is not in classifiers/model/")
    folder = tmp_path / "doorstep-model-20261205T180000"
    shutil.copytree(MODEL_DIR, folder)
    source = tmp_path / "posts.jsonl"
    source.write_text(json.dumps({"id": 1, "text": "@AmazonHelp my parcel arrived smashed"}) + "\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["--db", str(tmp_path / "x.db"), "classify", "-i", str(source),
                                      "--model", str(folder)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output.strip().splitlines()[-1])["intent"] == "damaged_or_wrong"


def test_classify_folder_without_a_model_is_one_line(tmp_path: Path) -> None:
    """Before: a folder with no model in it was handed to transformers, whose five-line tokenizer error
    ("... You need to have sentencepiece or tiktoken installed ...") never said the folder was empty."""
    source = tmp_path / "posts.jsonl"
    source.write_bytes(_lines(1))
    empty = tmp_path / "not-a-model"
    empty.mkdir()
    result = CliRunner().invoke(cli, ["--db", str(tmp_path / "x.db"), "classify", "-i", str(source),
                                      "--model", str(empty)])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"Error: --model {empty}: no model in this directory (a folder from `doorstep train` holds model.onnx, "
        "a Hugging Face one config.json); give baseline, onnx, a local model directory or a Hugging Face model id"]


def test_classify_bad_line_names_the_file(tmp_path: Path) -> None:
    """Before: "Error: line 1: not valid JSON (...)" left out which file (a CSV given by mistake, here)."""
    source = tmp_path / "posts.csv"
    source.write_text("id,text\n1,where is my parcel\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["classify", "-i", str(source), "-o", str(tmp_path / "out.jsonl"),
                                      "--model", "baseline"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"Error: {source}: line 1: not valid JSON (Expecting value at column 1)"], result.output
    piped = CliRunner().invoke(cli, ["classify", "--model", "baseline"], input="not json\n")
    assert piped.output.strip() == "Error: standard input: line 1: not valid JSON (Expecting value at column 1)"


def test_an_import_row_with_several_faults_names_every_field(tmp_path: Path) -> None:
    """Before: "row 2: text: Field required: add it (and 1 more)": the second fault (a created_at that is
    no time) was only found on the next run."""
    source = tmp_path / "posts.jsonl"
    source.write_text('{"channel": "x", "external_id": "2", "created_at": "yesterday"}\n', encoding="utf-8")
    result = CliRunner().invoke(cli, ["--db", str(tmp_path / "x.db"), "import", "mentions", str(source)])
    assert result.exit_code == 1
    [line] = [l for l in result.output.splitlines() if ": row 1:" in l]
    # Since the exports audit (2026-12-07) each field's fault comes with its remedy on the row's one line.
    assert line.endswith("text: Field required: add it; created_at: Input should be a valid datetime or date, input "
                         "is too short: write a time as ISO 8601, e.g. 2026-11-16T09:00:00Z"), line


ORDERS_CSV = "number,customer_id,placed_at,customer_name\nA100,c1,2026-11-01T10:00:00Z,Ann Lee\n"


@pytest.mark.parametrize(("args", "env", "problem"), [
    (["--db", ""], {}, "--db: empty; give"),
    ([], {"DOORSTEP_DB": ""}, "--db: empty (from $DOORSTEP_DB); give"),
    (["--db", "sqlite:///"], {}, "--db: 'sqlite:///' names no file; give"),
    (["--db", "sqlite://"], {}, "--db: 'sqlite://' names no file; give"),
    (["--db", ":memory:"], {}, "--db: ':memory:' keeps nothing once the command ends; give"),
])
def test_an_empty_db_setting_is_refused_not_an_in_memory_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                   args: list[str], env: dict[str, str],
                                                                   problem: str) -> None:
    """Before: an empty --db/DOORSTEP_DB or "sqlite:///" opened SQLite's throwaway in-memory database:
    "1 new", exit 0, and nothing kept anywhere."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DOORSTEP_DB", raising=False)
    monkeypatch.delenv("DOORSTEP_CONFIG", raising=False)
    (tmp_path / "o.csv").write_text(ORDERS_CSV, encoding="utf-8")
    result = CliRunner().invoke(cli, [*args, "import", "orders", "o.csv"], env=env)
    assert result.exit_code != 0, result.output
    [line] = result.output.strip().splitlines()
    assert line.startswith(f"Error: {problem} a file path (e.g. ./doorstep.db) or a postgresql:// URL"), line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.csv"]


def test_the_python_api_still_opens_an_explicit_in_memory_store() -> None:
    from doorstep.dialect import database_target
    from doorstep.store import Store

    assert database_target(":memory:") == database_target("sqlite:///:memory:") == ":memory:"
    for empty in ("", "sqlite:///", "sqlite://"):
        with pytest.raises(ValueError, match="names no file|empty"):
            database_target(empty)
    Store(":memory:").close()


def test_a_misspelt_channel_section_is_refused_with_the_known_names(tmp_path: Path) -> None:
    """Before: [channels.mastadon] was ignored, so no listener ran and nothing said so."""
    cfg = tmp_path / "cfg.toml"
    cfg.write_text('[channels.mastadon]\nhashtags = ["x"]\n', encoding="utf-8")
    result = CliRunner().invoke(cli, ["--db", str(tmp_path / "t.db"), "--config", str(cfg), "outbox", "list"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"Error: {cfg}: channels.mastadon: unknown channel (known: x, mastodon, bluesky, webhook); "
        "did you mean mastodon?"], result.output


def test_a_misspelt_classifier_is_refused_when_any_command_starts(tmp_path: Path) -> None:
    """README audit 6: `classifier = "nonsense"` passed the start-up checks and failed only at the first import,
    with "ValueError: unknown classifier ..." naming neither the file nor the key."""
    from doorstep.store import Store

    cfg = tmp_path / "cfg.toml"
    cfg.write_text('classifier = "nonsense"\n', encoding="utf-8")
    Store(str(tmp_path / "t.db")).close()
    result = CliRunner().invoke(cli, ["--db", str(tmp_path / "t.db"), "--config", str(cfg), "outbox", "list"])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: {cfg}: classifier: unknown classifier 'nonsense'"), lines
    cfg.write_text('classifier = "baseline"\n', encoding="utf-8")
    assert CliRunner().invoke(cli, ["--db", str(tmp_path / "t.db"), "--config", str(cfg), "outbox", "list"]).exit_code == 0


def test_a_week_beyond_the_calendar_names_week_and_the_supported_years(tmp_path: Path) -> None:
    """Before: "Error: OverflowError: date value out of range (run with --debug for the traceback)"."""
    from doorstep.store import Store

    db = tmp_path / "r.db"
    Store(str(db)).close()
    result = CliRunner().invoke(cli, ["--db", str(db), "report", "weekly", "--week", "9999-W52",
                                      "--out", str(tmp_path / "rep")])
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1] == (
        "Error: Invalid value for --week: week '9999-W52': outside the supported years 1970 to 9998"), result.output
    fine = CliRunner().invoke(cli, ["--db", str(db), "report", "weekly", "--week", "9998-W52", "--format", "html",
                                    "--out", str(tmp_path / "rep")])
    assert fine.exit_code == 0, fine.output


def test_the_secrets_file_is_checked_when_a_command_starts(tmp_path: Path) -> None:
    """Before: "ConfigError: webhook: DOORSTEP_WEBHOOK_SECRET is not set", blaming the secret, not the path."""
    missing = tmp_path / "nosecrets.env"
    result = CliRunner().invoke(cli, ["--db", str(tmp_path / "t.db"), "user", "list"],
                                env={"DOORSTEP_SECRETS_FILE": str(missing), "DOORSTEP_CONFIG": None})
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"Error: DOORSTEP_SECRETS_FILE={missing}: file not found; fix the path or unset the variable"]


@pytest.mark.parametrize("kind", ["mentions", "orders"])
def test_ctrl_c_during_an_import_says_how_far_it_got_and_that_a_rerun_finishes_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    """Before: "Aborted!", with 2,250 of 7,680 rows written and nothing saying so."""
    from doorstep.store import Store

    cfg = tmp_path / "cfg.toml"
    cfg.write_text("[imports]\nbatch_rows = 2\n", encoding="utf-8")
    if kind == "mentions":
        source = tmp_path / "m.jsonl"
        source.write_text("".join(json.dumps({"channel": "x", "external_id": str(i), "text": f"parcel {i} late",
                                              "created_at": f"2026-11-20T1{i}:00:00Z"}) + "\n" for i in range(5)),
                          encoding="utf-8")
        extra = ["--classifier", "baseline", "--classify-processes", "0"]
    else:
        source = tmp_path / "o.csv"
        source.write_text("number,customer_id,placed_at,customer_name\n" + "".join(
            f"A{i},c{i},2026-11-01T10:00:00Z,Ann {i}\n" for i in range(5)), encoding="utf-8")
        extra = []
    real = Store.write_transaction
    calls = []

    def interrupted_on_the_second_batch(self: Store):  # type: ignore[no-untyped-def]
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self)

    db = tmp_path / "i.db"
    args = ["--db", str(db), "--config", str(cfg), "import", kind, str(source), *extra]
    with monkeypatch.context() as patch:
        patch.setattr(Store, "write_transaction", interrupted_on_the_second_batch)
        result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1
    assert "Aborted!" not in result.output and "Traceback" not in result.output
    assert result.output.strip().splitlines()[-1] == (
        f"Error: {source}: interrupted (Ctrl-C) after writing 2 of 5 valid rows; running the same import again "
        "finishes it (rows already written are skipped)"), result.output
    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 0, again.output
    assert "3 new" in again.output and "2 unchanged" in again.output, again.output


def test_classify_an_unknown_model_name_offline_is_one_line_at_once(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A misspelt --model is taken for a Hugging Face id; without a way to the Hub that printed 45 s of
    "Retrying in 8s" lines before the one-line error (docs audit, 2026-12-06). Now: one line, at once."""
    import socket

    with socket.socket() as probe:  # a port nobody listens on: the Hub "cannot be reached"
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed}")
    source = tmp_path / "posts.jsonl"
    source.write_bytes(_lines(1))
    result = CliRunner().invoke(cli, ["--db", str(tmp_path / "x.db"), "classify", "-i", str(source),
                                      "--model", "onnxx"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"Error: --model onnxx: not a local model directory, and the Hugging Face Hub (http://127.0.0.1:{closed}) "
        "cannot be reached to look it up; give baseline, onnx, a local model directory or a Hugging Face model id"]
