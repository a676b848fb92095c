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
    assert line.endswith("text: Field required: add it (and 1 more: created_at)"), line
