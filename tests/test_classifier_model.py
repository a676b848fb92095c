"""The shipped classifier model and its backends. Fast: CI never trains.

The ONNX tests use the committed artifact in classifiers/model/; the transformers backend is
tested with a tiny BERT built here in tmp_path (no downloads) and skipped when the optional
``train`` extras (torch, transformers) are not installed.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from pathlib import Path

import pytest

from doorstep.models import DELIVERY_INTENTS, INTENTS, SENTIMENTS, Labels

from conftest import REPO, require_shared

MODEL_DIR = Path(__file__).resolve().parent.parent / "classifiers" / "model"
FIXTURE = Path(__file__).resolve().parent / "fixtures" / "classifier_recorded.json"

ODD_TEXTS = {
    "empty": "",
    "spaces": "   \n\t ",
    "long": "my parcel is late again " * 420,  # ~10k characters
    "emoji": "📦📦😡😡🔥 where is it 🙄🙄",
    "emoji_only": "😡😡😡",
    "rtl_arabic": "@AmazonHelp لم يصل طلبي بعد، أين الطرد؟",
    "rtl_hebrew": "החבילה שלי לא הגיעה עדיין",
    "html": "<p>My <b>order</b> &amp; refund?</p><script>alert('x')</script> <a href='http://x.y'>link</a> &lt;3",
    "control": "\x00\x01 parcel \u200b\u200e lost \ufeff",
    "numbers": "1234567890 #8812 00001",
}
NON_ENGLISH = [
    "Mi paquete no ha llegado todavía y nadie me responde, es una vergüenza",
    "Mon colis n'est toujours pas arrivé et le service client ne répond pas",
    "Mein Paket ist noch nicht angekommen und der Kundendienst antwortet nicht",
    "荷物がまだ届いていません。どうなっていますか？",
    "Моя посылка до сих пор не пришла, верните деньги",
]


@pytest.fixture(scope="module")
def onnx_model():
    from classifiers.onnx_backend import OnnxClassifier

    assert (MODEL_DIR / "model.onnx").is_file(), "the shipped model classifiers/model/model.onnx is missing"
    return OnnxClassifier()


def _sums_to_one(scores: dict[str, float]) -> bool:
    return math.isclose(sum(scores.values()), 1.0, abs_tol=1e-5) and all(0.0 <= v <= 1.0 for v in scores.values())


# ---------------------------------------------------------------------- artifact
def test_artifact_is_complete_and_small() -> None:
    names = {"model.onnx", "tokenizer.json", "config.json", "calibration.json"}
    assert names <= {p.name for p in MODEL_DIR.iterdir()}
    total = sum(p.stat().st_size for p in MODEL_DIR.iterdir() if p.is_file())
    assert total <= 40 * 1024 * 1024, f"model directory is {total / 1e6:.1f} MB, over the 40 MB budget"
    config = json.loads((MODEL_DIR / "config.json").read_text())
    assert tuple(config["labels"]["intent"]) == INTENTS
    assert tuple(config["labels"]["sentiment"]) == SENTIMENTS
    calibration = json.loads((MODEL_DIR / "calibration.json").read_text())
    assert all(t > 0 for t in calibration["temperature"].values())


def test_artifact_keeps_residual_layernorms_unfused() -> None:
    """The speed recipe (MODEL_CARD.md): int8 attention and matmuls, plain LayerNormalization."""
    onnx = pytest.importorskip("onnx", reason="onnx is an optional 'train' extra")
    ops = {node.op_type for node in onnx.load(str(MODEL_DIR / "model.onnx")).graph.node}
    assert {"QAttention", "MatMulInteger", "LayerNormalization"} <= ops
    assert "SkipLayerNormalization" not in ops


def test_default_spec_loads_the_trained_model(monkeypatch: pytest.MonkeyPatch) -> None:
    from classifiers import default_spec, load_classifier

    monkeypatch.delenv("DOORSTEP_CLASSIFIER", raising=False)
    assert default_spec() == "onnx"
    model = load_classifier("onnx")
    assert model.classify(["hello"])[0].model == model.name


def test_onnx_spec_accepts_a_model_directory() -> None:
    from classifiers import load_classifier

    model = load_classifier(f"onnx:{MODEL_DIR}")
    assert len(model.classify(["a", "b"])) == 2


def test_missing_model_directory_is_a_clear_error(tmp_path: Path) -> None:
    from classifiers.onnx_backend import OnnxClassifier

    with pytest.raises(ValueError, match="missing model.onnx"):
        OnnxClassifier(tmp_path)


# ---------------------------------------------------------------------- behaviour
def test_scores_are_probabilities(onnx_model) -> None:
    labels = onnx_model.classify(["@UPSHelp my parcel says delivered but it isn't here", "love you guys!", "ok"])
    for lab in labels:
        assert isinstance(lab, Labels)
        assert _sums_to_one(lab.sentiment_scores) and _sums_to_one(lab.intent_scores)
        assert set(lab.intent_scores) == set(INTENTS)
        assert lab.sentiment == max(lab.sentiment_scores, key=lab.sentiment_scores.get)
        assert lab.intent == max(lab.intent_scores, key=lab.intent_scores.get)
        assert lab.complaint == (lab.complaint_score >= 0.5)
        assert 0.0 <= lab.urgency <= 1.0


def test_batch_equals_one_by_one(onnx_model) -> None:
    texts = [
        "@AmazonHelp tracking says delivered but there is no parcel anywhere",
        "@AmazonHelp thank you so much, lovely driver and the parcel came early!",
        "@RoyalMail driver left a card saying I was out. I was in all day",
        "watching the football tonight",
        "@Tesco my order arrived with smashed eggs all over the shopping",
        ODD_TEXTS["long"],
        "",
    ]
    batch = onnx_model.classify(texts)
    for text, together in zip(texts, batch):
        alone = onnx_model.classify([text])[0]
        assert (alone.intent, alone.sentiment, alone.complaint) == (together.intent, together.sentiment, together.complaint)
        if text:
            # int8 activations are scaled per batch, so scores move with the batch's other posts (the
            # care-tweet head reads the standardised pooled vector, MODEL_CARD.md "Known limits"): on these
            # posts up to 0.19 with v9 (v8 0.10, v7 0.08); on 653 real tweets alone vs in calls of 16 the
            # 95th percentile is 0.09 for v8 and v9 alike. A row mix-up moves them by far more; the labels
            # of these clear posts must not move at all
            for key, value in alone.intent_scores.items():
                assert together.intent_scores[key] == pytest.approx(value, abs=0.22), (text, key)
            assert together.complaint_score == pytest.approx(alone.complaint_score, abs=0.06), text


def test_order_is_kept_when_lengths_differ(onnx_model) -> None:
    short, long = "ok", "@UPSHelp my parcel was marked as delivered yesterday but it never arrived, where is it?"
    forward = onnx_model.classify([long, short, long])
    assert forward[0].intent_scores == pytest.approx(forward[2].intent_scores, abs=1e-6)
    assert onnx_model.classify([short])[0].intent == forward[1].intent


@pytest.mark.parametrize("key", sorted(ODD_TEXTS))
def test_odd_texts_do_not_crash(onnx_model, key: str) -> None:
    (lab,) = onnx_model.classify([ODD_TEXTS[key]])
    assert _sums_to_one(lab.sentiment_scores) and _sums_to_one(lab.intent_scores)
    if key in ("empty", "spaces", "numbers", "emoji_only", "rtl_arabic", "rtl_hebrew"):
        assert lab.needs_review


@pytest.mark.parametrize("text", ["@LarkspurHelp 🤬🤬🤬 📦🚚❌", "@LarkspurHelp 😡😡😡👎", "@LarkspurHelp 📦❓❓",
                                  "@LarkspurHelp https://t.co/abc123 😡", "@LarkspurHelp @UPSHelp 👎👎"])
def test_a_post_of_emoji_to_our_handle_goes_to_review_and_is_not_read_as_praise(onnx_model, text: str) -> None:
    """Languages audit, finding 1: "@LarkspurHelp 🤬🤬🤬 📦🚚❌" was positive praise, not for review, and offered the
    "thank you" template: the tokenizer has no emoji (the model reads the handle and [UNK]), and the letters of the
    handle counted as words to read, so the no-words rule never sent it to review (as it does without the handle)."""
    (lab,) = onnx_model.classify([text])
    assert lab.needs_review, lab
    assert lab.intent != "praise" and lab.sentiment != "positive", lab


def test_angry_emoji_read_negative_and_happy_emoji_positive(onnx_model) -> None:
    """The same audit: with no words, clear emoji are the only evidence of the mood (still for review)."""
    angry, happy = onnx_model.classify(["@LarkspurHelp 🤬🤬🤬 📦🚚❌", "@LarkspurHelp 👍😍🙏"], addressed=[True, True])
    assert angry.sentiment == "negative" and angry.complaint and angry.needs_review, angry
    assert happy.sentiment == "positive" and not happy.complaint and happy.needs_review, happy


@pytest.mark.parametrize("text", NON_ENGLISH)
def test_non_english_is_flagged_for_review(onnx_model, text: str) -> None:
    (lab,) = onnx_model.classify([text])
    assert lab.needs_review


def test_clear_english_delivery_problem_is_trusted(onnx_model) -> None:
    (lab,) = onnx_model.classify(["@UPSHelp tracking says delivered but my parcel is not here, nobody has it"])
    assert lab.is_delivery and lab.complaint and lab.sentiment == "negative"


def test_urgency_ranks_a_lost_parcel_above_praise(onnx_model) -> None:
    lost, thanks = onnx_model.classify([
        "@DPD_UK parcel marked delivered but NOT HERE!! third time this month, need it today",
        "@DPD_UK thanks, lovely driver today",
    ])
    assert lost.urgency > thanks.urgency + 0.3


def test_empty_input_gives_empty_output(onnx_model) -> None:
    assert onnx_model.classify([]) == []


# ---------------------------------------------------------------------- recorded predictions
def test_agrees_with_recorded_predictions(onnx_model) -> None:
    recorded = json.loads(FIXTURE.read_text(encoding="utf-8"))
    assert recorded["model"] == onnx_model.name
    labels = onnx_model.classify([r["text"] for r in recorded["examples"]])
    for row, lab in zip(recorded["examples"], labels):
        assert lab.intent == row["intent"], row["text"]
        assert lab.sentiment == row["sentiment"], row["text"]
        assert lab.complaint == row["complaint"], row["text"]
        assert lab.intent_scores[row["intent"]] == pytest.approx(row["intent_score"], abs=0.03), row["text"]
        assert lab.complaint_score == pytest.approx(row["complaint_score"], abs=0.03), row["text"]


# ---------------------------------------------------------------------- helpers without a model
def test_prepare_text_normalises_like_training() -> None:
    from classifiers.onnx_backend import MAX_CHARS, prepare_text

    assert prepare_text("@115712 see https://t.co/abc &amp; <b>now</b>") == "@user see http & now"
    assert prepare_text("@UPSHelp hi") == "@UPSHelp hi"
    assert len(prepare_text("x" * 50_000)) == MAX_CHARS


def test_urgency_signals() -> None:
    from classifiers.onnx_backend import urgency_signals

    assert urgency_signals("thanks for the help") == 0.0
    assert urgency_signals("STILL NOT DELIVERED, NEED IT TODAY!!") > 0.9


def test_feedback_rows_become_examples() -> None:
    from classifiers.train import feedback_examples

    rows = [
        {"text": "parcel in the hedge again", "field": "intent", "new_value": "damaged_or_wrong"},
        {"text": "parcel in the hedge again", "field": "complaint", "new_value": "true"},
        {"text": "cheers", "sentiment": "positive", "intent": "praise"},
        {"text": "ignored", "field": "urgency", "new_value": "0.9"},
    ]
    examples = {e.text: e for e in feedback_examples(rows, weight=3.0)}
    assert set(examples) == {"parcel in the hedge again", "cheers"}
    hedge = examples["parcel in the hedge again"]
    assert INTENTS[hedge.intent] == "damaged_or_wrong" and hedge.complaint == 1 and hedge.sentiment == -1
    assert hedge.weight == 3.0
    with pytest.raises(ValueError, match="feedback row 1: field 'intent'"):
        feedback_examples([{"text": "x", "intent": "nonsense"}], weight=1.0)
    with pytest.raises(ValueError, match="feedback row 2: field 'text'"):
        feedback_examples([{"text": "x", "intent": "other"}, {"text": " "}], weight=1.0)


def test_delivery_examples_held_out_is_separate() -> None:
    from classifiers.delivery_examples import held_out_examples, training_examples

    train, held = training_examples(copies=1), held_out_examples()
    assert len(train) >= 250 and len(held) >= 80
    assert {e.intent for e in held} == set(INTENTS)
    assert not {e.text for e in train} & {e.text for e in held}
    assert sum(e.intent in DELIVERY_INTENTS for e in train) >= 150


def test_metrics_on_a_worked_example() -> None:
    from classifiers.evaluate import binary_f1, ece, macro_f1, macro_recall

    gold = ["negative", "negative", "neutral", "positive"]
    pred = ["negative", "neutral", "neutral", "neutral"]
    # recalls: negative 1/2, neutral 1/1, positive 0/1
    assert macro_recall(gold, pred, SENTIMENTS) == pytest.approx((0.5 + 1 + 0) / 3)
    # F1: negative 2*1*0.5/1.5=2/3, neutral 2*(1/3)*1/(4/3)=0.5, positive 0
    assert macro_f1(gold, pred, SENTIMENTS) == pytest.approx((2 / 3 + 0.5 + 0) / 3)
    assert binary_f1([True, True, False], [True, False, True]) == pytest.approx(0.5)
    assert ece([0.9, 0.9], [True, False]) == pytest.approx(0.4)


# ---------------------------------------------------------------------- transformers backend
def test_label_mapping_rules() -> None:
    from classifiers.transformers_backend import label_mapping

    assert label_mapping({0: "LABEL_0", 1: "LABEL_1", 2: "LABEL_2"}) == (
        {0: "negative", 1: "neutral", 2: "positive"}, None)
    assert label_mapping({0: "POSITIVE", 1: "NEGATIVE"}) == ({0: "positive", 1: "negative"}, None)
    with pytest.raises(ValueError, match="NLI"):
        label_mapping({0: "entailment", 1: "neutral", 2: "contradiction"})
    with pytest.raises(ValueError, match="cannot map"):
        label_mapping({0: "sports", 1: "politics"})


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("torch", reason="torch is an optional 'train' extra")
    transformers = pytest.importorskip("transformers", reason="transformers is an optional 'train' extra")
    import torch

    directory = tmp_path_factory.mktemp("tiny-bert")
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "my", "parcel", "is", "late", "love", "it", "thanks",
             "where", "order", "!", "?", ".", ",", "@", "the", "not", "here", "##s"]
    vocab = directory / "vocab.txt"
    vocab.write_text("\n".join(words) + "\n", encoding="utf-8")
    tokenizer = transformers.BertTokenizerFast(vocab_file=str(vocab), do_lower_case=True)
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=len(words), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37,
        max_position_embeddings=64, num_labels=3,
        id2label={0: "negative", 1: "neutral", 2: "positive"}, label2id={"negative": 0, "neutral": 1, "positive": 2},
    )
    transformers.BertForSequenceClassification(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def test_transformers_backend_with_a_tiny_local_model(tiny_model_dir: Path) -> None:
    from classifiers import load_classifier

    model = load_classifier(f"transformers:{tiny_model_dir}")
    texts = ["my parcel is late!", "love it, thanks", "", "where is my order?" * 200, "📦 لم يصل"]
    labels = model.classify(texts)
    assert len(labels) == len(texts)
    for lab in labels:
        assert _sums_to_one(lab.sentiment_scores)
        assert lab.intent == "other" and lab.intent_scores["other"] == 1.0
        assert lab.complaint_score == pytest.approx(lab.sentiment_scores["negative"])
        assert lab.model == f"transformers:{tiny_model_dir}"
    assert labels[2].needs_review and labels[4].needs_review
    # batching does not change a post's scores (float32, no quantisation)
    alone = model.classify([texts[0]])[0]
    assert alone.sentiment_scores == pytest.approx(labels[0].sentiment_scores, abs=1e-5)


def test_transformers_backend_refuses_nli_models(tiny_model_dir: Path, tmp_path: Path) -> None:
    import transformers

    from classifiers.transformers_backend import TransformersClassifier

    config = transformers.AutoConfig.from_pretrained(tiny_model_dir)
    config.id2label = {0: "entailment", 1: "neutral", 2: "contradiction"}
    config.label2id = {v: k for k, v in config.id2label.items()}
    transformers.BertForSequenceClassification(config).save_pretrained(tmp_path)
    transformers.AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="NLI"):
        TransformersClassifier(str(tmp_path))


# ---------------------------------------------------------------------- our labels of real tweets
def test_twcs_labels_are_valid_and_split_by_customer() -> None:
    import csv

    from classifiers.train import TWCS_LABELS_PATH, load_twcs_labels

    tweets = require_shared("data/twcs-sample/twcs_sample.csv")
    with tweets.open(encoding="utf-8", newline="") as handle:
        author = {r["tweet_id"]: r["author_id"] for r in csv.DictReader(handle)}
    with TWCS_LABELS_PATH.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    customers = {split: {author[r["tweet_id"]] for r in rows if r["split"] == split} for split in ("train", "validation", "test")}
    # one customer's thread never straddles training and the sets that judge the model
    assert not customers["train"] & (customers["validation"] | customers["test"])
    assert len({r["tweet_id"] for r in rows}) == len(rows)
    shared = tweets.parents[2]
    sizes = {split: len(load_twcs_labels(shared, split)) for split in ("train", "validation", "test")}
    assert sizes == {split: sum(r["split"] == split for r in rows) for split in sizes}
    assert sizes["test"] == 104 and sizes["train"] > 400


def test_every_relabel_in_the_log_is_applied_to_the_labels() -> None:
    """The guide wins (issue 15): a tweet re-read with LABELLING_GUIDE.md carries its newest reading.

    ``classifiers/twcs_relabels.csv`` is the log of those re-readings (oldest first: old and new
    labels, the guide section, who and when); ``twcs_labels.csv`` must hold the last one of each.
    On 2026-12-04 thirty were recorded and not applied, which left evaluation gold that the guide
    contradicts."""
    import csv

    from classifiers.train import TWCS_LABELS_PATH

    with TWCS_LABELS_PATH.open(encoding="utf-8", newline="") as handle:
        labels = {r["tweet_id"]: r for r in csv.DictReader(handle)}
    with (TWCS_LABELS_PATH.parent / "twcs_relabels.csv").open(encoding="utf-8", newline="") as handle:
        newest = {r["tweet_id"]: r for r in csv.DictReader(handle)}
    assert len(newest) > 300
    for tweet_id, relabel in newest.items():
        row = labels[tweet_id]
        assert row["split"] == relabel["split"], tweet_id
        assert row["intent"] == relabel["new_intent"], tweet_id
        assert row["complaint"] == relabel["new_complaint"], tweet_id
        if relabel["new_sentiment"]:
            assert row["sentiment"] == relabel["new_sentiment"], tweet_id
        assert relabel["by"] and relabel["on"], tweet_id


def test_every_twcs_tweet_was_read_twice_and_every_disagreement_adjudicated() -> None:
    """The twcs validation and test gold judges every model (issue 15: "evaluation that cannot flatter"), and
    the train split teaches it, so both must follow the guide the same way. Every labelled tweet was read a
    second time, blind (``classifiers/twcs_second_reading.csv``: validation and test first, the train split
    a round later); wherever the two readings differ, an adjudicator decided by the guide and the log's newest
    reading of the tweet says so (``twcs_relabels.csv``), so no label is one reader's word where two readers
    disagreed."""
    import csv

    from doorstep.models import INTENTS, SENTIMENTS

    from classifiers.train import TWCS_LABELS_PATH

    with TWCS_LABELS_PATH.open(encoding="utf-8", newline="") as handle:
        gold = {r["tweet_id"]: r for r in csv.DictReader(handle)}
    with (TWCS_LABELS_PATH.parent / "twcs_second_reading.csv").open(encoding="utf-8", newline="") as handle:
        second = {r["tweet_id"]: r for r in csv.DictReader(handle)}
    with (TWCS_LABELS_PATH.parent / "twcs_relabels.csv").open(encoding="utf-8", newline="") as handle:
        newest = {r["tweet_id"]: r for r in csv.DictReader(handle)}
    assert set(second) == set(gold)
    for tweet_id, row in second.items():
        assert row["intent"] in INTENTS and row["complaint"] in ("0", "1") and row["sentiment"] in SENTIMENTS, tweet_id
        assert "blind second reading" in row["by"], tweet_id
    fields = ("intent", "complaint", "sentiment")
    disputed = [t for t in gold if any(gold[t][f] != second[t][f] for f in fields)]
    assert disputed, "a second reading that always agrees is not a second reading"
    for tweet_id in disputed:
        assert newest[tweet_id]["note"].startswith("adjudicated"), tweet_id


def test_a_bad_twcs_label_names_file_row_and_column(tmp_path: Path) -> None:
    from classifiers.train import load_twcs_labels

    tweets = require_shared("data/twcs-sample/twcs_sample.csv")
    bad = tmp_path / "labels.csv"
    bad.write_text("tweet_id,split,intent,complaint,sentiment\n2,train,other,0,\n3,train,late_parcel,1,negative\n")
    with pytest.raises(ValueError, match=r"labels.csv: row 3: column 'intent' has unexpected value 'late_parcel'"):
        load_twcs_labels(tweets.parents[2], "train", bad)
    bad.write_text("tweet_id,split,intent,complaint,sentiment\n999999999,train,other,0,\n")
    with pytest.raises(ValueError, match="row 2: tweet_id 999999999 is not in"):
        load_twcs_labels(tweets.parents[2], "train", bad)


def test_random_tweet_complaint_labels_load_and_were_read_twice_where_claimed(tmp_path: Path) -> None:
    """Complaint labels of random TweetEval tweets (issue 15, "merely negative" tweets called complaints):
    ids only, every id found in ../shared, the evaluation (validation) tweets apart from the training
    ones, and the second reading (kappa quoted in MODEL_CARD.md) recorded beside the first."""
    import csv

    from classifiers.train import RANDOM_COMPLAINTS_PATH, load_random_complaints

    val = require_shared("data/tweeteval-sentiment/val.tsv")
    shared = val.parents[2]
    with RANDOM_COMPLAINTS_PATH.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len({(r["set"], r["id"]) for r in rows}) == len(rows)
    loaded = {w: load_random_complaints(shared, w) for w in ("tweeteval_val", "tweeteval_train")}
    assert len(loaded["tweeteval_val"]) + len(loaded["tweeteval_train"]) == len(rows)
    # every negative validation tweet is labelled, so precision on merely negative tweets is measured on all of them
    assert sum(r["sentiment"] == "negative" for r in loaded["tweeteval_val"]) == 312
    # the ninth round's 1,200 more negative training tweets: the random negatives a complaint head could learn from
    train_negative = [r for r in loaded["tweeteval_train"] if r["sentiment"] == "negative"]
    assert len(train_negative) >= 1600 and 0.05 < sum(r["complaint"] for r in train_negative) / len(train_negative) < 0.2
    for which, at_least in (("tweeteval_val", 150), ("tweeteval_train", 100)):
        second = [r for r in rows if r["second_complaint"] and r["set"] == which]
        assert len(second) >= at_least and all(r["second_by"] != r["by"] for r in second)
        agree = sum(r["complaint"] == r["second_complaint"] for r in second) / len(second)
        assert agree > 0.95, which
    bad = tmp_path / "labels.csv"
    bad.write_text("set,id,complaint,unsure,kind\ntweeteval_val,1,2,0,mood\n")
    with pytest.raises(ValueError, match=r"labels.csv: row 2: column 'complaint' has unexpected value '2'"):
        load_random_complaints(shared, "tweeteval_val", bad)
    bad.write_text("set,id,complaint,unsure,kind\ntweeteval_val,99999,1,0,mood\n")
    with pytest.raises(ValueError, match="row 2: id 99999 is not in"):
        load_random_complaints(shared, "tweeteval_val", bad)


def test_review_intent_labels_name_packaging_or_service_reviews_and_bad_rows_name_the_row(tmp_path: Path) -> None:
    """Our intents for CESAMARD reviews (issue 15, eighth round): record numbers only, each one a
    review CESAMARD marks as touching packaging or service, every intent in the taxonomy, the
    second reading recorded where there was one; a wrong row is named, not a traceback."""
    import csv

    from classifiers.train import REVIEW_INTENTS_PATH, _read_csv, load_review_intents

    source = require_shared("data/cesamard-reviews/cesamard_aspect.csv")
    shared = source.parents[2]
    with REVIEW_INTENTS_PATH.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len({r["record"] for r in rows}) == len(rows) == 996
    with source.open(encoding="utf-8", newline="") as handle:
        aspects = [[a.strip().lower() for a in row[12:20:2]] for row in list(csv.reader(handle))[1:]]
    assert all({"packaging", "service"} & set(aspects[int(r["record"]) - 2]) for r in rows)
    reviews = _read_csv(source)
    loaded = load_review_intents(shared)
    assert len(loaded) == len(rows) and all(e.intent >= 0 for e in loaded)
    first = int(rows[0]["record"])
    assert reviews[first - 2]["Title"].strip() in loaded[0].text  # the record number points at the review read
    second = [r for r in rows if r["second_reading"]]
    assert len(second) >= 100
    assert sum(r["intent"] == r["second_reading"] for r in second) / len(second) > 0.85
    bad = tmp_path / "intents.csv"
    bad.write_text("record,intent,sure,labeller,second_reading\n5,parcel,1,x,\n")
    with pytest.raises(ValueError, match=r"intents.csv: row 2: column 'intent' has unexpected value 'parcel'"):
        load_review_intents(shared, bad)
    bad.write_text("record,intent,sure,labeller,second_reading\n99999,praise,1,x,\n")
    with pytest.raises(ValueError, match="row 2: record 99999 is not in"):
        load_review_intents(shared, bad)


def test_parcel_tweet_labels_name_training_tweets_and_bad_rows_name_the_row(tmp_path: Path) -> None:
    """Our labels of TweetEval's parcel-word tweets (issue 15, ninth round): tweet ids of the *train*
    split only (validation and test are evaluation), every intent in the taxonomy, the late, failed and
    lost parcels the care tweets lack among them, a blind second reading of 100 that mostly agrees; a
    wrong row is named, not a traceback."""
    import csv

    from classifiers.train import PARCEL_TWEETS_PATH, load_parcel_tweets

    source = require_shared("data/tweeteval-sentiment/train.tsv")
    shared = source.parents[2]
    with PARCEL_TWEETS_PATH.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len({r["tweet_id"] for r in rows}) == len(rows) >= 500
    loaded = load_parcel_tweets(shared)
    assert len(loaded) == len(rows) and all(e.intent >= 0 and e.complaint in (0, 1) for e in loaded)
    intents = {INTENTS[e.intent] for e in loaded}
    assert {"late_delivery", "lost_or_missing", "other"} <= intents
    with (shared / "data" / "tweeteval-sentiment" / "val.tsv").open(encoding="utf-8") as handle:
        validation_texts = {line.split("\t", 2)[-1].strip() for line in handle}
    assert not {e.text for e in loaded} & validation_texts
    second = [r for r in rows if r["second_intent"]]
    assert len(second) >= 100
    assert sum(r["intent"] == r["second_intent"] for r in second) / len(second) > 0.75
    bad = tmp_path / "parcel.csv"
    bad.write_text("tweet_id,intent,complaint,sure,labeller,second_intent,second_complaint,second_labeller\n"
                   f"{rows[0]['tweet_id']},parcel,1,1,x,,,\n")
    with pytest.raises(ValueError, match=r"parcel.csv: row 2: column 'intent' has unexpected value 'parcel'"):
        load_parcel_tweets(shared, bad)
    bad.write_text("tweet_id,intent,complaint,sure,labeller,second_intent,second_complaint,second_labeller\n"
                   "1,praise,0,1,x,,,\n")
    with pytest.raises(ValueError, match="row 2: tweet_id 1 is not in"):
        load_parcel_tweets(shared, bad)


def test_training_data_carries_the_parcel_tweet_labels_only_when_the_recipe_says_so() -> None:
    """``parcel_tweets`` on: each labelled tweet enters training once with our intent and complaint, weighted
    like the real care tweets; off (v9 and older): none of those labels, so an old recipe rebuilds the same data."""
    from classifiers.train import TrainConfig, build_datasets, load_parcel_tweets

    shared = require_shared("data/tweeteval-sentiment/train.tsv").parents[2]
    labels = {e.text: e for e in load_parcel_tweets(shared)}
    on = TrainConfig(parcel_tweets=True)
    train_on, _ = build_datasets(shared, on)
    hits = [e for e in train_on if e.text in labels and e.source.startswith("tweeteval")]
    assert {e.text for e in hits} == set(labels)
    assert all(e.intent == labels[e.text].intent and e.complaint == labels[e.text].complaint
               and e.weight == on.twcs_weight for e in hits)
    train_off, _ = build_datasets(shared, TrainConfig(parcel_tweets=False))
    late = INTENTS.index("late_delivery")
    assert not [e for e in train_off if e.text in labels and e.source.startswith("tweeteval") and e.intent == late]


def test_training_data_carries_the_guide_tweets_only_when_the_recipe_says_so_and_never_the_held_fold() -> None:
    """``guide_tweets`` on: the 220 hand-labelled care tweets enter the encoder's training with all three labels,
    weighted like the real care tweets; ``guide_holdout_fold`` k leaves out every tweet of customer fold k (the
    head's own folds), so encoder k can score fold k honestly; off (v10 and older): none of them."""
    from classifiers.head_fit import customer_folds, labelled_tweets
    from classifiers.train import TrainConfig, build_datasets

    shared = require_shared("data/twcs-labelled/twcs_labelled.jsonl").parents[2]
    guide = labelled_tweets(shared)
    folds = customer_folds(str(r["author_id"]) for r in guide)
    fold_of = {r["text"]: folds[str(r["author_id"])] for r in guide}
    on = TrainConfig(guide_tweets=True)
    hits = [e for e in build_datasets(shared, on)[0] if e.source == "twcs-guide"]
    assert {e.text for e in hits} == set(fold_of)
    by_text = {r["text"]: r for r in guide}
    assert all(INTENTS[e.intent] == by_text[e.text]["intent"] and e.complaint == int(by_text[e.text]["complaint"])
               and e.weight == on.twcs_weight for e in hits)
    held = [e for e in build_datasets(shared, TrainConfig(guide_tweets=True, guide_holdout_fold=2))[0]
            if e.source == "twcs-guide"]
    assert held and {fold_of[e.text] for e in held} == {0, 1, 3, 4}
    assert len(held) == sum(1 for f in fold_of.values() if f != 2)
    assert not [e for e in build_datasets(shared, TrainConfig())[0] if e.source == "twcs-guide"]


def test_the_head_is_fitted_on_the_reviews_its_recipe_names(tmp_path: Path) -> None:
    """v9's recipe trains on our review intents (and v10's on the parcel tweets too), so its care-tweet head
    holds all 996 labelled reviews and the 548 tweets, and a head-only refit (``fit_into`` with neither
    given) reads that from the model's config.json rather than silently dropping them; a recipe without
    the keys (v8 and older) gets none."""
    from classifiers.head_fit import head_rows

    shared = require_shared("data/cesamard-reviews/cesamard_aspect.csv").parents[2]
    recipe = json.loads((MODEL_DIR / "config.json").read_text(encoding="utf-8"))["recipe"]
    info = json.loads((MODEL_DIR / "intent_head.json").read_text(encoding="utf-8"))["info"]
    assert recipe["review_intents"] is True and info["rows"]["review"] == 996
    assert recipe["parcel_tweets"] is True and info["rows"]["parcel-tweet"] == 548
    kinds = {"damaged_or_wrong", "lost_or_missing"}
    picked = [r for r in head_rows(shared, reviews=sorted(kinds)) if r["source"] == "review"]
    assert picked and {INTENTS[r["intent"]] for r in picked} == kinds
    assert not [r for r in head_rows(shared) if r["source"] == "review"]
    import shutil

    from classifiers.head_fit import fit_into

    for name in ("model.onnx", "tokenizer.json", "config.json", "calibration.json"):
        shutil.copy(MODEL_DIR / name, tmp_path / name)
    rows = fit_into(tmp_path, shared, log=lambda m: None, cross_validate=False)["rows"]
    assert (rows["review"], rows["parcel-tweet"]) == (996, 548)
    config = json.loads((tmp_path / "config.json").read_text(encoding="utf-8"))
    del config["recipe"]["review_intents"], config["recipe"]["parcel_tweets"]
    (tmp_path / "config.json").write_text(json.dumps(config), encoding="utf-8")
    rows = fit_into(tmp_path, shared, log=lambda m: None, cross_validate=False)["rows"]
    assert (rows.get("review", 0), rows.get("parcel-tweet", 0)) == (0, 0)


def test_evaluation_holds_out_what_the_shipped_model_did_not_train_on() -> None:
    """The Bitext/CESAMARD splits depend on the recipe, so evaluation reads it from config.json."""
    from classifiers.train import TrainConfig, build_datasets

    shared = require_shared("data/cesamard-reviews/cesamard_aspect.csv").parents[2]
    recipe = json.loads((MODEL_DIR / "config.json").read_text(encoding="utf-8"))["recipe"]
    shipped = TrainConfig.from_recipe(recipe)
    assert shipped.tweeteval_per_class == recipe["tweeteval_per_class"]
    train, validation = build_datasets(shared, shipped)
    trained_on = {e.text for e in train}
    for name in ("cesamard_val", "bitext_val", "delivery_held_out", "twcs_val"):
        assert not trained_on & {e.text for e in validation[name]}, name
    # another recipe holds out other reviews: scoring the shipped model on those would be unfair
    _, other = build_datasets(shared, TrainConfig.from_recipe({**recipe, "tweeteval_per_class": 5000}))
    assert trained_on & {e.text for e in other["cesamard_val"]}


def test_recipe_keys_the_config_does_not_know_are_ignored() -> None:
    from classifiers.train import TrainConfig

    config = TrainConfig.from_recipe({"epochs": 2.0, "a_future_knob": 1, "cache_dir": "/elsewhere"})
    assert config.epochs == 2.0 and config.cache_dir is None
    assert TrainConfig.from_recipe(None) == TrainConfig()


# ---------------------------------------------------------------------- real tweets (issue 15)
def _real_tweet_intents(onnx_model) -> tuple[dict, list]:
    """The shipped model's intent scores on the 220 hand-labelled real care tweets, scored as
    `doorstep evaluate` scores them (out of fold when the intent head was fitted on them)."""
    from classifiers.evaluate import load_twcs_guide, out_of_fold, score_intent

    shared = require_shared("data/twcs-labelled/twcs_labelled.jsonl").parents[2]
    rows = load_twcs_guide(shared)
    labels = onnx_model.classify([r["text"] for r in rows])
    recipe = onnx_model.config.get("recipe") or {}
    oof = out_of_fold(labels, rows, onnx_model.model_dir if onnx_model.intent_head is not None else None,
                      bool(recipe.get("guide_tweets")))
    return score_intent(oof[0] if oof else labels, [r["intent"] for r in rows], [r["text"] for r in rows]), rows


def test_guide_tweets_an_encoder_trained_on_are_scored_only_by_encoders_that_did_not(tmp_path: Path) -> None:
    """Twelfth round: once the encoder itself trains on the 220, a head-only out-of-fold file would flatter them
    (and say nothing of complaint or sentiment): evaluation refuses it with a one-line reason naming the file, and
    takes every head from a file written by one encoder per fold."""
    from classifiers.evaluate import out_of_fold
    from classifiers.head_fit import CV_FILE

    rows = [{"tweet_id": "1", "text": "still no parcel"}, {"tweet_id": "2", "text": "thanks!"}]
    before = [Labels(sentiment="neutral", sentiment_scores={"negative": 0.2, "neutral": 0.6, "positive": 0.2},
                     complaint=False, complaint_score=0.1, intent="other",
                     intent_scores={i: (0.91 if i == "other" else 0.01) for i in INTENTS}, urgency=0.1, model="m")
              for _ in rows]
    late = [0.9 if i == "late_delivery" else 0.1 / 9 for i in INTENTS]
    praise = [0.8 if i == "praise" else 0.2 / 9 for i in INTENTS]
    head_only = {"labels": list(INTENTS), "rows": [{"tweet_id": "1", "intent_scores": late},
                                                    {"tweet_id": "2", "intent_scores": praise}]}
    (tmp_path / CV_FILE).write_text(json.dumps(head_only), encoding="utf-8")
    labels, every_head = out_of_fold(before, rows, tmp_path)
    assert [lab.intent for lab in labels] == ["late_delivery", "praise"] and not every_head
    assert labels[0].complaint is False  # complaint still the encoder's: it never saw these tweets
    with pytest.raises(ValueError, match=r"real_tweet_cv\.json: the encoder trained on the 220 .* one encoder per fold"):
        out_of_fold(before, rows, tmp_path, encoder_trained_on_them=True)
    by_encoder_folds = {**head_only, "scored_by": "encoder folds",
                        "rows": [{**head_only["rows"][0], "complaint_score": 0.8, "sentiment_scores": [0.7, 0.2, 0.1]},
                                 {**head_only["rows"][1], "complaint_score": 0.05, "sentiment_scores": [0.0, 0.1, 0.9]}]}
    (tmp_path / CV_FILE).write_text(json.dumps(by_encoder_folds), encoding="utf-8")
    labels, every_head = out_of_fold(before, rows, tmp_path, encoder_trained_on_them=True)
    assert every_head and [lab.complaint for lab in labels] == [True, False]
    assert [lab.sentiment for lab in labels] == ["negative", "positive"] and labels[0].complaint_score == 0.8
    (tmp_path / CV_FILE).unlink()
    with pytest.raises(ValueError, match="no real_tweet_cv.json"):
        out_of_fold(before, rows, tmp_path, encoder_trained_on_them=True)


def test_delivery_posts_in_real_tweets_beat_v6_and_the_delivery_word_regex(onnx_model) -> None:
    """v6 found 0.67 F1 of delivery posts among the 220 real care tweets (regex 0.59); the shipped
    model must do clearly better than both, out of fold."""
    scored, _ = _real_tweet_intents(onnx_model)
    assert scored["delivery_f1"] >= 0.75
    assert scored["delivery_f1"] - scored["regex_delivery_f1"] >= 0.10
    assert scored["ci"]["delivery_f1_minus_regex"][0] > 0  # the bootstrap interval of the gain excludes 0


def test_confidence_on_real_tweets_is_honest(onnx_model) -> None:
    """v6's intent ECE on the real tweets was 0.21 and its >= 0.8-confidence posts were right 70% of the time."""
    scored, _ = _real_tweet_intents(onnx_model)
    assert scored["ece"] <= 0.12
    assert scored["confident_accuracy"] >= 0.8


def test_real_tweet_cross_validation_folds_never_split_a_customer() -> None:
    from classifiers.head_fit import customer_folds, labelled_tweets

    shared = require_shared("data/twcs-labelled/twcs_labelled.jsonl").parents[2]
    rows = labelled_tweets(shared)
    folds = customer_folds(r["author_id"] for r in rows)
    assert set(folds.values()) == {0, 1, 2, 3, 4}
    cv = json.loads((MODEL_DIR / "real_tweet_cv.json").read_text(encoding="utf-8"))
    assert {r["tweet_id"] for r in cv["rows"]} == {str(r["tweet_id"]) for r in rows}
    assert all(math.isclose(sum(r["intent_scores"]), 1.0, abs_tol=1e-4) for r in cv["rows"])  # stored to 5 decimals


def test_intent_head_reads_the_pooled_output_and_keeps_the_contract(onnx_model) -> None:
    from classifiers.intent_head import EVIDENCE, evidence_features

    assert onnx_model.intent_head is not None and "pooled" in {o.name for o in onnx_model.session.get_outputs()}
    features = evidence_features(["the parcel was marked delivered but it is not here", "hello there"])
    assert features.shape == (2, len(EVIDENCE)) and features[0].sum() >= 3 and features[1].sum() == 0
    for lab in onnx_model.classify(["@UPSHelp driver left my parcel in the rain", "nice weather today"]):
        assert _sums_to_one(lab.intent_scores) and lab.intent == max(lab.intent_scores, key=lab.intent_scores.get)


def test_fit_head_learns_a_toy_problem_and_round_trips(tmp_path: Path) -> None:
    """The numpy logistic fit behind the head (no torch), and its file format."""
    import numpy as np

    from classifiers.intent_head import IntentHead, fit_head

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(len(INTENTS), 384)) * 3
    y = np.repeat(np.arange(len(INTENTS)), 20)
    pooled = centres[y] + rng.normal(size=(len(y), 384))
    texts = ["my parcel is late" if i < 5 else "my app crashed" for i in y]
    head = fit_head(pooled, texts, y, np.ones(len(y)))
    probs = head.probabilities(pooled, texts)
    assert np.allclose(probs.sum(axis=1), 1.0) and (probs.argmax(axis=1) == y).mean() > 0.95
    head.save(tmp_path)
    again = IntentHead.load(tmp_path)
    assert np.allclose(again.probabilities(pooled, texts), probs, atol=1e-4)


def test_head_only_refit_learns_from_corrections(tmp_path: Path) -> None:
    """`doorstep train --with-feedback --head-only`: corrections reach the head in seconds (no torch, no rebuild)."""
    import shutil

    from classifiers.head_fit import fit_into
    from classifiers.onnx_backend import OnnxClassifier

    shared = require_shared("data/twcs-labelled/twcs_labelled.jsonl").parents[2]
    for name in ("model.onnx", "tokenizer.json", "config.json", "calibration.json"):
        shutil.copy(MODEL_DIR / name, tmp_path / name)
    post = "@SkyHelp my sky q box keeps switching itself off every evening"
    before = OnnxClassifier(MODEL_DIR).classify([post])[0]
    target = "damaged_or_wrong" if before.intent != "damaged_or_wrong" else "praise"
    corrections = [{"text": post.replace("evening", when), "intent": target}
                   for when in ("evening", "night", "morning", "day", "hour", "week")] * 5
    summary = fit_into(tmp_path, shared, corrections, log=lambda m: None, cross_validate=False, temperature=1.0)
    assert summary["rows"]["feedback"] == 6  # the same text corrected again counts once, the latest winning
    after = OnnxClassifier(tmp_path).classify([post])[0]
    assert after.intent_scores[target] > before.intent_scores[target] + 0.2


def test_the_shipped_model_cannot_overflow_on_cpus_without_vnni() -> None:
    """Reported on an AVX2 machine: the recorded predictions and batch-vs-single agreement failed, because
    int8 weights make onnxruntime use a saturating 16-bit multiply there. The weights ship as uint8."""
    onnx = pytest.importorskip("onnx")
    model = onnx.load(str(REPO / "classifiers" / "model" / "model.onnx"))
    initializers = {t.name: t.data_type for t in model.graph.initializer}
    weights = [n.input[1] for n in model.graph.node if n.op_type in ("MatMulInteger", "QAttention")]
    assert weights and {initializers[w] for w in weights} == {onnx.TensorProto.UINT8}


def test_written_training_posts_follow_the_labelling_guide() -> None:
    """LABELLING_GUIDE.md wins over our written labels: a late food order is late_delivery (sections 1, 3-4),
    flight and train delays and ride fees are product_or_account (section 5), never `other`."""
    from classifiers.delivery_examples import training_examples

    intents = {e.text: e.intent for e in training_examples(copies=1)}
    assert intents["my deliveroo order took 90 mins and the chips were cold lol never again"] == "late_delivery"
    for text in ("my flight to Dublin is delayed 3 hours, brilliant start to the holiday",
                 "@VirginTrains the 8:15 is cancelled again, what's going on",
                 "@Uber_Support my driver cancelled three times and charged me"):
        assert intents[text] == "product_or_account", text


def test_bags_and_luggage_are_not_counter_evidence() -> None:
    """The guide puts airline lost baggage in lost_or_missing and damaged luggage in damaged_or_wrong; flights,
    trains and rides stay counter-evidence (the last evidence pattern)."""
    from classifiers.intent_head import EVIDENCE, evidence_features

    counter = evidence_features(["@Delta you lost my baggage", "my luggage arrived smashed", "the sauce was missing from my bag",
                                 "my flight is delayed", "the train is late", "my uber ride"], EVIDENCE[-1:])[:, 0]
    assert counter.tolist() == [0, 0, 0, 1, 1, 1]


def _model_copy(tmp_path: Path, **config_changes: object) -> Path:
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(MODEL_DIR, folder)
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    config.update(config_changes)
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    return folder


def test_complaint_transfer_mentions_reads_posts_written_to_nobody_by_the_complaint_head(tmp_path: Path) -> None:
    """Issue 15, tenth round: a merely negative post written to nobody ("ugh, Mondays") was a complaint because
    complaint_score = max(complaint head, P(negative)). With ``complaint_transfer = "mentions"`` in config.json the
    transfer stays for posts with an @mention (posts to a care handle) and a post with none is read by the
    complaint head alone; ``"all"`` (and no key: every model before) keeps today's rule; anything else is a
    one-line error naming the setting."""
    from classifiers.onnx_backend import OnnxClassifier

    texts = ["ugh, Mondays. everything is awful today", "@ShopHelp ugh, everything is awful today"]
    default = OnnxClassifier(_model_copy(tmp_path / "a", complaint_transfer="all"))
    gated = OnnxClassifier(_model_copy(tmp_path / "b", complaint_transfer="mentions"))
    probs = default.probabilities(texts)
    head, negative = probs["complaint"][:, 1], probs["sentiment"][:, default.labels["sentiment"].index("negative")]
    before, after = default.classify(texts), gated.classify(texts)
    assert [b.complaint_score for b in before] == pytest.approx([max(h, n) for h, n in zip(head, negative)], abs=1e-4)
    assert after[0].complaint_score == pytest.approx(float(head[0]), abs=1e-4)  # written to nobody: the head alone
    assert after[1].complaint_score == pytest.approx(before[1].complaint_score, abs=1e-6)  # to a handle: unchanged
    assert after[0].complaint == (after[0].complaint_score >= 0.5)
    assert after[0].sentiment == before[0].sentiment and after[0].intent == before[0].intent
    with pytest.raises(ValueError, match=r"config.json: complaint_transfer 'some' is not one of 'all', 'mentions'"):
        OnnxClassifier(_model_copy(tmp_path / "c", complaint_transfer="some"))


def test_a_post_marked_written_to_someone_keeps_the_transfer_without_an_at_mention(tmp_path: Path) -> None:
    """Issue 15, thirteenth round: a reply in a thread often drops the handle ("Finally got a radio broadcast of it
    but I'm still mad"), so with ``complaint_transfer = "mentions"`` the caller may mark a post ``addressed`` and it
    keeps the transfer; unmarked, the text decides as before; the marks must be one per text."""
    from classifiers.onnx_backend import OnnxClassifier

    texts = ["ugh, everything is awful today and nobody cares", "ugh, everything is awful today and nobody cares"]
    default = OnnxClassifier(_model_copy(tmp_path / "a", complaint_transfer="all"))
    gated = OnnxClassifier(_model_copy(tmp_path / "b", complaint_transfer="mentions"))
    probs = gated.probabilities(texts[:1])
    head, negative = float(probs["complaint"][0, 1]), float(probs["sentiment"][0, gated.labels["sentiment"].index("negative")])
    assert negative > head  # the post this is about: the transfer changes its score
    marked = gated.classify(texts, addressed=[True, False])
    assert marked[0].complaint_score == pytest.approx(negative, abs=1e-4)  # written to someone: the transfer
    assert marked[1].complaint_score == pytest.approx(head, abs=1e-4)  # written to nobody: the head alone
    assert [lab.complaint_score for lab in gated.classify(texts)] == pytest.approx([head, head], abs=1e-4)
    assert [lab.complaint_score for lab in default.classify(texts, addressed=[False, False])] == pytest.approx(
        [negative, negative], abs=1e-4)  # "all": every post, marked or not
    assert marked[0].intent == marked[1].intent and marked[0].sentiment == marked[1].sentiment
    with pytest.raises(ValueError, match=r"^addressed has 1 values for 2 texts; give one per text$"):
        gated.classify(texts, addressed=[True])


def test_complaint_transfer_service_keeps_it_for_posts_about_an_order_or_a_service_written_to_nobody(
        tmp_path: Path) -> None:
    """Issue 15, fourteenth round: ``complaint_transfer = "service"`` keeps the transfer for a post written to someone
    (as ``"mentions"``) and for one whose intent reads as about an order, a delivery, a refund, a product, an account
    or a service (P(other) + P(praise) < 0.5); a mood post about nothing a shop sells gets the complaint head alone."""
    from classifiers.onnx_backend import OnnxClassifier

    texts = ["rest in peace grandad, miss you so much", "my parcel never arrived, this is awful",
             "@ShopHelp rest in peace grandad, miss you so much"]
    gated = OnnxClassifier(_model_copy(tmp_path / "a", complaint_transfer="service"))
    probs = gated.probabilities(texts)
    neg = gated.labels["sentiment"].index("negative")
    head, negative = probs["complaint"][:, 1], probs["sentiment"][:, neg]
    off_topic = probs["intent"][:, INTENTS.index("other")] + probs["intent"][:, INTENTS.index("praise")]
    assert off_topic[0] >= 0.5 > off_topic[1]  # the two posts this is about
    got = gated.classify(texts, addressed=[False, False, False])
    assert got[0].complaint_score == pytest.approx(float(head[0]), abs=1e-4)  # grief, to nobody: the head alone
    assert got[1].complaint_score == pytest.approx(max(float(head[1]), float(negative[1])), abs=1e-4)  # a parcel
    assert got[2].complaint_score == pytest.approx(max(float(head[2]), float(negative[2])), abs=1e-4)  # to a handle
    marked = gated.classify(texts, addressed=[True, False, False])[0]  # same batch: int8 scales per batch
    assert marked.complaint_score == pytest.approx(max(float(head[0]), float(negative[0])), abs=1e-4)


def test_complaint_transfer_addressed_trusts_the_caller_over_an_at_mention(tmp_path: Path) -> None:
    """Issue 15, eighteenth round: under ``"service"`` any @mention keeps the transfer, so a merely negative tweet to a
    friend ("@bestie rest in peace grandad") is a complaint. ``"addressed"`` trusts the caller, who knows whether the post
    reached us or names one of our handles: told False, an @mention of someone else no longer keeps it; told True it
    does; not told (None, e.g. a `doorstep classify` line without the key) the @mention stands in, as before. Posts
    about an order or a service keep it either way."""
    from classifiers.onnx_backend import COMPLAINT_TRANSFERS, OnnxClassifier

    assert "addressed" in COMPLAINT_TRANSFERS
    texts = ["@bestie rest in peace grandad, miss you so much", "@bestie my parcel never arrived, this is awful"]
    model = OnnxClassifier(_model_copy(tmp_path / "a", complaint_transfer="addressed"))
    service = OnnxClassifier(_model_copy(tmp_path / "b", complaint_transfer="service"))
    probs = model.probabilities(texts)
    neg = model.labels["sentiment"].index("negative")
    head, negative = probs["complaint"][:, 1], probs["sentiment"][:, neg]
    off_topic = probs["intent"][:, INTENTS.index("other")] + probs["intent"][:, INTENTS.index("praise")]
    assert off_topic[0] >= 0.5 > off_topic[1] and negative[0] > head[0]  # the posts this is about
    transfer = [max(float(h), float(n)) for h, n in zip(head, negative)]
    assert [x.complaint_score for x in model.classify(texts, addressed=[False, False])] == pytest.approx(
        [float(head[0]), transfer[1]], abs=1e-4)  # to a friend: the head alone; about a parcel: the transfer
    assert [x.complaint_score for x in model.classify(texts, addressed=[True, True])] == pytest.approx(transfer, abs=1e-4)
    assert [x.complaint_score for x in model.classify(texts, addressed=[None, None])] == pytest.approx(transfer, abs=1e-4)
    assert [x.complaint_score for x in model.classify(texts)] == pytest.approx(transfer, abs=1e-4)
    # "service" reads None and False alike, and keeps the transfer for any @mention.
    assert [x.complaint_score for x in service.classify(texts, addressed=[False, None])] == pytest.approx(
        transfer, abs=1e-4)


def test_the_care_head_learns_mood_as_other_only_when_the_recipe_says_so() -> None:
    """Issue 15, fifteenth round: the negative random training tweets we labelled not a complaint are `other` by the
    guide (section 8), rows of the care head only with ``random_other``; none of them is a complaint, a tweet that is
    not negative, an evaluation (validation) tweet or one of the parcel tweets (those keep their own label)."""
    from classifiers.head_fit import SOURCE_WEIGHTS, head_rows
    from classifiers.train import TrainConfig, load_parcel_tweets, load_random_complaints

    shared = require_shared("data/tweeteval-sentiment/train.tsv").parents[2]
    require_shared("data/twcs-labelled/twcs_labelled.jsonl")
    assert TrainConfig().random_other is False and SOURCE_WEIGHTS["random-other"] == 1.0
    plain = head_rows(shared)
    taught = head_rows(shared, random_other=True)
    added = [r for r in taught if r["source"] == "random-other"]
    assert not [r for r in plain if r["source"] == "random-other"] and len(taught) == len(plain) + len(added)
    assert len(added) > 1000 and {r["intent"] for r in added} == {INTENTS.index("other")}
    train = {r["text"]: r for r in load_random_complaints(shared, "tweeteval_train")}
    assert all(train[r["text"]]["complaint"] == 0 and train[r["text"]]["sentiment"] == "negative" for r in added)
    evaluation = {r["text"] for r in load_random_complaints(shared, "tweeteval_val")}
    parcel = {e.text for e in load_parcel_tweets(shared)}
    assert not {r["text"] for r in added} & (evaluation | parcel)


def test_twcs_tweets_in_a_thread_are_scored_as_written_to_someone() -> None:
    """Evaluation reads a real tweet as the pipeline would: one that answers another (``in_response_to_tweet_id``
    in ../shared's twcs data) is marked addressed, one that opens a thread is not."""
    from classifiers.evaluate import load_twcs_guide
    from classifiers.train import load_twcs_labels

    shared = require_shared("data/twcs-labelled/twcs_labelled.jsonl").parents[2]
    require_shared("data/twcs-sample/twcs_sample.csv")
    guide = load_twcs_guide(shared)
    assert {r["addressed"] for r in guide} == {True, False}
    text = "Finally got a radio broadcast of it but I'm still mad."
    validation = {e.text: e.addressed for e in load_twcs_labels(shared, "validation")}
    assert validation[text] is True
    assert validation["whats wrong w/ amazon leavin shit outside like ups...🤔"] is False


def test_evaluation_tells_the_model_which_real_tweets_reach_the_shop_and_leaves_the_rest_untold() -> None:
    """Eighteenth round: `doorstep evaluate` tells a model what the pipeline would. A twcs or airline tweet that names a
    brand's handle was written to that brand's shop, whose place the set takes (True; twcs customers' handles are
    numbers and name no brand); a random tweet reached no shop of ours (False, so "@bestie ugh" is not to us); the
    written, review and sentiment sets carry no such fact (None: the text decides, as before)."""
    from classifiers.evaluate import _sets, names_a_brand

    shared = require_shared("data/twcs-labelled/twcs_labelled.jsonl").parents[2]
    require_shared("data/tweeteval-sentiment/val.tsv")
    sets = _sets(shared)
    for name in ("twcs_guide", "twcs_val", "twcs_test"):
        assert all(r["addressed"] for r in sets[name] if names_a_brand(r["text"]))
        assert {r["addressed"] for r in sets[name]} == {True, False}
    assert all(r["addressed"] == names_a_brand(r["text"]) for r in sets["airline_eval_only"])
    assert {r["addressed"] for r in sets["random_complaints"]} == {False}
    assert any("@" in r["text"] for r in sets["random_complaints"])
    for name in ("tweeteval_val", "delivery_held_out", "bitext_val", "cesamard_val"):
        assert {r["addressed"] for r in sets[name]} == {None}, name


def test_training_data_carries_the_random_complaint_labels_only_when_the_recipe_says_so() -> None:
    """``random_complaints`` on: each labelled random training tweet keeps our complaint label (most of them
    merely negative, not complaints), weighted like the real care tweets; the validation ones never enter."""
    from classifiers.train import TrainConfig, build_datasets, load_random_complaints

    shared = require_shared("data/tweeteval-sentiment/train.tsv").parents[2]
    labels = {r["text"]: r["complaint"] for r in load_random_complaints(shared, "tweeteval_train")}
    on = TrainConfig(random_complaints=True, parcel_tweets=False)
    train_on, _ = build_datasets(shared, on)
    hits = [e for e in train_on if e.text in labels and e.source.startswith("tweeteval")]
    assert {e.text for e in hits} == set(labels)
    assert all(e.complaint == labels[e.text] and e.weight == on.twcs_weight for e in hits)
    negatives_not_complaints = [e for e in hits if e.sentiment == SENTIMENTS.index("negative") and e.complaint == 0]
    assert len(negatives_not_complaints) > 1000
    validation = {r["text"] for r in load_random_complaints(shared, "tweeteval_val")}
    assert not [e for e in train_on if e.text in validation and e.complaint >= 0 and e.source.startswith("tweeteval")]
    train_off, _ = build_datasets(shared, TrainConfig(random_complaints=False, parcel_tweets=False))
    assert not [e for e in train_off if e.text in labels and e.sentiment == SENTIMENTS.index("negative")
                and e.complaint >= 0 and e.source.startswith("tweeteval")]


def test_training_data_carries_mood_as_other_only_when_the_recipe_says_so() -> None:
    """``random_other`` on (issue 15, fifteenth round): each negative random training tweet we labelled not a
    complaint is intent ``other`` and complaint no in the encoder's data, weighted like our other labels; a parcel
    tweet keeps its own label; off, none of them carries that intent from us."""
    from classifiers.train import TrainConfig, build_datasets, load_parcel_tweets, load_random_complaints

    shared = require_shared("data/tweeteval-sentiment/train.tsv").parents[2]
    parcel = {e.text: e.intent for e in load_parcel_tweets(shared)}
    mood = {r["text"] for r in load_random_complaints(shared, "tweeteval_train")
            if r["complaint"] == 0 and r["sentiment"] == "negative"}
    on = TrainConfig(random_other=True, parcel_tweets=True)
    train_on, _ = build_datasets(shared, on)
    hits = [e for e in train_on if e.text in mood and e.source.startswith("tweeteval")]
    assert {e.text for e in hits} == mood and len(mood) > 1000
    assert all(e.complaint == 0 and e.weight == on.twcs_weight for e in hits)
    assert all(e.intent == (parcel[e.text] if e.text in parcel else INTENTS.index("other")) for e in hits)
    train_off, _ = build_datasets(shared, TrainConfig(random_other=False, parcel_tweets=False, random_complaints=False))
    assert not [e for e in train_off if e.text in mood and e.weight == on.twcs_weight and e.source.startswith("tweeteval")]


def test_doorstep_evaluate_scores_complaints_on_random_tweets() -> None:
    """The merely negative random tweets of issue 15's finding are a real-tweet set of `doorstep evaluate`,
    with the count of negative tweets called complaints beside the count that are."""
    from classifiers.evaluate import REAL_SETS, _negative_called, _sets

    val = require_shared("data/tweeteval-sentiment/val.tsv")
    rows = _sets(val.parents[2])["random_complaints"]
    assert "random_complaints" in REAL_SETS
    assert len(rows) == 562 and sum(r["negative"] for r in rows) == 312
    assert all(r["sentiment"] is None and r["intent"] is None for r in rows)  # sentiment is tweeteval_val's
    scored = {"random_complaints": {"complaint": {"negative_called": 234, "negative_n": 312, "negative_complaints": 34}}}
    assert _negative_called(scored) == "234 of the 312 negative tweets called complaints; 34 are"
    assert _negative_called({}) == "not measured"


# ---------------------------------------------------------------------- issue 15, sixteenth round: contrastive
def test_supervised_contrastive_loss_is_low_when_each_intent_sits_together() -> None:
    """SetFit-style tuning (issue 15, sixteenth round): the loss pulls posts of one intent together and pushes the
    others apart, so it must be lower for vectors grouped by intent than for the same vectors with the labels
    shuffled, ignore a post that has no other post of its intent in the batch, and be zero when none has."""
    torch = pytest.importorskip("torch", reason="torch is an optional 'train' extra")
    from classifiers.train import supervised_contrastive_loss

    centres = torch.eye(4)[:, :3] * 5.0 + 0.01
    grouped = torch.cat([centres[c].repeat(4, 1) + 0.05 * torch.randn(4, 3) for c in range(3)])
    labels = torch.tensor([0] * 4 + [1] * 4 + [2] * 4)
    shuffled = labels[torch.tensor([0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11])]
    assert supervised_contrastive_loss(grouped, labels, 0.1) < supervised_contrastive_loss(grouped, shuffled, 0.1) - 1
    lone = torch.cat([grouped, torch.tensor([[0.0, 0.0, 5.0]])])
    with_lone = supervised_contrastive_loss(lone, torch.cat([labels, torch.tensor([9])]), 0.1)
    assert torch.isfinite(with_lone) and with_lone > 0
    assert float(supervised_contrastive_loss(grouped[:3], torch.tensor([0, 1, 2]), 0.1)) == 0.0


def test_contrastive_batches_come_class_balanced_from_posts_with_an_intent_and_never_from_bitext() -> None:
    """The contrastive batches draw on what we labelled (real tweets and reviews, written posts), a few posts of each
    of several intents, so every post has others of its intent; Bitext's generated requests are left out, as is any
    post without an intent. Off unless the recipe asks (``TrainConfig.contrastive``)."""
    import numpy as np

    from classifiers.train import Example, TrainConfig, contrastive_batch, contrastive_pool

    assert TrainConfig().contrastive == 0.0 and TrainConfig.from_recipe({"contrastive": 0.5}).contrastive == 0.5
    examples = ([Example(f"late {i}", intent=1, source="twcs-train") for i in range(6)]
                + [Example(f"other {i}", intent=9, source="tweeteval-train") for i in range(6)]
                + [Example(f"bitext {i}", intent=0, source="bitext") for i in range(6)]
                + [Example(f"lost {i}", intent=3, source="delivery") for i in range(3)]
                + [Example("lone", intent=4, source="delivery"), Example("no intent", sentiment=0, source="twcs-train")])
    pool = contrastive_pool(examples)
    assert set(pool) == {1, 9, 3}  # a single damaged post cannot have a partner; bitext and unlabelled are out
    assert sorted(pool[1]) == list(range(6)) and sorted(pool[3]) == [18, 19, 20]
    rng = np.random.default_rng(0)
    for _ in range(20):
        batch = contrastive_batch(pool, rng, classes=2, per_class=4)
        intents = [examples[i].intent for i in batch]
        assert len(batch) == len(set(batch)) and len(set(intents)) == 2
        assert all(intents.count(c) >= 2 for c in set(intents))


# ---------------------------------------------------------------------- issue 15, twentieth round: a model soup
def test_a_soup_averages_its_members_weights_and_a_soup_of_one_trains_as_before() -> None:
    """A uniform model soup (Wortsman et al. 2022): the members start from the same weights and differ only in the
    order they read the posts (and their dropout), and the shipped encoder is the average of their tuned weights, at
    no cost per post. Member 0 reads in today's order, so ``soup = 1`` (the default) is today's training exactly; a
    member whose weights do not match the others' is an error, not a silent half-average."""
    torch = pytest.importorskip("torch", reason="torch is an optional 'train' extra")
    from classifiers.train import TrainConfig, average_weights, member_seeds

    config = TrainConfig()
    assert config.soup == 1 and member_seeds(config) == [config.seed]
    config.soup = 3
    seeds = member_seeds(config)
    assert seeds[0] == config.seed and len(set(seeds)) == 3
    assert TrainConfig.from_recipe({"soup": 3}).soup == 3

    a = {"w": torch.tensor([1.0, 2.0]), "steps": torch.tensor(4)}
    b = {"w": torch.tensor([3.0, 6.0]), "steps": torch.tensor(9)}
    mean = average_weights([a, b])
    assert torch.equal(mean["w"], torch.tensor([2.0, 4.0]))
    assert int(mean["steps"]) == 4  # a counter is not averaged: the first member's is kept
    assert torch.equal(a["w"], torch.tensor([1.0, 2.0]))  # the members are left as they were
    with pytest.raises(ValueError, match="w2"):
        average_weights([a, {"w2": torch.tensor([1.0, 2.0]), "steps": torch.tensor(1)}])
    with pytest.raises(ValueError, match="no members"):
        average_weights([])


def test_a_post_in_another_language_says_which_and_is_read_first(onnx_model, tmp_path) -> None:  # noqa: ANN001
    """Languages audit, finding 3: Polish, Arabic, Spanish, Hindi and Welsh complaints were flagged for review but
    labelled "not a complaint" (the model reads English), so they sank to the bottom of the queue with the latest
    SLA target, and the detected language was never stored. The classifier now says which language it saw; the
    post keeps it, and the case gets a priority factor for it, so a person reads it within a mid band's clock."""
    from doorstep.config import parse_config
    from doorstep.models import Mention
    from doorstep.pipeline import Pipeline
    from doorstep.store import Store

    polish, english = onnx_model.classify(["@LarkspurHelp Paczka nie dotarła! Żądam zwrotu pieniędzy! Źle, bardzo źle",
                                           "@LarkspurHelp my parcel never arrived, I want my money back"])
    assert polish.other_language == "pl" and polish.needs_review, polish
    assert english.other_language is None, english
    config = parse_config({"brands": [{"name": "Larkspur", "handles": {"x": "LarkspurHelp"}}]})
    store = Store(tmp_path / "d.db")
    Pipeline(store, config, onnx_model).ingest([Mention(
        channel="x", external_id="pl-1", text="@LarkspurHelp Paczka nie dotarła! Żądam zwrotu pieniędzy! Źle, bardzo źle",
        created_at=datetime(2026, 12, 7, 10, 0, tzinfo=timezone.utc), author_handle="lucja")])
    post = store.mention_by_external_id("x", "pl-1")
    case = store.get_case(post.case_id)  # type: ignore[union-attr, arg-type]
    assert post.language == "pl"  # type: ignore[union-attr]
    assert case.priority >= config.priority.p3, (case.priority, case.priority_reasons)  # type: ignore[union-attr]
    assert any("Polish" in r for r in case.priority_reasons), case.priority_reasons  # type: ignore[union-attr]
    store.close()


def test_a_chinese_complaint_to_two_of_our_handles_is_still_read_as_chinese(onnx_model) -> None:  # noqa: ANN001
    """Audit of stop 39, finding 1: "@LarkspurHelp @LarkspurOrders 包裹丢了" ("parcel lost") was English, positive,
    p4: the language check was given the handles' 26 letters against 4 Han letters. Handles and links are no words
    to judge a language by (as ``looks_non_english`` always said they were not)."""
    two, link, kannada = onnx_model.classify(["@LarkspurHelp @LarkspurOrders 包裹丢了",
                                              "@LarkspurHelp https://larkspur.example/orders/12345 没到",
                                              "@LarkspurHelp ಠ_ಠ"])
    assert two.other_language == "zh" and two.needs_review, two
    assert link.other_language == "zh" and link.needs_review, link
    assert kannada.needs_review, kannada


def test_a_language_no_listed_language_writes_is_another_language_not_a_wrong_name(onnx_model) -> None:  # noqa: ANN001
    """Audit of stop 39, finding 3: a Tamil post read "written in Welsh", Amharic, Georgian and Telugu "Norwegian",
    Armenian "Spanish": the identifier names its nearest listed language whatever the script. A language whose
    script is not the text's is "another language" now."""
    posts = {"@LarkspurHelp என் பார்சல் இன்னும் வரவில்லை": "und",  # Tamil
             "@LarkspurHelp ჩემი ამანათი ჯერ არ მოსულა": "und",  # Georgian
             "@LarkspurHelp የእኔ ጥቅል አልደረሰም": "und",  # Amharic
             "@LarkspurHelp Իմ ծանրոցը դեռ չի հասել": "und",  # Armenian
             "@LarkspurHelp Где моя посылка? Уже неделя прошла": "ru",
             "@LarkspurHelp मेरा पार्सल अभी तक नहीं आया": "hi",
             "@LarkspurHelp 荷物がまだ届きません": "ja"}
    labels = onnx_model.classify(list(posts))
    assert [lab.other_language for lab in labels] == list(posts.values())


def test_a_tracking_number_alone_has_no_words_to_read(onnx_model) -> None:  # noqa: ANN001
    """Audit of stop 39, finding 12: "@LarkspurHelp 1Z999AA10123456784" was product_or_account with no review flag
    (the Z and AA of the number counted as words), and ":( :( :(" was neutral."""
    number, sad, happy = onnx_model.classify(["@LarkspurHelp 1Z999AA10123456784", "@LarkspurHelp :( :( :(",
                                              "@LarkspurHelp :-) :D"])
    assert number.needs_review and number.sentiment == "neutral" and number.intent != "praise", number
    assert sad.needs_review and sad.sentiment == "negative", sad
    assert happy.needs_review and happy.sentiment == "positive", happy
