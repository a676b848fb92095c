"""The classifier command line as a lead uses it after a day of corrections (review audit, findings 4-8).

* ``doorstep train --head-only --feedback-file BAD --out classifiers/model`` deleted the shipped model's
  intent head before the file was read; a failed run left a half-built ``--out`` that loaded silently.
* A ``--feedback-file`` in the wrong shape was folded in as nothing (exit 0), or failed naming the wrong
  row, no file, the wrong remedy, or a Python exception name.
* ``doorstep classify`` stopped on a lone surrogate (a cut-off emoji) with no line number and nothing written.
* ``doorstep evaluate --model DIR`` (what ``train`` tells the lead to use) was an "unknown classifier".
* ``train --with-feedback`` counted correction rows (one per field) as "agent corrections".

The head-only tests put a stand-in for :func:`classifiers.head_fit.fit_into` in place: it behaves as the
real one did (empties the folder's head first, reads the corrections after) but fits nothing, so they take
a second, and never touch ``classifiers/model``: every model here is a copy in ``tmp_path``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from commands.cli import cli
from doorstep.store import Store

SHIPPED = Path(__file__).resolve().parent.parent / "classifiers" / "model"
MODEL_FILES = ("model.onnx", "tokenizer.json", "config.json", "calibration.json", "intent_head.json",
               "real_tweet_cv.json")


# ---------------------------------------------------------------------- helpers
def _fake_model(folder: Path) -> Path:
    """A model folder with the files a head-only refit copies (the stand-in fit never reads them)."""
    folder.mkdir(parents=True)
    (folder / "model.onnx").write_bytes(b"onnx-bytes")
    (folder / "tokenizer.json").write_text("{}", encoding="utf-8")
    (folder / "config.json").write_text(json.dumps({"name": "doorstep-minilm-mt-v13", "recipe": {}}), encoding="utf-8")
    (folder / "calibration.json").write_text("{}", encoding="utf-8")
    (folder / "intent_head.json").write_text('{"head": "shipped"}', encoding="utf-8")
    (folder / "real_tweet_cv.json").write_text('{"cv": "shipped"}', encoding="utf-8")
    return folder


def _fingerprint(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def _leftovers(parent: Path, keep: set[str]) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name not in keep)


@pytest.fixture
def fits(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Replace the head fit with a quick stand-in; the list records each call (folder, corrections)."""
    import classifiers.head_fit

    calls: list[dict[str, Any]] = []

    def fit_into(model_dir: Any, shared: Path, feedback_rows: Any = None, log: Callable[[str], None] = print,
                 **_: Any) -> dict[str, Any]:
        from classifiers.train import feedback_examples

        model_dir = Path(model_dir)
        (model_dir / "intent_head.json").unlink(missing_ok=True)  # as the real fit did: encoder alone first
        examples = feedback_examples(list(feedback_rows or []), 3.0)
        calls.append({"dir": model_dir, "rows": list(feedback_rows or [])})
        (model_dir / "intent_head.json").write_text('{"head": "refitted"}', encoding="utf-8")
        (model_dir / "real_tweet_cv.json").write_text('{"cv": "refitted"}', encoding="utf-8")
        return {"rows": {"feedback": sum(1 for e in examples if e.intent >= 0)}}

    monkeypatch.setattr(classifiers.head_fit, "fit_into", fit_into)
    return calls


@pytest.fixture
def shared(tmp_path: Path) -> Path:
    """A shared folder the stand-in fit is content with (it reads none of it)."""
    folder = tmp_path / "shared"
    (folder / "data").mkdir(parents=True)
    return folder


def _train(tmp_path: Path, *args: str, db: str | None = None):
    return CliRunner().invoke(cli, ["--db", db or str(tmp_path / "x.db"), "train", "--head-only", *args])


def _error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("Error:")]


# ---------------------------------------------------------------------- finding 4: the model in --out is safe
def test_a_bad_feedback_file_leaves_the_model_named_by_out_as_it_was(tmp_path: Path) -> None:
    """Before: the real fit rewrote model.onnx and deleted intent_head.json, then read the corrections."""
    from conftest import require_shared

    shared_folder = require_shared("data/twcs-labelled/twcs_labelled.jsonl").parents[2]
    model = tmp_path / "model"
    shutil.copytree(SHIPPED, model)
    before = _fingerprint(model)
    bad = tmp_path / "fb.csv"
    bad.write_text("text,intent\nparcel late,late\n", encoding="utf-8")
    result = _train(tmp_path, "--shared", str(shared_folder), "--feedback-file", str(bad), "--out", str(model))
    assert result.exit_code == 1, result.output
    assert _fingerprint(model) == before
    assert _leftovers(tmp_path, {"model", "fb.csv", "x.db"}) == []


def test_a_refit_that_fails_part_way_leaves_out_as_it_was_and_no_partial_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shared: Path) -> None:
    import classifiers.head_fit

    def broken_fit(model_dir: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        (Path(model_dir) / "intent_head.json").unlink()
        raise ValueError(f"{model_dir}/model.onnx: could not find the pooled vector that feeds intent_head")

    monkeypatch.setattr(classifiers.head_fit, "fit_into", broken_fit)
    model = _fake_model(tmp_path / "model")
    before = _fingerprint(model)
    result = _train(tmp_path, "--shared", str(shared), "--out", str(model))
    assert result.exit_code == 1 and len(_error_lines(result.output)) == 1, result.output
    assert _fingerprint(model) == before
    fresh = tmp_path / "m5"
    result = _train(tmp_path, "--shared", str(shared), "--out", str(fresh))
    assert result.exit_code == 1
    assert not fresh.exists()  # no half-built folder that `classify --model m5` would load
    assert _leftovers(tmp_path, {"model", "shared", "x.db"}) == []


def test_a_successful_refit_replaces_out_whole_and_keeps_what_else_was_there(
        tmp_path: Path, fits: list[dict[str, Any]], shared: Path) -> None:
    model = _fake_model(tmp_path / "model")
    (model / "NOTES.txt").write_text("kept", encoding="utf-8")
    feedback = tmp_path / "fb.jsonl"
    feedback.write_text(json.dumps({"text": "my parcel is late again", "intent": "late_delivery"}) + "\n", encoding="utf-8")
    result = _train(tmp_path, "--shared", str(shared), "--out", str(model), "--feedback-file", str(feedback))
    assert result.exit_code == 0, result.output
    assert fits and fits[0]["dir"] != model  # built beside it, moved into place at the end
    assert (model / "intent_head.json").read_text(encoding="utf-8") == '{"head": "refitted"}'
    assert (model / "NOTES.txt").read_text(encoding="utf-8") == "kept"
    config = json.loads((model / "config.json").read_text(encoding="utf-8"))
    assert config["head_feedback_rows"] == 1
    assert _leftovers(tmp_path, {"model", "shared", "x.db", "fb.jsonl"}) == []
    assert f"--model {model}" in result.output  # said once the model is there, not before


def test_out_naming_a_folder_with_no_model_in_it_is_refused_before_any_work(
        tmp_path: Path, fits: list[dict[str, Any]], shared: Path) -> None:
    """Replacing a folder whole must never swallow a folder of other things (``--out .``, ``--out ~``)."""
    other = tmp_path / "reports"
    other.mkdir()
    (other / "week47.html").write_text("report", encoding="utf-8")
    result = _train(tmp_path, "--shared", str(shared), "--out", str(other))
    assert result.exit_code == 1 and not fits
    assert "holds no model" in _error_lines(result.output)[0]
    assert (other / "week47.html").read_text(encoding="utf-8") == "report"


# ---------------------------------------------------------------------- finding 5: feedback files
FEEDBACK_CASES = {
    # name: (file name, bytes, words the one error line must hold)
    "no label column": ("fb_cols.csv", b'text,label\n"my parcel is late again",late_delivery\n"where is my order",'
                        b"where_is_my_order\n",
                        ["fb_cols.csv: no intent, sentiment or complaint column", "text, label"]),
    "unknown intent": ("fb_badval.csv", b'text,intent\n"parcel late",late\n',
                       ["fb_badval.csv: row 2: field 'intent' has unknown value 'late'", "late_delivery"]),
    "no text column": ("fb_notext.csv", b"post,intent\nparcel late,late_delivery\n",
                       ["fb_notext.csv: no text column", "post, intent"]),
    "empty label row": ("fb_blank.csv", b'text,intent\n"parcel late",late_delivery\n"where is it",\n',
                        ["fb_blank.csv: row 3: no intent, sentiment or complaint"]),
    "JSON list line": ("fb_arr.jsonl", b'["x","late_delivery"]\n',
                       ["fb_arr.jsonl: line 1: expected a JSON object"]),
    "Latin-1": ("fb_latin1.jsonl", b'{"text":"ok","intent":"praise"}\n{"text":"caf\xe9 late","intent":"late_delivery"}\n',
                ["fb_latin1.jsonl: line 2: not valid UTF-8", "save the file as UTF-8"]),
    "empty text": ("fb_text.jsonl", b'{"text":"ok","intent":"praise"}\n\n{"text":" ","intent":"praise"}\n',
                   ["fb_text.jsonl: line 3: field 'text' is empty"]),
    "bad JSON": ("fb_json.jsonl", b'{"text":"ok","intent":"praise"\n', ["fb_json.jsonl: line 1: not valid JSON"]),
    # README audit: a value spanning two lines made the message name the line where the row ended
    "two-line value": ("fb4.csv", b'text,intent\n"parcel late\nagain",late\n"ok",praise\n',
                       ["fb4.csv: row 2: field 'intent' has unknown value 'late'"]),
}


@pytest.mark.parametrize("case", list(FEEDBACK_CASES))
def test_a_feedback_file_in_the_wrong_shape_is_one_line_naming_file_row_and_field(
        case: str, tmp_path: Path, fits: list[dict[str, Any]], shared: Path) -> None:
    name, data, words = FEEDBACK_CASES[case]
    source = tmp_path / name
    source.write_bytes(data)
    out = tmp_path / "m4"
    result = _train(tmp_path, "--shared", str(shared), "--feedback-file", str(source), "--out", str(out))
    assert result.exit_code == 1, result.output
    errors = _error_lines(result.output)
    assert len(errors) == 1 and "Traceback" not in result.output and "--debug" not in result.output, result.output
    for word in words:
        assert word in errors[0], errors[0]
    assert not fits and not out.exists()


def test_a_missing_feedback_file_says_check_the_path(tmp_path: Path, fits: list[dict[str, Any]], shared: Path) -> None:
    result = _train(tmp_path, "--shared", str(shared), "--feedback-file", str(tmp_path / "nope.csv"))
    errors = _error_lines(result.output)
    assert result.exit_code == 1 and len(errors) == 1, result.output
    assert "nope.csv: not found; check the path" in errors[0] and "DOORSTEP_SHARED" not in errors[0]


def test_feedback_column_names_and_labels_are_read_whatever_their_case(
        tmp_path: Path, fits: list[dict[str, Any]], shared: Path) -> None:
    source = tmp_path / "fb_case.csv"
    source.write_bytes(b'\xef\xbb\xbfText,Intent\n"my parcel is late again",late_delivery\n"where is it",Where is my order\n')
    out = tmp_path / "m"
    result = _train(tmp_path, "--shared", str(shared), "--feedback-file", str(source), "--out", str(out))
    assert result.exit_code == 0, result.output
    assert [(r["text"], r["intent"]) for r in fits[0]["rows"]] == [("my parcel is late again", "late_delivery"),
                                                                   ("where is it", "Where is my order")]
    assert json.loads((out / "config.json").read_text(encoding="utf-8"))["head_feedback_rows"] == 2  # both read


def _corrections(store: Store, rows: list[tuple[int, str, str, str, str]]) -> None:
    with store.transaction():
        for mention_id, text, field, old, new in rows:
            store.db.execute(
                "insert into label_corrections (mention_id, text, field, old_value, new_value, corrected_by, at) "
                "values (?, ?, ?, ?, ?, ?, ?)", [mention_id, text, field, old, new, "agent", "2026-11-16T09:00:00Z"])


def test_a_bad_feedback_file_row_is_numbered_in_the_file_not_after_the_databases_corrections(
        tmp_path: Path, db_url: str, fits: list[dict[str, Any]], shared: Path) -> None:
    store = Store(db_url)
    _corrections(store, [(1, "my parcel never came", "intent", "other", "lost_or_missing")] * 3)
    store.close()
    source = tmp_path / "fb_badval.csv"
    source.write_text('text,intent\n"fine",praise\n"parcel late",late\n', encoding="utf-8")
    result = _train(tmp_path, "--shared", str(shared), "--with-feedback", "--feedback-file", str(source), db=db_url)
    errors = _error_lines(result.output)
    assert result.exit_code == 1 and len(errors) == 1, result.output
    assert f"{source}: row 3: field 'intent' has unknown value 'late'" in errors[0]


# ---------------------------------------------------------------------- finding 8 (count): what --with-feedback says
def test_with_feedback_counts_posts_and_label_changes_and_says_what_a_head_only_refit_leaves_out(
        tmp_path: Path, db_url: str, fits: list[dict[str, Any]], shared: Path) -> None:
    store = Store(db_url)
    _corrections(store, [
        # post 538 reviewed on the queue: intent changed, sentiment and complaint confirmed (one row each)
        (538, "parcel came smashed", "intent", "product_or_account", "damaged_or_wrong"),
        (538, "parcel came smashed", "sentiment", "negative", "negative"),
        (538, "parcel came smashed", "complaint", "True", "True"),
        # post 847: only the sentiment changed
        (847, "driver never knocked", "sentiment", "neutral", "negative"),
        # post 911 corrected on the case page, the complaint flag only
        (911, "where is my order", "complaint", "False", "True"),
        # post 1001 confirmed as the model read it (rows with no change, as the queue stored them)
        (1001, "lovely service thanks", "intent", "praise", "praise"),
        (1001, "lovely service thanks", "sentiment", "positive", "positive"),
    ])
    store.close()
    result = _train(tmp_path, "--shared", str(shared), "--with-feedback", "--out", str(tmp_path / "m"), db=db_url)
    assert result.exit_code == 0, result.output
    assert "folding in 3 posts corrected by the team (3 label changes) and 1 confirmed as the model read it" \
        in result.output
    assert "agent corrections" not in result.output
    assert ("a head-only refit learns intents only: it uses the intent of 2 posts and leaves out 2 sentiment or "
            "complaint changes (a full `doorstep train --with-feedback` uses them)") in result.output
    assert len(fits) == 1 and {r["text"] for r in fits[0]["rows"]} == {
        "parcel came smashed", "driver never knocked", "where is my order", "lovely service thanks"}


# ---------------------------------------------------------------------- finding 6: classify and lone surrogates
G2 = ('{"id":1,"text":"where is my parcel"}\n{"id":2,"text":"ok thanks"}\n{"id":3,"text":"bad \\ud83d text"}\n'
      '{"id":4,"text":"fine"}\n')


@pytest.mark.parametrize("model", ["onnx", "baseline"])
def test_classify_names_the_line_of_a_lone_surrogate_in_text_after_writing_the_lines_before(
        tmp_path: Path, model: str) -> None:
    if model == "onnx" and not (SHIPPED / "model.onnx").is_file():
        pytest.skip("the shipped model is not in classifiers/model/")
    source = tmp_path / "g2.jsonl"
    source.write_text(G2, encoding="utf-8")
    out = tmp_path / "out.jsonl"
    result = CliRunner().invoke(cli, ["classify", "--model", model, "-i", str(source), "-o", str(out)])
    assert result.exit_code == 1
    assert _error_lines(result.output) == [
        f'Error: {source}: line 3: "text" holds a lone surrogate (a cut-off emoji) at character 5; '
        "remove it or export the posts again"], result.output
    assert [json.loads(line)["id"] for line in out.read_text(encoding="utf-8").splitlines()] == [1, 2]


def test_classify_names_the_line_of_a_lone_surrogate_in_id(tmp_path: Path) -> None:
    source = tmp_path / "f.jsonl"
    source.write_text('{"id":"a1","text":"where is my parcel"}\n{"id":"\\ud800","text":"x"}\n', encoding="utf-8")
    out = tmp_path / "out.jsonl"
    result = CliRunner().invoke(cli, ["classify", "--model", "baseline", "-i", str(source), "-o", str(out)])
    assert result.exit_code == 1
    assert _error_lines(result.output) == [
        f'Error: {source}: line 2: "id" holds a lone surrogate (a cut-off emoji) at character 1; '
        "remove it or export the posts again"], result.output
    assert [json.loads(line)["id"] for line in out.read_text(encoding="utf-8").splitlines()] == ["a1"]


def test_the_onnx_classifier_reads_a_lone_surrogate_instead_of_failing_the_batch() -> None:
    """What the pipeline hands it comes from listeners, not from a file a person can fix: one cut-off emoji
    must not fail the posts batched with it (the Classifier protocol: odd input never raises)."""
    if not (SHIPPED / "model.onnx").is_file():
        pytest.skip("the shipped model is not in classifiers/model/")
    from classifiers.onnx_backend import OnnxClassifier

    labels = OnnxClassifier(SHIPPED).classify(["my parcel is late \ud83d", "where is my order"])
    assert len(labels) == 2 and labels[1].intent == "where_is_my_order"


# ---------------------------------------------------------------------- finding 7: evaluate --model DIR
def test_evaluate_takes_the_folder_train_wrote(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if not (SHIPPED / "model.onnx").is_file():
        pytest.skip("the shipped model is not in classifiers/model/")
    import classifiers.evaluate
    from classifiers import load_classifier

    folder = tmp_path / "doorstep-model-20261205-180000"
    folder.mkdir()
    for name in MODEL_FILES:
        shutil.copy(SHIPPED / name, folder / name)
    loaded: list[Path] = []

    def fake_evaluate(spec: str | None = None, **_: Any) -> dict[str, Any]:
        loaded.append(Path(load_classifier(spec).model_dir))
        return {}

    monkeypatch.setattr(classifiers.evaluate, "evaluate", fake_evaluate)
    result = CliRunner().invoke(cli, ["--db", str(tmp_path / "x.db"), "evaluate", "--model", str(folder)])
    assert result.exit_code == 0, result.output
    assert loaded == [folder]
    # as `python -m classifiers.evaluate --model DIR` and `classifier = "DIR"` in doorstep.toml give it
    assert Path(load_classifier(str(folder)).model_dir) == folder


def test_an_unknown_classifier_names_the_forms_that_are_accepted(tmp_path: Path) -> None:
    from classifiers import load_classifier

    with pytest.raises(ValueError) as raised:
        load_classifier("onxx:./doorstep-model-1")
    assert "onnx:<model folder>" in str(raised.value) and "a model folder" in str(raised.value)
    missing = tmp_path / "doorstep-model-gone"
    result = CliRunner().invoke(cli, ["--db", str(tmp_path / "x.db"), "evaluate", "--model", str(missing)])
    assert result.exit_code == 1
    assert _error_lines(result.output) == [
        f"Error: --model {missing}: no such model directory; give baseline, onnx, a local model directory "
        "or a Hugging Face model id"], result.output


def test_a_head_only_refit_from_a_file_says_which_corrections_it_leaves_out(
        tmp_path: Path, fits: list[dict[str, Any]], shared: Path) -> None:
    """README audit finding 1: `train --head-only --feedback-file` dropped the file's sentiment and
    complaint corrections without a word ("folding in 1 row", exit 0), though the README says it tells."""
    source = tmp_path / "fb2.csv"
    source.write_text('text,intent,sentiment,complaint\n"parcel smashed",damaged_or_wrong,negative,yes\n'
                      '"so happy",,positive,\n', encoding="utf-8")
    result = _train(tmp_path, "--shared", str(shared), "--feedback-file", str(source), "--out", str(tmp_path / "m"))
    assert result.exit_code == 0, result.output
    assert ("a head-only refit learns intents only: it uses the intent of 1 post and leaves out "
            "3 sentiment or complaint labels") in result.output, result.output


def test_a_staging_folder_left_by_a_killed_run_is_removed_by_the_next(tmp_path: Path) -> None:
    """Verification re-run: a `train` killed by a timeout left a hidden 19 MB `.m.building-*` folder beside --out."""
    import os

    from classifiers.train import staging_dir

    out = tmp_path / "m"
    dead = tmp_path / ".m.building-999999999-abc123"  # no such process
    (dead / "model.onnx").parent.mkdir(parents=True)
    (dead / "model.onnx").write_bytes(b"half")
    alive = tmp_path / f".m.building-{os.getpid()}-def456"  # a run still going: left alone
    alive.mkdir()
    fresh = staging_dir(out)
    assert not dead.exists() and alive.exists() and fresh.is_dir()
