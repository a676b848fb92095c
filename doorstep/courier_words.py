"""A courier's words for a parcel scan, read as Doorstep's tracking statuses.

Why: couriers' exports write a scan as the courier says it ("Delivered", "Out for Delivery", DHL's
"Zugestellt"), never as our status names, and every row of such a file was refused until a shop rewrote
each word by hand. The words below are the common ones of the couriers a European shop uses (English, German,
French); a shop adds its courier's others in doorstep.toml (``[imports] tracking_statuses``). A word is
matched whole, whatever its case, spacing, hyphens or a closing full stop: "OUT-FOR-DELIVERY." is
"out for delivery", but "Delivered to pickup point" is not "delivered" (the customer still has to fetch it):
a word not listed is refused, so that no scan is guessed. Left out for that reason: words that name a different
status depending on who did it, "Collected", "Picked up", DHL's "Abgeholt" (the courier took it from the sender,
or the customer fetched it from the shop) and "Awaiting collection" (from the sender, or by the customer): read
as "in transit", a parcel the customer already had opened a "late delivery" case (code review).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from doorstep.models import TRACKING_STATUSES, TRACKING_WORDS

#: Courier words, as :func:`word_key` writes them, and the status each is.
COURIER_WORDS: dict[str, str] = {
    # details received: the courier has the label, not yet the parcel
    **dict.fromkeys(("label created", "shipping label created", "pre transit", "information received",
                     "shipment information received", "order information received", "electronic notification",
                     "manifested", "daten übermittelt", "elektronisch angekündigt",
                     "sendungsdaten übermittelt", "prise en charge annoncée"), "info_received"),
    # in transit
    **dict.fromkeys(("in transit", "on its way", "dispatched", "shipped",
                     "arrived at depot", "departed depot", "at sorting centre", "at sorting center",
                     "processed at hub", "unterwegs", "in zustellbasis", "im paketzentrum",
                     "en transit", "en cours d'acheminement", "pris en charge"), "in_transit"),
    # out for delivery
    **dict.fromkeys(("out for delivery", "with courier for delivery", "on vehicle for delivery",
                     "in zustellung", "wird zugestellt", "en cours de livraison"), "out_for_delivery"),
    # a delivery attempt that failed
    **dict.fromkeys(("attempted delivery", "delivery attempted", "delivery attempt failed", "failed delivery attempt",
                     "failed attempt", "missed delivery", "we missed you", "carded", "zustellversuch erfolglos",
                     "zustellung nicht möglich", "nicht angetroffen", "avis de passage", "destinataire absent"),
                    "attempt_failed"),
    # a problem the courier reports
    **dict.fromkeys(("exception", "delivery exception", "problem reported", "on hold", "address issue",
                     "damaged", "verzögerung", "problème de livraison"), "exception"),
    # delivered
    **dict.fromkeys(("delivered", "delivered to neighbour", "delivered to neighbor", "left in safe place",
                     "delivered to safe place", "zugestellt", "an nachbarn zugestellt", "livré", "livre",
                     "colis livré"), "delivered"),
    # returned to the sender
    **dict.fromkeys(("returned", "returned to sender", "return to sender", "rücksendung", "zurück an absender",
                     "retourné à l'expéditeur", "retour expéditeur"), "returned"),
    # our own names and words ("out_for_delivery", "details received")
    **{status.replace("_", " "): status for status in TRACKING_STATUSES},
    **{words: status for status, words in TRACKING_WORDS.items()},
}


def word_key(word: str) -> str:
    """A courier's word as it is matched: case, runs of spaces, "_" and "-", and a closing full stop do not count."""
    return " ".join(re.sub(r"[_\-]", " ", word).split()).casefold().rstrip(".! ")


def tracking_status(word: str, shop_words: Mapping[str, str] | None = None) -> str | None:
    """Our status for a courier's word (``shop_words``: the shop's own, [imports] tracking_statuses, first); None
    where the word is known nowhere."""
    key = word_key(word)
    own = {word_key(k): v for k, v in (shop_words or {}).items()}
    return own.get(key) or COURIER_WORDS.get(key)
