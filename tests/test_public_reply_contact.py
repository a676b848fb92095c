"""What contact details a public reply may carry: phone numbers found and compared by ``phonenumbers``
(libphonenumber) in the shop's own country, rather than by a hand-written digit matcher.

The hand-written matcher counted digits: it missed a German shop's "030 901820" (nine digits), took a tracking
number printed in groups ("9400 1118 9922 3817 3901 23") for two phone numbers, and called two numbers the same
when their last nine digits agreed ("+1 770-090-0111" passed as the author's own "07700 900111").

Assertions are on what the X emulator received where a reply could have gone out.
"""

from __future__ import annotations

from typing import Any

import pytest

from doorstep.config import Config, parse_config
from doorstep.models import Customer
from doorstep.store import Store
from standins.x_emulator import XEmulator
from responders.outbox import Outbox, ReplyRejected, queue_reply

from test_outbox import add_order, emulator, make_case  # noqa: F401 - fixtures


def _config(**brand: Any) -> Config:
    hours = brand.pop("business_hours", None)
    return parse_config({
        "timezone": "Europe/London",
        "brands": [{"name": "Larkspur", "handles": {"x": "LarkspurHelp"}, "keywords": ["larkspur"], **brand}],
        "couriers": [{"name": "UPS", "handles": {"x": "UPSHelp"}, "tracking_formats": ["ups"]}],
        **({"business_hours": hours} if hours else {}),
    })


def _posted(emulator: XEmulator, store: Store, config: Config) -> list[str]:
    Outbox(store, config).send_due()
    return [p["text"] for p in emulator.posted]


def test_a_german_shops_local_number_is_a_phone_number(store: Store, emulator: XEmulator) -> None:
    """A shop whose team works in Germany ([business_hours] country = "DE") writes Berlin numbers as "030 901820":
    nine digits, fewer than the ten the hand-written matcher wanted, so the number went out on X."""
    config = _config(business_hours={"country": "DE", "subdivision": "BE", "timezone": "Europe/Berlin"})
    case_id = make_case(store, config, emulator, handle="jane", order=add_order(store))
    with pytest.raises(ReplyRejected, match="030 901820"):
        queue_reply(store, config, case_id, "@jane bitte ruf das Depot an: 030 901820", "ann", force=True)
    assert _posted(emulator, store, config) == []


@pytest.mark.parametrize("tracking, spelled", [("9400111899223817390123", "9400 1118 9922 3817 3901 23"),
                                               ("748924401234", "7489-2440-1234")])
def test_the_cases_tracking_number_printed_in_groups_follows_the_order_number_rule(
        store: Store, emulator: XEmulator, tracking: str, spelled: str) -> None:
    """USPS and FedEx print their digit-only tracking numbers in groups of four. Written so, the case's tracking
    number was refused only by accident, as "phone numbers" 9400 1118 9922 and 3817 3901 23 (the number rule looked
    for it unspaced); libphonenumber rightly reads no phone number there, so the number rule reads any spelling:
    refused where the customer did not post it, said back where they did."""
    config = _config()
    order = add_order(store, tracking=tracking)
    case_id = make_case(store, config, emulator, handle="jane", order=order)
    with pytest.raises(ReplyRejected, match=f"order or tracking number only where the customer posted it here; "
                                            f"{tracking} they did not"):
        queue_reply(store, config, case_id, f"@jane {spelled} left the hub this morning", "ann", force=True)
    own = make_case(store, config, emulator, handle="jane", order=order,
                    text=f"@LarkspurHelp my parcel {spelled} has not moved for days")
    queue_reply(store, config, own, f"@jane {spelled} left the hub this morning", "ann", force=True)
    assert _posted(emulator, store, config) == [f"@jane {spelled} left the hub this morning"]


@pytest.mark.parametrize("text, number", [
    ("@jane we'll ring you on +1 770-090-0111", "+1 770-090-0111"),  # not the author's +44 7700 900111
    ("@jane or call +1 800 123 4567", "+1 800 123 4567"),  # not our +44 800 123 4567
])
def test_a_number_is_the_same_only_in_the_same_country(store: Store, emulator: XEmulator, text: str,
                                                       number: str) -> None:
    """Two numbers were "the same" when their last nine digits agreed, so a number in another country passed as
    the one the author posted or as our helpline. The same number in another spelling still passes."""
    config = _config(phone="+44 800 123 4567")
    case_id = make_case(store, config, emulator, handle="jane", order=add_order(store, phone="+447700900999"),
                        text="@LarkspurHelp where is LS-100234? call me on 07700 900111")
    with pytest.raises(ReplyRejected, match=rf"{number.replace('+', '[+]')}\): ask for it, or give it, privately"):
        queue_reply(store, config, case_id, text, "ann", force=True)
    same = "@jane we'll ring you on +44 (0)7700 900-111, or call us on 0800 123 4567 ext. 2"
    queue_reply(store, config, case_id, same, "ann", force=True)
    assert _posted(emulator, store, config) == [same]


# ---------------------------------------------------------------------------------------------------- names
def _neighbour(store: Store, name: str = "Emily Thompson") -> None:
    """Another customer of the shop, with nothing to do with the case."""
    store.upsert_customers([Customer(id="C66", name=name, email="emily.thompson13@example.net",
                                     phone="07700 900485", handles={"x": "emthompson"})])


@pytest.mark.parametrize("text", [
    "@jane UPS left it with your neighbour Emily Thompson at number 12",
    "@jane it went to a neighbour: Emily  Thompson",
    "@jane it's with EMILY THOMPSON next door, she's expecting you",
])
def test_another_customers_full_name_stays_out_of_a_public_reply(store: Store, emulator: XEmulator,
                                                                 text: str) -> None:
    """Only the case's own customers (linked now or before) were kept out: an agent pasting who the parcel went to,
    another customer of the shop, put her full name on X. A name is read where it is written with capitals (as a
    record pasted writes it); "emily thompson" typed in lower case is not, or everyday words such as "will post"
    were refused as a customer's name (code review, 2026-12-07)."""
    config = _config()
    _neighbour(store)
    case_id = make_case(store, config, emulator, handle="jane", order=add_order(store))
    with pytest.raises(ReplyRejected, match="Emily Thompson") as refused:
        queue_reply(store, config, case_id, text, "ann", force=True)
    assert "privately" in str(refused.value) and "\n" not in str(refused.value)
    assert _posted(emulator, store, config) == []


def test_another_customers_name_the_author_posted_or_half_a_name_may_be_said(store: Store,
                                                                             emulator: XEmulator) -> None:
    """A first name alone, the two names apart, or a full name nobody in the shop has are not a customer named; nor
    is a name the author wrote publicly in this case."""
    config = _config()
    _neighbour(store)
    store.upsert_customers([Customer(id="C67", name="Theo Jones", email="theo@example.com", handles={"x": "theoj"})])
    order = add_order(store)
    case_id = make_case(store, config, emulator, handle="jane", order=order,
                        text="@LarkspurHelp did you leave it with Theo Jones? it's not here")
    allowed = ["@jane your neighbour Emily has it, she's in after 6",
               "@jane Emily said Thompson's van took it",
               "@jane Tom Baker at the depot is on it",
               "@jane yes, Theo Jones signed for it"]
    for text in allowed:
        queue_reply(store, config, case_id, text, "ann", force=True)
    assert _posted(emulator, store, config) == allowed


# ---------------------------------------------------------------------------------------------------- couriers
def test_a_couriers_published_helpline_may_be_given_in_public(store: Store, emulator: XEmulator) -> None:
    """Only brands' phones were ours to give: "call DPD on 0121 275 0500" was refused, though it is the number DPD
    publishes. A courier's ``phone`` in doorstep.toml may be given, in any spelling; any other number is still
    refused, and a courier without one gives none."""
    config = parse_config({
        "timezone": "Europe/London",
        "brands": [{"name": "Larkspur", "handles": {"x": "LarkspurHelp"}, "keywords": ["larkspur"]}],
        "couriers": [{"name": "DPD", "handles": {"x": "DPDHelp"}, "tracking_formats": ["dpd"],
                      "phone": "0121 275 0500"},
                     {"name": "UPS", "handles": {"x": "UPSHelp"}, "tracking_formats": ["ups"]}],
    })
    case_id = make_case(store, config, emulator, handle="jane", order=add_order(store))
    allowed = ["@jane so sorry! Call DPD on 0121 275 0500 and they'll rebook it",
               "@jane DPD's line is +44 121 275 0500, open till 8"]
    for text in allowed:
        queue_reply(store, config, case_id, text, "ann", force=True)
    with pytest.raises(ReplyRejected, match="0121 275 0501") as refused:
        queue_reply(store, config, case_id, "@jane or their depot on 0121 275 0501", "ann", force=True)
    # Where the number is a published helpline after all, the refusal says how the team may give it.
    assert ("a published helpline (yours or a courier's) may be given once whoever runs Doorstep adds it as phone in "
            "[[brands]] or [[couriers]] in doorstep.toml") in str(refused.value)
    assert _posted(emulator, store, config) == allowed


def test_a_team_member_signing_with_a_name_a_customer_shares_may_post(store: Store, emulator: XEmulator) -> None:
    """The rule asks the whole customer file, and a common full name is there: an agent signing "Emily Thompson,
    Larkspur care" was refused because a customer of the shop shares her name (helper's note, 2026-12-07). The team's
    own names (console users) are not a customer named."""
    config = _config()
    _neighbour(store)
    store.db["users"].insert({"username": "emily", "name": "Emily Thompson", "role": "agent", "email": None,
                              "password_hash": None, "created_at": "2026-12-01T09:00:00+00:00"})
    case_id = make_case(store, config, emulator, handle="jane", order=add_order(store))
    text = "@jane so sorry, we're chasing UPS now. Emily Thompson, Larkspur care"
    queue_reply(store, config, case_id, text, "ann", force=True)
    assert _posted(emulator, store, config) == [text]


# ------------------------------------------------------------------------------------ code review, 2026-12-07
_GERMAN_REPLIES = [
    "@jane Die Zustellung ist für den 23.-27.11. geplant, sorry für die Wartezeit!",
    "@jane Lieferung in KW 48 (30.11.-4.12.), wir melden uns.",
    "@jane Das Kleid gibt es wieder in den Größen 36 38 40 42.",
    "@jane Die Sneaker sind in Größe 39 40 41 ab Montag wieder da.",
    "@jane Sizes 8 10 12 14 are back in stock tomorrow!",
    "@jane Die Filialen 412 413 415 in Berlin haben es vorrätig.",
]


def test_a_german_shops_ordinary_replies_are_not_phone_numbers(store: Store, emulator: XEmulator) -> None:
    """Short groups of digits were a phone number wherever libphonenumber called them valid, and in Germany six to
    eight digits are: dates "23.-27.11.", sizes "36 38 40 42" and branch numbers were refused (6 of 8 ordinary
    replies). Without a trunk or international prefix a number in groups needs ten digits, as before."""
    config = _config(business_hours={"country": "DE", "subdivision": "BE", "timezone": "Europe/Berlin"})
    case_id = make_case(store, config, emulator, handle="jane", order=add_order(store))
    for text in _GERMAN_REPLIES:
        queue_reply(store, config, case_id, text, "ann", force=True)
    assert _posted(emulator, store, config) == _GERMAN_REPLIES


@pytest.mark.parametrize("spelled", ["49 151 23456789", "4915123456789", "0049 151 23456789", "0151 23456789"])
def test_the_customers_own_number_without_its_plus_is_still_theirs(store: Store, emulator: XEmulator,
                                                                    spelled: str) -> None:
    """In a German shop "4915123456789" (the customer's +49 151 23456789 without its "+") was read as a German
    national number, another number, and went out on X."""
    config = _config(business_hours={"country": "DE", "subdivision": "BE", "timezone": "Europe/Berlin"})
    case_id = make_case(store, config, emulator, handle="jane", order=add_order(store, phone="+4915123456789"))
    with pytest.raises(ReplyRejected):
        queue_reply(store, config, case_id, f"@jane wir rufen Sie an: {spelled}", "ann", force=True)
    assert _posted(emulator, store, config) == []


def test_everyday_words_that_are_some_customers_name_may_be_said(store: Store, emulator: XEmulator) -> None:
    """The name rule ignored case, so "we will post a replacement", "(olive green)" and "our rose gold range" were
    refused as customers Will Post, Olive Green and Rose Gold. A name is written with capitals: the rule reads the
    reply's capitalised word pairs."""
    config = _config()
    store.upsert_customers([Customer(id=f"W{i}", name=name) for i, name in
                            enumerate(["Will Post", "Olive Green", "Rose Gold"])])
    case_id = make_case(store, config, emulator, handle="jane", order=add_order(store))
    texts = ["@jane we will post a replacement first class today.",
             "@jane The colour you ordered (olive green) is back in stock on 1 December.",
             "@jane Our rose gold range is restocked at 10:30 tomorrow, sorry for the wait!"]
    for text in texts:
        queue_reply(store, config, case_id, text, "ann", force=True)
    assert _posted(emulator, store, config) == texts


def test_a_customers_name_is_found_beside_a_word_pair_many_customers_share(store: Store,
                                                                           emulator: XEmulator) -> None:
    """The store read at most 1,000 customers for all the reply's word pairs at once; "care@larkspur.co.uk" gave the
    pair "co uk", which 1,500 customers' e-mail addresses hold, and Emily Thompson was cut before the check."""
    config = _config(email="care@larkspur.co.uk")
    _neighbour(store)
    store.upsert_customers([Customer(id=f"U{i}", name=f"Person{i} Surname{i}", email=f"p{i}@btinternet.co.uk")
                            for i in range(1500)])
    case_id = make_case(store, config, emulator, handle="jane", order=add_order(store))
    with pytest.raises(ReplyRejected, match="Emily Thompson"):
        queue_reply(store, config, case_id, "@jane your neighbour Emily Thompson has it; questions? "
                    "care@larkspur.co.uk", "ann", force=True)
    assert _posted(emulator, store, config) == []


def test_a_name_that_is_not_the_customer_of_that_name_is_confirmed_not_refused_for_good(
        store: Store, emulator: XEmulator) -> None:
    """In a shop of 100k customers a designer brand ("Paul Smith", "Ted Baker") or a product ("Ivy Green dress") is
    also some customer's name: 13 of 44 ordinary replies of a fashion shop were refused with no way to send them
    (second code review). The agent is asked instead; what they confirm goes, audited, and only that."""
    from responders.outbox import NamesACustomer

    config = _config()
    store.upsert_customers([Customer(id="P1", name="Paul Smith"), Customer(id="T1", name="Ted Baker")])
    _neighbour(store)
    case_id = make_case(store, config, emulator, handle="jane", order=add_order(store))
    text = "@jane The Paul Smith and Ted Baker shirts are back on Friday!"
    with pytest.raises(NamesACustomer) as asked:
        queue_reply(store, config, case_id, text, "ann", force=True)
    assert asked.value.names == ["Paul Smith", "Ted Baker"] and "confirm" in str(asked.value)
    with pytest.raises(NamesACustomer, match=r"\(Ted Baker\)"):  # confirming one name confirms only that one
        queue_reply(store, config, case_id, text, "ann", force=True, names_ok=["Paul Smith"])
    message = queue_reply(store, config, case_id, text, "ann", names_ok=["paul smith", "Ted  Baker"])
    event = next(e for e in store.audit_trail(case_id) if e.action == "reply.names_confirmed")
    assert event.actor == "ann" and event.details["message_id"] == message.id
    with pytest.raises(NamesACustomer, match="Emily Thompson"):  # a confirmation is for the names asked about
        queue_reply(store, config, case_id, "@jane Emily Thompson has it", "ann", force=True,
                    names_ok=["Paul Smith"])
    assert _posted(emulator, store, config) == [text]


# ----------------------------------------------------------------------------- second code review, 2026-12-07
@pytest.mark.parametrize("text", [
    "@jane it's with Anna van der Berg next door",
    "@jane signed for by Emily thompson",
    "@jane Emily Thompson.Delivered 2pm",
    "@jane ask Emily Thompson,care@larkspur.co.uk",
    "@jane it's with Emily-Thompson at number 12",
    "@jane it's with Emily\nThompson at number 12",
])
def test_another_customers_name_in_the_spellings_the_capital_rule_missed(store: Store, emulator: XEmulator,
                                                                         text: str) -> None:
    """Reading only pairs of capitalised words let through a name with a particle ("Anna van der Berg"), one typo in
    the capitals, a name glued to the next sentence or to an address (blanked as a link), a hyphen or a line break
    between the names. Any of these is asked about now (the agent may confirm a name that is not the customer)."""
    from responders.outbox import NamesACustomer

    config = _config(email="care@larkspur.co.uk")
    _neighbour(store)
    store.upsert_customers([Customer(id="C67", name="Anna van der Berg")])
    case_id = make_case(store, config, emulator, handle="jane", order=add_order(store))
    with pytest.raises(NamesACustomer):
        queue_reply(store, config, case_id, text, "ann", force=True)
    assert _posted(emulator, store, config) == []


@pytest.mark.parametrize("spelled", ["Tel.07700 900485", "Mob.07700900485", "on 447700900485", "on 7700 900485"])
def test_another_customers_phone_written_as_a_crm_or_a_delivery_note_writes_it(store: Store, emulator: XEmulator,
                                                                               spelled: str) -> None:
    """Another customer's stored number went out written "Tel.07700 900485" (a number after a "." was skipped) or
    without its "+" and trunk "0" ("447700900485", "7700 900485": no prefix and no groups). A run of digits that
    ends with a customer's stored national number is that customer's phone."""
    config = _config()
    _neighbour(store)  # phone 07700 900485
    case_id = make_case(store, config, emulator, handle="jane", order=add_order(store))
    with pytest.raises(ReplyRejected, match="900485"):
        queue_reply(store, config, case_id, f"@jane your neighbour has it: {spelled}", "ann", force=True)
    assert _posted(emulator, store, config) == []


@pytest.mark.parametrize("text", ["@jane Signed for by: THOMPSON EMILY", "@jane signed by Thompson, Emily",
                                  "@jane proof of delivery says Thompson Emily"])
def test_another_customers_name_surname_first_as_couriers_print_it(store: Store, emulator: XEmulator,
                                                                   text: str) -> None:
    """Couriers' proofs of delivery print the surname first ("THOMPSON EMILY", "Thompson, Emily"); pasted into a
    public reply it was let through (second code review, left open)."""
    from responders.outbox import NamesACustomer

    config = _config()
    _neighbour(store)
    case_id = make_case(store, config, emulator, handle="jane", order=add_order(store))
    with pytest.raises(NamesACustomer, match="Emily Thompson"):
        queue_reply(store, config, case_id, text, "ann", force=True)
    assert _posted(emulator, store, config) == []
