"""A courier's tracking file in the courier's own words ("Delivered", "Out for Delivery", "Zugestellt").

Before: every row of a real courier export was refused ("'Delivered' is not a tracking status: write one of
info_received, ..."), so a shop had to rewrite each status by hand before the team could see a parcel's story.
Now a courier's common words, in any case and spacing, are read as our statuses (the courier's word is kept as
the event's description where the file gives none, so agents still read it as written), a shop's own words are
added in doorstep.toml (``[imports] tracking_statuses``), and a word known nowhere is refused naming that remedy.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from commands.cli import cli
from doorstep.config import ConfigError, parse_config
from listeners.files import import_tracking


def tracking_file(tmp_path: Path, *rows: tuple[str, str]) -> Path:
    """One parcel's scans: (time, status word) each, as a courier's CSV writes them."""
    lines = ["Tracking_Number,Time,Status"]
    lines += [f"JD0001112223,2026-12-0{i + 1}T10:00:00Z,{word}" for i, (_, word) in enumerate(rows)]
    path = tmp_path / "scans.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def scans(store) -> list[tuple[str, str | None]]:
    return [(e.status, e.description) for e in store.tracking_events("JD0001112223")]


#: (courier's word, our status, the description kept: the word, unless it only respells our status's name)
@pytest.mark.parametrize(("word", "status", "description"), [
    ("Delivered", "delivered", None), ("Out for Delivery", "out_for_delivery", None), ("IN TRANSIT", "in_transit", None),
    ("out-for-delivery", "out_for_delivery", None), ("Exception", "exception", None),
    ("Delivery attempted", "attempt_failed", "Delivery attempted"), ("Returned to sender", "returned", None),
    ("Label created", "info_received", "Label created"), ("Zugestellt", "delivered", "Zugestellt"),
    ("In Zustellung", "out_for_delivery", "In Zustellung"),
    ("Zustellversuch erfolglos", "attempt_failed", "Zustellversuch erfolglos"), ("Livré", "delivered", "Livré"),
])
def test_a_couriers_own_word_is_read_as_our_status(tmp_path, store, word, status, description):
    report = import_tracking(tracking_file(tmp_path, ("", word)), store)
    assert (report.stored, report.errors) == (1, [])
    # The courier's word stays in sight: agents read the scan as the courier wrote it.
    assert scans(store) == [(status, description)]


def test_the_description_the_file_gives_is_kept(tmp_path, store):
    path = tmp_path / "scans.csv"
    path.write_text("tracking_number,time,status,description\nJD0001112223,2026-12-01T10:00:00Z,Delivered,"
                    "Left with neighbour at no. 12\n", encoding="utf-8")
    assert import_tracking(path, store).stored == 1
    assert scans(store) == [("delivered", "Left with neighbour at no. 12")]


def test_a_word_known_nowhere_is_refused_naming_the_setting_that_adds_it(tmp_path, store):
    report = import_tracking(tracking_file(tmp_path, ("", "Im Paketzentrum bearbeitet")), store, max_rejected_share=1)
    [error] = [str(e) for e in report.errors]
    assert "row 2" in error and "status" in error and "'Im Paketzentrum bearbeitet'" in error
    assert "[imports] tracking_statuses" in error


def test_a_shops_own_words_come_from_its_config(tmp_path, store):
    words = {"Im Paketzentrum bearbeitet": "in_transit"}
    report = import_tracking(tracking_file(tmp_path, ("", "im paketzentrum  bearbeitet")), store, status_words=words)
    assert (report.stored, report.errors) == (1, [])
    assert scans(store) == [("in_transit", "im paketzentrum  bearbeitet")]


def test_reading_the_same_file_again_adds_nothing(tmp_path, store):
    path = tracking_file(tmp_path, ("", "Out for Delivery"), ("", "Delivered"))
    assert import_tracking(path, store).stored == 2
    again = import_tracking(path, store)
    assert (again.stored, again.unchanged) == (0, 2)


def test_a_configured_word_for_no_status_of_ours_is_one_line_at_load():
    with pytest.raises(ConfigError) as caught:
        parse_config({"imports": {"tracking_statuses": {"Zugestellt": "done"}}})
    message = str(caught.value)
    assert "\n" not in message and "tracking_statuses" in message and "delivered" in message


def test_the_command_reads_the_configs_words(tmp_path):
    config = tmp_path / "doorstep.toml"
    config.write_text('[imports]\ntracking_statuses = { "Sendung sortiert" = "in_transit" }\n', encoding="utf-8")
    db = tmp_path / "d.db"
    result = CliRunner().invoke(cli, ["--db", str(db), "--config", str(config), "import", "tracking",
                                      str(tracking_file(tmp_path, ("", "Sendung sortiert")))])
    assert result.exit_code == 0, result.output
    assert "1 new" in result.output


def test_a_shipments_status_in_an_orders_file_is_read_the_same_way(tmp_path, store):
    from listeners.files import import_orders

    path = tmp_path / "orders.jsonl"
    path.write_text('{"number": "ORD-1", "customer_id": "c1", "placed_at": "2026-12-01T09:00:00Z", "shipments": '
                    '[{"tracking_number": "JD0001112223", "courier": "DHL", "status": "Zugestellt"}]}\n', encoding="utf-8")
    report = import_orders(path, store)
    assert (report.stored, report.errors) == (1, []), report.errors
    assert store.get_shipment("JD0001112223").status == "delivered"


@pytest.mark.parametrize("word", ["Collected", "Picked up", "Abgeholt", "Awaiting collection"])
def test_a_word_that_names_two_statuses_is_refused_not_guessed(tmp_path, store, word):
    """Code review: "Abgeholt" and "Collected" (the courier took it from the sender, or the customer fetched it from
    the shop) were read as in_transit, and three days on the proactive rules opened "late delivery" cases for
    parcels the customers had. The shop says which its courier means, in [imports] tracking_statuses."""
    report = import_tracking(tracking_file(tmp_path, ("", word)), store, max_rejected_share=1)
    [error] = [str(e) for e in report.errors]
    assert f"'{word}'" in error and "[imports] tracking_statuses" in error
