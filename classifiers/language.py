"""Is this post in English? Offline language identification for ``needs_review``.

The classifiers are trained on English posts, so a post in another language gets labels
nobody should trust ("Mi paquete nunca llegó, pésimo servicio" reads as neutral): it goes to
human triage instead. Counting function words missed exactly such short posts, so this uses
py3langid (a maintained fork of langid.py: a naive Bayes model over byte n-grams, shipped in
the wheel, no network, about 9,000 posts/s on one core), restricted to the languages a shop's
customers are likely to write in, which makes short posts far more reliable.

A post "looks non-English" when

* more than 30 % of its letters are outside ASCII (any non-Latin script, including ones the
  language list does not name), or
* py3langid names another language with at least :data:`MIN_CONFIDENCE` (normalised
  probability over :data:`LANGUAGES`).

Latin-script posts too short to judge (fewer than :data:`MIN_LETTERS` letters, "ok", "no") count as
English: a two-letter reply is not worth a reviewer's time. Measured on the twcs sample's
2,284 customer tweets, everything flagged at 0.7 is in fact Spanish, Japanese, German, French,
Portuguese or Turkish, and none of the demo shop's English posts is flagged (tests).
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np

#: Languages the identifier chooses among (ISO 639-1). English must be one of them.
LANGUAGES: tuple[str, ...] = (
    "en", "es", "fr", "de", "it", "pt", "nl", "pl", "sv", "da", "no", "fi", "tr", "ru", "uk", "ar", "zh",
    "ja", "ko", "hi", "el", "cs", "ro", "hu", "id", "vi", "th", "he", "cy", "ga",
)
#: Normalised probability above which another language is believed.
MIN_CONFIDENCE = 0.7
#: Fewer letters than this: too short to judge, treated as English.
MIN_LETTERS = 8

_ASCII_LETTER = re.compile(r"[A-Za-z]")
_ASCII_NON_LETTERS = bytes(c for c in range(128) if not chr(c).isalpha())
_NON_ASCII = re.compile(r"[^\x00-\x7f]")


#: What is no word to read: an @handle (whom the post is to: "@LarkspurHelp 🤬🤬🤬" says nothing in words) and a
#: link (:func:`prepare_text` leaves "http"; Mastodon's ``@a@b.social`` and Bluesky's ``@a.bsky.social`` included).
_NOT_WORDS = re.compile(r"@[\w.@-]+|\bhttps?\b")
#: A code of letters and digits mixed (an order or tracking number: "1Z999AA10123456784", "LH-1042"): no word to read.
#: Txt-speak ("m8", "2wks") is caught too, which matters only where a post has no other word.
_DIGIT = re.compile(r"\d")
_CODES = re.compile(r"\b(?=[\w-]*\d)(?=[\w-]*[^\W\d_])[\w-]+\b")
#: Text emoticons, for a post with no words: ":(" is as plain as "😞".
SAD_EMOTICONS = re.compile(r"(?<!\S)(?:[:;=]'?-?[(\[/\\|]|D-?:|>:-?\()(?!\S)")
HAPPY_EMOTICONS = re.compile(r"(?<!\S)(?:[:;=]-?[)\]DpP]|\^_\^|<3)(?!\S)")


def words_only(text: str) -> str:
    """``text`` without its @handles, links, codes (order and tracking numbers: "1Z999AA10123456784") and
    emoticons: what a reader reads, and what a language is judged by."""
    if "@" in text or "http" in text:
        text = _NOT_WORDS.sub(" ", text)
    if _DIGIT.search(text):
        text = _CODES.sub(" ", text)
    if ":" in text or ";" in text or "=" in text:  # ":D", ":P": the letter is a face
        text = HAPPY_EMOTICONS.sub(" ", SAD_EMOTICONS.sub(" ", text))
    return text


@lru_cache(maxsize=1)
def _identifier() -> Any:
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    identifier.set_languages(list(LANGUAGES))
    return identifier


def load() -> None:
    """Read the identifier's model now (≈0.3 s) instead of on the first post that needs it.

    Classifiers call this while they load, so the cost counts as loading, not as the first batch's
    throughput (issue 15 measures ``doorstep classify`` in posts/s *after* load)."""
    _identifier()


def detect(text: str) -> tuple[str, float]:
    """(ISO 639-1 code, normalised probability) of the most likely language among :data:`LANGUAGES`."""
    lang, probability = _identifier().classify(text)
    return str(lang), float(probability)


def _script_verdict(text: str) -> bool | None:
    """What the letters alone decide (True: another script; False: nothing to judge or too short), or
    None when the identifier has to read the text."""
    # In ASCII the letters are exactly A-Z and a-z (tests/test_classify_same.py): bytes.translate
    # counts them without a Python loop, and only the other characters are asked str.isalpha.
    ascii_letters = len(text.encode("ascii", "ignore").translate(None, _ASCII_NON_LETTERS))
    if text.isascii():
        letters = ascii_letters
    else:
        letters = ascii_letters + sum(1 for ch in _NON_ASCII.findall(text) if ch.isalpha())
    if not letters:
        return False
    if not text.isascii() and (letters - ascii_letters) / letters > 0.3:
        return True  # another script: one CJK character is a word, so no length rule here
    if letters < MIN_LETTERS:
        return False
    return None


def looks_non_english(text: str) -> bool:
    """Whether ``text`` should go to a person instead of the model, judged on its words alone
    (:func:`words_only`: "@LarkspurHelp @LarkspurOrders 包裹丢了" was 26 handle letters to 4 Han ones, and read as
    English, positive, p4: audit of stop 39)."""
    text = words_only(text)
    verdict = _script_verdict(text)
    if verdict is not None:
        return verdict
    lang, probability = detect(text)
    return lang != "en" and probability >= MIN_CONFIDENCE


def non_english(texts: Sequence[str]) -> list[bool]:
    """:func:`looks_non_english` of every text, with the identifier run on the batch at once.

    py3langid walks each post's bytes through its automaton in a Python loop and scores it with
    numpy calls of its own: about 0.1-0.17 ms a post, the largest part of ``doorstep classify``
    outside the model (issue 15's speed goal). Here the automaton steps every post of the batch
    at once, one byte position at a time, and one matrix product scores them all. The scores are
    py3langid's up to float rounding (summed in another order), so a post whose verdict sits
    within :data:`_RECHECK` of the threshold, or whose two best languages do, is read again by
    py3langid itself: the verdicts are exactly :func:`looks_non_english`'s (tests/test_language.py).
    """
    out = [False] * len(texts)
    pending: list[int] = []
    texts = [words_only(text) for text in texts]
    for i, text in enumerate(texts):
        verdict = _script_verdict(text)
        if verdict is None:
            pending.append(i)
        else:
            out[i] = verdict
    if pending:
        for i, (lang, probability) in zip(pending, detect_many([texts[i] for i in pending])):
            out[i] = lang != "en" and probability >= MIN_CONFIDENCE
    return out


#: The scripts each listed language is written in (the first word of a letter's Unicode name). A language the
#: identifier names for a text in another script is a guess by the nearest: Tamil read "Welsh", Georgian
#: "Norwegian", Armenian "Spanish" (audit of stop 39); such a text is "und", another language.
SCRIPTS: dict[str, frozenset[str]] = {
    **{lang: frozenset({"LATIN"}) for lang in ("en", "es", "fr", "de", "it", "pt", "nl", "pl", "sv", "da", "no", "fi",
                                               "tr", "cs", "ro", "hu", "id", "vi", "cy", "ga")},
    "ru": frozenset({"CYRILLIC"}), "uk": frozenset({"CYRILLIC"}), "ar": frozenset({"ARABIC"}),
    "zh": frozenset({"CJK"}), "ja": frozenset({"CJK", "HIRAGANA", "KATAKANA"}), "ko": frozenset({"HANGUL", "CJK"}),
    "hi": frozenset({"DEVANAGARI"}), "el": frozenset({"GREEK"}), "th": frozenset({"THAI"}), "he": frozenset({"HEBREW"}),
}


def written_in(text: str, lang: str) -> bool:
    """Whether ``text`` is written in a script of ``lang``: for a language of the Latin script, a third of its
    letters at least; for another, most of its letters outside the Latin script (brand names are written in Latin
    letters in every language: "amazonのfireTVstickが見れない" is Japanese). True without letters, and for a
    language :data:`SCRIPTS` does not know."""
    scripts = SCRIPTS.get(lang)
    if scripts is None:
        return True
    latin = mine = other = 0
    for ch in text:
        if ch.isalpha():
            script = "LATIN" if ch.isascii() else unicodedata.name(ch, "UNKNOWN").split(" ")[0]
            if script == "LATIN":
                latin += 1
            elif script in scripts:
                mine += 1
            else:
                other += 1
    if "LATIN" in scripts:
        return not (latin + other) or latin * 3 >= latin + other
    return not (mine + other) or mine * 2 > mine + other


def languages_of(texts: Sequence[str], english: Sequence[bool]) -> list[str | None]:
    """The language of each text judged not English (ISO 639-1 among :data:`LANGUAGES`; "und" where the
    identifier says English or names a language not written in the text's script); None for the English ones.
    Only the few non-English posts are identified again, so the batch costs what :func:`non_english` did."""
    out: list[str | None] = [None] * len(texts)
    foreign = [i for i, is_english in enumerate(english) if not is_english]
    if foreign:
        words = [words_only(texts[i]) for i in foreign]
        for i, text, (lang, _) in zip(foreign, words, detect_many(words)):
            out[i] = lang if lang != "en" and written_in(text, lang) else "und"
    return out


#: Batch scores this close to the threshold, or two languages this close, are recomputed one by one.
_RECHECK = 1e-4


@lru_cache(maxsize=1)
def _automaton() -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """py3langid's byte automaton as numpy arrays (next state, row offsets, feature per state), or
    None where its internals are not the ones this was written against (then :func:`detect_many`
    reads post by post)."""
    identifier = _identifier()
    try:
        nextmove = np.asarray(identifier.tk_nextmove, dtype=np.int64)
        rowbase = np.asarray(identifier._rowbase, dtype=np.int64)
        output = np.asarray(identifier.tk_output, dtype=np.int64)
        identifier._encode("probe")
    except (AttributeError, TypeError, ValueError):
        return None
    if identifier._alias_pairs or not identifier._norm_probs or identifier.min_confidence is not None:
        return None
    return nextmove, rowbase, output


#: Posts scored together by :func:`detect_many`: its table is (features of these posts x 97 languages),
#: ~20 kB a post, and `doorstep classify` checks 2,048 posts at a time, two batches at once (issue 15:
#: <= 600 MB). A few hundred posts already make each numpy call long enough that Python's share is small.
CHUNK = 256


def detect_many(texts: Sequence[str]) -> list[tuple[str, float]]:
    """:func:`detect` of every text (the same answers; see :func:`non_english`), :data:`CHUNK` posts
    at a time (each post's score depends on its own bytes only, so the chunks change nothing)."""
    automaton = _automaton()
    if automaton is None or not texts:
        return [detect(t) for t in texts]
    out: list[tuple[str, float]] = []
    for start in range(0, len(texts), CHUNK):
        out.extend(_detect_chunk(texts[start : start + CHUNK], automaton))
    return out


def _detect_chunk(texts: Sequence[str], automaton: tuple[np.ndarray, np.ndarray, np.ndarray]) -> list[tuple[str, float]]:
    nextmove, rowbase, output = automaton
    identifier = _identifier()
    encoded = [identifier._encode(t) for t in texts]
    lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
    width = int(lengths.max())
    # One row per byte position, one column per post (so each step reads contiguous memory).
    data = np.zeros((width, len(encoded)), dtype=np.int64)
    for i, raw in enumerate(encoded):
        data[: len(raw), i] = np.frombuffer(raw, dtype=np.uint8)
    # Step every post's automaton together; positions past a post's end are dropped below.
    state = np.zeros(len(encoded), dtype=np.int64)
    features = np.empty((width, len(encoded)), dtype=np.int64)
    for position in range(width):
        state = nextmove[rowbase[state] + data[position]]
        features[position] = output[state]
    keep = (np.arange(width)[:, None] < lengths[None, :]) & (features >= 0)
    rows = np.nonzero(keep)[1]
    n_features = identifier.nb_ptc.shape[0]
    pairs, counts = np.unique(rows * n_features + features[keep], return_counts=True)
    pair_rows, pair_features = pairs // n_features, pairs % n_features
    table = identifier.nb_ptc[pair_features].astype(np.float32)
    weighted = np.log1p(counts.astype(np.float32))[:, None] * table
    scores = np.zeros((len(encoded), table.shape[1]), dtype=np.float32)
    has_features = np.zeros(len(encoded), dtype=bool)
    if len(pairs):  # pairs are sorted, so each post's features are one run of rows
        starts = np.flatnonzero(np.r_[True, pair_rows[1:] != pair_rows[:-1]])
        scores[pair_rows[starts]] = np.add.reduceat(weighted, starts, axis=0)
        has_features[pair_rows[starts]] = True
    scores[has_features] += identifier.nb_pc.astype(np.float32)  # featureless posts score 0.0, as py3langid's
    scores *= (1.0 / np.sqrt(np.maximum(lengths, 1))).astype(np.float32)[:, None]
    scores = np.exp(scores - scores.max(axis=1, keepdims=True))
    scores /= scores.sum(axis=1, keepdims=True)
    best = scores.argmax(axis=1)
    top = np.sort(scores, axis=1)[:, -2:]
    out = []
    for i, text in enumerate(texts):
        confidence = float(top[i, 1])
        if abs(confidence - MIN_CONFIDENCE) < _RECHECK or top[i, 1] - top[i, 0] < _RECHECK:
            out.append(detect(text))
        else:
            out.append((str(identifier.nb_classes[best[i]]), confidence))
    return out
