"""``doorstep reply --channel`` reads a channel as imports and the webhook do (review of 516969e, finding 3): a file
may say "Email" or "X" and be stored as "email" and "x", but ``--channel Email`` answered "cannot reply on channel
'Email'"."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from doorstep.models import Case, Customer, Mention, utcnow
from doorstep.store import Store


def _shop(db: Path) -> tuple[int, int]:
    """A webhook case whose customer has an e-mail address, and a case opened by a tweet."""
    store = Store(db)
    store.upsert_customers([Customer(id="C-wh", name="Wren Hale", email="wren@example.com")])
    now = utcnow()
    ids = []
    for channel, customer in (("webhook", "C-wh"), ("x", None)):
        case_id = store.insert_case(Case(status="new", priority=50.0, channel=channel, author_handle="wren",
                                         customer_id=customer, link_confirmed=customer is not None, opened_at=now,
                                         last_activity_at=now, mention_count=1))
        store.insert_mention(Mention(channel=channel, external_id=f"186000000000000000{case_id}",
                                     text="my parcel never came", created_at=now, author_handle="wren",
                                     case_id=case_id))
        ids.append(case_id)
    store.close()
    return ids[0], ids[1]


def test_reply_channel_is_read_as_imports_read_it(tmp_path: Path) -> None:
    from commands.cli import cli

    db = tmp_path / "cli.db"
    webhook_case, tweet_case = _shop(db)
    runner = CliRunner()
    for case_id, given, stored in ((webhook_case, "Email", "email"), (webhook_case, " E-mail ", "email"),
                                   (tweet_case, "X", "x"), (tweet_case, "Twitter", "x")):
        queued = runner.invoke(cli, ["--db", str(db), "reply", "--case", str(case_id), "--text",
                                     f"So sorry, on it ({given.strip()}).", "--channel", given,
                                     "--force"])  # one answer per post: the second spelling answers again
        assert queued.exit_code == 0 and f"({stored}" in queued.output, (given, queued.output)


def test_reply_channel_that_is_no_channel_name_is_refused_in_one_line(tmp_path: Path) -> None:
    from commands.cli import cli

    db = tmp_path / "cli.db"
    webhook_case, _ = _shop(db)
    refused = CliRunner().invoke(cli, ["--db", str(db), "reply", "--case", str(webhook_case), "--text", "Sorry!",
                                       "--channel", "Facebook Messenger"])
    assert refused.exit_code == 2, refused.output
    line = refused.output.strip().splitlines()[-1]
    assert "--channel" in line and "'Facebook Messenger' is not a channel name" in line, refused.output
    assert "Traceback" not in refused.output


def test_reply_names_a_customer_only_with_not_a_customer(tmp_path: Path) -> None:
    """A public reply naming a customer of the shop (here a brand that is also a customer's name) is refused in one
    line that says how to confirm it; --not-a-customer confirms it, audited (second code review, 2026-12-07)."""
    from commands.cli import cli

    db = tmp_path / "cli.db"
    _, tweet_case = _shop(db)
    store = Store(db)
    store.upsert_customers([Customer(id="C-ps", name="Paul Smith")])
    store.close()
    runner = CliRunner()
    args = ["--db", str(db), "reply", "--case", str(tweet_case), "--text", "The Paul Smith shirts are back on Friday"]
    refused = runner.invoke(cli, args)
    assert refused.exit_code == 1 and len(refused.output.strip().splitlines()) == 1, refused.output
    assert "(Paul Smith)" in refused.output and "--not-a-customer 'Paul Smith'" in refused.output
    queued = runner.invoke(cli, [*args, "--not-a-customer", "Paul Smith"])
    assert queued.exit_code == 0 and queued.output.startswith("queued message"), queued.output
    store = Store(db)
    assert [e.details["names"] for e in store.audit_trail(tweet_case) if e.action == "reply.names_confirmed"] == \
        [["Paul Smith"]]
