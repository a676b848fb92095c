"""A transparent baseline: VADER for sentiment, readable keyword rules for intent.

Why keep it next to a trained model: it needs no model files, starts instantly,
runs anywhere, and every label can be explained to an agent in one line
(:meth:`BaselineClassifier.explain`). It is the fallback when no model is
installed and the yardstick a trained model has to beat.

How a post is read
------------------
* **Cleaning.** HTML entities are unescaped, tags, URLs and @handles removed
  (handles such as ``@AppleSupport`` or URLs with ``/returns/`` would otherwise
  fire rules), ``#`` dropped from hashtags, curly apostrophes straightened. Only
  the first :data:`MAX_CHARS` characters are read: posts state their problem up
  front, and the cap bounds the time one pasted e-mail can take.
* **Sentiment** is VADER's compound score ``c`` with VADER's own thresholds
  (``c >= 0.05`` positive, ``c <= -0.05`` negative), plus a few care-team words
  VADER lacks (:data:`DOMAIN_LEXICON`). The three scores are a softmax over
  ``k*(c-0.05)``, ``k*(-c-0.05)`` and ``k*(0.05-|c|)``, so they sum to 1 and their
  arg-max is always the label.
* **Intent** comes from the phrase rules in :data:`RULES`, regular expressions
  matched against the "rules view" of a post: lower-case words separated by single
  spaces, punctuation dropped (:func:`rules_view`). Each rule has a weight
  (:data:`STRONG` for an unambiguous phrase, :data:`WEAK` for a single word that
  can mean other things); each tier adds its weight times the number of distinct
  phrases it matched (at most 3) to its intent's score. Matching goes word by word
  and tries an intent's strong phrases before its weak words, so "return it" counts
  once, as strong, not again for "return". Praise only counts when the
  sentiment is positive (half when neutral) and no sarcasm phrase
  (:data:`NOT_PRAISE`, e.g. "thanks for nothing") matches. ``other`` starts with
  a prior of :data:`OTHER_PRIOR`, and scores become
  probabilities by additive smoothing: ``p = (score + ALPHA) / (total + 10*ALPHA)``.
* **Complaint** = negative sentiment, or a problem intent wins (the delivery
  intents, refunds, customer service). ``complaint_score`` is above 0.5 exactly
  when ``complaint`` is true and grows with the evidence.
* **Urgency** in [0, 1] adds up: being a complaint, how bad the problem is
  (lost/damaged > failed > late > where-is-my-order), how negative the post is,
  urgency words (:data:`URGENCY_WORDS`: "asap", "today", "again", "third time",
  "still", "5 days", ...), emphatic punctuation ("!!", "?!") and shouting (8+
  capitals making 60%+ of the letters); posts that are not complaints get half.
* **needs_review** is set when the post has no words to read, looks non-English
  (:mod:`classifiers.language`: offline language identification with py3langid, plus
  a non-Latin-script check), or the top two intents or sentiments are within
  :data:`REVIEW_MARGIN`.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Sequence
from functools import cache

from vaderSentiment.vaderSentiment import BOOSTER_DICT, SentimentIntensityAnalyzer, SentiText

from doorstep.models import DELIVERY_INTENTS, INTENTS, Labels

#: Characters of a post that are read; the rest is ignored (see module docstring).
MAX_CHARS = 2000
STRONG = 3.0
WEAK = 1.5
#: Score ``other`` starts with, so a post with no rule hits is "other" with a clear margin.
OTHER_PRIOR = 1.0
#: Additive smoothing for intent probabilities: no intent is ever exactly 0.
ALPHA = 0.1
#: Sharpness of the sentiment softmax over VADER's compound score. Not calibrated: chosen so a
#: compound of 0.3 reads as ~0.9 positive and a flat 0.0 as a clear (~0.45) neutral.
SENTIMENT_SHARPNESS = 5.0
SENTIMENT_THRESHOLD = 0.05
#: Top-two probability gap under which a label is called unsure.
REVIEW_MARGIN = 0.10
#: Intents that are a problem the care team must solve (a complaint even when worded politely).
PROBLEM_INTENTS: frozenset[str] = DELIVERY_INTENTS | {"refund_or_return", "customer_service"}
#: Urgency added for how bad each kind of problem is.
SEVERITY: dict[str, float] = {
    "lost_or_missing": 0.30,
    "damaged_or_wrong": 0.30,
    "failed_delivery": 0.20,
    "late_delivery": 0.15,
    "where_is_my_order": 0.10,
    "customer_service": 0.10,
    "refund_or_return": 0.10,
    "product_or_account": 0.05,
    "praise": 0.0,
    "other": 0.0,
}

#: Care-team words VADER does not know (or reads the wrong way), VADER's -4..4 scale.
DOMAIN_LEXICON: dict[str, float] = {
    "smashed": -1.8,
    "soaked": -1.2,
    "dented": -1.2,
    "cracked": -1.3,
    "leaking": -1.2,
    "shattered": -1.8,
    "overdue": -1.2,
    "late": -0.8,
    "shambles": -2.0,
    "rubbish": -1.8,
    "ghosted": -1.5,
    "joke": -1.0,  # "what a joke" -- in care conversations it is never a compliment
}

# Rule phrases are regular expressions over the cleaned, lower-cased post; each is
# matched as a whole word (no word character directly before or after it).
_NOT = r"(?<!not )(?<!no )(?<!n't )(?<!never )"
_THING = r"(?:order|parcel|package|delivery|item|items|shipment|stuff|box|purchase|goods)"
_NUM = r"(?:\d+|a|an|one|two|three|four|five|six|seven|eight|nine|ten|several|few|couple of)"

RULES: dict[str, dict[float, tuple[str, ...]]] = {
    "where_is_my_order": {
        STRONG: (
            rf"where(?:'s| is| are|s)? (?:my|our|the|me) (?:\w+ )?{_THING}",
            r"where(?:'s| is) (?:it|this)",
            r"tracking (?:says|shows|said|showed|hasn't|has not|hasnt|isn't|is not|still|not|doesn't|does not|page|info|information|status)",
            r"(?:no|any) (?:updates?|tracking|movement|news|info|information)",
            r"(?:hasn't|has not|hasnt|not|haven't|have not) (?:been )?(?:updated|moved|changed|shipped|dispatched)",
            r"stuck (?:in|at|on)",
            rf"{_THING} status",
            rf"(?:has|is|was) (?:it|my {_THING}) (?:been )?(?:shipped|dispatched|sent)",
        ),
        WEAK: (r"track(?:ing)?", r"out for delivery", r"when (?:will|is|can|do) (?:my|i|it|the|we)", r"eta"),
    },
    "late_delivery": {
        STRONG: (
            rf"{_NUM} (?:days?|weeks?|hours?) late",
            r"(?:arrived?|delivered|came|coming|turned up|here|running) (?:very |so |really )?late",
            rf"late {_THING}",
            r"still (?:not|hasn't|has not|haven't|have not|hasnt|havent|isn't|not yet|not been|never) (?:yet )?(?:arrived|come|here|been delivered|delivered|turned up|shown up|received|got|had|showed up)",
            r"still (?:no sign|nothing|no \w+ (?:yet|at all))",
            rf"still waiting (?:for|on) (?:my |the |our |this |an? )?(?:\w+ )?(?:{_THING}|it)",
            r"(?:was|were|is) (?:due|supposed to|meant to|expected to|promised)",
            r"should (?:have|'ve) (?:arrived|been (?:here|delivered)|come)",
            r"delay(?:ed|s)?",
            r"overdue",
            rf"{_NUM} (?:days?|weeks?) (?:(?:and|later|on) )?(?:still )?(?:nothing|waiting|no sign)",
            r"(?:missed|past|passed) (?:the )?(?:estimated |promised |expected )?(?:delivery )?(?:date|deadline)",
            r"taking (?:so long|too long|forever|ages)",
        ),
        WEAK: (r"late", r"ages", r"how long", r"next day"),
    },
    "failed_delivery": {
        STRONG: (
            r"missed (?:the |my |a |our )?(?:delivery|parcel|package|courier|driver)",
            r"(?:no one|noone|nobody|driver never|never even|didn't even|did not even|didn't|did not) (?:knocked|knock|rang|rung|ring|tried|try|came to the door|bothered)",
            r"(?:card|note|slip|calling card) (?:through|in|on|left in) (?:the |my )?(?:door|letterbox|letter box|mailbox)",
            r"sorry we missed you",
            r"failed (?:delivery|attempt|to deliver)",
            r"(?:attempted|attempt(?:ed)? to) deliver(?:y)?",
            r"delivery attempt",
            r"said (?:no one|nobody|noone) (?:was |were )?(?:home|in|there|available|answered)",
            r"(?:i was|we were|i've been|i have been|someone was|somebody was) (?:home|in|here|in all day|home all day)",
            r"(?:returned|sent back|going back|being returned|return) to (?:the )?(?:sender|depot|warehouse)",
            r"re ?deliver(?:y|ed)?",
            r"(?:couldn't|could not|can't|cannot|unable to) (?:find|access|locate) (?:the |my |our )?(?:address|house|property|building|flat)",
            r"thrown over (?:the |my |our )?(?:fence|gate|wall)",
        ),
        WEAK: (
            r"left (?:it |my \w+ |the \w+ )?(?:outside|on the (?:door)?step|at the door|in the bin|with (?:a |my )?neighbou?r)",
            r"collect (?:it |my \w+ )?from (?:the )?(?:depot|post office|office|locker)",
        ),
    },
    "lost_or_missing": {
        STRONG: (
            rf"{_THING} (?:has been|was|is|got|been|has gone|went) (?:lost|missing|stolen)",
            rf"lost (?:my|the|our) (?:\w+ )?{_THING}",
            r"marked (?:as )?delivered",
            r"(?:says|said|shows|showing|showed) (?:it was |as |it's |its )?delivered",
            r"delivered but",
            r"never (?:arrived|came|received|got it|turned up|showed up|delivered)",
            r"not received(?! (?:a|any) (?:reply|response|answer|call|email))",
            r"(?:haven't|have not|havent|didn't|did not) (?:received|receive)(?! (?:a|any) (?:reply|response|answer|call|email))",
            r"stolen",
            r"delivered to (?:the )?(?:wrong|another|someone else's|a different) (?:address|house|person|door|flat)",
            r"no sign of (?:it|my|the)",
            r"(?:can't|cannot|can not) find (?:it|my \w+|the \w+) anywhere",
        ),
        WEAK: (r"lost", r"missing", r"disappeared", r"vanished"),
    },
    "damaged_or_wrong": {
        STRONG: (
            _NOT + r"(?:damaged|damage|broken|smashed|crushed|soaked|dented|cracked|torn|ripped|shattered|faulty|defective|leak(?:ed|ing|s)?)",
            r"wrong (?:item|items|size|colou?r|product|order|thing|one|parcel|model|book|shoes?)",
            r"not what i (?:ordered|paid for|bought)",
            r"(?:item|items|part|parts|pieces?) (?:is |are |was |were )?missing",
            r"missing (?:item|items|part|parts|pieces?)",
            rf"(?:{_THING}|it) (?:was |had been |has been |arrived )?(?:opened|open|tampered)",
            r"in the rain",
            r"(?:arrived|came|turned up) (?:wet|damaged|broken|open|in pieces|in bits)",
        ),
        WEAK: (r"wet", r"scratched", r"stained", r"expired", r"half empty", r"mouldy|moldy"),
    },
    "refund_or_return": {
        STRONG: (
            r"refund(?:ed|s)?",
            r"money back",
            r"charge ?back",
            r"send (?:it|this|them|the \w+) back",
            r"return (?:it|this|them|the|my|an?|these|those)",
            r"returns? (?:label|portal|form|policy|request|number|code)",
            r"reimburse(?:d|ment)?",
            r"(?:charged twice|double charged|overcharged)",
        ),
        WEAK: (r"returns?|returning", r"exchange", r"cancel(?:led|ed)? (?:my |the |an? )?(?:order|purchase)", r"compensation"),
    },
    "customer_service": {
        STRONG: (
            r"no (?:reply|replies|response|responses|answer|call ?back)",
            r"not (?:replied|responded|answered|got back|gotten back)",
            r"(?:haven't|hasn't|have not|has not|never|nobody has|no one has|noone has) (?:replied|responded|answered|got back|gotten back|heard back|called back|rang back|heard anything)",
            r"on hold",
            r"(?:nobody|no one|noone) (?:is )?(?:answers|answering|responds|responding|replies|replying|helps|helping|picks up|gets back|getting back|cares)",
            r"(?:dm'd|dmed|dm'ed|pm'd|pmed|messaged you|e ?mailed you|called you|rang you)",
            r"sent (?:you )?(?:a |several |multiple |many |\d+ )?(?:dms?|messages?|emails?|private messages?)",
            r"waiting (?:for|on) (?:a |an |your )?(?:response|reply|call ?back|answer)",
            r"live chat",
            r"hung up",
            r"(?:rude|unhelpful)",
            r"useless (?:service|staff|agents?|support|advisors?|team)",
            r"speak to (?:a |an )?(?:someone|somebody|manager|human|person|real person|supervisor)",
            r"(?:make|file|raise|lodge|made|filed|raised|lodged) (?:a|my) complaint",
            r"escalate",
            r"call (?:centre|center)",
            r"thanks? for nothing",
        ),
        WEAK: (r"customer (?:service|care|support)", r"(?:dm|dms|email|emails|phone|called|chat|agent)"),
    },
    "product_or_account": {
        STRONG: (
            r"(?:out of|back in|in) stock",
            r"restock(?:ed|ing)?",
            r"(?:discount|promo|voucher|coupon|gift) (?:code|card)",
            r"reset (?:my )?password",
            r"(?:can't|cannot|can not|unable to) (?:log ?in|sign ?in|access my account)",
            r"locked out",
            r"(?:card|payment) (?:was |got |keeps getting )?(?:declined|failed|rejected)",
            r"size guide",
        ),
        WEAK: (
            r"account",
            r"password",
            r"app",
            r"log ?in|sign ?in",
            r"price|prices|pricing",
            r"website|checkout",
            r"voucher|coupon",
            r"payment",
            r"subscription|membership",
        ),
    },
    "praise": {
        STRONG: (
            r"great (?:service|job|work|experience|delivery|courier|driver|stuff|customer service|support)",
            r"(?:super|really|so|very|incredibly|amazingly) (?:quick|fast|speedy|efficient)",
            r"(?:quick|fast|speedy|early|prompt|smooth|efficient) (?:delivery|service|response|reply|dispatch)",
            r"(?:arrived|came|delivered) (?:early|on time|quickly|so quickly|the next day|next day|ahead of)",
            r"well done",
            r"top notch",
            r"(?:5|five) stars?",
            r"best (?:service|courier|delivery|customer service|driver)",
            r"(?:so|very|really|super|extremely) helpful",
            r"thank you so much|thanks so much|many thanks|thanks a million|thanks a bunch",
            r"keep it up",
            r"impressed",
        ),
        WEAK: (
            r"thank(?:s| you|ful)?|thx|ty|cheers",
            r"love|loved|loving|lovely",
            r"amazing|brilliant|excellent|fantastic|awesome|perfect|wonderful|superb|great",
            r"appreciated?|kudos|shout ?out|legend",
        ),
    },
}
#: Phrases that mean the praise words are sarcasm: praise is not counted when one matches.
NOT_PRAISE = (
    r"thanks? for nothing",
    r"(?:great|brilliant|amazing|fantastic|excellent) (?:job|service|work) (?:not|as usual|again)",
    r"love (?:how|that|it when) (?:you|my|i|the|your)",
    r"(?:great|brilliant|fantastic|perfect) (?:another|still)",
)
URGENCY_WORDS = (
    r"urgent(?:ly)?",
    r"asap|a s a p",
    r"immediately",
    r"emergency",
    r"right now",
    r"today|tonight|tomorrow",
    r"again",
    r"(?:third|3rd|fourth|4th|fifth|5th|second|2nd) time",
    r"still",
    rf"{_NUM} (?:days|weeks)|for (?:days|weeks|ages)",
    r"desperate(?:ly)?",
    r"need (?:it|this|them) by",
    r"birthday|christmas|wedding|funeral",
    r"medication|medicine|insulin",
)

_TAG = re.compile(r"<[^<>]{0,500}>")
_URL = re.compile(r"https?://\S+|www\.\S+", re.IGNORECASE)
_HANDLE = re.compile(r"(?<!\w)@\w+")
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'"})
#: Everything but word characters and apostrophes inside words separates words in the rules view.
_SEPARATORS = re.compile(r"[^\w']+")
_STRAY_APOSTROPHES = re.compile(r" '+|'+ ")
_UPPER = re.compile(r"[A-Z]")
_ASCII_LETTER = re.compile(r"[A-Za-z]")
#: Emphatic punctuation ("!!", "??", "?!", "!?") counts as one urgency signal.
_EMPHATIC = ("!!", "??", "?!", "!?")


def _alternation(phrases: Sequence[str]) -> str:
    return "|".join(f"(?:{p})" for p in phrases)


def _compile(phrases: Sequence[str]) -> re.Pattern[str]:
    """Phrases as one pattern over the rules view (see :func:`rules_view`).

    Starting with the literal space in front of each word lets the regex engine
    jump from word to word instead of trying every character; the trailing space
    is only looked at, so the next phrase can start on it.
    """
    return re.compile(f" (?:{_alternation(phrases)})(?= )")


def _compile_intent(tiers: dict[float, tuple[str, ...]]) -> tuple[tuple[float, ...], re.Pattern[str]]:
    """One pattern per intent with a capturing group per tier, strongest first."""
    weights = tuple(sorted(tiers, reverse=True))
    groups = "|".join(f"({_alternation(tiers[w])})" for w in weights)
    return weights, re.compile(f" (?:{groups})(?= )")


_COMPILED_RULES: tuple[tuple[str, tuple[float, ...], re.Pattern[str]], ...] = tuple(
    (intent, *_compile_intent(tiers)) for intent, tiers in RULES.items()
)
_NOT_PRAISE = _compile(NOT_PRAISE)
_URGENCY = _compile(URGENCY_WORDS)


class _Vader(SentimentIntensityAnalyzer):
    """VADER with the domain words added and its emoji step done in one ``str.translate``.

    Stock VADER rebuilds the text one character at a time to swap emoji for their
    names, which is a third of its running time; a translation table does the same
    for the single-character emoji it can match, in C, and is skipped for ASCII
    text (emoji names now always stand as separate words, where stock VADER glues
    them to a neighbouring word). Posts with no word in VADER's lexicon skip the
    per-word pass, whose answer would be 0. The rest is VADER's ``polarity_scores``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.lexicon.update(DOMAIN_LEXICON)
        self._emoji_names = str.maketrans({e: f" {name} " for e, name in self.emojis.items() if len(e) == 1})

    def polarity_scores(self, text: str) -> dict[str, float]:
        if not text.isascii():
            text = text.translate(self._emoji_names)
        text = text.strip()
        sentitext = SentiText(text)
        words_and_emoticons = sentitext.words_and_emoticons
        lexicon = self.lexicon
        if not any(item.lower() in lexicon for item in words_and_emoticons):
            # No word VADER knows: every valence would be 0, so skip the per-word pass.
            return self.score_valence([], text)
        sentiments: list[float] = []
        for i, item in enumerate(words_and_emoticons):
            lowered = item.lower()
            if lowered in BOOSTER_DICT or (
                lowered == "kind" and i < len(words_and_emoticons) - 1 and words_and_emoticons[i + 1].lower() == "of"
            ):
                sentiments.append(0)
                continue
            sentiments = self.sentiment_valence(0, sentitext, item, i, sentiments)
        sentiments = self._but_check(words_and_emoticons, sentiments)
        return self.score_valence(sentiments, text)


@cache
def _analyzer() -> _Vader:
    """One VADER for the process: loading its lexicons is the slow part of starting up."""
    return _Vader()


def clean(text: str) -> str:
    """The part of a post the rules and VADER read (see the module docstring)."""
    text = text[: MAX_CHARS * 4]
    if "&" in text:
        text = html.unescape(text)
    if "<" in text:
        text = _TAG.sub(" ", text)
    if "http" in text or "www" in text:
        text = _URL.sub(" ", text)
    if "@" in text:
        text = _HANDLE.sub(" ", text)
    if not text.isascii():
        text = text.translate(_APOSTROPHES)
    return text.replace("#", " ")[:MAX_CHARS].strip()


def rules_view(cleaned: str) -> str:
    """Lower-cased words separated by single spaces, with a space at both ends: what :data:`RULES` match."""
    view = f" {_SEPARATORS.sub(' ', cleaned.lower())} "
    return _STRAY_APOSTROPHES.sub(" ", view) if "' " in view or " '" in view else view


def looks_non_english(text: str, words: Sequence[str] = ()) -> bool:
    """Language check for ``needs_review`` (see :mod:`classifiers.language`); ``words`` is unused."""
    from classifiers.language import looks_non_english as identified_non_english

    return identified_non_english(text)


def sentiment_scores(compound: float) -> dict[str, float]:
    """Probabilities over negative/neutral/positive whose arg-max is VADER's label for ``compound``."""
    k, t = SENTIMENT_SHARPNESS, SENTIMENT_THRESHOLD
    # The tiny offset breaks the exact ties at +-t the way VADER does (>= t is not neutral).
    logits = {
        "negative": k * (-compound - t),
        "neutral": k * (t - abs(compound)) - 1e-9,
        "positive": k * (compound - t),
    }
    top = max(logits.values())
    exp = {label: math.exp(v - top) for label, v in logits.items()}
    total = sum(exp.values())
    return {label: v / total for label, v in exp.items()}


def sentiment_label(compound: float) -> str:
    if compound >= SENTIMENT_THRESHOLD:
        return "positive"
    if compound <= -SENTIMENT_THRESHOLD:
        return "negative"
    return "neutral"


def _margin(scores: dict[str, float]) -> float:
    first, second = sorted(scores.values(), reverse=True)[:2]
    return first - second


class BaselineClassifier:
    """Rules + VADER: no model files, thousands of posts a second on one core, every label explainable."""

    name = "baseline-vader-rules"

    def __init__(self) -> None:
        self._vader = _analyzer()

    def classify(self, texts: Sequence[str]) -> list[Labels]:
        return [self._label(text) for text in texts]

    def explain(self, text: str) -> dict[str, list[str]]:
        """The phrases that fired, per intent (plus ``not_praise`` and ``urgency``), to show an agent why."""
        view = rules_view(clean(text))
        found: dict[str, list[str]] = {}
        for intent, _weights, pattern in _COMPILED_RULES:
            if hits := [phrase for match in pattern.finditer(view) for phrase in match.groups() if phrase]:
                found[intent] = hits
        for key, pattern in (("not_praise", _NOT_PRAISE), ("urgency", _URGENCY)):
            if hits := pattern.findall(view):
                found[key] = [hit.strip() for hit in hits]
        return {key: sorted(set(hits)) for key, hits in found.items()}

    def _label(self, text: str) -> Labels:
        cleaned = clean(text) if text else ""
        view = rules_view(cleaned)
        words = view.split()
        readable = any(not word.isdigit() for word in words)

        # VADER also reads emoji, so a post of emoji alone still gets a sentiment.
        compound = self._vader.polarity_scores(cleaned)["compound"] if cleaned else 0.0
        sentiment = sentiment_label(compound)
        sent_scores = sentiment_scores(compound)

        raw = dict.fromkeys(INTENTS, 0.0)
        raw["other"] = OTHER_PRIOR
        if readable:
            for intent, weights, pattern in _COMPILED_RULES:
                if hits := pattern.findall(view):  # one tuple per match, a slot per tier
                    for tier, weight in enumerate(weights):
                        if distinct := {hit[tier] for hit in hits if hit[tier]}:
                            raw[intent] += weight * min(len(distinct), 3)
            if raw["praise"]:
                if sentiment == "negative" or _NOT_PRAISE.search(view):
                    raw["praise"] = 0.0
                elif sentiment == "neutral":
                    raw["praise"] *= 0.5
        total = sum(raw.values()) + ALPHA * len(raw)
        intent_scores = {intent: (score + ALPHA) / total for intent, score in raw.items()}
        # Ties go to the earlier intent in INTENTS: the specific delivery problems come first.
        intent = max(INTENTS, key=intent_scores.__getitem__)

        complaint = sentiment == "negative" or intent in PROBLEM_INTENTS
        negative = sent_scores["negative"]
        if complaint:
            evidence = max(
                negative if sentiment == "negative" else 0.0,
                intent_scores[intent] if intent in PROBLEM_INTENTS else 0.0,
            )
            complaint_score = 0.5 + 0.5 * evidence
        else:
            problem_mass = sum(intent_scores[i] for i in PROBLEM_INTENTS)
            complaint_score = 0.49 * max(negative, problem_mass)  # strictly below 0.5

        urgency = 0.0
        if complaint:
            urgency += 0.25 + SEVERITY[intent]
        urgency += 0.25 * max(0.0, -compound)
        if readable:
            signals = len(set(_URGENCY.findall(view))) + any(mark in cleaned for mark in _EMPHATIC)
            urgency += min(0.3, 0.1 * signals)
            capitals = len(_UPPER.findall(cleaned))
            if capitals >= 8 and capitals / len(_ASCII_LETTER.findall(cleaned)) >= 0.6:
                urgency += 0.1  # shouting
        if not complaint:
            urgency *= 0.5

        needs_review = (
            not readable
            or looks_non_english(cleaned, words)
            or _margin(intent_scores) < REVIEW_MARGIN
            or _margin(sent_scores) < REVIEW_MARGIN
        )
        return Labels(
            sentiment=sentiment,
            sentiment_scores=sent_scores,
            complaint=complaint,
            complaint_score=min(1.0, max(0.0, complaint_score)),
            intent=intent,
            intent_scores=intent_scores,
            urgency=min(1.0, urgency),
            needs_review=needs_review,
            model=self.name,
        )
