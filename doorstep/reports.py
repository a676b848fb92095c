"""The weekly brand- and courier-sentiment report: built from :mod:`doorstep.metrics`, rendered
to self-contained HTML and PDF, and mailed every week exactly once per recipient.

Why the design is as it is:

- **One query layer.** Every number comes from :mod:`doorstep.metrics`, the same functions the
  console's dashboard calls, so the report and the screen never disagree.
- **Self-contained.** Charts are PNG images embedded as ``data:`` URIs and every figure is also
  in a table, so the HTML opens from a mail attachment, a browser or an archive with no network,
  and a mail client that blocks images still shows the numbers. The PDF is rendered from the same
  HTML by xhtml2pdf (pure Python wheels on top of ReportLab: no system libraries, unlike
  WeasyPrint which needs Pango).
- **Private by default.** Quoted posts and case rows have handles, emails, phone numbers, postcodes
  (British, and the five digits before a town of Germany, France and their neighbours), street addresses
  ("10 Downing Street", "Hauptstraße 12", "Am Lindenhof 3", "12 rue de la Paix"), bank details, order and
  tracking numbers masked, and the names and addresses a post introduces in English, German or French ("my
  name is", "I'm", "deliver to", "my address:", "ich heiße", "mein Name ist", "meine Adresse", "ich wohne",
  "je m'appelle", "mon adresse", and a recipient's "Empfänger:", "Recipient:", "Destinataire :", "Zustellung
  an:"); patterns, so a name written in passing can stay, which the report's header
  says. An unredacted report is for internal use and is
  written to the audit log.
- **Exactly once.** A send is an ``outbound_messages`` row (kind ``report``) whose idempotency key
  ``report:{week}:{recipient}`` is unique, so restarts and concurrent workers cannot send a week
  twice; a refused send is retried with backoff and stays visible as ``failed`` with its error.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import logging
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import regex

from doorstep.config import LISTENER_CHANNELS, Config
from doorstep.linking import order_number_after_word
from doorstep.models import channel_name, utcnow
from doorstep.numbers import find_invalid_tracking_candidates, find_tracking_numbers
from doorstep.report_settings import ReportSettings, parse_weekly_at, report_settings  # noqa: F401 - re-exported
from doorstep.store import Store, parse_time
from doorstep.text import shorten
from doorstep import metrics

log = logging.getLogger("doorstep.reports")

#: Okabe-Ito: distinguishable with the common colour-vision deficiencies, and in greyscale print.
PALETTE: list[str] = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"]
GOOD, BAD, NEUTRAL = "#0072B2", "#D55E00", "#555555"

# ---------------------------------------------------------------------------- settings
# ReportSettings, parse_weekly_at and report_settings live in doorstep.report_settings (see there why).


# ---------------------------------------------------------------------------- weeks
def week_bounds(week: str, tz: Any) -> tuple[datetime, datetime]:
    """ISO week ("2026-W47") -> [start, end) in UTC, boundaries at local midnight (see metrics)."""
    return metrics.week_window(week, tz)


def week_dates(week: str, tz: Any) -> str:
    """"Mon 23 Nov – Sun 29 Nov 2026" for "2026-W48": how a lead names a week (the ISO key alone is not)."""
    start, end = week_bounds(week, tz)
    zone = metrics._zone(tz)
    first, last = start.astimezone(zone).date(), (end - timedelta(seconds=1)).astimezone(zone).date()
    return f"{first:%a %d %b}{'' if first.year == last.year else f' {first.year}'} – {last:%a %d %b %Y}"


def week_of(moment: datetime, tz: Any) -> str:
    year, number, _ = moment.astimezone(metrics._zone(tz)).isocalendar()
    return f"{year}-W{number:02d}"


def last_complete_week(now: datetime, tz: Any) -> str:
    """The ISO week before the one ``now`` falls in (local time)."""
    return week_of(now.astimezone(metrics._zone(tz)) - timedelta(days=7), tz)


# ---------------------------------------------------------------------------- privacy
# Regular expressions, not a named-entity model: the report must mask the same way on every machine, offline, in
# milliseconds, and no such model is a dependency. They mask what a post introduces as personal ("my name is ...",
# "I'm ...", "deliver to ...", "my address: ...", and their German and French words) and what has a shape (emails,
# phones, postcodes, street numbers, bank details); a name or a place dropped into free text with no such cue can still pass, which the report's
# header says. Ordinary complaint words stay: a quote must still say what went wrong.
_EMAIL = re.compile(r"[\w.+\-]+@[\w\-]+(?:\.[\w\-]+)+")
_URL = re.compile(r"https?://\S+|www\.\S+")
#: @name, @name.bsky.social (Bluesky), @name@instance.social (Mastodon).
_HANDLE = re.compile(r"(?<![\w@])@(\w[\w.\-]{0,80}?(?:@[\w\-]+(?:\.[\w\-]+)+)?)(?=[.\-]?(?![\w.\-@]))")
_PHONE = re.compile(
    r"(?<![\w+])(?:\+\d{1,3}[\s.\-]?(?:\(0\)\s?)?\d(?:[\s.\-]?\d){6,12}|0\d(?:[\s.\-]?\d){8,10}|\(\d{3}\)\s?\d{3}[\s.\-]?\d{4}"
    r"|\(0\d{2,4}\)\s?\d{3,4}[\s.\-]?\d{3,4})(?!\w)"
)
_POSTCODE = re.compile(r"\b(?:GIR ?0AA|[A-Z]{1,2}\d[A-Z\d]? ?\d[ABD-HJLNP-UW-Z]{2})\b", re.IGNORECASE)
#: "10 Downing Street", "5 The Green": capitalised words, then a street word.
_STREET = re.compile(
    r"\b\d{1,4}[A-Za-z]?,?\s+(?:[A-Z][\w'\-]*\s+){1,3}"
    r"(?:Street|St|Road|Rd|Avenue|Ave|Lane|Ln|Close|Drive|Dr|Way|Court|Ct|Place|Pl|Crescent|Cres|Terrace|"
    r"Gardens|Grove|Hill|Park|Square|Sq|Row|Mews|Walk|Parade|Boulevard|Blvd|Green|Rise|Gate|Vale|View|Wharf|Quay|"
    r"Yard|Meadows?|Cottages|Villas|Heights|Chase)\b\.?"
)
#: "22 acacia avenue", "14 high st": any case, but only street words that are not also everyday words ("way",
#: "row", "park"), and no everyday word between the number and the street word ("3 days down the road").
_STREET_ANY_CASE = re.compile(
    r"\b\d{1,4}[a-z]?,?\s+((?:[^\W\d_][\w'\-]*\s+){1,3})"
    r"(?:street|st|road|rd|avenue|ave|lane|ln|crescent|cres|terrace|gardens|grove|mews|boulevard|blvd|square|sq|"
    r"parade|close|drive)\b\.?",
    re.IGNORECASE,
)
#: Between a house number and a street word, these say it is not an address ("3 parcels on the drive").
_NOT_STREET = frozenset(
    "the a an of on in at to for by from up down along across over around into onto off near past and or but my your "
    "our their his her its this that it i we they he she you me us them was were is are been still not no left "
    "day days week weeks hour hours min mins minute minutes time times mile miles year years month months "
    "parcel parcels item items box boxes door doors house houses star stars pound pounds quid pm am".split()
)
#: Bank details: an IBAN (valid check digits, or said to be one) and the numbers after "account", "card"...
_IBAN = re.compile(r"(?<![\w])([A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]){11,30})(?![\w])", re.IGNORECASE)
_IBAN_SAID = re.compile(r"\biban\W{0,3}$", re.IGNORECASE)
_ACCOUNT = re.compile(
    r"(\b(?:account|acct|a/c|card|sort\s*code|bank|membership|customer|reference|ref|policy)"
    r"(?:\s*(?:no\.?|nr\.?|number|num|#|ending(?:\s+in)?|ends\s+in|is|:|-))*\s*)(\d(?:[\s\-]?\d){2,})(?!\w)",
    re.IGNORECASE,
)
_LONG_NUMBER = re.compile(r"(?<![\w£$€])#?\d(?:[\s\-]?\d){5,}(?![\w])")

# Names. A name word is capitalised ("Sarah", "O'Neill", "Anna-Maria"), except after "my name is", where a
# lowercase "jane doe" is a name too.
_WORD = re.compile(r"\s*([^\W\d_](?:[\w\-]|['’](?=[^\W\d_]))*)")
#: Any alphabet's capitals: "Jürgen", "Zoë", "Öztürk" are names as "Sarah" is (intl audit: an ASCII-only test left
#: them whole after "Ich bin" and "mein Name ist").
_CAPITALISED = regex.compile(r"\p{Lu}(?:[\p{Ll}\p{M}]+|['’]\p{Lu}[\p{Ll}\p{M}]+)(?:[\-'’]\p{Lu}?[\p{Ll}\p{M}]+)*$")
#: Words that follow "I'm", "my name is", "deliver to" and are not a name or a place.
_NOT_NAME = frozenset(
    "not so very really still just the a an absolutely totally completely literally honestly seriously sorry afraid "
    "sure done fed sick tired annoyed angry furious livid gutted disappointed frustrated confused upset cross "
    "waiting going getting trying hoping writing here there back again also now never always ever only all no yes ok "
    "okay fine good great happy unhappy glad pleased ridiculous unacceptable appalling awful terrible shocking "
    "disgusting outrageous useless hopeless pathetic about at in on with from for by to of my your our his her "
    "their its it this that what why how when where who which is was were be been being have has had do does did "
    "can could will would should may might must nobody somebody someone anyone everyone nothing something anything "
    "everything same another other one two three first second third last next day week today tomorrow yesterday "
    "tonight morning monday tuesday wednesday thursday friday saturday sunday january february march april june "
    "july august september october november december please thanks thank cheers hi hello hey dear customer "
    "customers parcel parcels order orders delivery driver courier team support care help service shop store "
    "company and or but if i me we us they them he she you spelt spelled wrong correct right missing misspelt "
    "definitely clearly written printed shown listed different also incomplete again".split()
)
_STRONG_NAME_INTRO = re.compile(r"\b(?:my\s+name\s+is|my\s+name['’]s|name['’]s|my\s+name\s*:|name\s*:)\s*", re.IGNORECASE)
_NAME_INTRO = re.compile(r"\b(?:i['’]?m|i\s+am|this\s+is|regards|kind\s+regards|best\s+wishes|cheers|thanks|"
                         r"many\s+thanks|signed|love|from)\s*,?\s+", re.IGNORECASE)
_NAME_HERE = re.compile(r"(^|[.!?]\s+|\b(?:hi|hello|hey|morning)\b,?\s+)((?:[A-Z][\w'’\-]*\s+){1,3})(?=here\b)",
                        re.IGNORECASE)
# Addresses that a post introduces: whatever follows, up to the end of the sentence.
_ADDRESS_COLON = re.compile(r"\b(?:(?:my|our|home|new|delivery|full|correct|the)\s+)?address\s*(?:is\s*)?[:\-–]\s*",
                            re.IGNORECASE)
_ADDRESS_IS = re.compile(r"\b(?:my|our|home|new|full|correct)\s+address\s+is\s+", re.IGNORECASE)
#: "deliver to", "send it to", "ship the parcel to": what a post asks a parcel to be taken to.
_DELIVER_VERBS = (r"(?:deliver(?:ed)?|send|sent|post(?:ed)?|ship(?:ped)?|bring|forward(?:ed)?|redirect(?:ed)?)"
                  r"(?:\s+(?:it|them|this|that|(?:the|my)\s+(?:parcel|order|package|item)))?\s+to")
_DELIVER_TO = re.compile(rf"\b{_DELIVER_VERBS}\s+", re.IGNORECASE)
_HOUSE_WORD = re.compile(r"\b(?:cottage|house|farm|barn|lodge|manor|mill|rectory|vicarage|hall|court|flat|apartment|"
                         r"street|st|road|rd|avenue|ave|lane|ln|close|drive|way|crescent|terrace|gardens|grove|mews|"
                         r"green|place|square|row|walk|parade)\b", re.IGNORECASE)
_SENTENCE_END = re.compile(
    r"[.!?](?=\s|$)|[!?;\n()]|\s+[-–]\s+|\s+(?:and|but|please|pls|plz|instead|asap|because|thanks|thank|cheers|if|"
    r"when|so|or|as|since|not|which|where)\b",
    re.IGNORECASE,
)
# Continental Europe (intl audit, finding 3: "…liefern an Hauptstraße 12, 10115 Berlin. Ich heiße [name] Krüger" was
# mailed whole). German, Dutch and most continental streets put the number after the street's name, their
# postcodes are five digits before the town, and posts introduce names and addresses in their own words.
#: Street words that end a street's name, written as one word with it ("Hauptstraße", "Schillerstr.", "Kirchweg",
#: "Karl-Marx-Allee", Dutch "Kerkstraat"). Not "ufer", "markt" or "hof": "Verkäufer 3", "Supermarkt 24".
_EU_STREET_WORDS = r"stra(?:ß|ss)e|str\.?|weg|allee|platz|gasse|ring|damm|chaussee|pfad|straat|laan|plein|gracht|kade"
#: Of those, the ones that are a street in lower case too ("hauptstrasse 12"): "weg" and "ring" are everyday words.
_EU_STREET_ANY_CASE = ("straße", "strasse", "str", "allee", "gasse", "platz", "damm", "chaussee", "straat", "laan",
                       "plein", "gracht")
#: English words that end in "ring" and may stand before a number ("Bring 5 boxes", "Spring 2026", "Delivering 3").
_RING_NOT_STREET = regex.compile(r"^(?:bring|string|spring|offspring|during|ring)$|(?:e|u|o|i|a|r)ring$",
                                 regex.IGNORECASE)
#: A house number: "12", "5a", "14-16", "3/1"; not a date ("24.12."), a price ("12,50 €") or a count ("3 Pakete").
_EU_HOUSE_NUMBER = (
    r"(?P<number>\d{1,4}[a-zA-Z]?(?:\s?[-/–]\s?\d{1,4}[a-zA-Z]?)?)(?![\p{L}\p{M}\d])(?![.,]\d)"
    r"(?!\s*(?:%|€|\$|£|x\b|(?i:uhr|tage?n?|wochen?|monate?n?|jahre?n?|stunden?|minuten?|mal|male|euro|eur|stück|"
    r"pakete?n?|artikel|kartons?|teile|sendungen|bestellungen|kunden|punkte|sterne?|km|kg|jours|semaines|mois|ans|"
    r"heures|fois|colis|articles|days|weeks|hours|times|items|parcels)\b))"
)
_EU_STREET = regex.compile(
    # One word ending in a street word ("Hauptstraße 12"), or an adjective and one ("Berliner Straße 5").
    rf"(?<![\p{{L}}\p{{M}}\-\[])(?P<street>(?P<word>\p{{L}}[\p{{L}}\p{{M}}\-]*?)(?P<suffix>(?i:{_EU_STREET_WORDS}))"
    rf"|\p{{Lu}}[\p{{L}}\p{{M}}\-]*(?:er|e|en|es)\s+(?:Stra(?:ß|ss)e|Str\.?|Weg|Allee|Platz|Gasse|Ring|Damm|Chaussee|Markt))"
    rf"(?:(?<=\.)|(?![\p{{L}}\p{{M}}]))\s*{_EU_HOUSE_NUMBER}"
)
#: "Am Lindenhof 3", "An der Alster 12", "Zur Mühle 4": a street named after a place, followed by the end of the
#: address (a comma, the end of the sentence, a postcode), so "Am Montag 3 Pakete" is no street.
_EU_STREET_AT = regex.compile(
    r"(?<![\p{L}\p{M}])(?P<at>(?i:am|an\s+der|an\s+den|auf\s+der|auf\s+dem|im|in\s+der|in\s+den|zum|zur|"
    r"unter\s+den|hinter\s+der|hinter\s+dem|vor\s+dem|beim))\s+(?P<name>\p{Lu}[\p{L}\p{M}\-]*(?:\s+\p{Lu}[\p{L}\p{M}\-]*)?)"
    rf"\s+{_EU_HOUSE_NUMBER}(?=\s*(?:[,;.!?)\n]|$|\d{{5}}(?!\d)|(?:und|in|bei|et)\b))"
)
#: What follows "Am", "Im" or "Zum" and is a time or a thing, not a street.
_NOT_STREET_NAME_EU = frozenset(
    "montag dienstag mittwoch donnerstag freitag samstag sonntag wochenende januar februar märz april mai juni juli "
    "august september oktober november dezember anfang ende tag morgen abend mittag nachmittag vormittag jahr monat "
    "woche stunde moment telefon handy schalter automat warenkorb shop laden lager paket karton ganzen prinzip "
    "allgemeinen grunde schnitt durchschnitt voraus nachhinein übrigen".split()
)
#: French streets: "12 rue de la Paix", "5 bis rue Victor Hugo", "3 avenue Foch"; "rue …" also without a number
#: (English "rue the day" is followed by no capitalised name).
_FR_STREET = regex.compile(
    r"(?<![\p{L}\p{M}\d])(?:(?P<number>\d{1,4}\s?(?:bis|ter|[a-zA-Z])?),?\s+)?"
    r"(?P<kind>(?i:rue|avenue|av\.|boulevard|bd|place|allée|impasse|chemin|quai|route|cours))\s+"
    r"(?:(?i:de\s+la|de\s+l['’]|du|des|de|d['’]|la|le|les)\s*)?\p{Lu}[\p{L}\p{M}\-'’]*"
    r"(?:\s+(?:(?i:de\s+la|de\s+l['’]|du|des|de|d['’]|la|le|les|sur|en)\s*)?\p{Lu}[\p{L}\p{M}\-'’]*){0,3}"
)
#: Five digits before a town ("10115 Berlin", "75002 Paris"), with a country prefix ("D-10115") or not.
_EU_POSTCODE = regex.compile(
    r"(?<![\w#€$£.\-/])(?<!\d,)(?P<prefix>(?:D|DE|F|FR|I|IT|E|ES)-)?(?P<code>\d{5})(?![\w.,\-/]?\d)(?!\w)"
)
_POSTCODE_CUE = regex.compile(r"(?:\bplz|\bpostleitzahl|\bcode\s+postal|\bcp)\W{0,3}$", regex.IGNORECASE)
#: Before a postcode: the start of the post or a line, a comma, or "in" (German, English), "à" (French), "nach".
_POSTCODE_BEFORE = regex.compile(r"(?:^|[\n,]|\b(?:in|à|nach|aus|te))\s*$", regex.IGNORECASE)
_TOWN = regex.compile(r"\s+(?P<town>\p{L}[\p{L}\p{M}\-]*)")
#: Words that follow a five-digit number and make it a count, not a postcode ("10000 Euro", "20000 Kunden").
_NOT_TOWN = frozenset(
    "euro eur stück pakete paket artikel kunden kundinnen punkte sterne follower likes mails bestellungen bestellung "
    "sendungen sendung jahre jahren tage tagen stunden minuten mal km kg meter kilometer leute menschen colis "
    "commandes clients points jours personnes fois items parcels orders customers people points".split()
)
# Names and addresses a German or French post introduces.
_STRONG_NAME_INTRO_EU = re.compile(
    r"\b(?:mein\s+name\s+(?:ist|lautet)|mein\s+name\s*:|ich\s+hei(?:ß|ss)e|je\s+m['’]appelle|mon\s+nom\s+(?:est|c['’]est)"
    r"|mon\s+nom\s*:|nom\s*:)\s*", re.IGNORECASE)
_NAME_INTRO_EU = re.compile(r"\b(?:ich\s+bin|hier\s+ist|hier\s+spricht|je\s+suis|moi\s*,?\s+c['’]est|"
                            r"herrn?|frau|madame|monsieur|mme)\s*,?\s+(?:(?:dr|prof)(?:\.\s*|\s+))*",
                            re.IGNORECASE)  # "Frau Dr. Weiß": the name is after the title
#: Closing a post: the name after it is a name only where the post or the sentence ends with it ("Danke, Grete");
#: a German noun is capitalised too ("Danke, Paket ist da").
_SIGN_OFF_EU = re.compile(
    r"\b(?:(?:(?:viele|liebe|beste|herzliche|freundliche|schöne)\s+)?(?:grüße|grüsse|gruß|gruss)|mit\s+freundlichen\s+"
    r"grü(?:ß|ss)en|lg|vg|mfg|danke|dankeschön|vielen\s+dank|merci|cordialement|amicalement|bien\s+à\s+vous|"
    r"salutations)\s*,?\s+", re.IGNORECASE)
#: A German post: "im" is then "in the" ("im Warenkorb"), not an "I'm" typed without its apostrophe.
_READS_GERMAN = re.compile(r"\b(?:ich|und|nicht|ist|das|der|mit|mein|meine|kein|keine|noch|schon|bitte|wieder|auch|"
                           r"sind|habe|wurde|seit|für|über|wird|oder|aber|auf|ein|eine|einen|zum|zur|vom|beim|dem|paket|pakete|"
                           r"bestellt|bestellung|geliefert|lieferung|sendung|immer|heute|gestern|leider|danke|hallo)\b",
                           re.IGNORECASE)
_NAME_ENDS_POST = re.compile(r"[ \t]*(?:[.!?,;:)\n]|$)")
_ADDRESS_COLON_EU = re.compile(
    r"\b(?:(?:meine|unsere|die|neue|richtige|korrekte|vollständige|mon|ma|notre|nouvelle|la)\s+)?"
    r"(?:liefer|post|wohn|rechnungs)?(?:adresse|anschrift)(?:\s+de\s+livraison)?\s*(?:ist|lautet|est)?\s*[:\-–]\s*",
    re.IGNORECASE)
_ADDRESS_IS_EU = re.compile(r"\b(?:meine|unsere|neue|mon|ma|notre|nouvelle)\s+(?:liefer)?(?:adresse|anschrift)"
                            r"(?:\s+de\s+livraison)?\s+(?:ist|lautet|est)\s+", re.IGNORECASE)
#: "liefern an …", "Zustellung an …", "wohne am …", "livrer au …", "j'habite …".
_DELIVER_VERBS_DE = (r"(?:liefern|liefert|geliefert|schicken|schickt|geschickt|senden|sendet|gesendet|zustellen|"
                     r"zugestellt|lieferung|zustellung)\s+an")
_DELIVER_VERBS_FR = (r"(?:livrer|livré|livrée|livrez|envoyer|envoyé|envoyée|envoyez|expédier|expédié|livraison)"
                     r"\s+(?:à\s+la|à|au|aux|chez)")
_DELIVER_TO_EU = re.compile(
    rf"\b(?:{_DELIVER_VERBS_DE}|(?:ich\s+)?wohne(?:\s+(?:in\s+der|in\s+dem|im|in|am|an\s+der|auf\s+der|auf\s+dem))?"
    rf"|{_DELIVER_VERBS_FR}|j['’]habite(?:\s+(?:au|à\s+la|à|aux))?)\s+", re.IGNORECASE)
#: Who a parcel is for, as a form or a shipping label writes it (code review: "Zustellung an: Jürgen Weiß,
#: Schlossallee 1, 12345 Berlin" kept the name, the cues above wanting a space, not a colon, after "an").
#: - ``label``: "Empfänger", "Recipient", "Destinataire" with a colon, or with "ist"/"is"/"est" and a capitalised
#:   name, or alone before a capitalised first name and surname ("Empfänger Jürgen Weiß"): "der Empfänger war nicht
#:   da" names no one.
#: - ``named``: "Name:", "Nom :" with a colon only ("Name tag missing").
#: - ``deliver``: "deliver to:", "liefern an:", "livrer à :" with a colon; without one they are :data:`_DELIVER_TO`.
#: ``english`` says which words end the sentence (:data:`_SENTENCE_END` or :data:`_SENTENCE_END_EU`).
_RECIPIENT = regex.compile(
    r"(?<![\p{L}\p{M}])(?:(?P<english>(?P<label_en>recipient|addressee)|(?P<named_en>name)|(?P<deliver_en>"
    + _DELIVER_VERBS + r"))"
    r"|(?P<label>empfänger(?:in)?|empfaenger(?:in)?|destinataire)|(?P<named>nom)"
    r"|(?P<deliver>" + _DELIVER_VERBS_DE + "|" + _DELIVER_VERBS_FR + r"))(?![\p{L}\p{M}])"
    r"(?:(?P<colon>[ \t]*:)|(?P<is>\s+(?:is|ist|lautet|est))(?=\s)|(?P<bare>)(?=[ \t]+\p{Lu}))\s*",
    regex.IGNORECASE)
#: After a recipient's name, an address: a house number ("Schlossallee 1", "10 Downing Street"; not a count, "3 days")
#: or a house or street word (:data:`_HOUSE_WORD`: "Rose Cottage").
_RECIPIENT_ADDRESS = regex.compile(rf"(?<![\p{{L}}\p{{M}}\d]){_EU_HOUSE_NUMBER}")
#: A title before a recipient's name stays: "Empfänger: Hr. [name]", "Recipient: Mrs [name]".
_TITLE = regex.compile(r"(?:(?i:herrn?|hr|frau|fr|mr|mrs|ms|miss|mx|dr|prof|monsieur|madame|mademoiselle|m|mme|mlle)"
                       r"(?:\.[ \t]*|[ \t]+))+(?=\p{L})")
#: The end of an address a German or French post introduces: as :data:`_SENTENCE_END`, in their words too, and not
#: at the dot of "Str." or "Nr.".
_SENTENCE_END_EU = regex.compile(
    r"(?<![Ss]tr|[Nn]r|[Tt]el|[Bb]d|[Aa]v)[.!?](?=\s|$)|[!?;\n()]|\s+[-–]\s+|\s+(?:und|aber|bitte|danke|weil|wenn|oder|"
    r"sondern|denn|sonst|trotzdem|et|mais|merci|parce|car|svp|sinon|and|but|please|thanks|because)\b",
    regex.IGNORECASE,
)
#: Words that follow "Ich bin", "Danke," or "liefern an" in German and French and are no name or place. Not titles
#: ("Frau", "Herr", "Madame"): "mein Name ist Frau Weiß" names her.
_NOT_NAME_EU = frozenset(
    "ich du er sie es wir ihr ihnen euch mich mir dich dir uns der die das dem ein eine einer einen einem "
    "eines kein keine nicht sehr so echt total wirklich ziemlich gerade jetzt schon noch immer wieder auch hier da "
    "dort heute gestern morgen seit wegen für mit von bei nach auf aus im am um zu zum zur und oder aber weil wenn "
    "dass ob bitte danke hallo kunde kundin stammkunde stammkundin neukunde neukundin mitglied rentner rentnerin "
    "student studentin mama papa mutter vater enttäuscht sauer wütend verärgert froh zufrieden unzufrieden traurig "
    "fertig genervt leider zuhause daheim paket pakete bestellung sendung lieferung fahrer zusteller team hilfe "
    "montag dienstag mittwoch donnerstag freitag samstag sonntag januar februar märz juni juli dezember oktober "
    "woche wochen tage tagen nichts niemand jemand alle mein meine meinen meiner unser unsere euer gerne "
    "je tu il nous vous ils elles le la les un une du de au aux très vraiment pas plus toujours encore déçu "
    "déçue fâché fâchée client cliente colis commande livreur livraison et ou mais bonjour "
    # Who takes a parcel in, not who it is for ("Zustellung an Nachbarn"; code review).
    "nachbar nachbarn nachbarin nachbarinnen voisin voisine voisins neighbour neighbours neighbor neighbors".split()
)
_MASKS = ("[email]", "[link]", "[tracking no.]", "[order no.]", "[phone]", "[postcode]", "[address]", "[name]", "[number]",
          "[bank details]")

#: Scripts that write no space between words (Chinese, Japanese, Thai...), and Korean, which joins a particle to
#: the name it follows ("김민수님"). Their letters are word characters, so "我是王小明，" has no word boundary
#: before or after the name: a name's edge in one of them is matched without one (languages audit).
_UNSPACED_SCRIPTS = r"\p{Han}\p{Hiragana}\p{Katakana}\p{Hangul}\p{Bopomofo}\p{Thai}\p{Lao}\p{Khmer}\p{Myanmar}"
_UNSPACED = regex.compile(rf"[{_UNSPACED_SCRIPTS}]")
#: Around a name's edge in a spaced script: no other letter of a spaced script ("Ann" is not masked in
#: "Annual"), while a Chinese or Japanese letter may touch it ("私はJohnです").
_NO_LETTER_BEFORE = rf"(?<![^\W{_UNSPACED_SCRIPTS}])"
_NO_LETTER_AFTER = rf"(?![^\W{_UNSPACED_SCRIPTS}])"


def _nfc(text: str) -> str:
    """``text`` in Unicode's composed form: "José" typed with a combining accent is the same name as the
    precomposed "José", and is masked either way round."""
    return unicodedata.normalize("NFC", text)


#: Chinese, Japanese and Korean: a name in them is typed with or without a space between family and given name
#: ("王 芳" is written "王芳"; "김민수" is written "김 민수"), so a name is matched either way (audit of stop 39).
_CJK = regex.compile(r"[\p{Han}\p{Hiragana}\p{Katakana}\p{Hangul}\p{Bopomofo}]")
#: Around a name of one Chinese, Japanese or Korean letter ("安", "金"): no letter at all. Such a letter is also a
#: word or part of one ("包裹安全到达", "金曜日"), so it is masked only where it stands alone.
_ALONE_BEFORE = r"(?<![\p{L}\p{M}])"
_ALONE_AFTER = r"(?![\p{L}\p{M}])"


def _name_pattern(part: str) -> regex.Pattern[str]:
    """``part`` of a name as a whole word, with a boundary at each edge only where the edge's script has one.

    Between two Chinese, Japanese or Korean letters of the name any one space may stand or not ("王 芳" masks
    "王芳", "김민수" masks "김 민수"); other words of the name are matched with the spaces the post has between
    them ("Ann Lee" masks "Ann  Lee"). A name of a single Chinese, Japanese or Korean letter is too ambiguous to
    mask inside running text, where it is as often part of another word, and is masked only where no letter
    touches it; over-masking a Latin name that is also a word ("Will", "May") is left as it is: it hides a
    word, never a name."""
    letters = "".join(part.split())
    if len(letters) == 1 and _UNSPACED.match(letters):
        return regex.compile(_ALONE_BEFORE + regex.escape(letters) + _ALONE_AFTER, regex.IGNORECASE)
    pieces: list[str] = []
    previous = ""
    for word in part.split():
        for i, char in enumerate(word):
            if previous and _CJK.match(previous) and _CJK.match(char):
                pieces.append(r"\s?")
            elif previous and i == 0:
                pieces.append(r"\s+")
            pieces.append(regex.escape(char))
            previous = char
    before = "" if _UNSPACED.match(letters[0]) else _NO_LETTER_BEFORE
    after = "" if _UNSPACED.match(letters[-1]) else _NO_LETTER_AFTER
    return regex.compile(before + "".join(pieces) + after, regex.IGNORECASE)


def _iban_valid(candidate: str) -> bool:
    """The ISO 13616 check: move the first four characters to the end, letters to 10..35, mod 97 == 1."""
    text = candidate.replace(" ", "").upper()
    if not 15 <= len(text) <= 34 or not text.isalnum():
        return False
    digits = "".join(str(int(ch, 36)) for ch in text[4:] + text[:4])
    return int(digits) % 97 == 1


class Redactor:
    """Masks personal data in text quoted by a report.

    Patterns: emails, links, tracking numbers (the linker's own recogniser, valid or mistyped),
    order numbers (the configured patterns, and a number after the word "order" they would take), phone numbers,
    UK postcodes and the five-digit ones of continental Europe before a town ("10115 Berlin"), street addresses
    (any case; number first as in Britain and France, or last as in Germany: "Hauptstraße 12", "Am Lindenhof 3")
    and whatever a post gives as its address ("my address: ...", "deliver to ...", "meine Adresse: ...",
    "liefern an ...", "mon adresse : ...", to the end of the sentence), the recipient a shipping label names
    ("Recipient: ...", "Empfänger: ...", "Destinataire : ...", "Name: ...", "Deliver to: ...", "Zustellung an: ...",
    "Livrer à : ...": its name, and the address after it), IBANs and account or card numbers,
    handles (our own brand and courier handles stay: they are public accounts), names the post is known to
    carry (author display name, linked customer) or introduces ("my name is ...", "I'm ...", "Thanks, ...",
    "ich heiße ...", "mein Name ist ...", "je m'appelle ...", "Viele Grüße, ..." closing a post), and any
    other run of six or more digits. Free text can still carry a name or place with no such cue.
    """

    def __init__(self, config: Config):
        self.patterns = list(config.order_patterns)
        self.order_patterns = [re.compile(p) for p in config.order_patterns]
        self.public_handles = {
            h.lower().lstrip("@") for entity in [*config.brands, *config.couriers] for h in entity.handles.values()
        }
        #: Our brands and the couriers are named in complaints all the time ("this is Royal Mail's fault").
        self.public_words = {
            w.lower() for entity in [*config.brands, *config.couriers]
            for phrase in [entity.name, *getattr(entity, "keywords", [])] for w in re.findall(r"\w+", phrase)
        }

    def handle(self, handle: str | None) -> str | None:
        if not handle:
            return handle
        return handle if handle.lower().lstrip("@") in self.public_handles else "[handle]"

    def text(self, text: str | None, names: Iterable[str | None] = (), handles: Iterable[str | None] = ()) -> str | None:
        """Mask ``text``; ``names`` are people's names the post may contain (each word is masked),
        ``handles`` the author's handles, masked also where written without the @."""
        if not text:
            return text
        text = _nfc(text)
        out = _IBAN.sub(lambda m: "[bank details]" if _iban_valid(m.group(1)) or _IBAN_SAID.search(text[: m.start()])
                        else m.group(0), text)
        spans: list[tuple[int, int, str]] = []
        for number in find_tracking_numbers(out):
            spans.append((number.start, number.end, "[tracking no.]"))
        out = _apply(out, spans)
        for candidate in find_invalid_tracking_candidates(out):
            out = out.replace(candidate, "[tracking no.]")
        out = _HANDLE.sub(lambda m: m.group(0) if m.group(1).lower() in self.public_handles else "@[handle]", out)
        out = _EMAIL.sub("[email]", out)
        out = _URL.sub("[link]", out)
        for pattern in self.order_patterns:
            out = pattern.sub("[order no.]", out)
        # What linking reads as an order number without its "#" ("order 10492") is one here too.
        out = order_number_after_word(out, self.patterns, "[order no.]")
        out = _ACCOUNT.sub(lambda m: m.group(1) + "[number]", out)
        out = self._introduced_addresses(out)
        out = self._continental_streets(out)
        out = _STREET.sub("[address]", out)
        out = _STREET_ANY_CASE.sub(
            lambda m: m.group(0) if {w.lower() for w in m.group(1).split()} & _NOT_STREET else "[address]", out)
        out = _POSTCODE.sub("[postcode]", out)
        out = _EU_POSTCODE.sub(self._continental_postcode, out)
        out = _PHONE.sub("[phone]", out)
        out = _LONG_NUMBER.sub("[number]", out)
        out = self._introduced_names(out)
        for handle in handles:
            bare = (handle or "").lstrip("@")
            if len(bare) >= 3 and bare.lower() not in self.public_handles:
                out = re.sub(rf"(?<![\w.]){re.escape(bare)}(?![\w])", "[handle]", out, flags=re.IGNORECASE)
        for name in names:
            for part in _name_parts(name):
                out = _name_pattern(part).sub("[name]", out)
        return out

    # -- what a post introduces
    def _ordinary(self, word: str) -> bool:
        bare = re.sub(r"['’]s$", "", word).lower()
        return bare in _NOT_NAME or bare in _NOT_NAME_EU or bare in self.public_words or word.startswith("[")

    def _name_end(self, text: str, pos: int, any_case: bool) -> int:
        """Where a name starting at ``pos`` ends (``pos``: none there). Capitalised words, up to three; after
        "my name is" also lowercase ones, up to two."""
        end, taken, lowercase = pos, 0, False
        while taken < 3:
            m = _WORD.match(text, end)
            if not m or (taken and text[end] not in " \t") or self._ordinary(m.group(1)):
                break
            capitalised = bool(_CAPITALISED.match(m.group(1)))
            if not capitalised and not (any_case and (taken == 0 or lowercase)):
                break
            lowercase = lowercase or not capitalised
            if lowercase and taken == 2:
                break
            end, taken = m.end(), taken + 1
        return end

    def _introduced_names(self, text: str) -> str:
        for intro, any_case, closing in ((_STRONG_NAME_INTRO, True, False), (_NAME_INTRO, False, False),
                                         (_STRONG_NAME_INTRO_EU, True, False), (_NAME_INTRO_EU, False, False),
                                         (_SIGN_OFF_EU, False, True)):
            pieces, last = [], 0
            for m in intro.finditer(text):
                if m.start() < last:
                    continue
                if intro is _NAME_INTRO and m.group(0)[:2].lower() == "im" and m.group(0)[2:3].isspace() \
                        and _READS_GERMAN.search(text):
                    continue
                end = self._name_end(text, m.end(), any_case)
                # After "Danke," a capitalised word is a name only where the post or its sentence ends with it.
                if closing and not _NAME_ENDS_POST.match(text, end):
                    continue
                if end > m.end():
                    pieces += [text[last:m.end()], "[name]"]
                    last = end
            text = "".join(pieces) + text[last:]

        def here(m: re.Match[str]) -> str:
            words = m.group(2).split()
            if all(_CAPITALISED.match(w) and not self._ordinary(w) for w in words):
                return m.group(1) + "[name] "
            return m.group(0)

        return _NAME_HERE.sub(here, text)

    def _looks_like_a_place(self, text: str, pos: int, any_case: bool) -> bool:
        """Does what starts at ``pos`` look like an address: a house number, a capitalised name ("Rose
        Cottage", "The Old Rectory"), or with ``any_case`` any word that is not an everyday one?"""
        rest = text[pos:]
        if re.match(r"(?:no\.?\s*|number\s+|flat\s+|unit\s+|apt\.?\s+)?\d", rest, re.IGNORECASE):
            return True
        words = [w.group(1) for w in re.finditer(r"([^\W\d_][\w'’\-]*)", rest[:60])][:2]
        if not words:
            return False
        first = words[0]
        if first.lower() == "the" and len(words) > 1:
            first = words[1]
            if not _CAPITALISED.match(first):
                return False
        if self._ordinary(first):
            return False
        return bool(_CAPITALISED.match(first)) or any_case

    def _introduced_addresses(self, text: str) -> str:
        # (what introduces it, any case, checked to be a place, checked to be an address, where it ends)
        intros: tuple[tuple[re.Pattern[str], bool, bool, bool, Any], ...] = (
            (_ADDRESS_COLON, True, False, False, _SENTENCE_END), (_ADDRESS_IS, True, True, False, _SENTENCE_END),
            (_DELIVER_TO, False, True, True, _SENTENCE_END), (_ADDRESS_COLON_EU, True, False, False, _SENTENCE_END_EU),
            (_ADDRESS_IS_EU, True, True, False, _SENTENCE_END_EU), (_DELIVER_TO_EU, False, True, True, _SENTENCE_END_EU))
        text = self._recipients(text)
        for intro, any_case, place, address, sentence_end in intros:
            pieces, last = [], 0
            for m in intro.finditer(text):
                if m.start() < last:
                    continue
                if place and not self._looks_like_a_place(text, m.end(), any_case):
                    continue
                stop = sentence_end.search(text, m.end())
                end = stop.start() if stop else len(text)
                while end > m.end() and text[end - 1] in " ,":
                    end -= 1
                # "Do you deliver to Jersey?" ("ich wohne in Köln") names a place, not someone's address: after
                # "deliver to" an address has a house number, a house or street word, or several parts.
                span = text[m.end():end]
                if address and not (re.match(r"\W*(?:no\.?\s*|number\s+|flat\s+)?\d", span, re.I) or "," in span
                                    or _HOUSE_WORD.search(text, m.end(), end)
                                    or (intro is _DELIVER_TO_EU and re.search(r"\d", span))):
                    continue
                if end > m.end():
                    pieces += [text[last:m.end()], "[address]"]
                    last = end
            text = "".join(pieces) + text[last:]
        return text

    def _recipients(self, text: str) -> str:
        """The name and address after "Empfänger:", "Recipient:", "Name:", "Deliver to:", "Zustellung an:", "Livrer
        à :" (:data:`_RECIPIENT`): "Zustellung an: [name], [address]". A shipping label gives the name first and the
        address after a comma or on the next line; a street and number right after the cue is the address itself
        ("Lieferung an: Schlossallee 1, …"), as is a house's name ("Deliver to: Rose Cottage, Ambridge")."""
        pieces: list[str] = []
        last = 0
        for m in _RECIPIENT.finditer(text):
            if m.start() < last:
                continue
            colon, bare = m.group("colon") is not None, m.group("bare") is not None
            if bare and not m.group("label") and not m.group("label_en"):
                continue
            if m.group("is") is not None and (m.group("named") or m.group("named_en") or m.group("deliver")
                                              or m.group("deliver_en")):
                continue
            sentence_end = _SENTENCE_END if m.group("english") else _SENTENCE_END_EU
            title = _TITLE.match(text, m.end())
            start = title.end() if title else m.end()
            name_end = self._name_end(text, start, any_case=colon)
            name = text[start:name_end]
            # A street with its number ("Schlossallee 1") or a house's name is where, not who.
            if name and (regex.match(r"[ \t]*\d", text[name_end:]) or _HOUSE_WORD.search(name)):
                name_end, name = start, ""
            if bare and len(name.split()) < 2:
                continue
            if name:
                pieces += [text[last:start], "[name]"]
                last = name_end
                after = regex.match(r"[ \t]*(?:,|\n)\s*", text[name_end:])
                if not after:
                    continue
                start = name_end + after.end()
            elif not colon:
                continue
            stop = sentence_end.search(text, start)
            end = stop.start() if stop else len(text)
            while end > start and text[end - 1] in " ,":
                end -= 1
            # "Recipient: me, 3 days ago", "Name: Priya, 3 parcels lost" say no address.
            if end > start and self._looks_like_a_place(text, start, any_case=True) and (
                    _RECIPIENT_ADDRESS.search(text, start, end) or _HOUSE_WORD.search(text, start, end)):
                pieces += [text[last:start], "[address]"]
                last = end
        return "".join(pieces) + text[last:]

    # -- continental streets and postcodes (intl audit, finding 3)
    def _continental_streets(self, text: str) -> str:
        """German, Dutch and French streets: "Hauptstraße 12", "Am Lindenhof 3", "12 rue de la Paix"."""
        def street(m: regex.Match[str]) -> str:
            word, suffix = m.group("word"), m.group("suffix")
            if word is not None:
                whole = word + suffix
                if len(word) < 2 and not word.endswith("-"):  # "Weg 5", "Platz 1": the street word alone
                    return m.group(0)
                if not whole[0].isupper() and suffix.lower().rstrip(".") not in _EU_STREET_ANY_CASE:
                    return m.group(0)
                if suffix.lower() == "ring" and _RING_NOT_STREET.search(whole):
                    return m.group(0)
            return "[address]"

        def street_at(m: regex.Match[str]) -> str:
            words = {w.lower() for w in m.group("name").split()}
            if words & _NOT_STREET_NAME_EU or any(self._ordinary(w) for w in m.group("name").split()):
                return m.group(0)
            return m.group(0)[: m.start("name") - m.start()] + "[address]"

        def french(m: regex.Match[str]) -> str:
            # Without a house number only "rue" is surely a street: "place", "route" and "cours" are English words.
            if m.group("number") is None and m.group("kind").lower() != "rue":
                return m.group(0)
            return "[address]"

        text = _EU_STREET.sub(street, text)
        text = _EU_STREET_AT.sub(street_at, text)
        return _FR_STREET.sub(french, text)

    def _continental_postcode(self, m: regex.Match[str]) -> str:
        """Five digits are a postcode after a postcode word ("PLZ"), with a country prefix ("D-10115"), or after an
        address just masked; otherwise where a town follows them at the start, after a comma or "in" ("…, 10115
        Berlin"). A count ("10000 Euro", "20000 Kunden"), a price or a date is left as it is."""
        before = m.string[max(0, m.start() - 40): m.start()]  # what is just before it, not the whole post again
        if m.start() <= 40:
            before = m.string[: m.start()]
        town = _TOWN.match(m.string, m.end())
        if town and town.group("town").lower() in _NOT_TOWN:
            return m.group(0)
        if m.group("prefix") or _POSTCODE_CUE.search(before) or re.search(r"\[address\][,\s]*(?:in\s+)?$", before):
            return "[postcode]"
        if town and town.group("town")[0].isupper() and _POSTCODE_BEFORE.search(before):
            return "[postcode]"
        return m.group(0)


#: Korean and Chinese family names of two letters; every other one has one ("김", "王").
_TWO_LETTER_FAMILY_NAMES = frozenset({
    "남궁", "황보", "제갈", "선우", "독고", "사공", "서문", "동방",
    "欧阳", "歐陽", "司马", "司馬", "诸葛", "諸葛", "上官", "东方", "東方", "皇甫", "尉迟", "尉遲", "公孙", "公孫", "令狐",
    "慕容", "夏侯", "轩辕", "軒轅", "司徒", "端木", "独孤", "獨孤", "南宫", "南宮", "西门", "西門", "宇文", "长孙", "長孫",
})
_HANGUL_OR_HAN = regex.compile(r"^(?:\p{Hangul}+|\p{Han}+)$")


def _given_name(word: str) -> str | None:
    """The given name of a Korean or Chinese name written without a space ("김민수" -> "민수", "王小明" -> "小明",
    "남궁민수" -> "민수"), which a post writes alone ("민수입니다"); None where the split is not known (Japanese, whose
    family names have one to three letters, is written with kana or a space often enough)."""
    if not _HANGUL_OR_HAN.match(word):
        return None
    if len(word) == 3 and word[:2] not in _TWO_LETTER_FAMILY_NAMES:
        return word[1:]
    if len(word) == 4 and word[:2] in _TWO_LETTER_FAMILY_NAMES:
        return word[2:]
    return None


def _name_parts(name: str | None) -> list[str]:
    """A display name (composed, see :func:`_nfc`) and its words of 3+ letters, longest first ("Jane Doe" ->
    ["Jane Doe", "Jane", "Doe"]); of 2+ in Chinese, Japanese or Korean, where a family or given name is often
    two letters ("山田 太郎" -> ["山田 太郎", "山田", "太郎"]). A one-letter word ("王" of "王 芳") is no part of its
    own: it is a word, or part of one, too often; :func:`_name_pattern` says how the whole name is matched. The
    given name of a Korean or Chinese name written without a space is a part too (:func:`_given_name`)."""
    if not name or not name.strip():
        return []
    name = _nfc(name.strip())
    words = [w for w in re.findall(r"[^\W\d_][\w'\-]*", name)
             if (len(w) >= 3 or (len(w) == 2 and all(_UNSPACED.match(c) for c in w))) and f"[{w.lower()}]" not in _MASKS]
    given = [g for g in (_given_name(w) for w in words) if g]
    return sorted({name, *words, *given}, key=len, reverse=True)


def _apply(text: str, spans: list[tuple[int, int, str]]) -> str:
    for start, end, mask in sorted(spans, reverse=True):
        text = text[:start] + mask + text[end:]
    return text


# ---------------------------------------------------------------------------- the report
@dataclass
class Chart:
    name: str
    #: States the finding ("Late deliveries drove 41 % of complaints"), not the topic.
    title: str
    #: Text alternative for screen readers and image-blocking mail clients.
    alt: str
    png: bytes = b""

    @property
    def data_uri(self) -> str:
        return "data:image/png;base64," + base64.b64encode(self.png).decode("ascii")


@dataclass
class WeeklyReport:
    week: str
    brand: str | None
    tz: str
    start: datetime
    end: datetime
    generated_at: datetime
    redacted: bool
    data: dict[str, Any]
    #: Plain-language lines for the top of the report and the Slack summary.
    findings: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: The data-quality line of a week without warnings, after "Data quality: " (which listeners polled, or that
    #: none ran).
    quality_note: str = ""
    charts: list[Chart] = field(default_factory=list)
    #: How much of a figure is the model's guess (:func:`guess_notes`): "complaints", "labelled", "mentions" are
    #: sentences for beside a figure, "card:<headline key>" the short line under a headline figure. Empty where no
    #: post of the week is a guess.
    guesses: dict[str, str] = field(default_factory=dict)

    @property
    def title(self) -> str:
        return f"Weekly care report {self.week}" + (f" - {self.brand}" if self.brand else "")

    @property
    def period(self) -> str:
        zone = metrics._zone(self.tz)
        first = self.start.astimezone(zone).date()
        last = (self.end - timedelta(seconds=1)).astimezone(zone).date()
        return f"{first:%a %d %b %Y} to {last:%a %d %b %Y} ({self.tz})"

    @property
    def generated(self) -> str:
        """"2026-12-07 08:00 GMT": when it was made, on the shop's clock with the zone's name (BST/GMT), as a lead
        reads every other time in the report."""
        return self.generated_at.astimezone(metrics._zone(self.tz)).strftime("%Y-%m-%d %H:%M %Z")

    def summary_text(self) -> str:
        """The plain-text body: headline numbers and findings (mail clients without HTML, Slack)."""
        lines = [self.title, self.period, ""]
        lines += [f"! {w}" for w in self.warnings]
        lines += [f"- {f}" for f in self.findings]
        lines.append("")
        for key in metrics.HEADLINE_KEYS:
            item = self.data["headline"][key]
            guess = self.guesses.get(f"card:{key}")
            lines.append(f"{HEADLINE_LABELS[key]}: {fmt_value(key, item['value'])} ({fmt_change(key, item)})"
                         + (f" - {guess}" if guess else ""))
        return "\n".join(lines)


HEADLINE_LABELS: dict[str, str] = {
    "mentions": "Mentions",
    "complaints": "Complaints",
    "negative_share": "Negative share",
    "net_sentiment": "Net sentiment",
    "first_response_median_min": "Median first response",
    "first_response_p90_min": "90th percentile first response",
    "sla_attainment": "First-response SLA met",
    "resolution_rate": "Resolution rate",
    "escalations": "Escalations",
}
_RATES = {"negative_share", "sla_attainment", "resolution_rate"}
_MINUTES = {"first_response_median_min", "first_response_p90_min"}


def fmt_minutes(value: float | None) -> str:
    if value is None:
        return "n/a"
    if value < 90:
        return f"{value:.0f} min"
    return f"{value / 60:.1f} h"


def fmt_value(key: str, value: Any) -> str:
    if value is None:
        return "n/a"
    if key in _RATES:
        return f"{100 * value:.1f} %"
    if key in _MINUTES:
        return fmt_minutes(value)
    if key == "net_sentiment":
        return f"{value:+.2f}"
    return f"{value:,}"


def fmt_change(key: str, item: dict[str, Any]) -> str:
    change = item.get("change")
    if item.get("previous_empty"):
        return "no data the week before"
    if change is None:
        return "no comparison"
    if change_tone(item, key) == "flat":
        return "no change vs last week"
    if key in _RATES:
        text = f"{100 * change:+.1f} pp"
    elif key in _MINUTES:
        text = ("+" if change > 0 else "-") + fmt_minutes(abs(change))
    elif key == "net_sentiment":
        text = f"{change:+.2f}"
    else:
        text = f"{change:+,}"
        if item.get("change_pct") is not None:
            text += f" ({100 * item['change_pct']:+.0f} %)"
    return f"{text} vs last week"


#: Figures that are neither good nor bad when they move (more mentions may be a campaign).
NEUTRAL_KEYS: frozenset[str] = frozenset({"mentions"})
#: Changes smaller than what the report displays are "no change", not a coloured arrow.
_SHOWN_PRECISION: dict[str, float] = {"rate": 0.0005, "minutes": 0.5, "net_sentiment": 0.005, "count": 0.5}


def change_tone(item: dict[str, Any], key: str = "") -> str:
    """"good", "bad", "flat" or "neutral": drives the colour *and* the word next to the arrow."""
    change = item.get("change")
    kind = "rate" if key in _RATES else "minutes" if key in _MINUTES else key if key == "net_sentiment" else "count"
    if change is None or abs(change) < _SHOWN_PRECISION[kind]:
        return "flat"
    if key in NEUTRAL_KEYS:
        return "neutral"
    worse = change > 0 if item["lower_is_better"] else change < 0
    return "bad" if worse else "good"


def build_weekly_report(store: Store, config: Config, week: str | None = None, brand: str | None = None,
                        redact: bool = True, *, actor: str = "report", now: datetime | None = None,
                        charts: bool = True) -> WeeklyReport:
    """Gather one ISO week's figures (default: the last complete week) into a report.

    ``redact=False`` keeps personal data for internal use and records who asked in the audit log.
    """
    now = now or utcnow()
    tz = config.timezone
    week = week or last_complete_week(now, tz)
    start, end = week_bounds(week, tz)
    brand = brand or None
    data = metrics.dashboard(store, start, end, tz, brand)
    from doorstep import dialogue

    data["listeners"] = _with_configured_listeners(data["listeners"], config)
    data["answers"] = dialogue.answer_rates(store, start, end, tz, brand)
    data["callbacks"] = dialogue.callback_summary(store, start, end, brand)
    if redact:
        _redact_data(data, Redactor(config))
    else:
        store.audit(actor, "report.unredacted", None, {"week": week, "brand": brand})
    report = WeeklyReport(week=week, brand=brand, tz=tz, start=start, end=end, generated_at=now, redacted=redact,
                          data=data)
    report.warnings = _warnings(data, tz)
    report.quality_note = _quality_note(data)
    report.guesses = guess_notes(data)
    report.findings = _findings(data)
    if charts:
        report.charts = build_charts(report)
    return report


def _redact_data(data: dict[str, Any], redactor: Redactor) -> None:
    masked: set[str] = set()  # words the masking took out of a quoted post

    def text(raw: str | None, names: list[str | None], handles: list[str | None]) -> str | None:
        out = redactor.text(raw, names, handles)
        masked.update(_words(_nfc(raw or "")) - _words(out))  # the masked text is composed (NFC)
        return out

    for theme in data["themes"]:
        for post in theme["examples"]:
            post["text"] = text(post["text"], [post.get("author_name")], [post.get("author_handle")])
            post["author_handle"] = redactor.handle(post["author_handle"])
            post["author_name"] = "[name]" if post.get("author_name") else None
    for case in data["notable_cases"]:
        case["text"] = text(case["text"], [case.get("author_name"), case.get("customer_name")],
                            [case.get("author_handle")])
        case["author_handle"] = redactor.handle(case["author_handle"])
        case["author_name"] = "[name]" if case.get("author_name") else None
        case["customer_name"] = "[name]" if case.get("customer_name") else None
        case["order_number"] = "[order no.]" if case.get("order_number") else None
        case["tracking_number"] = "[tracking no.]" if case.get("tracking_number") else None
    # Themes are counted on the posts' own words (metrics), so a name or street that several complaints repeat
    # ("acacia avenue", with: "jane") would head a theme: a theme or a related word that the masking took out of
    # a quoted post is left out.
    data["themes"] = [t for t in data["themes"] if not _words(t["term"]) & masked]
    for theme in data["themes"]:
        theme["related"] = [w for w in theme.get("related") or [] if not _words(w) & masked]


def _words(text: str | None) -> set[str]:
    return set(re.findall(r"[^\W_]+", (text or "").lower()))


NEVER_POLLED = "never polled"


def _with_configured_listeners(listeners: list[dict[str, Any]], config: Config) -> list[dict[str, Any]]:
    """The listeners with a health record (metrics) and, as ``never polled``, each configured one without.

    The health table gets a row at a listener's first round, so a listener that never ran has none and
    ``metrics.listener_status`` cannot see it: "every listener polled" would be said of no listener at all.
    """
    seen = {row["name"] for row in listeners}
    configured = [name for name in LISTENER_CHANNELS if name in config.channels
                  and (config.channels.get(name) or {}).get("enabled", True) is not False]
    never = [{"name": name, "state": NEVER_POLLED, "last_success_at": None, "last_error_at": None, "last_error": None,
              "errors": 0} for name in configured if name not in seen]
    return sorted([*listeners, *never], key=lambda row: row["name"])


def _quality_note(data: dict[str, Any]) -> str:
    """What a week without warnings can truly say about its listeners."""
    never = [channel_name(row["name"]) for row in data["listeners"] if row["state"] == NEVER_POLLED]
    polled = [row for row in data["listeners"] if row["state"] != NEVER_POLLED]
    silence = "No channel went silent unexpectedly."
    if not data["listeners"]:
        return f"no listener ran (none is configured), so this week's posts came from imports. {silence}"
    if not polled:
        return f"no listener ran ({_join(never)} never polled), so this week's posts came from imports. {silence}"
    if never:
        return (f"{_join([channel_name(row['name']) for row in polled])} polled successfully; {_join(never)} never "
                f"polled, so {'its' if len(never) == 1 else 'their'} posts came from imports only. {silence}")
    return "every listener polled successfully and no channel went silent unexpectedly."


def _warnings(data: dict[str, Any], tz: str) -> list[str]:
    """Data-quality problems first: a quiet week with a dead listener is not a good week. Times are in the shop's
    zone ``tz``, as the period and the gap lines (a listener's last poll was said in UTC: time audit)."""
    out = []
    for listener in data["listeners"]:
        if listener["state"] == "down":
            since = listener["last_success_at"]
            err = f" (last error: {listener['last_error']})" if listener["last_error"] else ""
            state = (f"was down: no successful poll since "
                     f"{parse_time(since).astimezone(metrics._zone(tz)):%a %d %b %H:%M}" if since else
                     "has never polled successfully")
            out.append(f"Listener {channel_name(listener['name'])} {state}{err}. "
                       "Figures for this week undercount its channel.")
        elif listener["state"] == "errors":
            out.append(f"Listener {channel_name(listener['name'])} reported errors during the week (last: {listener['last_error']}); "
                       "it has polled successfully since.")
    for gap in data["gaps"]:
        span = "the whole week" if gap["whole_window"] else f"{gap['from_local']} to {gap['to_local']}"
        out.append(f"Possible data gap on {channel_name(gap['channel'])}: no mentions for {gap['hours']} h ({span}) where about "
                   f"{gap['expected_mentions']:.0f} were expected from the usual traffic.")
    return out


def _findings(data: dict[str, Any]) -> list[str]:
    h = data["headline"]
    out = []
    c = h["complaints"]
    if c["value"] is not None:
        out.append(f"{c['value']:,} complaints in {h['mentions']['value']:,} mentions ({fmt_change('complaints', c)}).")
    spam = int(data.get("counts", {}).get("closed_as_spam") or 0)
    if spam:  # why the complaints and the mood are lower than the mentions suggest (doorstep/closing.py)
        out.append(f"{spam:,} case{' was' if spam == 1 else 's were'} closed as spam this week; their posts are left "
                   "out of the complaint and mood figures.")
    guessed = guess_notes(data).get("complaints")
    if guessed:  # beside the complaint count: what the figures below rest on
        out.append(guessed)
    top_intent = top_intent_finding(data["intents"])
    if top_intent:
        said, caveat = top_intent
        out.append(f"{said}, but {caveat}." if caveat else f"{said}.")
    league = [r for r in data["couriers"] if r["complaints_per_1000"] is not None]
    if league and league[0]["stands_out"]:  # beyond noise: metrics.standout_courier
        out.append(standout_courier_finding(league[0]) + ".")
    elif len(league) > 1:
        rates = [r["complaints_per_1000"] for r in league]
        out.append(f"No courier stood out: {min(rates):.1f} to {max(rates):.1f} complaints per 1,000 shipments.")
    unlinked = sum(r["unlinked_complaints"] for r in data["couriers"])
    if unlinked:
        out.append(f"{unlinked} complaint{'' if unlinked == 1 else 's'} named a courier but no shipment we know "
                   "(not in the rates).")
    if data["tracking_problem_complaints"]:
        out.append(f"{data['tracking_problem_complaints']} complaints followed a courier exception or failed attempt.")
    sla = h["sla_attainment"]
    if sla["value"] is not None:
        out.append(f"First-response SLA met for {100 * sla['value']:.0f} % of cases ({fmt_change('sla_attainment', sla)}).")
    return out


# ---------------------------------------------------------------------------- the model's guesses
# The console says of each post for review "written in German: labels are a guess"; the report counted those posts
# as facts ("Most complaints were about refund or return (67 %)" of a lost Hermes parcel and a Turkish "not
# delivered"; German praise as negative: intl audit). Each figure now says how much of it is the model's guess.
def _either(items: list[str]) -> str:
    """"German", "German or Turkish", "German, Turkish or Polish"."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " or " + items[-1]


def guess_sentence(guess: dict[str, Any] | None, total: int, noun: str, what: tuple[str, str]) -> str | None:
    """"2 of 3 complaints were written in German or Turkish: their topics are the model's guess until someone
    reviews them." ``guess``: a :func:`doorstep.metrics.label_guesses` tally of the ``total`` posts ``noun`` names;
    ``what``: what is guessed, with its verb, for one post and for several (("topic is", "topics are")). None
    where none of them is a guess."""
    guess = guess or {}
    n = int(guess.get("posts") or 0)
    if not n or not total:
        return None
    languages = [row["language"] for row in guess["languages"]]
    written = sum(row["posts"] for row in guess["languages"])
    unsure = int(guess["unsure"])
    if written and unsure:
        how = (f"written in {_either(languages)} ({written:,}) or read by the model with too little confidence "
               f"({unsure:,})")
    elif written:
        how = f"written in {_either(languages)}"
    else:
        how = "read by the model with too little confidence"
    one = n == 1
    return (f"{n:,} of {total:,} {noun} {'was' if one else 'were'} {how}: {'its' if one else 'their'} "
            f"{what[0] if one else what[1]} the model's guess until someone reviews {'it' if one else 'them'}.")


def guess_badge(guess: dict[str, Any] | None, total: int) -> str | None:
    """The line under a headline figure: "2 of 3 the model's guess (German, Turkish; 1 unsure)"."""
    guess = guess or {}
    n = int(guess.get("posts") or 0)
    if not n or not total:
        return None
    why = [", ".join(row["language"] for row in guess["languages"])] if guess["languages"] else []
    if guess["unsure"]:
        why.append(f"{guess['unsure']:,} unsure" if why else "the model unsure, not reviewed")
    return f"{n:,} of {total:,} the model's guess ({'; '.join(why)})"


def top_intent_known(intents: list[dict[str, Any]]) -> bool:
    """Whether "Most complaints were about X" is a fact: the complaints no one doubts put X first on their own
    (more than the next intent has, guesses and all), and most of X's complaints are no guess."""
    if not intents:
        return False
    top = intents[0]
    guessed = top.get("guessed") or 0
    if not guessed:  # as every week before guesses were counted (a tie names the first, as it always did)
        return True
    runner_up = intents[1]["complaints"] if len(intents) > 1 else 0
    return 2 * guessed <= top["complaints"] and top["complaints"] - guessed > runner_up


def top_intent_finding(intents: list[dict[str, Any]], *, now: bool = False) -> tuple[str, str | None] | None:
    """The top complaint topic in words, as the report's brief and the console's dashboard both say it: (finding,
    caveat), None without complaints. "Most complaints were about X (67 %)" only where :func:`top_intent_known`;
    otherwise "The model guesses that most complaints were about X (67 %)" with the caveat "2 of those 2 are
    unreviewed guesses: read them before acting on this". ``now``: the dashboard's live window, "are about".

    Why one function: the dashboard said "Most complaints are about …" as fact of the very posts the report called
    the model's guess (code review); one rule and one wording keep the screen and the mail from disagreeing."""
    if not intents:
        return None
    top = intents[0]
    share, n, guesses = f"{100 * (top['share'] or 0):.0f} %", int(top["complaints"]), int(top.get("guessed") or 0)
    verb = "are" if now else "were"
    if not top_intent_known(intents):
        return (f"The model guesses that most complaints {verb} about {top['label']} ({share})",
                f"{guesses:,} of those {n:,} {'is an unreviewed guess' if guesses == 1 else 'are unreviewed guesses'}: "
                f"read {'it' if guesses == 1 else 'them'} before acting on this")
    if guesses:
        return (f"Most complaints {verb} about {top['label']} ({share}; {guesses:,} of those {n:,} "
                f"{'is' if guesses == 1 else 'are'} the model's guess)", None)
    return f"Most complaints {verb} about {top['label']} ({share})", None


def standout_courier_finding(row: dict[str, Any], *, now: bool = False) -> str:
    """The courier that stands out (:func:`doorstep.metrics.standout_courier`), as the report and the dashboard say
    it: "UPS had the most complaints per 1,000 shipments (270.5)", hedged "By the model's guess, …" where most of its
    complaints are guesses, and how many are. ``now``: the dashboard's "has" and whole numbers."""
    guesses, n = int(row.get("complaints_guessed") or 0), int(row.get("complaints") or 0)
    hedge = "By the model's guess, " if 2 * guesses > n else ""
    rate = f"{row['complaints_per_1000']:.0f}" if now else f"{row['complaints_per_1000']:.1f}"
    said = f"{row['courier']} {'has' if now else 'had'} the most complaints per 1,000 shipments ({rate})"
    return hedge + said + (f"; {guesses:,} of its {n:,} complaints {'is' if guesses == 1 else 'are'} the model's guess"
                           if guesses else "")


def guess_notes(data: dict[str, Any]) -> dict[str, str]:
    """What :attr:`WeeklyReport.guesses` holds, from the week's :func:`doorstep.metrics.dashboard`."""
    guesses = data.get("guesses") or {}
    counts = data.get("counts") or {}
    out: dict[str, str | None] = {
        "mentions": guess_sentence(guesses.get("mentions"), counts.get("mentions") or 0, "mentions",
                                   ("labels (complaint or not, mood, topic) are",) * 2),
        "labelled": guess_sentence(guesses.get("labelled"), counts.get("labelled") or 0, "posts with a sentiment label",
                                   ("mood is",) * 2),
        "complaints": guess_sentence(guesses.get("complaints"), counts.get("complaints") or 0, "complaints",
                                     ("topic is", "topics are")),
        "card:complaints": guess_badge(guesses.get("complaints"), counts.get("complaints") or 0),
        "card:negative_share": guess_badge(guesses.get("labelled"), counts.get("labelled") or 0),
        "card:net_sentiment": guess_badge(guesses.get("labelled"), counts.get("labelled") or 0),
    }
    mentions, labelled = guesses.get("mentions") or {}, guesses.get("labelled") or {}
    if (mentions.get("posts"), counts.get("mentions")) == (labelled.get("posts"), counts.get("labelled")):
        out["labelled"] = None  # the same posts: the mentions' line says it
    return {key: text for key, text in out.items() if text}


# ---------------------------------------------------------------------------- charts
def build_charts(report: WeeklyReport) -> list[Chart]:
    """Altair charts rendered to PNG by vl-convert (bundled renderer: no browser, no network)."""
    import altair as alt
    import pandas as pd
    import vl_convert as vlc

    data = report.data
    out: list[Chart] = []
    font = "DejaVu Sans, Helvetica, Arial, sans-serif"

    def render(name: str, title: str, alt_text: str, chart: Any, subtitle: str | None = None) -> None:
        heading = alt.Title(title, subtitle=subtitle or "", anchor="start", fontSize=15, font=font, subtitleFontSize=12,
                            subtitleFont=font, subtitleColor="#444444")
        spec = chart.properties(title=heading).configure(font=font, background="white").configure_axis(
            labelFontSize=12, titleFontSize=12, grid=True, gridColor="#e6e6e6"
        ).configure_legend(labelFontSize=12, titleFontSize=12, orient="top").configure_view(stroke=None).to_dict()
        png = _small_png(vlc.vegalite_to_png(spec, scale=2))
        out.append(Chart(name, title, alt_text, png))

    daily = pd.DataFrame(fold_daily_brands(data["daily"]))
    if not daily.empty and daily["mentions"].sum() > 0:
        daily["date"] = pd.to_datetime(daily["day"])
        brands = list(dict.fromkeys(daily["brand"]))
        colours = alt.Scale(domain=brands, range=PALETTE[: len(brands)])
        per_day = daily.groupby("day")["complaints"].sum()
        title, subtitle = extreme_title({d: int(n) for d, n in per_day.items()}, highest=True)
        chart = alt.Chart(daily).mark_bar().encode(
            x=alt.X("yearmonthdate(date):O", title="Day (local time)", axis=alt.Axis(format="%a %d", labelAngle=0)),
            y=alt.Y("sum(complaints):Q", title="Complaints (posts)"),
            color=alt.Color("brand:N", scale=colours, title="Brand"),
            xOffset="brand:N",
        ).properties(width=620, height=220)
        render("daily_complaints", title, title + ". " + (f"{subtitle}. " if subtitle else "") + "; ".join(
            f"{date.fromisoformat(d):%a}: {int(n)}" for d, n in per_day.items()), chart, subtitle)

        labelled = daily.dropna(subset=["net_sentiment"])
        if not labelled.empty:
            overall = daily.groupby("day")[["positive", "negative", "labelled"]].sum()
            net = ((overall["positive"] - overall["negative"]) / overall["labelled"].where(overall["labelled"] > 0)).dropna()
            title, subtitle = extreme_title({d: float(v) for d, v in net.items()}, highest=False,
                                            days=daily["day"].nunique())
            base = alt.Chart(labelled).encode(
                x=alt.X("yearmonthdate(date):O", title="Day (local time)", axis=alt.Axis(format="%a %d", labelAngle=0)),
                y=alt.Y("net_sentiment:Q", title="Net sentiment (-1 to +1)", scale=alt.Scale(domain=[-1, 1])),
                color=alt.Color("brand:N", scale=colours, title="Brand"),
            )
            # Dashes as well as colour (one merged legend), so the lines are told apart without colour.
            dashes = [[1, 0], [6, 3], [2, 2], [8, 3, 2, 3], [1, 3]]
            line = base.mark_line(point=alt.OverlayMarkDef(size=50, filled=True), strokeWidth=2.5).encode(
                strokeDash=alt.StrokeDash("brand:N", title="Brand",
                                          scale=alt.Scale(domain=brands, range=(dashes * 4)[: len(brands)])),
            )
            zero = alt.Chart(pd.DataFrame({"y": [0]})).mark_rule(color="#888", strokeDash=[2, 2]).encode(y="y:Q")
            render("daily_sentiment", title, title + ". " + (f"{subtitle}. " if subtitle else "") + "; ".join(
                f"{date.fromisoformat(d):%a}: {v:+.2f}" for d, v in net.items()),
                alt.layer(line, zero).properties(width=620, height=220), subtitle)

    intents = pd.DataFrame(data["intents"])
    if not intents.empty:
        top = intents.iloc[0]
        guessed, n = int(data["intents"][0].get("guessed") or 0), int(top["complaints"])
        if top_intent_known(data["intents"]):
            title = f"{top['label'].capitalize()} drove {100 * top['share']:.0f} % of complaints"
        else:  # not stated as fact when its complaints are mostly guesses
            title = f"The model guesses {top['label']} drove {100 * top['share']:.0f} % of complaints"
        subtitle = (f"{guessed:,} of those {n:,} {'is' if guessed == 1 else 'are'} the model's guess, not yet reviewed"
                    if guessed else None)
        chart = alt.Chart(intents).mark_bar(color=PALETTE[0]).encode(
            y=alt.Y("label:N", sort="-x", title=None),
            x=alt.X("complaints:Q", title="Complaints (posts)", axis=alt.Axis(tickCount=6, tickMinStep=1)),
        ).properties(width=560, height=max(60, 26 * len(intents)))
        text = chart.mark_text(align="left", dx=4, fontSize=12).encode(text="complaints:Q")
        render("intents", title, title + ". " + (f"{subtitle}. " if subtitle else "") + "; ".join(
            f"{r['label']}: {r['complaints']}" + (f" ({r['guessed']} a guess)" if r.get("guessed") else "")
            for r in data["intents"]), alt.layer(chart, text), subtitle)

    league = [r for r in data["couriers"] if r["complaints_per_1000"] is not None]
    if league:
        frame = pd.DataFrame(league)
        worst = league[0]
        rest = [r["complaints_per_1000"] for r in league[1:]]
        title = (f"{worst['courier']} had the most complaints per 1,000 shipments" if worst["stands_out"]
                 else "No courier stood out in complaints per 1,000 shipments")
        subtitle = f"{worst['courier']} {worst['complaints_per_1000']:.1f} per 1,000" + (
            f", {league[1]['courier']} next at {rest[0]:.1f}" if rest else "") + (
            "" if worst["stands_out"] or not rest else ": a gap within what chance gives")
        chart = alt.Chart(frame).mark_bar(color=PALETTE[5]).encode(
            y=alt.Y("courier:N", sort="-x", title=None),
            x=alt.X("complaints_per_1000:Q", title="Complaints per 1,000 shipments (active or complained about)", axis=alt.Axis(tickCount=6)),
        ).properties(width=560, height=max(60, 30 * len(frame)))
        text = chart.mark_text(align="left", dx=4, fontSize=12).encode(text=alt.Text("complaints_per_1000:Q", format=".1f"))
        render("couriers", title, f"{title}: " + "; ".join(
            f"{r['courier']}: {r['complaints_per_1000']:.1f}" for r in league), alt.layer(chart, text), subtitle)
    return out


def extreme_title(values: dict[str, float], *, highest: bool, days: int | None = None) -> tuple[str, str | None]:
    """The title (and subtitle) of a daily chart: the day with the most complaints (``highest``) or the lowest
    net sentiment. ``values``: ISO day -> value, for the days that have one; ``days``: days in the window.

    Nothing is said of a peak in a week without complaints, nor of a lowest day when every day is the same.
    Days equal as shown (whole complaints, sentiment to two places) are a tie, and a tie names the latest
    of them, as the console's dashboard does (``console/dashboard.py`` ``chart_findings``), with the others
    in the subtitle, so the two screens name the same day.
    """
    if highest:
        shown: dict[str, float] = {d: round(v) for d, v in values.items()}
        fmt, what = (lambda v: f"{v:,.0f}"), "Complaints"
    else:
        shown = {d: round(v, 2) + 0.0 for d, v in values.items()}
        fmt, what = (lambda v: f"{v:+.2f}"), "Net sentiment"
    if not shown:
        return (f"{what} per day", None)
    best = max(shown.values()) if highest else min(shown.values())
    if highest and best <= 0:
        return "No complaints this week", None
    tied = sorted(d for d, v in shown.items() if v == best)
    if not highest and len(shown) == 1:
        return f"Net sentiment was {fmt(best)} on {_day_label(tied[0])}, the only day with labelled posts", None
    if len(shown) > 1 and len(tied) == len(shown):
        every = "every day" if days is None or len(shown) >= days else "every day with labelled posts"
        return f"{what} {'were' if highest else 'was'} the same {every} ({fmt(best)})", None
    latest = tied[-1]
    title = (f"Complaints peaked on {_day_label(latest)} ({fmt(best)})" if highest
             else f"Net sentiment was lowest on {_day_label(latest)} ({fmt(best)})")
    others = tied[:-1]
    subtitle = f"Also {fmt(best)} on {_join([_day_label(d) for d in others])}" if others else None
    return title, subtitle


def _day_label(day: str) -> str:
    return f"{date.fromisoformat(day):%a %d %b}"


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _small_png(png: bytes) -> bytes:
    """A 64-colour palette PNG: charts are flat colours, and a tenth of the size keeps the mail small."""
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.open(io.BytesIO(png)).convert("RGB").quantize(colors=64, method=Image.Quantize.MEDIANCUT).save(
        out, "PNG", optimize=True)
    return out.getvalue()


# ---------------------------------------------------------------------------- rendering
def _environment() -> Any:
    from jinja2 import Environment, PackageLoader, StrictUndefined

    env = Environment(loader=PackageLoader("doorstep", "templates"), autoescape=True, undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["value"] = lambda value, key: fmt_value(key, value)
    env.filters["minutes"] = fmt_minutes
    env.filters["channel"] = channel_name  # "X", "Bluesky": a reader knows the networks, not our keys
    env.filters["unspaced"] = lambda text: bool(text) and _UNSPACED.search(text) is not None  # CJK wrapping (PDF)
    env.filters["shorten"] = shorten  # cut between whole letters and emoji, "…" when cut
    env.filters["pct"] = lambda v, digits=1: "n/a" if v is None else f"{100 * v:.{digits}f} %"
    env.filters["num"] = lambda v, digits=1: "n/a" if v is None else f"{v:,.{digits}f}"
    env.filters["local"] = lambda v, tz, fmt="%a %d %b %H:%M": "" if not v else parse_time(v).astimezone(  # type: ignore[union-attr]
        metrics._zone(tz)).strftime(fmt)
    return env


#: Brands with columns of their own in "Trend by day" and lines in its charts; the rest are summed as
#: "Other brands (N)". One group per brand made the page 20,018 px wide at 73 brands and the PDF fail from
#: about 30 (real-posts audit); the palette has eight colours.
DAILY_BRANDS_SHOWN = 6


def fold_daily_brands(daily: list[dict[str, Any]], shown: int = DAILY_BRANDS_SHOWN) -> list[dict[str, Any]]:
    """``daily`` (:func:`doorstep.metrics.daily_trend`) with the busiest ``shown - 1`` brands of the week kept and
    the others summed per day into one "Other brands (N)", busiest first; as it is when ``shown`` brands or fewer."""
    weekly: Counter[str] = Counter()
    for row in daily:
        weekly[row["brand"]] += row["mentions"]
    order = sorted(weekly, key=lambda b: (-weekly[b], b))
    if len(order) <= shown:
        return sorted(daily, key=lambda r: (r["day"], order.index(r["brand"])))
    kept = order[: shown - 1]
    other = f"Other brands ({len(order) - len(kept)})"
    out: list[dict[str, Any]] = []
    summed: dict[str, dict[str, Any]] = {}
    for row in sorted(daily, key=lambda r: r["day"]):
        if row["brand"] in kept:
            out.append(row)
            continue
        cell = summed.setdefault(row["day"], {"day": row["day"], "brand": other, "mentions": 0, "labelled": 0,
                                              "complaints": 0, "negative": 0, "positive": 0})
        for key in ("mentions", "labelled", "complaints", "negative", "positive"):
            cell[key] += row.get(key) or 0
    for cell in summed.values():
        labelled = cell["labelled"]
        cell["negative_share"] = cell["negative"] / labelled if labelled else None
        cell["net_sentiment"] = (cell["positive"] - cell["negative"]) / labelled if labelled else None
        out.append(cell)
    rank = {b: i for i, b in enumerate([*kept, other])}
    return sorted(out, key=lambda r: (r["day"], rank[r["brand"]]))


def _daily_pivot(daily: list[dict[str, Any]]) -> tuple[list[str], list[dict[str, Any]]]:
    """Days as rows, brands as column groups (:func:`fold_daily_brands`): seven rows instead of seven times the
    brands."""
    daily = fold_daily_brands(daily)
    brands = list(dict.fromkeys(row["brand"] for row in daily))
    days: dict[str, dict[str, Any]] = {}
    for row in daily:
        label = f"{date.fromisoformat(row['day']):%a %d %b}"
        days.setdefault(row["day"], {"day": row["day"], "label": label, "cells": {}})["cells"][row["brand"]] = row
    return brands, list(days.values())


def render_html(report: WeeklyReport, *, for_pdf: bool = False) -> str:
    """The report as one self-contained HTML document (inline CSS, charts as data: URIs)."""
    template = _environment().get_template("weekly_report.html.j2")
    daily_brands, daily_rows = _daily_pivot(report.data["daily"])
    return template.render(
        daily_brands=daily_brands,
        daily_rows=daily_rows,
        r=report,
        d=report.data,
        labels=HEADLINE_LABELS,
        keys=metrics.HEADLINE_KEYS,
        fmt_value=fmt_value,
        fmt_change=fmt_change,
        change_tone=change_tone,
        for_pdf=for_pdf,
        pdf_font_faces=pdf_font_faces() if for_pdf else "",
        pdf_font_family=pdf_font_family() if for_pdf else "",
        colours={"good": GOOD, "bad": BAD, "flat": NEUTRAL},
        notable_shown=NOTABLE_QUOTED,
        notable_more=more_notable(report.data["notable_cases"][NOTABLE_QUOTED:]),
    )


#: Notable cases quoted in full; the others are listed by number (a mail of 50 quoted posts is not read).
NOTABLE_QUOTED = 15


def more_notable(cases: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The notable cases not quoted, by number, grouped by why they are notable, with their statuses.

    Why here and not "in the console": the console's Reports page shows this same report, and the inbox
    lists open cases and today's deadlines, so last week's resolved breaches are found nowhere else.
    """
    if not cases:
        return None
    groups: dict[str, list[int]] = {}
    for case in cases:
        groups.setdefault(", ".join(case["reasons"]), []).append(case["case_id"])
    statuses: dict[str, int] = {}
    for case in cases:
        label = str(case["status"] or "unknown").replace("_", " ")
        statuses[label] = statuses.get(label, 0) + 1
    if len(statuses) == 1:
        status = ("all " if len(cases) > 1 else "") + next(iter(statuses))
    else:
        status = ", ".join(f"{n} {label}" for label, n in sorted(statuses.items(), key=lambda kv: (-kv[1], kv[0])))
    return {"count": len(cases), "status": status,
            "groups": [{"why": why, "ids": sorted(ids)} for why, ids in groups.items()]}


# ---------------------------------------------------------------------------- PDF fonts
# The PDF drew every post in the base-14 Helvetica, which has Latin-1 and nothing else: Polish, Welsh, Arabic,
# Hebrew, Hindi and Japanese posts were rows of black boxes while the HTML report read fine (languages audit).
# xhtml2pdf embeds TrueType faces and draws each character with the first face of the font-family list that
# has it, so the PDF names a list: a system face that covers most scripts, one system face for each script
# that face lacks, and last the faces that come with the installed packages, for a machine with no fonts.

#: One or two letters of each script customers write complaints in. A face is added to the PDF's list for
#: each script the faces before it cannot draw.
SCRIPT_SAMPLES: dict[str, str] = {
    "Latin (Central European, Welsh, Vietnamese)": "łąőřŵŷư",
    "Greek": "αω",
    "Cyrillic": "жя",
    "Arabic": "عي",
    "Hebrew": "אש",
    "Devanagari": "कम",
    "Bengali": "কম",
    "Tamil": "கம",
    "Thai": "กม",
    "Chinese and Japanese kanji": "包裹荷物",
    "Japanese kana": "がカ",
    "Korean": "한글",
}

#: The faces looked for first, by path, where fontconfig is not there to ask (macOS, Windows, a container
#: without fc-match): DejaVu Sans and Noto Sans on Linux, Arial Unicode on macOS, Arial on Windows.
KNOWN_FONT_FILES: tuple[str, ...] = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/noto/NotoSans-Regular.ttf",
    "/usr/share/fonts/noto/NotoSans-Regular.ttf",
    "/System/Library/Fonts/Supplemental/Arial Unicode.ttf",
    "/Library/Fonts/Arial Unicode.ttf",
    "C:/Windows/Fonts/arial.ttf",
    "C:/Windows/Fonts/Nirmala.ttf",
    "C:/Windows/Fonts/malgun.ttf",
)


@dataclass(frozen=True)
class PdfFont:
    """A TrueType face the PDF embeds, under a CSS family name of its own, with its bold where one was found."""

    family: str
    regular: Path
    bold: Path | None = None

    @property
    def regular_uri(self) -> str:
        return self.regular.as_uri()

    @property
    def bold_uri(self) -> str | None:
        return self.bold.as_uri() if self.bold else None


@functools.lru_cache(maxsize=64)
def _coverage(path: Path) -> frozenset[int]:
    """The code points the face at ``path`` draws; empty when ReportLab cannot embed it (a missing file, or an
    OpenType face with PostScript outlines such as Noto Sans CJK, which ReportLab refuses)."""
    from reportlab.pdfbase.ttfonts import TTFontFile

    try:
        return frozenset(TTFontFile(str(path), validate=0).charToGlyph)
    except Exception:  # noqa: BLE001 - TTFError, OSError, a damaged file: the face is simply not used
        return frozenset()


def font_draws(font: PdfFont, char: str) -> bool:
    """Whether ``font`` has a glyph for ``char`` (what a test or a check asks before expecting it drawn)."""
    return ord(char) in _coverage(font.regular)


def _fc(*args: str) -> list[str]:
    """Lines fontconfig prints for ``args``; none where fontconfig is not installed or fails."""
    import shutil
    import subprocess

    if not shutil.which("fc-match"):
        return []
    try:
        done = subprocess.run(list(args), capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in done.stdout.splitlines() if line.strip()] if done.returncode == 0 else []


def _system_font_files() -> list[Path]:
    """The machine's faces in the order to try them: DejaVu Sans or another known face first, then, for each
    script of :data:`SCRIPT_SAMPLES`, the sans faces fontconfig says draw it (its preferred one first)."""
    found: list[Path] = [Path(p) for p in KNOWN_FONT_FILES if Path(p).is_file()]
    for family in ("DejaVu Sans", "Noto Sans"):
        found += [Path(p) for p in _fc("fc-match", "-f", "%{file}", f"{family}:style=Book")
                  if Path(p).name.replace(" ", "").lower().startswith(family.replace(" ", "").lower())]
    for sample in SCRIPT_SAMPLES.values():
        point = f"{ord(sample[0]):x}"
        having = set(_fc("fc-list", "-f", "%{file}\n", f":charset={point}"))
        preferred = _fc("fc-match", "-s", "-f", "%{file}\n", f"sans-serif:charset={point}")
        found += [Path(p) for p in preferred if p in having]
    return found


def _bundled_font_files() -> list[Path]:
    """Faces that come with the installed packages, for a machine with no fonts at all: ReportLab's Bitstream
    Vera (Latin-1, drawn as ReportLab draws it everywhere) and the captcha package's Droid Sans Mono (Latin
    Extended, Greek and Cyrillic: Polish and Welsh are read, in a monospaced face, rather than boxes)."""
    import importlib.util

    files = []
    for package, relative in (("reportlab", "fonts/Vera.ttf"), ("captcha", "data/DroidSansMono.ttf")):
        spec = importlib.util.find_spec(package)
        if spec and spec.submodule_search_locations:
            files += [Path(folder) / relative for folder in spec.submodule_search_locations]
    return files


def _bold_of(regular: Path) -> Path | None:
    """The bold face beside ``regular`` (DejaVuSans-Bold.ttf, NotoSans-Bold.ttf, VeraBd.ttf, arialbd.ttf)."""
    stem = regular.stem
    for name in (f"{stem}-Bold", stem.replace("-Regular", "-Bold"), f"{stem}Bd", f"{stem}bd"):
        candidate = regular.with_name(name + regular.suffix)
        if name != stem and candidate.is_file() and _coverage(candidate):
            return candidate
    return None


#: What the body face must draw: the report's own words and a Western European post.
BODY_SAMPLE = "AZaz09éüßÆø€–“’"


@functools.lru_cache(maxsize=1)
def pdf_fonts() -> tuple[PdfFont, ...]:
    """The faces the PDF draws text with, in order: the body face (the first that draws :data:`BODY_SAMPLE`,
    a system face before the bundled Vera), then each face that draws a script of :data:`SCRIPT_SAMPLES` the
    ones before it do not. Looked for once per process (fontconfig and the font files are read: a few
    hundred milliseconds)."""
    candidates = [*_system_font_files(), *_bundled_font_files()]
    body = next((path for path in candidates if {ord(c) for c in BODY_SAMPLE} <= _coverage(path)), None)
    chosen = [body] if body else []
    wanted = {ord(c) for sample in SCRIPT_SAMPLES.values() for c in sample}
    drawn = _coverage(body) & wanted if body else set()
    for path in candidates:
        more = (_coverage(path) & wanted) - drawn
        if more and path not in chosen:
            chosen.append(path)
            drawn |= more
    missing = [script for script, sample in SCRIPT_SAMPLES.items() if not {ord(c) for c in sample} <= drawn]
    if missing:
        log.info("the PDF report has no font for %s: such posts show as boxes in its PDF (the HTML report is "
                 "unaffected). Install TrueType fonts that cover them, e.g. on Debian or Ubuntu fonts-dejavu-core, "
                 "fonts-droid-fallback (Chinese, Japanese), fonts-lohit-deva (Hindi), fonts-tlwg-garuda-ttf (Thai)",
                 ", ".join(missing))
    return tuple(PdfFont("doorstep" + re.sub(r"[^a-z0-9]", "", path.stem.lower()) + str(i), path,
                         _bold_of(path) if path == body else None) for i, path in enumerate(chosen))


#: Scripts named by the language a care team knows them by, where Unicode's own name for them is not that
#: (a character's script is otherwise the first word of its Unicode name: "ARABIC LETTER ALEF" -> Arabic).
_SCRIPT_NAMES: tuple[tuple[regex.Pattern[str], str], ...] = (
    (regex.compile(r"\p{Han}"), "Chinese characters"),
    (regex.compile(r"[\p{Hiragana}\p{Katakana}]"), "Japanese"),
    (regex.compile(r"\p{Hangul}"), "Korean"),
    (regex.compile(r"\p{Devanagari}"), "Hindi"),
)
#: What to install for a script with no font, as README's "PDF fonts" says (Debian/Ubuntu package names; the
#: CJK and Thai fonts are TrueType ones, which the PDF can embed: Noto Sans CJK's OpenType outlines cannot be).
_FONT_PACKAGES: dict[str, str] = {
    "Chinese characters": "fonts-droid-fallback",
    "Japanese": "fonts-droid-fallback",
    "Korean": "fonts-droid-fallback",
    "Hindi": "fonts-lohit-deva",
    "Thai": "fonts-tlwg-garuda-ttf",
}
_BEYOND_LATIN_1 = regex.compile(r"[^\x00-\xff]")


def _script_name(char: str) -> str:
    """What the warning calls ``char``'s script: the team reads "Thai" or "Hindi", not a code point."""
    for pattern, name in _SCRIPT_NAMES:
        if pattern.match(char):
            return name
    return unicodedata.name(char, "other").split()[0].split("-")[0].title()


def pdf_font_gaps(text: str) -> list[str]:
    """The scripts of ``text`` (the PDF's HTML, or what it quotes) that no face of :func:`pdf_fonts` draws, in the
    order they first appear: their letters print as blank boxes in the PDF. Letters of Latin-1 are always drawn
    (Helvetica, the last resort of :func:`pdf_font_family`)."""
    drawn: set[int] = set()
    for font in pdf_fonts():
        drawn |= _coverage(font.regular)
    gaps: list[str] = []
    for char in dict.fromkeys(_BEYOND_LATIN_1.findall(text)):
        if char.isalpha() and ord(char) not in drawn:
            name = _script_name(char)
            if name not in gaps:
                gaps.append(name)
    return gaps


def pdf_font_warning(path: str | Path, gaps: list[str]) -> str:
    """One line for the team that made the PDF at ``path``: which scripts print as boxes, and what to install
    (README, Weekly report: PDF fonts)."""
    remedies: dict[str, list[str]] = {}
    for script in gaps:
        remedies.setdefault(_FONT_PACKAGES.get(script, "a TrueType font that draws them"), []).append(script)
    install = ", ".join(f"{package} ({', '.join(scripts)})" for package, scripts in remedies.items())
    return (f"{path}: no font on this machine for {', '.join(gaps)}: those quotes print as boxes in the PDF (the "
            f"HTML report shows them); install {install} (Debian/Ubuntu; README, Weekly report: PDF fonts)")


def pdf_font_faces() -> str:
    """The @font-face rules that embed :func:`pdf_fonts` (file URIs: percent-encoded, so a path with spaces or
    quotes is read as it is)."""
    rules = []
    for font in pdf_fonts():
        rules.append(f'@font-face {{ font-family: {font.family}; src: url("{font.regular_uri}"); }}')
        if font.bold_uri:
            rules.append(f'@font-face {{ font-family: {font.family}; src: url("{font.bold_uri}"); font-weight: bold; }}')
    return "\n".join(rules)


def pdf_font_family() -> str:
    """The PDF's font-family list: the embedded faces in order, then Helvetica for what none of them draws."""
    return ", ".join([*(font.family for font in pdf_fonts()), "Helvetica", "Arial", "sans-serif"])


def _pdf_resource_policy() -> Any:
    """What the PDF renderer may read: what xhtml2pdf allows by default (the working directory) and the font
    files of :func:`pdf_fonts` by name, not their folders. Without them xhtml2pdf refuses a font outside the
    working directory and draws the boxes again. None (the renderer's own default) for an xhtml2pdf that has
    no resource policies and reads any local file."""
    try:
        from xhtml2pdf.config.resources import default_policy
    except ImportError:
        return None
    policy = default_policy()
    files = tuple(path.resolve() for font in pdf_fonts() for path in (font.regular, font.bold) if path)
    return dataclasses.replace(policy, extra_roots=(*policy.extra_roots, *files))


def render_pdf(report_or_html: WeeklyReport | str, path: str | Path, *, notes: list[str] | None = None) -> Path:
    """Write the report as PDF (xhtml2pdf). Pass the report (preferred: a print layout is used)
    or an HTML string (the PDF's Unicode fonts are added to its styles).

    ``notes``, where given, gets a line (:func:`pdf_font_warning`) when a script the report quotes has no font on
    this machine: the PDF is still written, with boxes for those letters, and whoever made it should be told
    (a log line at INFO was never shown by the CLI)."""
    from xhtml2pdf import pisa

    if isinstance(report_or_html, WeeklyReport):
        html = render_html(report_or_html, for_pdf=True)
    else:
        style = f"<style>\n{pdf_font_faces()}\nbody {{ font-family: {pdf_font_family()}; }}\n</style>\n"
        html = report_or_html.replace("</head>", style + "</head>", 1) if "</head>" in report_or_html \
            else style + report_or_html
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # xhtml2pdf logs every CSS property it skips at WARNING; the report's CSS is known, keep the CLI quiet.
    pdf_log = logging.getLogger("xhtml2pdf")
    level = pdf_log.level
    pdf_log.setLevel(logging.ERROR)
    # Written beside the target and moved into place whole: a layout that fails (xhtml2pdf raises on a table
    # too wide for the page) left a 0-byte PDF where the last good one was (real-posts audit).
    part = path.with_name(path.name + ".part")
    try:
        with part.open("wb") as handle:
            status = pisa.CreatePDF(html, dest=handle, encoding="utf-8", resource_policy=_pdf_resource_policy())
        if status.err:
            raise RuntimeError(f"{status.err} error(s)")
    except Exception as exc:  # noqa: BLE001 - one line for the CLI and the worker, whatever xhtml2pdf raised
        part.unlink(missing_ok=True)
        why = str(exc).splitlines()[0][:160] if str(exc) else exc.__class__.__name__
        raise RuntimeError(f"{path}: the PDF could not be laid out ({why}); the HTML report is unaffected: "
                           "set [reports] attach_pdf = false to send it without the PDF, or run `doorstep report weekly --format html`") from None
    finally:
        pdf_log.setLevel(level)
    part.replace(path)
    if notes is not None:
        gaps = pdf_font_gaps(html)
        if gaps:
            notes.append(pdf_font_warning(path, gaps))
    return path


def write_report(report: WeeklyReport, out_dir: str | Path, fmt: str = "both", *,
                 notes: list[str] | None = None) -> list[Path]:
    """Write ``weekly-{week}[-{brand}].html`` and/or ``.pdf`` into ``out_dir``; ``notes`` gets what the
    caller should tell about them (a script the PDF has no font for, see :func:`render_pdf`)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"weekly-{report.week}" + (f"-{re.sub(r'[^A-Za-z0-9]+', '-', report.brand)}" if report.brand else "")
    written = []
    if fmt in ("html", "both"):
        html_path = out_dir / f"{stem}.html"
        html_path.write_text(render_html(report), encoding="utf-8")
        written.append(html_path)
    if fmt in ("pdf", "both"):
        written.append(render_pdf(report, out_dir / f"{stem}.pdf", notes=notes))
    return written


# ---------------------------------------------------------------------------- delivery
def report_deliveries(store: Store, limit: int = 200) -> list[dict[str, Any]]:
    """Past and pending report sends, newest week first, for the console's Reports page."""
    rows = store.db.query(
        "select id, channel, target, status, attempts, last_error, created_at, sent_at, next_attempt_at, idempotency_key "
        "from outbound_messages where kind = 'report' order by idempotency_key desc, id limit ?",
        [limit],
    )
    out = []
    for r in rows:
        r = dict(r)
        r["week"] = r["idempotency_key"].split(":")[1]
        out.append(r)
    return out


def weeks_with_data(store: Store, config: Config, limit: int = 26) -> list[str]:
    """ISO weeks (newest first) from the first stored mention to now, for the Reports page's picker."""
    # One end a query: SQLite answers a lone min() or max() from the created_at index, and read every post for
    # both in one query (0.2-0.8 s per Reports view at 200k posts: scale audit; 0.1 ms each at 100k now).
    ends = [store.db.execute(f"select {end}(created_at) from mentions where outbound = 0").fetchone()
            for end in ("min", "max")]
    if not ends[0] or not ends[0][0]:
        return []
    first, last = parse_time(ends[0][0]), max(parse_time(ends[1][0]), utcnow())  # type: ignore[index, type-var]
    weeks: list[str] = []
    moment = last
    while moment >= first - timedelta(days=7) and len(weeks) < limit:  # type: ignore[operator]
        week = week_of(moment, config.tz)
        if week not in weeks:
            weeks.append(week)
        moment -= timedelta(days=7)
    return weeks


__all__ = [
    "ReportSettings",
    "Redactor",
    "WeeklyReport",
    "build_weekly_report",
    "last_complete_week",
    "render_html",
    "pdf_font_gaps",
    "pdf_font_warning",
    "render_pdf",
    "report_deliveries",
    "report_settings",
    "weeks_with_data",
    "week_bounds",
    "write_report",
]
