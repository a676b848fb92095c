"""The weekly report masks German and French addresses, postcodes and names (intl audit, finding 3).

The mailed report quoted "…liefern an Hauptstraße 12, 10115 Berlin. Ich heiße [name] Krüger" and "Meine Adresse:
Kirchweg 7, 01067 Dresden" whole, while its header promised postcodes, streets and the names a post gives were
masked: the postcode pattern was British only, the street pattern wanted the number first ("10 Downing Street"),
and names and addresses were looked for only after English cues ("my name is", "my address")."""

from __future__ import annotations

from datetime import timedelta

import pytest

from doorstep.config import Config, parse_config
from doorstep.models import Case, Labels, Mention
from doorstep.numbers import make_tracking_number
from doorstep.reports import Redactor, build_weekly_report, render_html
from doorstep.store import Store
from test_metrics import START, fixture_config


def german_shop() -> Config:
    """The auditor's shop (/tmp/audit/intl/de/shop.toml): two brands, DHL and Hermes, orders "#10492" and "BST-123456"."""
    return parse_config({
        "timezone": "Europe/Berlin",
        "order_patterns": [r"#(\d{5,8})\b", r"\b(BST-\d{6})\b"],
        "brands": [
            {"name": "Gärtnerei Grünfink", "handles": {"x": "GruenfinkHilfe"}, "keywords": ["grünfink", "gruenfink"]},
            {"name": "Küchenstüble", "handles": {"x": "KuechenstuebleService"}, "keywords": ["küchenstüble"]},
        ],
        "couriers": [
            {"name": "DHL", "handles": {"x": "DHLPaket"}, "keywords": ["dhl"], "tracking_formats": ["dhl"]},
            {"name": "Hermes", "handles": {"x": "HermesParcelDE"}, "keywords": ["hermes"], "tracking_formats": ["evri"]},
        ],
    })


@pytest.mark.parametrize(
    "text, leaked",
    [
        # The audit's posts (repro.sh F3, redact_de.py, mentions_addr.csv).
        ("@GruenfinkHilfe Hermes hat mein Paket verloren!!! Bitte sofort neu liefern an Hauptstraße 12, 10115 Berlin. "
         "Ich heiße Zoë Krüger, Handy 0151 23456789", ["Hauptstraße", "12,", "10115", "Zoë", "Krüger", "23456789"]),
        ("@GruenfinkHilfe Hermes Paket verloren, schon wieder. Meine Adresse: Kirchweg 7, 01067 Dresden. "
         "Unglaublich schlechter Service!", ["Kirchweg", "01067", "Dresden"]),
        ("@GruenfinkHilfe Bitte liefern an Hauptstraße 12, 10115 Berlin. Mein Name ist Jürgen Weiß, Tel. 0171 1234567",
         ["Hauptstraße", "10115", "Jürgen", "Weiß", "1234567"]),
        ("@GruenfinkHilfe Paket liegt bei meiner Nachbarin in der Schillerstr. 5a, 80331 München. Ruft mich an: "
         "030 1234567", ["Schillerstr", "5a", "80331"]),
        ("@GruenfinkHilfe ich heiße Zoë Öztürk und wohne Am Lindenhof 3, 50667 Köln", ["Zoë", "Öztürk", "Lindenhof", "50667"]),
        ("@GruenfinkHilfe Meine Adresse: Kirchweg 7, 01067 Dresden. Danke, Grete", ["Kirchweg", "01067", "Grete"]),
        ("@GruenfinkHilfe Ich bin Hans Müller, meine Handynummer ist +49 (0)151 23456789", ["Hans", "Müller", "23456789"]),
        ("Mein Name ist Jürgen Weiß", ["Jürgen", "Weiß"]),
        # Lowercase, as posts are typed on a phone.
        ("mein name ist jürgen weiß, paket fehlt seit montag", ["jürgen", "weiß"]),
        ("paket kam nie an, hauptstrasse 12 in 10115 berlin", ["hauptstrasse", "10115"]),
        # Other German street forms: a separate street word, a hyphenated name, "An der …", a range.
        ("Bitte an die Berliner Straße 5, 10115 Berlin", ["Berliner", "Straße 5", "10115"]),
        ("Lieferadresse: Karl-Marx-Allee 90, 10243 Berlin", ["Karl", "Marx", "10243"]),
        ("Der Fahrer war nie An der Alster 12, 20099 Hamburg", ["Alster", "20099"]),
        ("Das Paket ging an Kaiser-Wilhelm-Ring 14-16 statt zu mir", ["Wilhelm", "14-16"]),
        ("Zustellung an Marktplatz 3 in 01067 Dresden ist falsch", ["Marktplatz", "01067"]),
        ("meine Anschrift ist Gartenweg 4b, 12345 Neustadt", ["Gartenweg", "12345", "Neustadt"]),
        ("PLZ 10115, trotzdem nichts", ["10115"]),
        ("Viele Grüße, Grete Schmidt", ["Grete", "Schmidt"]),
        # French.
        ("Je m'appelle Marie Dubois, mon adresse : 12 rue de la Paix, 75002 Paris", ["Marie", "Dubois", "Paix", "75002"]),
        ("merci de livrer au 5 bis rue Victor Hugo, 69002 Lyon", ["Victor", "Hugo", "69002"]),
        ("mon adresse est 3 avenue Foch 75116 Paris", ["Foch", "75116"]),
        ("j'habite 8 rue des Lilas, 33000 Bordeaux. Cordialement, Luc Martin", ["Lilas", "33000", "Luc", "Martin"]),
        # Dutch street words (the same street-then-number shape).
        ("Bezorgd op Kerkstraat 12, 1017 GC Amsterdam? Nee!", ["Kerkstraat"]),
    ],
)
def test_german_and_french_addresses_postcodes_and_names_are_masked(text: str, leaked: list[str]) -> None:
    out = Redactor(german_shop()).text(text) or ""
    assert not [word for word in leaked if word.lower() in out.lower()], out


@pytest.mark.parametrize(
    "text",
    [
        # Prices, dates, years, quantities and everyday capitalised German nouns stay readable.
        "Das Paket kam am 24.12.2026 statt am 20.12., 12,50 € Versand für nichts",
        "Ich habe 3 Pakete bestellt, 2026 schon zum dritten Mal",
        "Am Montag 3 Pakete, am Freitag 12 Uhr wieder nichts",
        "Ich bin Kunde seit 2019 und sehr enttäuscht",
        "Ich bin Stammkundin, aber so nicht",
        "Danke, Paket ist endlich da",
        "Vielen Dank für nichts, Hermes!",
        "Wir warten seit 14 Tagen, 1.234,50 € sind weg",
        "Bestellung 10492 fehlt, Paket auch",
        "Schon 20000 Kunden beschweren sich, 10000 Euro Schaden",
        "Im Januar 2026 bestellt, im Warenkorb 3 Artikel",
        "Platz 1 im Ranking für schlechten Service",
        "Ich wohne in Köln und warte immer noch",
        "Die Lieferung an die Packstation hat nicht geklappt",
        "Le colis est arrivé le 24/12/2026, 12,50 € de frais",
        "je suis très déçue, deuxième fois",
        # English posts are read as before.
        "I rue the day I ordered from you",
        "Bring 5 boxes next time, Spring 2026 collection is lovely",
        "Delivering 3 parcels to the wrong house again",
        "paid £25.99 for 2 mugs, arrived on 12 May",
    ],
)
def test_ordinary_german_french_and_english_text_is_kept(text: str) -> None:
    assert Redactor(german_shop()).text(text) == text


def test_order_and_tracking_numbers_keep_their_own_masks() -> None:
    """What the report masks as an order or tracking number today is still called that, not a postcode."""
    dhl = make_tracking_number("dhl", __import__("random").Random(5))
    out = Redactor(german_shop()).text(f"Bestellung #10492, BST-123456, Sendung {dhl}, 10115 Berlin") or ""
    assert out == "Bestellung [order no.], [order no.], Sendung [tracking no.], [postcode] Berlin", out


def _labels() -> Labels:
    return Labels(sentiment="negative", sentiment_scores={"negative": 1.0}, complaint=True, complaint_score=1.0,
                  intent="lost_or_missing", intent_scores={}, urgency=0.8, model="t")


def test_the_mailed_report_quotes_german_posts_masked(db_url: str) -> None:
    """The audit's case: a German complaint quoted among the notable cases and the themes, masked in the HTML
    (both stores)."""
    store = Store(db_url)
    texts = ["@GruenfinkHilfe Hermes hat mein Paket verloren!!! Bitte sofort neu liefern an Hauptstraße 12, 10115 "
             "Berlin. Ich heiße Zoë Krüger, Handy 0151 23456789",
             "@GruenfinkHilfe Hermes Paket verloren, schon wieder. Meine Adresse: Kirchweg 7, 01067 Dresden. "
             "Unglaublich schlechter Service!"]
    for i, text in enumerate(texts * 3):
        at = START + timedelta(days=1, hours=10 + i)
        mid = store.insert_mention(Mention(channel="x", external_id=f"d{i}", text=text, created_at=at,
                                           author_handle=f"kunde{i}", author_name="Zoë K.", labels=_labels()))
        case_id = store.insert_case(Case(status="escalated", brand="Gärtnerei Grünfink", channel="x", complaint=True,
                                         author_handle=f"kunde{i}", opened_at=at, last_activity_at=at, mention_count=1))
        store.set_mention_case(mid, case_id)
    config = german_shop()
    config.timezone = fixture_config().timezone
    html = render_html(build_weekly_report(store, config, "2026-W47", charts=False))
    store.close()
    assert "Paket verloren" in html  # still quoted
    header = html.split("<h2>", 1)[0]
    assert "ich hei&szlig;e" in header and "five digits" in header, "the header says what is masked"
    for word in ("Hauptstraße", "10115", "Krüger", "Kirchweg", "01067", "23456789"):
        assert word not in html, word


# ------------------------------------------------------------------ code review: cues with a colon, and recipient labels
# "Zustellung an: Jürgen Weiß, Schlossallee 1, 12345 Berlin" went out as "Zustellung an: Jürgen Weiß, [address],
# [postcode] Berlin": "liefern an", "Zustellung an", "livrer à" and "deliver to" were cues only with a space after them,
# and "Empfänger:", "Recipient:", "Destinataire :" none at all, so the recipient's name was quoted whole.
@pytest.mark.parametrize(
    "text, leaked",
    [
        ("Zustellung an: Jürgen Weiß, Schlossallee 1, 12345 Berlin", ["Jürgen", "Weiß", "Schlossallee", "12345", "Berlin"]),
        ("Bitte liefern an: Jürgen Weiß, Schlossallee 1, 12345 Berlin", ["Jürgen", "Weiß", "Schlossallee", "12345"]),
        ("Bitte liefern an Jürgen Weiß, Schlossallee 1, 12345 Berlin", ["Jürgen", "Weiß", "Schlossallee", "12345"]),
        ("Lieferung an: Schlossallee 1, 12345 Berlin", ["Schlossallee", "12345", "Berlin"]),
        ("Empfänger: Jürgen Weiß, Schlossallee 1, 12345 Berlin", ["Jürgen", "Weiß", "Schlossallee", "12345", "Berlin"]),
        ("Empfänger: Jürgen Weiß", ["Jürgen", "Weiß"]),
        ("empfänger: jürgen weiß, paket fehlt", ["jürgen", "weiß"]),
        ("Empfängerin: Zoë Krüger, Am Lindenhof 3, 50667 Köln", ["Zoë", "Krüger", "Lindenhof", "50667"]),
        ("Empfänger Jürgen Weiß, Schlossallee 1, 12345 Berlin", ["Jürgen", "Weiß", "Schlossallee", "12345"]),
        ("Der Empfänger ist Jürgen Weiß, er war zu Hause", ["Jürgen", "Weiß"]),
        ("Empfänger:\nJürgen Weiß\nSchlossallee 1\n12345 Berlin", ["Jürgen", "Weiß", "Schlossallee", "12345"]),
        ("Lieferadresse: Jürgen Weiß, Schlossallee 1, 12345 Berlin", ["Jürgen", "Weiß", "Schlossallee", "12345"]),
        ("Adresse: Jürgen Weiß, Schlossallee 1, 12345 Berlin", ["Jürgen", "Weiß", "Schlossallee", "12345"]),
        ("Name: Jürgen Weiß, Schlossallee 1, 12345 Berlin", ["Jürgen", "Weiß", "Schlossallee", "12345", "Berlin"]),
        # French: the space before the colon is how French is typed.
        ("Livrer à: Jean Dupont, 12 rue de la Paix, 75002 Paris", ["Jean", "Dupont", "Paix", "75002"]),
        ("Destinataire : Jean Dupont, 12 rue de la Paix, 75002 Paris", ["Jean", "Dupont", "Paix", "75002", "Paris"]),
        ("Destinataire: Jean Dupont", ["Jean", "Dupont"]),
        ("Nom : Jean Dupont", ["Jean", "Dupont"]),
        # English.
        ("Deliver to: John Smith, 10 Downing Street, London SW1A 2AA", ["John", "Smith", "Downing", "SW1A", "London"]),
        ("Deliver to: John Smith", ["John", "Smith"]),
        ("Deliver to: Rose Cottage, Ambridge", ["Rose", "Ambridge"]),
        ("Ship to: jane doe, 22 acacia avenue, Leeds LS1 4AP", ["jane", "doe", "acacia", "LS1"]),
        ("Recipient: John Smith, 10 Downing Street, London SW1A 2AA", ["John", "Smith", "Downing", "SW1A"]),
        ("recipient: john smith", ["john", "smith"]),
        ("the recipient is John Smith, not me", ["John", "Smith"]),
        ("Name: Priya Patel", ["Priya", "Patel"]),
        # A title stays, the name after it does not.
        ("Empfänger: Frau Dr. Weiß, Kirchweg 7, 01067 Dresden", ["Weiß", "Kirchweg", "01067"]),
        ("Recipient: Mrs. Smith, 5 The Green", ["Smith", "Green"]),
    ],
)
def test_the_name_and_address_after_a_cue_with_a_colon_or_a_recipient_label_are_masked(text: str,
                                                                                         leaked: list[str]) -> None:
    out = Redactor(german_shop()).text(text) or ""
    assert not [word for word in leaked if word.lower() in out.lower()], out


def test_a_recipient_label_keeps_its_cue_and_says_what_was_masked() -> None:
    """The quote still reads as what it was: a name and an address, each called so."""
    r = Redactor(german_shop())
    assert r.text("Zustellung an: Jürgen Weiß, Schlossallee 1, 12345 Berlin") == "Zustellung an: [name], [address]"
    assert r.text("Empfänger: Jürgen Weiß") == "Empfänger: [name]"
    assert r.text("Deliver to: John Smith, 10 Downing Street, London SW1A 2AA") == "Deliver to: [name], [address]"
    assert r.text("Empfänger: Hr. Weiß") == "Empfänger: Hr. [name]"
    # What follows the name is no address unless it has a house number or a house or street word.
    assert r.text("Name: Priya, 3 parcels lost") == "Name: [name], 3 parcels lost"


@pytest.mark.parametrize(
    "text",
    [
        "Der Empfänger war nicht da",
        "Empfänger unbekannt, Paket geht zurück",
        "Hinweis: Empfänger nicht angetroffen, Sendung 3 Tage unterwegs",
        "Der Empfänger ist nicht angetroffen worden",
        "Zustellung an Nachbarn, sagt DHL",
        "Status: Zustellung an: Nachbar",
        "Wir liefern an Feiertagen nicht",
        "Le destinataire est absent, colis renvoyé",
        "Le destinataire n'a rien reçu",
        "The recipient was not home, 3 days late",
        "the recipient is not me",
        "Name and address were right on the label",
        "Deliver to: the neighbour next door",
        "Name tag missing, 2 parcels late",
        "Recipient: me, 3 days ago",
        "Sent to: my mum, 4 weeks ago",
    ],
)
def test_recipient_words_in_ordinary_text_are_kept(text: str) -> None:
    assert Redactor(german_shop()).text(text) == text
