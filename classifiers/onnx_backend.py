"""The shipped classifier: a fine-tuned MiniLM exported to int8 ONNX, run with onnxruntime.

Why ONNX and not torch at run time: the console and ``doorstep classify`` must start in
seconds and run on a 2-core box without a 700 MB deep-learning stack. The model directory
(``classifiers/model/`` by default) holds everything needed:

* ``model.onnx`` - encoder + three heads (sentiment, complaint, intent), int8 weights; its
  outputs are raw logits so calibration can change without re-exporting.
* ``tokenizer.json`` - the ``tokenizers`` WordPiece tokenizer of all-MiniLM-L6-v2.
* ``config.json`` - label orders, maximum length, review thresholds, urgency weights.
* ``calibration.json`` - one softmax temperature per head, fitted on validation data.

How a post becomes :class:`Labels`
----------------------------------
* The text is normalised exactly as in training (:func:`prepare_text`): HTML unescaped and
  tags dropped, URLs replaced by ``http``, anonymised numeric handles by ``@user`` (brand
  handles such as ``@UPSHelp`` are kept: they say who the post is for), whitespace collapsed,
  only the first :data:`MAX_CHARS` characters read.
* Posts are tokenised, sorted by length and run :attr:`OnnxClassifier.batch_size` at a time
  with padding only to the longest post of the batch (dynamic padding), then put back in
  input order. ``threads`` batches run at once, each on a single-threaded worker, while the
  calling thread reads the texts for what needs no model (word view, urgency signals, language,
  delivery evidence).
* Scores are ``softmax(logits / T)`` per head (temperature scaling), so they are calibrated
  probabilities that sum to 1.
* **complaint_score** = max(complaint head, negative sentiment probability). The complaint head
  learnt from reviews and our own posts is cautious on real tweets; a negative post to a care
  handle is nearly always a complaint (sentiment transfer). On 104 real care tweets we
  labelled, macro-F1 went from 0.75 (head alone) to 0.83, unchanged on CESAMARD (0.93) and our
  held-out delivery posts (0.86). ``complaint`` is ``complaint_score >= 0.5``. A model whose
  config.json says ``"complaint_transfer": "mentions"`` keeps the transfer only for posts written to
  someone: an @mention in the text, or marked ``addressed`` by the caller (a reply in a thread whose
  text dropped the handle, a private message; issue 15, thirteenth round). A merely negative post
  written to nobody ("ugh, Mondays") is read by the complaint head alone (tenth round). ``"service"``
  also keeps it for a post written to nobody whose intent reads as about an order, a delivery, a
  refund, a product, an account or a service (P(other) + P(praise) < 0.5; fourteenth round; v11
  said so). ``"addressed"`` (v12 and the shipped v13) is ``"service"`` with the caller trusted over the text: a post the
  caller marks ``addressed=False`` (it neither reached us nor names one of our handles) gets no transfer
  for an @mention of someone else; one the caller says nothing about (``None``) falls back on the
  @mention (eighteenth round). ``"all"`` (a config.json without the key: every model before v11)
  transfers for every post.
* **Urgency** (0..1) = 0.40 x complaint probability + 0.20 x negative probability
  + 0.25 x expected severity of the intent (sum over intents of probability x
  :data:`SEVERITY`) + 0.15 x urgency signals (each of: urgency words such as "asap", "still",
  "again", "days" (a third each, at most two); emphatic "!!"/"?!" and shouting in capitals
  (a third each)), clipped to 0..1.
  A polite "where is my order?" lands near 0.2, "marked delivered but not here!!" near 0.8.
* **needs_review** is set when the post has nothing to read, looks non-English (the
  language identification of :mod:`classifiers.language`), or the model is unsure: the calibrated top
  probability of intent or sentiment is under the thresholds in ``config.json``.

Int8 dynamic quantisation scales activations per batch, so a post's scores can differ in
the third decimal between a batch run and a one-by-one run; labels of clear posts do not.
"""

from __future__ import annotations

import html
import json
import os
import re
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from doorstep.models import INTENTS, SENTIMENTS, Labels

from classifiers.baseline import looks_non_english as _non_english_words, rules_view
from classifiers.language import HAPPY_EMOTICONS, SAD_EMOTICONS, words_only
from classifiers.int8_weights import model_for_this_cpu
from classifiers.intent_head import HEAD_FILE, IntentHead
from classifiers import language
from classifiers.language import non_english

MODEL_DIR = Path(__file__).resolve().parent / "model"
#: Characters of a post that are read; tweets are 280, so this only bounds pasted e-mails.
MAX_CHARS = 2000
#: Posts per onnxruntime call. Int8 activations get one scale per call, and the activations of a call
#: stay in cache: at 16 instead of 64 `doorstep classify` ran 30% faster and peaked 150 MB lower on an
#: AMX host (602-676 MB at 64, over issue 15's 600 MB), with every real-tweet figure within noise of 64
#: (bench/RESULTS.md, "Posts per onnxruntime call").
MODEL_BATCH = 16
#: Width of the encoder's mean-pooled vector (MiniLM: 384).
POOLED_SIZE = 384
#: How far the sentiment transfer of ``complaint_score`` reaches (``complaint_transfer`` in config.json):
#: every post; only posts written to someone (an @mention, :data:`MENTION`, or marked ``addressed``); or those
#: and posts about an order, a delivery or a service (the intent is not ``other`` or ``praise``, :data:`OFF_TOPIC`);
#: or, ``"addressed"``, as ``"service"`` with the caller's ``addressed`` (where given) in place of the @mention.
COMPLAINT_TRANSFERS = ("all", "mentions", "service", "addressed")
#: Intents of a post about nothing a shop sells or does: under ``"service"``, a post written to nobody whose
#: probability of these is 0.5 or more gets no transfer (grief, news). The intent head reads some mood as about a
#: service ("ugh mondays"), which keeps it; on the random validation tweets that is 5 of v11's 73 merely negative
#: tweets called complaints, where an @mention of someone else was 48 (bench/RESULTS.md, eighteenth round).
OFF_TOPIC = ("other", "praise")
#: An @mention of any account (X, Mastodon ``@a@b.social``, Bluesky ``@a.bsky.social``); a numeric
#: handle is ``@user`` after :func:`prepare_text`, still a mention.
MENTION = re.compile(r"@\w")
HEADS: dict[str, tuple[str, ...]] = {
    "sentiment": SENTIMENTS,
    "complaint": ("no", "yes"),
    "intent": INTENTS,
}
#: How bad each kind of problem is, for urgency (see module docstring).
SEVERITY: dict[str, float] = {
    "lost_or_missing": 1.0,
    "damaged_or_wrong": 0.9,
    "failed_delivery": 0.8,
    "late_delivery": 0.7,
    "customer_service": 0.55,
    "refund_or_return": 0.5,
    "where_is_my_order": 0.45,
    "product_or_account": 0.3,
    "other": 0.05,
    "praise": 0.0,
}
URGENCY_WEIGHTS: dict[str, float] = {"complaint": 0.40, "negative": 0.20, "severity": 0.25, "signals": 0.15}
_URGENCY_WORDS = re.compile(
    r" (asap|urgent|urgently|immediately|now|today|tonight|still|again|yet again|never|"
    r"\d+ (?:days|weeks)|(?:two|three|four|five|six|several) (?:days|weeks)|"
    r"(?:second|third|fourth|3rd|4th) time|emergency|deadline|refund now|legal|fraud|scam) "
)
_EMPHATIC = ("!!", "?!", "!?", "??")
_TAG = re.compile(r"<[^>]{0,200}>")
_URL = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
_NUMERIC_HANDLE = re.compile(r"@\d+\b")
_SPACE = re.compile(r"\s+")
#: Half of a UTF-16 pair with no other half (an emoji cut off by an export or an API); the tokenizer
#: refuses a batch holding one.
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def prepare_text(text: str) -> str:
    """The text the model reads; training uses the same function so both see the same input."""
    text = text[: MAX_CHARS * 4]
    if not text.isascii():  # a cut-off emoji reads as the replacement character, not a failed batch
        text = _LONE_SURROGATE.sub("\ufffd", text)
    if "&" in text:
        text = html.unescape(text)
    if "<" in text:
        text = _TAG.sub(" ", text)
    if "http" in text or "www" in text or "HTTP" in text:
        text = _URL.sub("http", text)
    if "@" in text:
        text = _NUMERIC_HANDLE.sub("@user", text)
    return _SPACE.sub(" ", text[:MAX_CHARS]).strip()


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = logits.astype(np.float64) / temperature
    z -= z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


_UPPER = re.compile(r"[A-Z]")
_ASCII_LETTERS = re.compile(r"[A-Za-z]")
#: Emoji whose mood is plain. The tokenizer has none (they read as [UNK]), so a post of emoji and handles alone
#: took the model's prior for a post to that handle: "@LarkspurHelp 🤬🤬🤬" read as praise (languages audit).
NEGATIVE_EMOJI = frozenset("😡🤬😠👎😤😞😢😭😩😫😒🙄💩😖😣😾❌🚫💔😓😰😱😨🤮🤢😟😔☹🙁😿")
POSITIVE_EMOJI = frozenset("👍😍🙏❤😊😀😃😄😁🥰🤩💯👏🎉✨😘💕💖💗🙌👌🥳☺😇💚💙💜🧡💛😻")


def urgency_signals(text: str, view: str | None = None) -> float:
    """0..1: urgency words, emphatic punctuation and shouting, each counting a third.

    ``view`` is :func:`rules_view` of ``text`` when the caller already has it (it costs as
    much as the rest of this function)."""
    view = rules_view(text) if view is None else view
    score = min(2, len(set(_URGENCY_WORDS.findall(view)))) / 3
    if any(mark in text for mark in _EMPHATIC):
        score += 1 / 3
    capitals = len(_UPPER.findall(text))
    if capitals >= 8 and capitals / len(_ASCII_LETTERS.findall(text)) >= 0.6:
        score += 1 / 3
    return min(1.0, score)


def urgency(
    probs: dict[str, dict[str, float]], text: str, weights: dict[str, float] | None = None, view: str | None = None,
    signals: float | None = None,
) -> float:
    """Urgency from the calibrated heads and the raw text (formula in the module docstring).

    ``signals`` is :func:`urgency_signals` of ``text`` when the caller already has it."""
    w = weights or URGENCY_WEIGHTS
    severity = sum(p * SEVERITY.get(intent, 0.0) for intent, p in probs["intent"].items())
    value = (
        w["complaint"] * probs["complaint"]["yes"]
        + w["negative"] * probs["sentiment"]["negative"]
        + w["severity"] * severity
        + w["signals"] * (urgency_signals(text, view) if signals is None else signals)
    )
    return float(min(1.0, max(0.0, value)))


def readable_and_english(text: str, view: str | None = None) -> tuple[bool, bool]:
    """(has words to read, looks English) with the language check of :mod:`classifiers.language`."""
    words = (rules_view(text) if view is None else view).split()
    return readable(text), not _non_english_words(text, words)


def readable(text: str) -> bool:
    """Whether ``text`` has a letter outside its @handles, links and codes: words the model can read.

    ASCII text is searched with a regex instead of a loop in Python: there, letters are exactly
    A-Z and a-z."""
    text = words_only(text)
    if text.isascii():
        return _ASCII_LETTERS.search(text) is not None
    return any(ch.isalpha() for ch in text)


def _no_words(prepared: str, scores: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """Labels of a post with no words to read (emoji, handles, links): what the model gave is its prior for a post
    to that handle, not a reading. The mood comes from plain emoji (:data:`NEGATIVE_EMOJI`, :data:`POSITIVE_EMOJI`),
    else neutral; praise only with a happy mood. Fixed, modest scores: the post goes to review either way."""
    negative = sum(ch in NEGATIVE_EMOJI for ch in prepared) + len(SAD_EMOTICONS.findall(prepared))
    positive = sum(ch in POSITIVE_EMOJI for ch in prepared) + len(HAPPY_EMOTICONS.findall(prepared))
    mood = "negative" if negative > positive else "positive" if positive > negative else "neutral"
    sentiment = {label: (0.7 if label == mood else 0.15) for label in scores["sentiment"]}
    intent = dict(scores["intent"])
    if mood != "positive":
        intent.pop("praise", None)
        total = sum(intent.values()) or 1.0
        intent = {label: intent.get(label, 0.0) / total for label in scores["intent"]}
    return {**scores, "sentiment": sentiment, "intent": intent}


class OnnxClassifier:
    """Fine-tuned multi-task MiniLM (int8 ONNX). ``model_dir`` defaults to ``classifiers/model/``."""

    #: :meth:`classify` may run in two threads at once (onnxruntime sessions and tokenizers are
    #: thread-safe; nothing here changes after loading but the worker pool, made under a lock), so
    #: :func:`classifiers.jsonl.classify_jsonl` starts the next batch while it labels this one.
    concurrent_calls = True
    #: :meth:`classify` takes ``addressed`` (:func:`classifiers.classify`).
    reads_addressed = True

    def __init__(self, model_dir: str | os.PathLike[str] | None = None, *, threads: int = 2,
                 batch_size: int = MODEL_BATCH):
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.model_dir = Path(model_dir) if model_dir else MODEL_DIR
        model_path = self.model_dir / "model.onnx"
        for needed in (model_path, self.model_dir / "tokenizer.json", self.model_dir / "config.json"):
            if not needed.is_file():
                raise ValueError(f"model directory {self.model_dir}: missing {needed.name} (run `doorstep train`)")
        self.config: dict[str, Any] = json.loads((self.model_dir / "config.json").read_text(encoding="utf-8"))
        calibration_path = self.model_dir / "calibration.json"
        calibration = json.loads(calibration_path.read_text(encoding="utf-8")) if calibration_path.is_file() else {}
        self.temperatures: dict[str, float] = {h: float(calibration.get("temperature", {}).get(h, 1.0)) for h in HEADS}
        self.labels: dict[str, tuple[str, ...]] = {h: tuple(self.config["labels"][h]) for h in HEADS}
        if self.labels["sentiment"] != SENTIMENTS or self.labels["intent"] != INTENTS:
            raise ValueError(f"{self.model_dir / 'config.json'}: label order does not match doorstep.models")
        self.max_len = int(self.config.get("max_len", 64))
        self.review = {"intent": 0.4, "sentiment": 0.4, **self.config.get("review_below", {})}
        self.batch_size = batch_size
        self.name = str(self.config.get("name", "onnx-minilm"))
        self.complaint_transfer = str(self.config.get("complaint_transfer", "all"))
        if self.complaint_transfer not in COMPLAINT_TRANSFERS:
            raise ValueError(f"{self.model_dir / 'config.json'}: complaint_transfer {self.complaint_transfer!r} is not one of "
                             + ", ".join(repr(t) for t in COMPLAINT_TRANSFERS))

        self.tokenizer = Tokenizer.from_file(str(self.model_dir / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length=self.max_len)
        # ``threads`` model batches run at once, each on one thread of its own (a pool below), not
        # one batch on ``threads`` threads: a batch of 16 tweets is too small a job to split, and
        # onnxruntime's threads spin while they wait for each other. Every batch is the same
        # batch with the same padding as before, and a batch's result does not depend on how many
        # threads computed it (tests/test_classify_same.py), so the output is the same.
        self.threads = max(1, int(threads))
        self._pool: ThreadPoolExecutor | None = None
        self._pool_pid = 0
        self._pool_lock = threading.Lock()
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # No memory pattern: onnxruntime keeps one per input shape, and every batch has its own width
        # (dynamic padding), so the patterns only pile up. Without them `doorstep classify` peaks at
        # 526-544 MB instead of 591-597 MB on 12,284 tweets (issue 15: <= 600 MB), within 1-2% of the
        # speed (bench/RESULTS.md).
        options.enable_mem_pattern = False
        # The model is exported with residual Add + LayerNormalization unfused; onnxruntime would
        # fuse them back into SkipLayerNormalization, whose CPU kernel is slower here (+16-20%
        # posts/s without it, bench/RESULTS.md).
        # int8 weights where the CPU multiplies them without saturating (AVX-512 VNNI: 1.6x faster),
        # the shipped uint8 ones elsewhere: the same numbers either way (classifiers/int8_weights.py).
        self.session = ort.InferenceSession(
            model_for_this_cpu(model_path), options, providers=["CPUExecutionProvider"],
            disabled_optimizers=["SkipLayerNormFusion"],
        )
        self._outputs = [f"{head}_logits" for head in HEADS]
        # The care-tweet intent head (classifiers/intent_head.py), when the model folder has one:
        # it reads the encoder's pooled vector, which the model then exposes as a fourth output.
        self.intent_head = None
        if (self.model_dir / HEAD_FILE).is_file():
            output_names = {o.name for o in self.session.get_outputs()}
            if "pooled" not in output_names:
                raise ValueError(f"model directory {self.model_dir}: {HEAD_FILE} needs a model.onnx with a 'pooled' output")
            self.intent_head = IntentHead.load(self.model_dir)
            self._outputs.append("pooled")
        language.load()  # part of loading, not of the first post's time

    # ------------------------------------------------------------------ raw model
    def logits(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """Uncalibrated logits per head, rows in input order (training and evaluation use this)."""
        return self._logits([prepare_text(t or "") for t in texts])

    def _logits(self, prepared: Sequence[str]) -> dict[str, np.ndarray]:
        return self._start(prepared)()

    def _executor(self) -> ThreadPoolExecutor:
        """The worker threads that run model batches, made on first use (again in a forked child,
        which inherits the pool but none of its threads)."""
        with self._pool_lock:
            if self._pool is None or self._pool_pid != os.getpid():
                self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="onnx-batch")
                self._pool_pid = os.getpid()
            return self._pool

    def _start(self, prepared: Sequence[str]) -> Callable[[], dict[str, np.ndarray]]:
        """Tokenise ``prepared`` and start its model batches on the worker threads; the function
        returned waits for them and gives the logits per head, rows in input order.

        The caller's thread is free in between (onnxruntime releases the GIL while it runs), so
        :meth:`classify` reads the texts meanwhile. Posts are sorted by length and cut into
        batches of :attr:`batch_size` padded to their longest post, always the same way for the
        same input: int8 dynamic quantisation scales each batch as a whole, so a post's scores
        depend on its batch (module docstring)."""
        encodings = self.tokenizer.encode_batch(prepared)
        lengths = np.array([len(e.ids) for e in encodings])
        order = np.argsort(lengths, kind="stable")
        pool = self._executor() if self.threads > 1 and len(order) > self.batch_size else None
        batches: list[tuple[np.ndarray, Any]] = []
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            width = int(lengths[idx].max())
            ids = np.zeros((len(idx), width), dtype=np.int64)
            mask = np.zeros((len(idx), width), dtype=np.int64)
            for row, i in enumerate(idx):
                n = lengths[i]
                ids[row, :n] = encodings[i].ids
                mask[row, :n] = 1
            feed = {"input_ids": ids, "attention_mask": mask}
            batches.append((idx, pool.submit(self.session.run, self._outputs, feed) if pool else feed))

        def wait() -> dict[str, np.ndarray]:
            out = {head: np.zeros((len(prepared), len(labels)), dtype=np.float32) for head, labels in self.labels.items()}
            heads = list(HEADS)
            if len(self._outputs) > len(HEADS):
                heads.append("pooled")
                out["pooled"] = np.zeros((len(prepared), POOLED_SIZE), dtype=np.float32)
            for idx, job in batches:
                results = job.result() if pool else self.session.run(self._outputs, job)
                for head, values in zip(heads, results):
                    out[head][idx] = values
            return out

        return wait

    def probabilities(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """Calibrated probabilities per head (temperature-scaled softmax)."""
        return self._probabilities([prepare_text(t or "") for t in texts])

    def _probabilities(self, prepared: Sequence[str]) -> dict[str, np.ndarray]:
        return self._calibrated(self._logits(prepared), prepared)

    def _calibrated(self, logits: dict[str, np.ndarray], prepared: Sequence[str],
                    evidence: np.ndarray | None = None) -> dict[str, np.ndarray]:
        pooled = logits.pop("pooled", None)
        probs = {head: softmax(v, self.temperatures[head]) for head, v in logits.items()}
        if self.intent_head is not None and pooled is not None:
            probs["intent"] = self.intent_head.probabilities(
                pooled, prepared, np.log(np.maximum(probs["intent"], 1e-12)), evidence
            )
        return probs

    # ------------------------------------------------------------------ protocol
    def classify(self, texts: Sequence[str], addressed: Sequence[bool | None] | None = None) -> list[Labels]:
        """One :class:`Labels` per text. ``addressed`` (one per text) marks posts written to someone whose text
        may show no @mention (a reply in a thread, a private message): with ``complaint_transfer = "mentions"``
        they keep the sentiment transfer as posts with an @mention do. ``None`` for a post = not told; only
        ``"addressed"`` tells False from None (False: an @mention of someone else does not count)."""
        if addressed is not None and len(addressed) != len(texts):
            raise ValueError(f"addressed has {len(addressed)} values for {len(texts)} texts; give one per text")
        if not texts:
            return []
        prepared = [prepare_text(t or "") for t in texts]
        finish = self._start(prepared)
        # While the model runs, read what the texts alone say (none of it needs the model).
        views = [rules_view(text) for text in prepared]
        signals = [urgency_signals(text, view) for text, view in zip(prepared, views)]
        has_letters = [readable(text) for text in prepared]
        # A post with no letters goes to review whatever its language, so only the others are identified
        # (all at once: classifiers.language.non_english gives looks_non_english's verdicts, 4x cheaper).
        readable_posts = [i for i, letters in enumerate(has_letters) if letters]
        english = [True] * len(prepared)
        for i, foreign in zip(readable_posts, non_english([prepared[i] for i in readable_posts])):
            english[i] = not foreign
        languages = language.languages_of(prepared, english)
        evidence = self.intent_head.evidence(prepared) if self.intent_head is not None else None
        probs = self._calibrated(finish(), prepared, evidence)
        labels = [
            self._labels(text, {h: probs[h][i] for h in HEADS}, views[i], signals[i], has_letters[i], english[i],
                         addressed[i] if addressed is not None else None)
            for i, text in enumerate(prepared)
        ]
        return [lab.model_copy(update={"other_language": lang}) if lang else lab for lab, lang in zip(labels, languages)]

    def _labels(self, prepared: str, row: dict[str, np.ndarray], view: str, signals: float, has_letters: bool,
                english: bool, addressed: bool | None = None) -> Labels:
        scores = {head: {label: float(p) for label, p in zip(self.labels[head], row[head])} for head in HEADS}
        if not has_letters:
            scores = _no_words(prepared, scores)
        sentiment = max(scores["sentiment"], key=scores["sentiment"].__getitem__)
        intent = max(scores["intent"], key=scores["intent"].__getitem__)
        complaint_score = scores["complaint"]["yes"]
        if self.complaint_transfer == "addressed" and addressed is not None:
            written = addressed  # the caller knows whether it reached us; an @mention of someone else does not count
        else:
            written = bool(addressed) or bool(MENTION.search(prepared))
        if (self.complaint_transfer == "all" or written
                or (self.complaint_transfer in ("service", "addressed")
                    and sum(scores["intent"][i] for i in OFF_TOPIC) < 0.5)):
            complaint_score = max(complaint_score, scores["sentiment"]["negative"])
        scores["complaint"] = {"no": 1.0 - complaint_score, "yes": complaint_score}
        unsure = (
            scores["intent"][intent] < self.review["intent"]
            or scores["sentiment"][sentiment] < self.review["sentiment"]
        )
        return Labels(
            sentiment=sentiment,
            sentiment_scores=scores["sentiment"],
            complaint=complaint_score >= 0.5,
            complaint_score=min(1.0, max(0.0, complaint_score)),
            intent=intent,
            intent_scores=scores["intent"],
            urgency=urgency(scores, prepared, self.config.get("urgency_weights"), view, signals),
            needs_review=not has_letters or not english or unsure,
            model=self.name,
        )
