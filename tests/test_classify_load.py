"""What ``doorstep classify`` pays for before its first post, and what it leaves out (issue 15).

Issue 15 measures ``doorstep classify`` in posts per second *after* load, with load ≤ 3 s and peak
memory ≤ 600 MB. Two findings of 2026-12-05 became these tests: the command imported the store
(sqlite-utils, and through it pandas and psycopg: ~90 MB and 0.4 s it never uses), because every
command's config checks and the command context imported it at the top; and the language
identifier's model was read on the first post that needed it, inside the first batch's time.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

HEAVY = ("pandas", "sqlite_utils", "psycopg", "doorstep.store")


def test_doorstep_classify_imports_neither_the_store_nor_pandas(tmp_path):
    source = tmp_path / "posts.jsonl"
    source.write_text(json.dumps({"id": 1, "text": "@UPSHelp my parcel is still not here"}) + "\n", encoding="utf-8")
    out = tmp_path / "labels.jsonl"
    script = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from commands.cli import cli\n"
        f"result = CliRunner().invoke(cli, ['--db', {str(tmp_path / 'x.db')!r}, 'classify', '--model', 'baseline',"
        f" '-i', {str(source)!r}, '-o', {str(out)!r}])\n"
        "assert result.exit_code == 0, result.output\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    run = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip() == "", f"`doorstep classify` imported {run.stdout.strip()}"
    assert json.loads(out.read_text(encoding="utf-8").splitlines()[0])["id"] == 1
    assert not (tmp_path / "x.db").exists()  # nor did it make a database


def test_the_report_settings_check_is_the_same_function_where_reports_live():
    # commands/cli.py checks [reports] through doorstep.report_settings; the responders and the
    # tests use doorstep.reports: both names must be one function with one set of rules.
    from doorstep import report_settings, reports

    assert reports.report_settings is report_settings.report_settings
    assert reports.ReportSettings is report_settings.ReportSettings


def test_loading_the_shipped_model_reads_the_language_identifier_too():
    pytest.importorskip("onnxruntime")
    from classifiers import language
    from classifiers.onnx_backend import MODEL_DIR, OnnxClassifier

    if not (MODEL_DIR / "model.onnx").is_file():
        pytest.skip("the shipped model is not in classifiers/model/")
    language._identifier.cache_clear()
    OnnxClassifier()
    assert language._identifier.cache_info().currsize == 1, "the first post would pay for reading it"
