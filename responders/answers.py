"""Understanding a customer's answer to a closed question: yes, no, a proposed time, STOP, or "a human".

Why rules, not the classifier alone: the answers are short ("y", "nah", "Thursday after 2 is
fine") and a wrong "yes" books a courier redelivery nobody wanted. So the rules are strict and
anything they cannot read with confidence is ``other``, which hands the case to a person. Order
matters and is tested on real-style answers (tests/test_dialogue.py):

1. **opt-out**: the whole message is a carrier keyword (STOP, STOPALL, UNSUBSCRIBE, CANCEL, END,
   QUIT, OPTOUT, REVOKE), perhaps beside a yes or no ("YES STOP"), or says so ("stop texting
   me", "stop calling me", "unsubscribe me", "don't contact me"). It wins over everything:
   "STOP" is never read as "no".
2. **time**: a day (today, tomorrow, a weekday) or a time of day ("after 2", "2pm", "14:00",
   "morning"). A day or time in a clause that says no to it is skipped ("not tomorrow, friday?"
   proposes Friday; "I am not at home tomorrow", "tomorrow is no good" propose nothing, and a
   human reads them); "not before 2" means after 2.
3. **no** / **yes**: the answer starts with a no-word ("no thanks", "nah", "nope") or a yes-word
   ("yep", "Yes please!", "y", "sure", "ok"). A yes with a condition ("ok but I am not home") and
   an idiom that starts with no without saying it ("no problem", "no idea") go to a human, and so
   does an answer that says both ("No, yes", "yes... no actually").
4. **other**: everything else ("what?", a question, a complaint).

Times are read in the shop's time zone and returned in UTC; "after 2" means 14:00 (care
call-backs and deliveries happen in the day), a day alone means 09:00 that day.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, time, timedelta, timezone, tzinfo

#: Messages that are an opt-out all by themselves (the carriers' and Twilio's keywords).
OPT_OUT_WORDS = frozenset({"stop", "stopall", "stop all", "unsubscribe", "cancel", "end", "quit", "optout",
                           "opt out", "opt-out", "revoke", "stop please", "please stop"})
OPT_OUT_PHRASES = re.compile(
    r"\b(?:stop|quit|no more)\s+(?:texting|messaging|emailing|e-mailing|mailing|contacting|sending|calling|ringing|"
    r"texts|messages|emails|calls)"
    r"|\bunsubscribe\b|\bopt[\s-]?out\b|\b(?:don'?t|do not|never)\s+(?:text|message|email|e-mail|contact|call)\s+me"
    r"|\bremove me from\b")

#: Words that may stand beside an opt-out keyword without changing it ("YES STOP", "no. STOP").
BESIDE_OPT_OUT = frozenset({"y", "yes", "ok", "okay", "n", "no", "nope", "please", "just", "now"})
#: Words that make a yes conditional ("ok but I am not home"): a person reads it, nothing is booked.
CONDITION = re.compile(r"\b(?:but|however|except|although|though|unless|only if|as long as)\b")
#: Idioms that start with "no" and do not say no ("no problem", "no idea"): a person reads them.
NOT_A_NO = re.compile(r"^no (?:problem|probs|prob|worries|bother|idea|clue|rush|hurry|doubt)\b")

YES = re.compile(r"^(?:y|yes+|yeah|yea|yep|yup|ya|ye|yass?|sure|ok|okay|k|kk|please|please do|go ahead|absolutely|"
                 r"definitely|of course|certainly|sounds good|perfect|great|correct|that'?s fine|fine|👍)(?:\b|$)")
NO = re.compile(r"^(?:n|no+|nope|nah|na|no thanks|no thank you|not really|not needed|don'?t|do not|never mind|"
                r"nevermind|👎)(?:\b|$)")

#: A plain yes or no later in an answer that started with the other ("No, yes", "yes... no actually"):
#: the customer changed their mind mid-message, so a person reads it. Idioms ("no problem") do not count.
LATER_YES = re.compile(r"\b(?:yes+|yeah|yea|yep|yup)\b")
LATER_NO = re.compile(r"\b(?:no+|nope|nah)\b(?!\s+(?:problem|probs|prob|worries|bother|idea|clue|rush|hurry|doubt)\b)")

DAYS = {"monday": 0, "mon": 0, "tuesday": 1, "tue": 1, "tues": 1, "wednesday": 2, "wed": 2, "weds": 2,
        "thursday": 3, "thu": 3, "thur": 3, "thurs": 3, "friday": 4, "fri": 4, "saturday": 5, "sat": 5,
        "sunday": 6, "sun": 6}
DAY_WORD = re.compile(r"\b(today|tonight|tomorrow|tmrw|tmr|" + "|".join(sorted(DAYS, key=len, reverse=True)) + r")\b")
PARTS_OF_DAY = {"morning": time(9), "lunchtime": time(12), "noon": time(12), "midday": time(12),
                "afternoon": time(14), "evening": time(18), "tonight": time(18)}
CLOCK = re.compile(r"\b(?:(after|before|at|from|around|by)\s+)?(\d{1,2})(?:[:.](\d{2}))?\s*(am|pm|a\.m\.|p\.m\.)?(?!\d)")
#: A negation anywhere in the clause of a day or time ("not tomorrow", "I am not at home tomorrow",
#: "tomorrow is no good", "friday won't work"): that day or time is not proposed.
NEGATION = re.compile(r"\b(?:not|no|never|cannot|can'?t|won'?t|don'?t|doesn'?t|isn'?t|aren'?t|wouldn'?t|"
                      r"couldn'?t|shan'?t)\b")
CLAUSE_BREAK = re.compile(r"[,;.!?]|\b(?:but|though|although|however|instead)\b")


def _negated(plain: str, start: int, end: int) -> bool:
    """Whether the clause around ``plain[start:end]`` says no to it."""
    breaks = [m for m in CLAUSE_BREAK.finditer(plain)]
    left = max((m.end() for m in breaks if m.end() <= start), default=0)
    right = min((m.start() for m in breaks if m.start() >= end), default=len(plain))
    return bool(NEGATION.search(plain[left:start]) or NEGATION.search(plain[end:right]))


NEGATED = "every day or time named is negated: "


@dataclass(frozen=True)
class Understanding:
    """What an answer says: ``kind`` is yes, no, time, opt_out or other; ``slot_at`` (UTC) for a time."""

    kind: str
    slot_at: datetime | None = None
    slot_text: str | None = None
    why: str = ""


def normalise(text: str) -> str:
    """Lower case, without @handles, links, quotes of our own question and surrounding punctuation."""
    text = re.sub(r"https?://\S+", " ", text)
    text = re.sub(r"(?<!\w)@\w+", " ", text)
    text = text.replace("’", "'").lower()
    text = re.sub(r"\s+", " ", text).strip()
    return text.strip(" .!?,;:-~*\"'()")


def _is_opt_out(plain: str) -> bool:
    bare = re.sub(r"[^\w\s-]", " ", plain)
    bare = re.sub(r"\s+", " ", bare).strip()
    if bare in OPT_OUT_WORDS or OPT_OUT_PHRASES.search(plain):
        return True
    words = bare.split()
    keywords = [w for w in words if w in OPT_OUT_WORDS]
    return bool(keywords) and len(words) <= 4 and all(w in OPT_OUT_WORDS or w in BESIDE_OPT_OUT for w in words)


def _slot(plain: str, now: datetime, zone: tzinfo) -> tuple[datetime | None, str | None, str]:
    """The proposed slot in ``plain`` (UTC), its words, and why; (None, None, why) when nothing or only negations."""
    local_now = now.astimezone(zone)
    day: int | None = None  # days from today
    day_words: str | None = None
    negated: list[str] = []
    for match in DAY_WORD.finditer(plain):
        word = match.group(1)
        if _negated(plain, match.start(), match.end()):
            negated.append(word)
            continue
        if word in ("today", "tonight"):
            offset = 0
        elif word in ("tomorrow", "tmrw", "tmr"):
            offset = 1
        else:
            offset = (DAYS[word] - local_now.weekday()) % 7 or 7  # "friday" on a Friday: next week's
        day, day_words = offset, word  # the last day named wins ("not tomorrow, friday?")
    at: time | None = None
    time_words: str | None = None
    for match in CLOCK.finditer(plain):
        prep, hour_s, minute_s, meridiem = match.groups()
        hour, minute = int(hour_s), int(minute_s or 0)
        in_range = bool(re.match(r"\s*[-–]\s*\d", plain[match.end():]))  # "2-4"
        if not (prep or minute_s or meridiem or in_range):
            continue  # a bare number ("2 parcels", an order number) is not a time
        if hour > 23 or minute > 59:
            continue
        not_before = prep == "before" and re.search(r"\bnot\s+$", plain[:match.start()])  # = after
        if not not_before and _negated(plain, match.start(), match.end()):
            negated.append(match.group(0).strip())
            continue
        if meridiem and meridiem.startswith("p") and hour < 12:
            hour += 12
        elif meridiem and meridiem.startswith("a") and hour == 12:
            hour = 0
        elif not meridiem and 1 <= hour <= 7:
            hour += 12  # "after 2": the afternoon
        at, time_words = time(hour, minute), match.group(0).strip()
        break
    if at is None:
        for word, when in PARTS_OF_DAY.items():
            part = re.search(rf"\b{word}\b", plain)
            if part and _negated(plain, part.start(), part.end()):
                negated.append(word)
            elif part:
                at, time_words = when, word
                break
    if day is None and at is None:
        return None, None, (NEGATED + ", ".join(negated)) if negated else "no day or time"
    if day is None:
        day = 0 if at is not None and at > local_now.time() else 1
    date = (local_now + timedelta(days=day)).date()
    slot = datetime.combine(date, at or time(9), tzinfo=zone)
    words = " ".join(w for w in (day_words, time_words) if w)
    return slot.astimezone(timezone.utc), words, f"proposes {words}"


def understand(text: str, now: datetime, zone: tzinfo) -> Understanding:
    """Read one answer (see the module docstring for the order of the rules)."""
    plain = normalise(text or "")
    if not plain:
        return Understanding("other", why="empty answer")
    if _is_opt_out(plain):
        return Understanding("opt_out", why="asks us to stop")
    slot, words, why = _slot(plain, now, zone)
    if slot is not None:
        return Understanding("time", slot_at=slot, slot_text=words, why=why)
    if why.startswith(NEGATED):
        return Understanding("other", why=why)
    if NOT_A_NO.search(plain):
        return Understanding("other", why="an idiom that starts with no but does not say no")
    if no := NO.search(plain):
        if LATER_YES.search(plain, no.end()):
            return Understanding("other", why="says no, then yes")
        return Understanding("no", why="starts with a no-word")
    if yes := YES.search(plain):
        if LATER_NO.search(plain, yes.end()):
            return Understanding("other", why="says yes, then no")
        if CONDITION.search(plain):
            return Understanding("other", why="a yes with a condition")
        return Understanding("yes", why="starts with a yes-word")
    return Understanding("other", why="neither yes, no nor a time")
