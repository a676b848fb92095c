"""The classifier interface, registry, the rules + VADER baseline, and the JSONL contract."""

from __future__ import annotations

import csv
import io
import json
import sys
import types
from collections.abc import Sequence
from pathlib import Path

import pytest

import classifiers
from classifiers import Classifier, classify, default_spec, known_names, load_classifier, register
from classifiers.baseline import BaselineClassifier, sentiment_label, sentiment_scores
from classifiers.jsonl import classify_jsonl
from conftest import require_shared
from doorstep.models import INTENTS, SENTIMENTS, Labels

OUTPUT_KEYS = {
    "id", "sentiment", "sentiment_scores", "complaint", "complaint_score",
    "intent", "intent_scores", "urgency", "needs_review",
}

#: Clear posts, one or more per intent, with the reading a care agent would give them.
CLEAR_POSTS: list[tuple[str, str, bool]] = [
    ("Where is my order #1234? Tracking hasn't updated in 5 days", "where_is_my_order", True),
    ("@UPSHelp any update on my parcel? It's been stuck in Leeds since Tuesday", "where_is_my_order", True),
    ("My parcel was due on Monday and it still hasn't arrived, 3 days late now", "late_delivery", True),
    ("Missed delivery card through the door but I was home all day, nobody knocked", "failed_delivery", True),
    ("Driver said no one was home. Total lie, failed attempt again", "failed_delivery", True),
    ("Tracking says delivered but I never received it. Has my parcel been stolen?", "lost_or_missing", True),
    ("The courier left my parcel in the rain and it's soaked and broken", "damaged_or_wrong", True),
    ("Ordered a blue jumper, got the wrong item in the wrong size", "damaged_or_wrong", True),
    ("I sent the jacket back two weeks ago, when do I get my refund?", "refund_or_return", True),
    ("Been on hold for an hour and nobody answers my emails. Awful customer service", "customer_service", True),
    ("I can't log in to my account and the reset password link doesn't work", "product_or_account", False),
    ("Is the green kettle back in stock? Does my discount code still work?", "product_or_account", False),
    ("Thanks so much, delivery was super quick!", "praise", False),
    ("Just saw your advert on TV, nice song", "other", False),
]


@pytest.fixture(scope="module")
def baseline() -> BaselineClassifier:
    return BaselineClassifier()


# ------------------------------------------------------------------ labels
@pytest.mark.parametrize(("text", "intent", "complaint"), CLEAR_POSTS, ids=[f"{p[1]}-{p[0][:20]}" for p in CLEAR_POSTS])
def test_clear_posts_get_the_obvious_intent_and_complaint(baseline: BaselineClassifier, text: str, intent: str,
                                                          complaint: bool) -> None:
    [labels] = baseline.classify([text])
    assert labels.intent == intent, baseline.explain(text)
    assert labels.complaint is complaint
    assert labels.model == "baseline-vader-rules"


def test_praise_is_positive_and_not_a_complaint(baseline: BaselineClassifier) -> None:
    [labels] = baseline.classify(["Thanks so much, delivery was super quick!"])
    assert (labels.intent, labels.sentiment, labels.complaint) == ("praise", "positive", False)
    assert labels.complaint_score < 0.5
    assert labels.urgency < 0.1


def test_sarcastic_thanks_is_not_praise(baseline: BaselineClassifier) -> None:
    [labels] = baseline.classify(["Thanks for nothing, still waiting for my parcel"])
    assert labels.intent != "praise"
    assert labels.complaint


def test_thanks_with_a_delivery_problem_is_a_complaint(baseline: BaselineClassifier) -> None:
    [labels] = baseline.classify(["Thanks for the reply but where is my parcel? It was due yesterday"])
    assert labels.intent in ("where_is_my_order", "late_delivery")
    assert labels.complaint


def test_negated_damage_word_does_not_count(baseline: BaselineClassifier) -> None:
    assert "damaged_or_wrong" in baseline.explain("The box arrived damaged")
    assert "damaged_or_wrong" not in baseline.explain("The box was not damaged at all")


def test_handles_and_urls_do_not_fire_rules(baseline: BaselineClassifier) -> None:
    found = baseline.explain("@AppleSupport @ReturnsTeam see https://example.com/refund/account?app=1")
    assert found == {}


def test_urgency_ranks_lost_and_shouting_above_a_question_above_praise(baseline: BaselineClassifier) -> None:
    angry, question, happy = baseline.classify([
        "URGENT!!! THIRD TIME MY PARCEL HAS BEEN LOST, I NEED IT TODAY",
        "Where is my order? Tracking has no updates",
        "Lovely service, thank you",
    ])
    assert angry.urgency > question.urgency > happy.urgency
    assert angry.urgency >= 0.8
    assert 0.0 <= happy.urgency <= 1.0


def test_delivery_severity_orders_urgency(baseline: BaselineClassifier) -> None:
    lost, wimo = baseline.classify(["My parcel has been lost", "Where is my parcel"])
    assert lost.intent == "lost_or_missing" and wimo.intent == "where_is_my_order"
    assert lost.urgency > wimo.urgency


def test_scores_are_probabilities_that_agree_with_the_labels(baseline: BaselineClassifier) -> None:
    texts = [text for text, _, _ in CLEAR_POSTS] + ["", "ok", "Worst. Company. Ever.", "😍😍😍"]
    for text, labels in zip(texts, baseline.classify(texts)):
        assert set(labels.sentiment_scores) == set(SENTIMENTS)
        assert set(labels.intent_scores) == set(INTENTS)
        assert sum(labels.sentiment_scores.values()) == pytest.approx(1.0)
        assert sum(labels.intent_scores.values()) == pytest.approx(1.0)
        assert all(0.0 < p < 1.0 for p in labels.intent_scores.values())
        assert max(labels.sentiment_scores, key=labels.sentiment_scores.__getitem__) == labels.sentiment, text
        assert max(labels.intent_scores, key=labels.intent_scores.__getitem__) == labels.intent, text
        assert (labels.complaint_score > 0.5) is labels.complaint, text
        Labels.model_validate(labels.model_dump())  # every field within its declared range


@pytest.mark.parametrize("compound", [-1.0, -0.5, -0.0501, -0.05, -0.0499, 0.0, 0.0499, 0.05, 0.0501, 0.5, 1.0])
def test_sentiment_scores_argmax_is_vaders_label_even_at_the_thresholds(compound: float) -> None:
    scores = sentiment_scores(compound)
    assert sum(scores.values()) == pytest.approx(1.0)
    assert max(scores, key=scores.__getitem__) == sentiment_label(compound)


def test_batch_keeps_order_and_matches_one_by_one(baseline: BaselineClassifier) -> None:
    texts = [text for text, _, _ in CLEAR_POSTS]
    forward = baseline.classify(texts)
    backward = baseline.classify(texts[::-1])
    assert len(forward) == len(texts)
    assert forward == backward[::-1]
    assert forward == [baseline.classify([t])[0] for t in texts]
    assert baseline.classify([]) == []


ODD_TEXTS = [
    "",
    "   \n\t ",
    "where is my parcel " * 600,  # ~11k characters
    "x" * 100_000,  # one enormous word
    "😡😡😡📦💔",
    "طلبي لم يصل بعد، أين الطرد؟",
    "注文した荷物がまだ届きません",
    "<script>alert('refund')</script><b>hello</b> &amp; &lt;bye&gt;",
    "\x00\u202e\u200b\ufeff zero width and control characters",
    "'''''' !!!!!! ?????? ###### @@@@@@",
    "12345 67890",
]


def test_odd_input_is_classified_without_raising(baseline: BaselineClassifier) -> None:
    results = baseline.classify(ODD_TEXTS)
    assert len(results) == len(ODD_TEXTS)
    for labels in results:
        Labels.model_validate(labels.model_dump())


def test_posts_with_nothing_to_read_or_not_english_need_review(baseline: BaselineClassifier) -> None:
    empty, blank, numbers, arabic, japanese, spanish, english = baseline.classify([
        "", "   ", "12345 67890",
        "طلبي لم يصل بعد، أين الطرد؟",
        "注文した荷物がまだ届きません",
        "¿Dónde está mi pedido? Lleva una semana de retraso y no hay respuesta",
        "Where is my parcel? The tracking has no updates",
    ])
    assert all(lab.needs_review for lab in (empty, blank, numbers, arabic, japanese, spanish))
    assert not english.needs_review


def test_english_with_accents_or_no_function_words_is_not_flagged(baseline: BaselineClassifier) -> None:
    for labels in baseline.classify(["Parcel lost again UPS useless", "The café order never arrived, naïve of me"]):
        assert not labels.needs_review


def test_two_intents_in_a_tie_need_review(baseline: BaselineClassifier) -> None:
    [labels] = baseline.classify(["Wrong size sent, need to return it"])
    first, second = sorted(labels.intent_scores.values(), reverse=True)[:2]
    assert first - second < 0.1
    assert labels.needs_review


def test_explain_names_the_phrases_behind_the_intent(baseline: BaselineClassifier) -> None:
    found = baseline.explain("Where is my order #1234? Tracking hasn't updated in 5 days")
    assert "where is my order" in found["where_is_my_order"]
    assert found["urgency"] == ["5 days"]


def test_baseline_satisfies_the_protocol() -> None:
    assert isinstance(BaselineClassifier(), Classifier)


@pytest.mark.shared
def test_real_customer_tweets_classify_and_flag_japanese() -> None:
    path = require_shared("data/twcs-sample/twcs_sample.csv")
    with path.open(encoding="utf-8") as handle:
        texts = [row["text"] for row in csv.DictReader(handle)][:1500]
    results = BaselineClassifier().classify(texts)
    assert len(results) == len(texts)
    found = {labels.intent for labels in results}
    assert {"where_is_my_order", "customer_service", "praise", "other"} <= found
    japanese = [lab for text, lab in zip(texts, results) if sum("\u3040" <= ch <= "\u30ff" for ch in text) > 10]
    assert japanese, "expected some Japanese AmazonHelp replies in the sample"
    assert all(lab.needs_review for lab in japanese)


# ---------------------------------------------------------------- registry
class _Recorder:
    """A classifier double that remembers the batches it was given."""

    def __init__(self, tag: str = "") -> None:
        self.name = f"recorder{tag}"
        self.batches: list[int] = []
        self.inner = BaselineClassifier()

    def classify(self, texts: Sequence[str]) -> list[Labels]:
        self.batches.append(len(texts))
        return self.inner.classify(texts)


@pytest.fixture
def clean_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(classifiers, "_registry", {})
    monkeypatch.setattr(classifiers, "_default", None)
    monkeypatch.delenv(classifiers.ENV_VAR, raising=False)


def test_load_baseline_by_name(clean_registry: None) -> None:
    assert isinstance(load_classifier("baseline"), BaselineClassifier)


def test_default_is_baseline_without_a_model(clean_registry: None, monkeypatch: pytest.MonkeyPatch,
                                             tmp_path: Path) -> None:
    monkeypatch.setattr(classifiers, "MODEL_DIR", tmp_path / "model")
    assert default_spec() == "baseline"
    assert isinstance(load_classifier(), BaselineClassifier)
    assert isinstance(load_classifier(None), BaselineClassifier)


def test_default_is_onnx_when_the_model_and_backend_are_there(clean_registry: None, monkeypatch: pytest.MonkeyPatch,
                                                              tmp_path: Path) -> None:
    (tmp_path / "model.onnx").write_bytes(b"not really a model")
    monkeypatch.setattr(classifiers, "MODEL_DIR", tmp_path)
    backend = types.ModuleType("classifiers.onnx_backend")
    backend.OnnxClassifier = lambda model_dir=None: _Recorder(f"-onnx-{model_dir}")  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "classifiers.onnx_backend", backend)
    assert default_spec() == "onnx"
    assert load_classifier().name == "recorder-onnx-None"
    assert load_classifier("onnx:/models/v2").name == "recorder-onnx-/models/v2"


def test_default_falls_back_when_the_onnx_backend_does_not_import(clean_registry: None,
                                                                  monkeypatch: pytest.MonkeyPatch,
                                                                  tmp_path: Path) -> None:
    (tmp_path / "model.onnx").write_bytes(b"x")
    monkeypatch.setattr(classifiers, "MODEL_DIR", tmp_path)
    monkeypatch.setitem(sys.modules, "classifiers.onnx_backend", None)  # makes the import raise ImportError
    assert default_spec() == "baseline"


def test_environment_variable_picks_the_default(clean_registry: None, monkeypatch: pytest.MonkeyPatch) -> None:
    register("recorder")(_Recorder)
    monkeypatch.setenv(classifiers.ENV_VAR, "recorder")
    assert default_spec() == "recorder"
    assert load_classifier().name == "recorder"
    assert classify(["where is my parcel"])[0].intent == "where_is_my_order"
    assert classifiers._default is not None and classifiers._default.batches == [1]


def test_registered_factory_gets_the_argument(clean_registry: None) -> None:
    register("recorder")(_Recorder)
    assert load_classifier("recorder:-x").name == "recorder-x"
    assert "recorder" in known_names()


def test_unknown_name_lists_the_known_ones(clean_registry: None) -> None:
    with pytest.raises(ValueError, match="unknown classifier 'nope'") as info:
        load_classifier("nope")
    for name in ("baseline", "onnx", "transformers:<model>"):
        assert name in str(info.value)


def test_transformers_needs_a_model(clean_registry: None) -> None:
    with pytest.raises(ValueError, match="needs a model"):
        load_classifier("transformers")
    with pytest.raises(ValueError, match="needs a model"):
        load_classifier("transformers:")


def test_backend_without_its_dependencies_is_a_clear_error(clean_registry: None,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "classifiers.transformers_backend", None)
    with pytest.raises(ValueError, match="classifier 'transformers' is not available"):
        load_classifier("transformers:some-org/some-model")


def test_register_refuses_names_with_a_colon() -> None:
    with pytest.raises(ValueError):
        register("a:b")


def test_classify_convenience_takes_an_explicit_classifier() -> None:
    recorder = _Recorder()
    result = classify(["a", "b", "c"], recorder)
    assert len(result) == 3 and recorder.batches == [3]


# ------------------------------------------------------------------- JSONL
def _run(lines: Sequence[str], classifier: Classifier | None = None, **kwargs) -> tuple[int, list[dict]]:
    out = io.StringIO()
    count = classify_jsonl(io.StringIO("".join(lines)), out, classifier or BaselineClassifier(), **kwargs)
    return count, [json.loads(line) for line in out.getvalue().splitlines()]


def test_jsonl_round_trip_keeps_ids_and_order(baseline: BaselineClassifier) -> None:
    posts = [(7, CLEAR_POSTS[0][0]), ("abc", CLEAR_POSTS[6][0]), (0, ""), ("007", CLEAR_POSTS[12][0]),
             (2**40, "طلبي لم يصل")]
    lines = [json.dumps({"id": i, "text": t, "extra": [1]}) + "\n" for i, t in posts]
    lines.insert(2, "\n")
    lines.insert(4, "   \n")
    count, rows = _run(lines)
    assert count == len(posts)
    assert [row["id"] for row in rows] == [i for i, _ in posts]  # ints stay ints, "007" stays a string
    expected = baseline.classify([t for _, t in posts])
    for row, labels in zip(rows, expected):
        assert set(row) == OUTPUT_KEYS
        assert (row["intent"], row["sentiment"], row["complaint"], row["needs_review"]) == (
            labels.intent, labels.sentiment, labels.complaint, labels.needs_review)
        assert sum(row["sentiment_scores"].values()) == pytest.approx(1.0, abs=1e-3)
        assert sum(row["intent_scores"].values()) == pytest.approx(1.0, abs=1e-3)
        assert row["urgency"] == pytest.approx(labels.urgency, abs=1e-4)


def test_jsonl_batches_do_not_change_the_answer() -> None:
    lines = [json.dumps({"id": n, "text": text}) + "\n" for n, (text, _, _) in enumerate(CLEAR_POSTS)]
    recorder = _Recorder()
    count, small = _run(lines, recorder, batch_size=4)
    _, large = _run(lines)
    assert small == large
    assert recorder.batches == [4, 4, 4, 2] and count == 14


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ('{"id": 3, "text": "unterminated}\n', "line 4: not valid JSON"),
        ('{"id": 3}\n', 'line 4: missing "text"'),
        ('{"id": 3, "text": 42}\n', 'line 4: "text" must be a string, got int'),
        ('{"id": 3, "text": null}\n', 'line 4: "text" must be a string, got NoneType'),
        ('{"text": "hi"}\n', 'line 4: missing "id"'),
        ('{"id": true, "text": "hi"}\n', 'line 4: "id" must be a string or an integer'),
        ('["id", "text"]\n', "line 4: expected a JSON object"),
    ],
)
def test_jsonl_bad_line_names_its_number_and_keeps_the_lines_before(bad: str, message: str) -> None:
    good = [json.dumps({"id": n, "text": "where is my parcel"}) + "\n" for n in (1, 2)]
    infile = io.StringIO(good[0] + "\n" + good[1] + bad + '{"id": 9, "text": "after"}\n')
    out = io.StringIO()
    with pytest.raises(ValueError) as info:
        classify_jsonl(infile, out, BaselineClassifier(), batch_size=256)
    assert str(info.value).startswith(message)
    assert [json.loads(line)["id"] for line in out.getvalue().splitlines()] == [1, 2]
    assert infile.readline() == '{"id": 9, "text": "after"}\n'  # stopped there: the rest was never read


def test_jsonl_tolerates_a_byte_order_mark() -> None:
    count, rows = _run(['\ufeff{"id": "a", "text": "thanks!"}\n'])
    assert count == 1 and rows[0]["id"] == "a"


def test_jsonl_progress_goes_to_stderr_only_when_asked(capsys: pytest.CaptureFixture[str]) -> None:
    lines = [json.dumps({"id": n, "text": "hi"}) + "\n" for n in range(3)]
    _, quiet = _run(lines, progress=False)
    assert capsys.readouterr().err == ""
    _, loud = _run(lines, progress=True)
    captured = capsys.readouterr()
    assert "classified 3 posts" in captured.err
    assert captured.out == ""
    assert loud == quiet


def test_jsonl_refuses_a_zero_batch_size() -> None:
    with pytest.raises(ValueError, match="batch_size"):
        _run([], batch_size=0)


def test_jsonl_rejects_a_classifier_that_drops_labels() -> None:
    class Dropper:
        name = "dropper"

        def classify(self, texts: Sequence[str]) -> list[Labels]:
            return BaselineClassifier().classify(texts)[:-1]

    with pytest.raises(RuntimeError, match="returned 1 labels for 2 texts"):
        _run(['{"id": 1, "text": "a"}\n', '{"id": 2, "text": "b"}\n'], Dropper())
