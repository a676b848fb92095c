"""The schema history: one list of migrations run on SQLite and PostgreSQL alike.

Add a new function at the end; never edit an applied one."""

from __future__ import annotations

import logging

import sqlite_utils
from sqlite_utils.migrations import Migrations

from doorstep.dialect import SQLITE, dialect_of

MIGRATIONS = Migrations("doorstep")

log = logging.getLogger("doorstep.store")

#: The SQL for "open case"; queries use this exact text so SQLite picks the partial indexes.
OPEN_CASES_SQL = "status in ('new', 'open', 'pending_customer', 'escalated')"

#: A customer's phone number with spaces, dashes, brackets, dots and "+" taken out, so "+44 7700
#: 900434" is found as "447700900434" too (indexed by this exact text, m008).
PHONE_DIGITS_SQL = ("replace(replace(replace(replace(replace(replace(phone, ' ', ''), '-', ''), '(', ''), ')', ''), "
                    "'.', ''), '+', '')")

#: The advisory lock key under which one process at a time migrates a PostgreSQL schema.
PG_MIGRATE_LOCK_KEY = 0x600D_D009

#: The columns each full-text index covers (m001, m008); search queries name the same ones.
MENTION_FTS_COLUMNS = ("text",)
CUSTOMER_FTS_COLUMNS = ("name", "email", "phone")



def unknown_migrations(db: sqlite_utils.Database) -> list[str]:
    """The migrations applied to ``db`` that this version does not have: a newer Doorstep upgraded it."""
    known = {m.name for m in MIGRATIONS._migrations}  # sqlite-utils keeps the registered list private
    return [m.name for m in MIGRATIONS.applied(db) if m.name not in known]

@MIGRATIONS()
def m001_initial(db: sqlite_utils.Database) -> None:
    db["mentions"].create(
        {
            "id": int,
            "channel": str,
            "external_id": str,
            "text": str,
            "created_at": str,
            "author_id": str,
            "author_handle": str,
            "author_name": str,
            "author_followers": int,
            "language": str,
            "url": str,
            "thread_id": str,
            "in_reply_to": str,
            "matched": str,
            "outbound": int,
            "raw": str,
            "case_id": int,
            "sentiment": str,
            "sentiment_scores": str,
            "complaint": int,
            "complaint_score": float,
            "intent": str,
            "intent_scores": str,
            "urgency": float,
            "needs_review": int,
            "model": str,
            "ingested_at": str,
        },
        pk="id",
        not_null={"channel", "external_id", "text", "created_at"},
        defaults={"author_followers": 0, "outbound": 0},
    )
    db["mentions"].create_index(["channel", "external_id"], unique=True)
    db["mentions"].create_index(["channel", "thread_id"])
    db["mentions"].create_index(["case_id"])
    db["mentions"].create_index(["channel", "author_handle"])
    db["mentions"].create_index(["created_at"])
    db["mentions"].enable_fts(list(MENTION_FTS_COLUMNS), create_triggers=True, tokenize="unicode61")
    # Re-index only when the text changes: the pipeline and the console update case_id and
    # labels all the time, and re-indexing the post each time would double the write cost.
    # (PostgreSQL's GIN index is kept by PostgreSQL itself: no triggers there.)
    if dialect_of(db) is SQLITE:
        db.execute("drop trigger mentions_au")
        db.execute(
            'create trigger mentions_au after update of text on mentions begin '
            "insert into mentions_fts (mentions_fts, rowid, text) values ('delete', old.rowid, old.text); "
            "insert into mentions_fts (rowid, text) values (new.rowid, new.text); end"
        )

    db["customers"].create(
        {"id": str, "name": str, "email": str, "phone": str, "vip": int, "opt_out": str}, pk="id"
    )
    db["customer_handles"].create(
        {"channel": str, "handle": str, "customer_id": str}, pk=("channel", "handle")
    )
    db["customer_handles"].create_index(["customer_id"])
    db["orders"].create(
        {
            "number": str,
            "customer_id": str,
            "placed_at": str,
            "brand": str,
            "items": str,
            "total": float,
            "currency": str,
            "promised_date": str,
            "status": str,
        },
        pk="number",
    )
    db["orders"].create_index(["customer_id", "placed_at"])
    db["shipments"].create(
        {
            "tracking_number": str,
            "order_number": str,
            "courier": str,
            "service": str,
            "status": str,
            "last_event_at": str,
        },
        pk="tracking_number",
    )
    db["shipments"].create_index(["order_number"])
    db["tracking_events"].create(
        {"id": int, "tracking_number": str, "time": str, "status": str, "location": str, "description": str},
        pk="id",
    )
    db["tracking_events"].create_index(["tracking_number", "time", "status"], unique=True)

    db["cases"].create(
        {
            "id": int,
            "status": str,
            "priority": float,
            "priority_reasons": str,
            "brand": str,
            "courier": str,
            "channel": str,
            "intent": str,
            "sentiment": str,
            "complaint": int,
            "author_handle": str,
            "thread_id": str,
            "customer_id": str,
            "order_number": str,
            "tracking_number": str,
            "link_method": str,
            "link_confidence": float,
            "link_confirmed": int,
            "assignee": str,
            "opened_at": str,
            "last_activity_at": str,
            "first_response_due": str,
            "resolution_due": str,
            "first_response_at": str,
            "resolved_at": str,
            "snoozed_until": str,
            "mention_count": int,
            "version": int,
            "updated_by": str,
        },
        pk="id",
        defaults={"version": 1, "mention_count": 0, "complaint": 0, "link_confirmed": 0},
    )
    # The inbox reads "open cases by priority", maybe filtered by one facet. Partial indexes
    # over open cases only, in priority order, let it stop after the first 50 rows instead
    # of sorting every open case. The WHERE text must match OPEN_CASES_SQL exactly.
    db.execute(f"create index idx_cases_open_priority on cases (priority, id) where {OPEN_CASES_SQL}")
    for column in ("brand", "courier", "intent", "channel", "assignee", "status"):
        db.execute(f"create index idx_cases_open_{column} on cases ({column}, priority, id) where {OPEN_CASES_SQL}")
    # Covers the SLA-state filter, so counting breached cases never reads the table.
    db.execute(
        "create index idx_cases_open_sla on cases (status, first_response_at, first_response_due, resolution_due) "
        f"where {OPEN_CASES_SQL}"
    )
    db["cases"].create_index(["status", "priority"])
    db["cases"].create_index(["customer_id", "status"])
    db["cases"].create_index(["channel", "thread_id"])
    db["cases"].create_index(["channel", "author_handle"])
    db["cases"].create_index(["order_number"])
    db["cases"].create_index(["opened_at"])

    db["outbound_messages"].create(
        {
            "id": int,
            "case_id": int,
            "kind": str,
            "channel": str,
            "target": str,
            "text": str,
            "in_reply_to": str,
            "status": str,
            "attempts": int,
            "last_error": str,
            "idempotency_key": str,
            "external_id": str,
            "created_by": str,
            "created_at": str,
            "sent_at": str,
            "next_attempt_at": str,
        },
        pk="id",
        defaults={"attempts": 0, "status": "queued"},
    )
    db["outbound_messages"].create_index(["idempotency_key"], unique=True)
    db["outbound_messages"].create_index(["status", "next_attempt_at"])
    db["outbound_messages"].create_index(["case_id"])
    db["notes"].create({"id": int, "case_id": int, "author": str, "text": str, "created_at": str}, pk="id")
    db["notes"].create_index(["case_id"])
    db["audit_events"].create(
        {"id": int, "at": str, "actor": str, "action": str, "case_id": int, "details": str}, pk="id"
    )
    db["audit_events"].create_index(["case_id"])
    db["audit_events"].create_index(["at"])
    db["cursors"].create({"name": str, "value": str, "updated_at": str}, pk="name")
    db["listener_health"].create(
        {
            "name": str,
            "last_success_at": str,
            "last_error_at": str,
            "last_error": str,
            "lag_seconds": float,
            "fetched": int,
            "stored": int,
            "errors": int,
            "updated_at": str,
        },
        pk="name",
    )
    db["label_corrections"].create(
        {
            "id": int,
            "mention_id": int,
            "text": str,
            "field": str,
            "old_value": str,
            "new_value": str,
            "corrected_by": str,
            "at": str,
        },
        pk="id",
    )
    db["users"].create({"username": str, "name": str, "role": str, "password_hash": str, "created_at": str}, pk="username")


@MIGRATIONS()
def m002_user_email(db: sqlite_utils.Database) -> None:
    """Console users get an e-mail address: single sign-on identifies people by it.

    The audit index serves the login lockout, which counts each user's recent failures.
    """
    db["users"].add_column("email", str)
    db["users"].create_index(["email"], unique=True, if_not_exists=True)
    db["audit_events"].create_index(["action", "actor", "at"], if_not_exists=True)


@MIGRATIONS()
def m003_inbox_facet_index(db: sqlite_utils.Database) -> None:
    """The counts beside the inbox's filters, read from one covering index over open cases.

    Each filter's count is taken under the *other* filters (brand and SLA state, say), which
    the one-column indexes of m001 can only answer by reading every matching case row
    (~130 ms at 114k open cases). This index holds every facet and the SLA columns, so such
    counts scan index entries only (``Store._count_index`` asks for it by name). It leads
    with resolution_due, which no query compares for equality and the listing only ever
    writes as ``+resolution_due``, so the planner never takes it for the queue itself,
    where the priority-ordered indexes of m001 stop after 50 rows.
    """
    db.execute(
        "create index if not exists idx_cases_open_facets on cases (resolution_due, brand, courier, intent, channel, "
        f"assignee, status, first_response_at, first_response_due) where {OPEN_CASES_SQL}"
    )


@MIGRATIONS()
def m004_answers_automatic_messages(db: sqlite_utils.Database) -> None:
    """The facts an automatic message (follow-up, outreach, alert) was written from, and its approval.

    The outbox re-checks these facts immediately before sending (``responders/recheck.py``) and
    cancels the message with the reason when one is no longer true; a rule that needs an agent's
    approval keeps its message ``awaiting_approval`` until someone decides on the approvals page.
    """
    db["automatic_messages"].create(
        {"message_id": int, "case_id": int, "rule": str, "reply_message_id": int, "last_mention_id": int,
         "order_number": str, "customer_id": str, "approval": str, "decided_by": str, "decided_at": str,
         "cancel_reason": str},
        pk="message_id", if_not_exists=True,
    )
    db["automatic_messages"].create_index(["approval"], if_not_exists=True)


@MIGRATIONS()
def m005_inbound_listener_health_warnings(db: sqlite_utils.Database) -> None:
    """Listener health keeps warnings apart from errors (branch ``inbound``).

    ``malformed`` counts posts a round skipped as unreadable and ``last_warning`` says which
    round and why, so a listener that drops posts is visible without calling its round failed.
    ``rejected`` counts unsigned or badly signed webhook requests: strangers can send those at
    will, so they must not write ``last_error`` (that would flip health and page the team).
    """
    for column, kind in (("malformed", int), ("rejected", int), ("last_warning", str), ("last_warning_at", str)):
        if column not in db["listener_health"].columns_dict:
            db["listener_health"].add_column(column, kind)


@MIGRATIONS()
def m006_accounts_per_brand(db: sqlite_utils.Database) -> None:
    """Which of our accounts a post reached, and which account sent each message.

    A reply goes out from the account the customer wrote to (their brand's, never another
    brand's), and the outbound row records it so the team can see who answered as whom.
    """
    if "account" not in db["mentions"].columns_dict:
        db["mentions"].add_column("account", str)
    if "account" not in db["outbound_messages"].columns_dict:
        db["outbound_messages"].add_column("account", str)


@MIGRATIONS()
def m007_security_console_sessions(db: sqlite_utils.Database) -> None:
    """Console logins kept on the server (branch ``security``), checked on every console run.

    A browser holds only an HttpOnly cookie with a random token; the table holds its digest, the
    digest of the user's password hash and role at login (``stamp``: a change ends the login),
    the expiry, and when and why it was ended. ``console/auth.py`` owns the rows.
    """
    db["console_sessions"].create(
        {"id": str, "username": str, "method": str, "stamp": str, "created_at": str, "expires_at": str,
         "token_digest": str, "grant_digest": str, "grant_expires_at": str, "revoked_at": str, "revoked_reason": str},
        pk="id", if_not_exists=True,
    )
    db["console_sessions"].create_index(["token_digest"], if_not_exists=True)
    db["console_sessions"].create_index(["grant_digest"], if_not_exists=True)
    db["console_sessions"].create_index(["username"], if_not_exists=True)


@MIGRATIONS()
def m008_inbox_queue_sort_and_search(db: sqlite_utils.Database) -> None:
    """The inbox as a queue over every case (branch ``inbox``, issue 17).

    Sorting by due time or by newest walks these partial indexes over open cases (as the
    priority order walks ``idx_cases_open_priority``), so a page of 50 stops after 50 rows
    at any offset. Search finds what agents type besides words: a case's tracking number,
    its author's handle whatever the case, and customers by name, e-mail or phone
    (``customers_fts``, kept by triggers).
    """
    # The due order as it was before m013 replaced it with the stored due_key (this exact text).
    due = "(case when first_response_at is null then first_response_due else resolution_due end)"
    db.execute(f"create index if not exists idx_cases_open_due on cases ({due}, id) where {OPEN_CASES_SQL}")
    db.execute(f"create index if not exists idx_cases_open_opened on cases (opened_at, id) where {OPEN_CASES_SQL}")
    db.execute("create index if not exists idx_cases_tracking_number on cases (tracking_number)")
    dialect = dialect_of(db)
    db.execute("create index if not exists idx_cases_author_handle_nocase on cases "
               f"{dialect.nocase_index('author_handle')}")
    db.execute(f"create index if not exists idx_customers_phone_digits on customers ({PHONE_DIGITS_SQL})")
    if dialect.postgres or "customers_fts" not in db.table_names():
        db["customers"].enable_fts(list(CUSTOMER_FTS_COLUMNS), create_triggers=True, tokenize="unicode61")


@MIGRATIONS()
def m009_courier_updates_and_contact_attempts(db: sqlite_utils.Database) -> None:
    """Courier updates posted through a courier link, and every private question or follow-up's fate.

    ``courier_updates`` holds what a courier posted on its signed link (``responders/courier_link.py``);
    the unique (tracking_number, update_id) makes a re-posted update a no-op. ``contact_attempts``
    records, for every follow-up or question we send a customer, the channel, the local send hour
    and whether (and how fast) they answered: the history the channel learner
    (``responders/channel_learner.py``) chooses the next channel and hour from.
    """
    db["courier_updates"].create(
        {"id": int, "tracking_number": str, "update_id": str, "case_id": int, "courier": str, "status": str,
         "text": str, "received_at": str, "message_id": int},
        pk="id", if_not_exists=True,
    )
    db["courier_updates"].create_index(["tracking_number", "update_id"], unique=True, if_not_exists=True)
    db["courier_updates"].create_index(["tracking_number", "received_at"], if_not_exists=True)
    db["contact_attempts"].create(
        {"message_id": int, "case_id": int, "customer_id": str, "brand": str, "rule": str, "channel": str,
         "send_hour": int, "planned_at": str, "chosen_by": str, "answered_at": str, "answer_minutes": float},
        pk="message_id", if_not_exists=True,
    )
    db["contact_attempts"].create_index(["case_id", "answered_at"], if_not_exists=True)
    db["contact_attempts"].create_index(["customer_id"], if_not_exists=True)
    db["contact_attempts"].create_index(["brand", "planned_at"], if_not_exists=True)


@MIGRATIONS()
def m010_case_merged_into(db: sqlite_utils.Database) -> None:
    """A case an agent merged into another one points to it (doorstep/regroup.py, issue 17)."""
    db["cases"].add_column("merged_into", int)


@MIGRATIONS()
def m011_dialogue_questions_callbacks(db: sqlite_utils.Database) -> None:
    """Questions customers can answer, their answers, and call-back tasks (branch ``dialogue``, issue 19).

    ``questions``: one closed question asked on a case (by SMS or e-mail), where it went
    (``address_key``: the phone's digits or the lower-cased address, so a reply finds it), its
    reply token, expiry, and once answered the answer, what it was understood as and what it
    triggered. ``answers``: every inbound reply seen, keyed by channel and the channel's own id,
    so a reply delivered twice is handled once. ``callbacks``: a call back offered on a case, the
    slot the customer picked, its SLA deadline and outcome.
    """
    db["questions"].create(
        {"id": int, "case_id": int, "customer_id": str, "rule": str, "channel": str, "target": str,
         "address_key": str, "message_id": int, "mail_id": str, "token": str, "asked_at": str, "expires_at": str,
         "status": str, "answer": str, "answer_kind": str, "answer_channel": str, "answered_at": str,
         "slot_at": str, "action": str},
        pk="id", if_not_exists=True,
    )
    db["questions"].create_index(["case_id"], if_not_exists=True)
    db["questions"].create_index(["address_key", "status"], if_not_exists=True)
    db["questions"].create_index(["token"], unique=True, if_not_exists=True)
    db["questions"].create_index(["status", "expires_at"], if_not_exists=True)
    db["answers"].create(
        {"id": int, "channel": str, "external_id": str, "sender": str, "text": str, "received_at": str,
         "question_id": int, "case_id": int, "kind": str, "outcome": str},
        pk="id", if_not_exists=True,
    )
    db["answers"].create_index(["channel", "external_id"], unique=True, if_not_exists=True)
    db["callbacks"].create(
        {"id": int, "case_id": int, "question_id": int, "reason": str, "offered_by": str, "offered_at": str,
         "status": str, "phone": str, "slot_at": str, "slot_text": str, "requested_at": str, "due_at": str,
         "breached_at": str, "outcome": str, "outcome_by": str, "outcome_at": str},
        pk="id", if_not_exists=True,
    )
    db["callbacks"].create_index(["case_id"], if_not_exists=True)
    db["callbacks"].create_index(["status", "due_at"], if_not_exists=True)


@MIGRATIONS()
def m012_team_settings(db: sqlite_utils.Database) -> None:
    """Templates and alert rules a lead edits in the console, one row per saved version (doorstep/team_settings.py)."""
    db["team_settings"].create(
        {"id": int, "kind": str, "name": str, "value": str, "author": str, "created_at": str, "note": str},
        pk="id", if_not_exists=True,
    )
    db["team_settings"].create_index(["kind", "name", "id"], if_not_exists=True)


@MIGRATIONS()
def m013_sla_clocks(db: sqlite_utils.Database) -> None:
    """SLA clocks that pause, restart per unanswered post and count business hours (branch ``sla``).

    New case columns (doorstep/sla.py): the oldest unanswered customer post (``awaiting_since``),
    the "next response" deadline, when the clocks paused (waiting on the customer), the
    priority band, and, derived from those on every write, the next deadline while the clocks
    run (``due_at``, ``due_kind``: what the red and amber states and the alerts read) and the
    due order's key (``due_key``). The queue's two orders walk ``idx_cases_open_queue`` (band,
    then due) and ``idx_cases_open_due`` (due); the facet counts' covering index gains the
    snooze and the next deadline, so counting overdue ones never reads the table, and
    ``idx_cases_open_snooze`` finds the (few) snoozed cases: the default queue's counts are
    "every open case minus the snoozed ones". Existing cases get the old meaning (first response while unanswered, else
    resolution; pending cases paused since their last activity) until their next change.
    """
    for column in ("awaiting_since", "next_response_due", "sla_paused_at", "priority_band", "due_at", "due_kind",
                   "due_key"):
        if column not in db["cases"].columns_dict:
            db["cases"].add_column(column, str)
    db.execute("update cases set priority_band = case when priority >= 70 then 'p1' when priority >= 50 then 'p2' "
               "when priority >= 30 then 'p3' else 'p4' end")
    db.execute("update cases set sla_paused_at = coalesce(last_activity_at, opened_at) where status = 'pending_customer'")
    answer_owed = "first_response_at is null and first_response_due is not null"
    db.execute(
        f"update cases set due_at = case when {answer_owed} and (resolution_due is null or first_response_due "
        "<= resolution_due) then first_response_due else resolution_due end, "
        f"due_kind = case when {answer_owed} and (resolution_due is null or first_response_due <= resolution_due) "
        "then 'first response' when resolution_due is not null then 'resolution' end, "
        f"due_key = case when {answer_owed} then '1 ' || first_response_due when resolution_due is not null "
        "then '2 ' || resolution_due else '3' end where status in ('new', 'open', 'escalated')")
    db.execute("update cases set due_key = '3' where due_key is null")
    db.execute("drop index if exists idx_cases_open_due")
    db.execute(f"create index if not exists idx_cases_open_due on cases (due_key, id) where {OPEN_CASES_SQL}")
    db.execute(f"create index if not exists idx_cases_open_queue on cases (priority_band, due_key, priority desc, id desc) "
               f"where {OPEN_CASES_SQL}")
    db.execute(f"create index if not exists idx_cases_open_snooze on cases (snoozed_until) where {OPEN_CASES_SQL}")
    db.execute("drop index if exists idx_cases_open_facets")
    db.execute(
        "create index if not exists idx_cases_open_facets on cases (resolution_due, brand, courier, intent, channel, "
        f"assignee, status, first_response_at, first_response_due, snoozed_until, due_at) where {OPEN_CASES_SQL}"
    )


@MIGRATIONS()
def m014_job_queue_batches(db: sqlite_utils.Database) -> None:
    """Posts waiting between the job queue's stages (PostgreSQL workers, commands/jobs_queue.py).

    A ``classify`` or ``ingest`` job names its batch here instead of carrying its posts in its
    arguments: procrastinate copies and logs a job's arguments several times per job, which cost
    more than storing the posts. ``stage`` is the job that takes the batch next; the ingest job
    deletes the row in the transaction that stores the posts.
    """
    db["job_batches"].create({"id": int, "stage": str, "posts": str, "created_at": str}, pk="id",
                             if_not_exists=True)


@MIGRATIONS()
def m015_postgres_sla_count_index(db: sqlite_utils.Database) -> None:
    """PostgreSQL counts overdue open cases from an index of their deadlines (issue 16).

    SQLite is told to count from the covering facets index (``Store._count_index``); PostgreSQL
    chooses by statistics and, with no index leading with ``due_at``, scanned the table: 73 ms
    for 85k overdue cases of 200k, 17 ms with this index (bench/RESULTS.md). SQLite would never
    use it and would pay for it on every case write, so it is made on PostgreSQL only.
    (m015: m014 is taken on the pg-worker branch.)
    """
    if dialect_of(db).postgres:
        db.execute(f"create index if not exists idx_cases_open_due_at on cases (due_at, snoozed_until) "
                   f"where {OPEN_CASES_SQL}")


@MIGRATIONS()
def m016_inbox_summary_index(db: sqlite_utils.Database) -> None:
    """On SQLite the facets index leads with the facets, in the order ``Store.inbox_summary`` groups them (issue 17).

    The counts beside the inbox's filters are now one grouped pass over open cases (brand,
    courier, channel, intent, assignee, status) instead of ~14 counts. SQLite groups rows in an
    index's order without sorting them; over the old order (resolution_due first) it sorted
    all 114k open cases, 200-400 ms, against ~40-80 ms in this order at 1M mentions / 200k cases
    under load (bench/RESULTS.md). The same columns as before, so every count that named the
    index (``Store._count_index``) is still answered from it alone, and a brand filter is now a
    range of it. The queue's listing walks its own indexes (m013) as before; without ANALYZE
    statistics (how Doorstep writes databases) SQLite now lists two or three filters from this
    index (37 -> 18 ms, 23 -> 4 ms at 1M), with them it plans as before.
    """
    if dialect_of(db).postgres:
        return  # PostgreSQL groups by hashing, in any order; its plans over the index stay as they were (m015)
    db.execute("drop index if exists idx_cases_open_facets")
    db.execute(
        "create index if not exists idx_cases_open_facets on cases (brand, courier, channel, intent, assignee, status, "
        f"snoozed_until, due_at, first_response_at, first_response_due, resolution_due) where {OPEN_CASES_SQL}"
    )
    if db["sqlite_stat1"].exists():
        # A database with ANALYZE statistics keeps them for the new index: without them SQLite takes
        # it for a brand-filtered queue and sorts every such case (0.9 -> 270 ms at 1M, measured).
        db.execute("analyze idx_cases_open_facets")


@MIGRATIONS()
def m017_proactive_cases_take_their_first_post(db: sqlite_utils.Database) -> None:
    """A proactive case the customer's post joined before ``cases.absorb`` gave it that post's channel,
    author and thread kept none (a user check of the demo): the composer offered no public reply and
    the inbox's channel filter listed it under "(none)". Fill them from the customer's first post, as
    a case joined today gets them; cases nobody wrote on stay without. The version moves on, so a
    page open on such a case sees the change.
    """
    first = ("(select {col} from mentions m where m.case_id = cases.id and m.outbound = 0 "
             "order by m.created_at, m.id limit 1)")
    db.execute(
        f"update cases set channel = {first.format(col='m.channel')}, "
        f"author_handle = {first.format(col='m.author_handle')}, "
        f"thread_id = {first.format(col='coalesce(m.thread_id, m.external_id)')}, version = version + 1 "
        "where channel is null and exists (select 1 from mentions m where m.case_id = cases.id and m.outbound = 0)"
    )


@MIGRATIONS()
def m018_author_cases_by_activity(db: sqlite_utils.Database) -> None:
    """Each author's, customer's and order's cases in order of last activity, so that an import reads
    an author's first cases without reading all of them (issue 16).

    A batch of posts reads the first 100 cases of each of its authors (by handle and by customer) and
    quoted orders, newest activity first (``Store.author_case_views``). Over the old indexes, which
    stop at the author, SQLite read every case of the author and sorted them: a frequent author's
    1,500 cases on every batch, so an import's time grew with the square of the store (100k posts:
    36 of 166 profiled seconds, bench/RESULTS.md). These indexes end with ``last_activity_at, id``:
    the read walks the author's newest cases and stops at 100. The old (channel, author_handle) and
    (order_number) indexes are prefixes of the new ones and go, so a case write keeps as many index
    entries to update; (customer_id, status) stays for the other readers of a customer's cases.
    """
    db.execute("create index if not exists idx_cases_author_activity on cases "
               "(channel, author_handle, last_activity_at, id)")
    db.execute("create index if not exists idx_cases_customer_activity on cases (customer_id, last_activity_at, id)")
    db.execute("create index if not exists idx_cases_order_activity on cases (order_number, last_activity_at, id)")
    db.execute("drop index if exists idx_cases_channel_author_handle")
    db.execute("drop index if exists idx_cases_order_number")


#: What a search's answer is read from (``Store.search_cases``): per table, the columns whose update
#: can change it (a new or deleted row always can). A write to any of them moves the search mark.
SEARCH_SOURCES = {
    "mentions": (*MENTION_FTS_COLUMNS, "case_id"),
    "cases": ("author_handle", "order_number", "tracking_number", "customer_id", "channel"),
    "customers": CUSTOMER_FTS_COLUMNS,
    "customer_handles": ("channel", "handle", "customer_id"),
    "shipments": ("tracking_number", "order_number"),
}

#: The search mark's row in ``change_marks`` and the statement that reads it (``Store._search_mark``).
SEARCH_MARK = "search"
SEARCH_MARK_SQL = f"select n from change_marks where name = '{SEARCH_MARK}'"

#: PostgreSQL: the trigger functions that keep the search mark (see install_search_mark_triggers).
_PG_SEARCH_MARK_FUNCTIONS = (
    # Any write to a search's tables notes, once per transaction and schema, that the mark must move...
    "create or replace function doorstep_search_changed() returns trigger language plpgsql as $$ "
    "begin "
    "if current_setting('doorstep.search_changed', true) is distinct from TG_TABLE_SCHEMA then "
    "perform set_config('doorstep.search_changed', TG_TABLE_SCHEMA, true); "
    "execute 'insert into ' || quote_ident(TG_TABLE_SCHEMA) || '.change_marks_pending (name) values (''search'')'; "
    "end if; "
    "return null; "
    "end $$",
    # ...and the mark moves when the transaction commits (a deferred trigger on that note), so the
    # mark's row is locked only while the commit itself runs, not from the first write on.
    "create or replace function doorstep_search_bump() returns trigger language plpgsql as $$ "
    "begin "
    "execute 'update ' || quote_ident(TG_TABLE_SCHEMA) || '.change_marks set n = n + 1 where name = $1' "
    "using NEW.name; "
    "execute 'delete from ' || quote_ident(TG_TABLE_SCHEMA) || '.change_marks_pending'; "
    "return null; "
    "end $$",
)


def search_mark_trigger_names() -> list[str]:
    """The names of the triggers that keep the search mark (both databases)."""
    names = []
    for table in SEARCH_SOURCES:
        names += [f"search_mark_{table}_ins", f"search_mark_{table}_del", f"search_mark_{table}_upd"]
    return names


def install_search_mark_triggers(db: sqlite_utils.Database) -> None:
    """Create (again) the mark's table, row and the triggers that move it; safe to run twice.

    Also run by tests that copy a PostgreSQL schema table by table (``create table ... like``
    copies no triggers).
    """
    db.execute("create table if not exists change_marks (name text primary key, n bigint not null default 0)")
    db.execute(f"insert into change_marks (name, n) select '{SEARCH_MARK}', 0 "
               f"where not exists (select 1 from change_marks where name = '{SEARCH_MARK}')")
    if dialect_of(db).postgres:
        db.execute("create table if not exists change_marks_pending (name text not null)")
        for sql in _PG_SEARCH_MARK_FUNCTIONS:
            db.execute(sql)
        db.execute("drop trigger if exists change_marks_bump on change_marks_pending")
        db.execute("create constraint trigger change_marks_bump after insert on change_marks_pending "
                   "deferrable initially deferred for each row execute function doorstep_search_bump()")
        for table, columns in SEARCH_SOURCES.items():
            for name, event in (("ins", "insert"), ("del", "delete or truncate"),
                                ("upd", f"update of {', '.join(columns)}")):
                db.execute(f"drop trigger if exists search_mark_{table}_{name} on {table}")
                db.execute(f"create trigger search_mark_{table}_{name} after {event} on {table} "
                           "for each statement execute function doorstep_search_changed()")
        return
    bump = f"update change_marks set n = n + 1 where name = '{SEARCH_MARK}';"
    for table, columns in SEARCH_SOURCES.items():
        for name, event in (("ins", "insert"), ("del", "delete"), ("upd", f"update of {', '.join(columns)}")):
            db.execute(f"drop trigger if exists search_mark_{table}_{name}")
            db.execute(f"create trigger search_mark_{table}_{name} after {event} on {table} begin {bump} end")


@MIGRATIONS()
def m019_search_mark(db: sqlite_utils.Database) -> None:
    """A change mark of Doorstep's own that moves exactly when a search's answer may change (issue 16).

    ``Store.search_cases`` remembers a search's cases while the data is unchanged. It judged that by
    SQLite's data_version and PostgreSQL's ``pg_current_snapshot()``, which any commit moves: on
    PostgreSQL any commit in the cluster (another schema, another database, an unrelated table), so
    under other writers every inbox query ran the full-text search again (searches 97-1,607 ms p95
    at 1M mentions, bench/RESULTS.md). The mark is a counter row (``change_marks``) that triggers
    move on every insert or delete of the tables a search reads, and on updates of the columns it
    reads (:data:`SEARCH_SOURCES`): in the writer's transaction on SQLite, at its commit on
    PostgreSQL (a deferred trigger, so concurrent writers do not wait on the row while they work).
    """
    install_search_mark_triggers(db)


#: The case columns the inbox's summary counts by (``Store.inbox_summary``): a change to any of them is
#: logged in ``case_changes`` (m020), old and new values, so the summary follows without re-counting.
SUMMARY_CHANGE_COLUMNS = ("brand", "courier", "channel", "intent", "assignee", "status", "snoozed_until", "due_at")
#: How many of the newest changes ``case_changes`` keeps (a summary older than that is taken again).
CASE_CHANGES_KEPT = 50_000


@MIGRATIONS()
def m020_case_changes_for_the_inbox_summary(db: sqlite_utils.Database) -> None:
    """SQLite logs every change to a case's summary columns, old and new values (issue 17, fifth round).

    The counts beside the inbox's filters are one summary of every open case (``Store.inbox_summary``,
    60-190 ms at 1M mentions / 200k cases); it was taken again whenever anything changed (every reply)
    or the minute turned. With this log a summary follows the data from the changes since it was
    taken (``Store.inbox_summary_live``): a few rows, whoever wrote them (the worker, the pipeline, a
    migration or a hand-written UPDATE: triggers, not the store's write methods). Only changes to the
    columns the summary counts by are logged; the newest CASE_CHANGES_KEPT are kept (every 1,000th
    insert drops the oldest). PostgreSQL takes its summary again as before: no log there.
    """
    if dialect_of(db).postgres:
        return
    columns = SUMMARY_CHANGE_COLUMNS
    db.execute("create table if not exists case_changes (seq integer primary key autoincrement, case_id integer, "
               + ", ".join(f"old_{c}" for c in columns) + ", "  # no type: the values exactly as the case held them
               + ", ".join(f"new_{c}" for c in columns) + ")")
    olds, news = ", ".join(f"old_{c}" for c in columns), ", ".join(f"new_{c}" for c in columns)
    db.execute(f"create trigger if not exists cases_summary_ai after insert on cases begin "
               f"insert into case_changes (case_id, {news}) values (new.id, {', '.join(f'new.{c}' for c in columns)}); end")
    changed = " or ".join(f"old.{c} is not new.{c}" for c in columns)
    db.execute(f"create trigger if not exists cases_summary_au after update on cases when {changed} "
               f"begin insert into case_changes (case_id, {olds}, {news}) values (new.id, "
               f"{', '.join(f'old.{c}' for c in columns)}, {', '.join(f'new.{c}' for c in columns)}); end")
    db.execute(f"create trigger if not exists cases_summary_ad after delete on cases begin "
               f"insert into case_changes (case_id, {olds}) values (old.id, {', '.join(f'old.{c}' for c in columns)}); end")
    db.execute(f"create trigger if not exists case_changes_keep after insert on case_changes when new.seq % 1000 = 0 "
               f"begin delete from case_changes where seq <= new.seq - {CASE_CHANGES_KEPT}; end")


@MIGRATIONS()
def m021_listener_health_last_outcome(db: sqlite_utils.Database) -> None:
    """Listener health remembers the outcome of its last write: ``ok``, ``warning`` or ``error``.

    Whether a listener is failing was read from ``last_error_at >= last_success_at``; after the wall
    clock stepped back (an NTP correction) the errors written since compared as older than the last
    success, and a failing listener read ``ok``. The order of the writes is what counts
    (listeners/health.py). Rows written before this migration keep the timestamp comparison.
    """
    if "last_outcome" not in db["listener_health"].columns_dict:
        db["listener_health"].add_column("last_outcome", str)


@MIGRATIONS()
def m022_mentions_by_customer(db: sqlite_utils.Database) -> None:
    """Each post records whether it speaks for its case's customer (``Mention.by_customer``).

    A stranger who answered in the customer's public thread joined the case, and the case's priority
    was taken from its most serious post and its contact count, whoever wrote them: a stranger with
    250,000 followers writing "disgrace, lost, urgent" turned a calm customer's case P1 (audit
    cases.md #4). The pipeline now sets the flag as it stores a post into its case (regrouping sets it
    again) and the case's peak and contact count count only posts whose flag is not false. Rows stored
    before stay NULL, which counts, so an old database's priorities read as they did.
    """
    if "by_customer" not in db["mentions"].columns_dict:
        db["mentions"].add_column("by_customer", int)


@MIGRATIONS()
def m023_case_inbound_posts_by_channel(db: sqlite_utils.Database) -> None:
    """An index of each case's inbound posts by network, for the inbox's Channel filter.

    A case is listed under every network its customer wrote on in it, not only the one it was opened
    on (``Store.inbox``: a case opened on Bluesky whose newest post is on X is under X too). Finding
    the few cases with posts on a second network read every post of every case through the
    ``mentions(case_id)`` index: 1.9 s at 1M posts after each new post, 0.16 s with this index
    (doorstep/store/inbox.py, ``CASE_POSTS_INDEX``). Our own posts (outbound) never count.
    """
    db.execute("create index if not exists idx_mentions_case_inbound on mentions (case_id, channel) "
               "where outbound = 0")


@MIGRATIONS()
def m024_outbound_messages_by_post(db: sqlite_utils.Database) -> None:
    """Outbound messages by the post the network gave them (channel, external id).

    When a listener stores one of our own posts, the pipeline asks whether Doorstep's outbox sent it
    (``doorstep.pipeline.sent_by_outbox``: if not, it was typed in the network's own app and the
    timeline says so), and the outbox asks whether a post it found was recorded for another message.
    Both read ``outbound_messages`` by (channel, external_id), which no index covered: a scan of every
    message ever sent, once per batch holding one of our posts.
    """
    db.execute("create index if not exists idx_outbound_messages_post on outbound_messages (channel, external_id)")


@MIGRATIONS()
def m025_tracking_numbers_normalised(db: sqlite_utils.Database) -> None:
    """Tracking numbers stored as the shop typed them are stored as couriers and posts write them.

    Before stop 35 an import kept "1Z 999 AA1 01 2345 6784" or "ab123456785gb" as typed; posts,
    courier updates and imports read numbers normalised (:func:`doorstep.numbers.normalise_tracking_number`),
    so such a parcel was never found again (no status on its case, no proactive case, "no such
    parcel") until its order was re-imported, and events of a parcel whose order never came, courier
    updates and cases kept the old spelling for good. Every stored number is renamed here. A parcel
    stored both ways is merged into the normalised shipment: an event held under both spellings is
    kept once, and the shipment's status is its latest event's. Where the two spellings belong to two
    different orders, the typed shipment is left as it was (choosing an order is the shop's call;
    an import of the other order's row is refused as a parcel on two orders); its events and cases move.
    """
    from doorstep.numbers import normalise_tracking_number

    def typed(table: str) -> dict[str, str]:
        stored = [r[0] for r in db.execute(f"select distinct tracking_number from {table} "
                                           "where tracking_number is not null").fetchall()]
        return {s: normalise_tracking_number(s) for s in stored if normalise_tracking_number(s) != s}

    merged: set[str] = set()
    for stored, number in typed("shipments").items():
        both = db.execute("select order_number from shipments where tracking_number = ?", [number]).fetchone()
        if both is None:
            db.execute("update shipments set tracking_number = ? where tracking_number = ?", [number, stored])
            continue
        mine = db.execute("select order_number from shipments where tracking_number = ?", [stored]).fetchone()[0]
        if mine is not None and both[0] is not None and mine != both[0]:
            continue
        for column in ("order_number", "courier", "service", "status", "last_event_at"):
            db.execute(f"update shipments set {column} = (select {column} from shipments where tracking_number = ?) "
                       f"where tracking_number = ? and {column} is null", [stored, number])
        db.execute("delete from shipments where tracking_number = ?", [stored])
        merged.add(number)
    for stored, number in typed("tracking_events").items():
        db.execute("update tracking_events set tracking_number = ? where tracking_number = ? and not exists "
                   "(select 1 from tracking_events e where e.tracking_number = ? and e.time = tracking_events.time "
                   "and e.status = tracking_events.status)", [number, stored, number])
        db.execute("delete from tracking_events where tracking_number = ?", [stored])
        merged.add(number)
    for stored, number in typed("courier_updates").items():
        db.execute("update courier_updates set tracking_number = ? where tracking_number = ? and not exists "
                   "(select 1 from courier_updates u where u.tracking_number = ? and u.update_id = courier_updates.update_id)",
                   [number, stored, number])
        db.execute("delete from courier_updates where tracking_number = ?", [stored])
    for stored, number in typed("cases").items():
        db.execute("update cases set tracking_number = ?, version = version + 1 where tracking_number = ?",
                   [number, stored])
    for number in merged:  # as OrderStore._follow_latest_event: the latest stored event's status
        db.execute(
            "update shipments set (status, last_event_at) = (select status, time from tracking_events "
            "where tracking_number = ?1 order by time desc, id desc limit 1) where tracking_number = ?1 "
            "and exists (select 1 from tracking_events where tracking_number = ?1)",
            [number],
        )


@MIGRATIONS()
def m026_import_runs(db: sqlite_utils.Database) -> None:
    """Each ``doorstep import`` run: what it read, wrote and refused, so the team sees it.

    An orders or tracking import run from cron reported itself on its terminal only: a refused or half
    rejected nightly file left linking on yesterday's orders and nobody in the console knew.
    ``listeners.files.record_import`` writes a row per run; Settings and the Dashboard show the latest.
    Not listener health: an import runs when the shop runs it, so it is never "stale".
    """
    db["import_runs"].create(
        {"id": int, "kind": str, "file": str, "started_at": str, "finished_at": str, "rows": int, "new": int,
         "updated": int, "unchanged": int, "rejected": int, "outcome": str, "message": str},
        pk="id", if_not_exists=True,
    )
    db["import_runs"].create_index(["finished_at"], if_not_exists=True)


@MIGRATIONS()
def m027_mentions_read_language(db: sqlite_utils.Database) -> None:
    """The language the classifier saw in a post it could not read as English (``Labels.other_language``).

    It lived only in the labels in memory: the case got "written in Chinese: labels are a guess, read it" (+20)
    when the post arrived, and lost it the next time the case was scored (a follow-up post, an export read back
    in), because the labels read back from the row had no language, so the complaint sank to the bottom band
    again (audit of stop 39). ``mentions.language`` is not it: that is the network's word where it gave one
    (X says "und" for a post of emoji). Rows stored before stay NULL.
    """
    if "read_language" not in db["mentions"].columns_dict:
        db["mentions"].add_column("read_language", str)


@MIGRATIONS()
def m028_cases_closed_as(db: sqlite_utils.Database) -> None:
    """How a resolved case was closed when it was not dealt with: ``cases.closed_as = 'spam'`` (doorstep/closing.py).

    Audit of a viral day: 500 spam-bot cases were resolved one by one and still counted in the mood and complaint
    figures of the dashboard and the weekly report, which cannot tell a bot's "parcel lost? DM me" from a
    customer's. Cases stored before stay NULL (closed as anything else: dealt with).
    """
    if "closed_as" not in db["cases"].columns_dict:
        db["cases"].add_column("closed_as", str)


@MIGRATIONS()
def m029_indexes_for_a_years_figures(db: sqlite_utils.Database) -> None:
    """Indexes for the dashboard's figures on a shop a year old (scale audit: 200k posts, 132k cases).

    ``data_gaps`` reads each network's posts of five weeks: SQLite took the (channel, author_handle) index and read
    every X post of the year (0.5-0.9 s, twice per network per view); the count of cases closed as spam read every
    resolved case. Each now reads what it counts.
    """
    db.execute("create index if not exists idx_mentions_channel_inbound_created on mentions (channel, created_at) "
               "where outbound = 0")
    db.execute("create index if not exists idx_cases_spam_resolved on cases (resolved_at) where closed_as = 'spam'")


#: How many pairs of cases holding one post twice the upgrade names one by one (m030); the rest are counted.
DUPLICATE_POSTS_NAMED = 20


@MIGRATIONS()
def m030_channel_names_and_handles_as_stored_today(db: sqlite_utils.Database) -> None:
    """Posts and cases stored before 516969e keep channels and handles as exports wrote them: stored as today.

    ``Mention`` now stores a channel by :func:`doorstep.models.channel_key` ("Twitter", "X", " x " are "x") and an
    author without the "@" ("@tomprice" is "tomprice"). Rows written before kept "Twitter" and "@tomprice": the same
    file imported again was stored a second time as ("x", "tomprice") in a second case, and the "Twitter" case
    could still not be answered (review of 516969e). Here ``mentions`` and ``cases`` get today's names; a renamed
    case's version moves on, so a page open on it sees the change. A name ``channel_key`` refuses (a webhook's
    "facebook messenger") stays as it is; handles lose their "@" whatever the channel ("@jo@host" is "jo@host").

    Only these two tables hold a post's channel as a file or webhook wrote it. ``outbound_messages``,
    ``questions``, ``answers``, ``contact_attempts`` and ``automatic_messages`` hold channels Doorstep itself
    chose (a reply was only ever queued on "x", "email", ... : "Twitter" was refused), and ``customer_handles``
    were always stored by the fixed handle channels, lower case and without "@".

    One post stored under two spellings (a tweet imported as "Twitter" and as "x") cannot be renamed: the
    (channel, external_id) key is unique. The canonical row stays (where none was stored, the oldest spelling
    becomes it) and the other row stays as it was, its case renamed all the same. Not merged here: which case keeps
    the notes, the owner, the status and the sent replies is the team's call, and a merge recounts the case's
    priority and clocks from the configuration, which a migration has not got. Each such pair of cases is logged
    as a warning with its remedy: an admin runs ``doorstep case merge KEEP OTHER`` (the case holding the canonical
    row first), or merges them in the console; the renamed case is then the same customer's on the same network,
    which the merge requires. The duplicate row then shows in the kept case beside its twin.
    """
    from doorstep.models import channel_key

    def canonical(stored: str) -> str | None:
        try:
            key = channel_key(stored)
        except ValueError:
            return None
        return key if key != stored else None

    def renamed(table: str) -> dict[str, str]:
        rows = db.execute(f"select distinct channel from {table} where channel is not null").fetchall()
        return {r[0]: key for r in rows if (key := canonical(r[0])) is not None}

    at_sign = "trim(author_handle) like '@_%'"
    db.execute(f"update mentions set author_handle = substr(trim(author_handle), 2) where {at_sign}")

    spellings: dict[str, list[str]] = {}
    for stored, key in renamed("mentions").items():
        spellings.setdefault(key, []).append(stored)
    for key, names in spellings.items():
        marks = ", ".join("?" * len(names))
        for stored in names:
            # A row whose post is stored under its canonical name, or under another spelling in an older row, stays.
            db.execute(f"update mentions set channel = ? where channel = ? and not exists (select 1 from mentions m "
                       f"where m.external_id = mentions.external_id and (m.channel = ? or "
                       f"(m.channel in ({marks}) and m.id < mentions.id)))", [key, stored, key, *names])
    # No key holds a case's channel or author: each renamed case is written once, and its version moves once.
    cases = renamed("cases")
    set_channel = where_channel = ""
    if cases:
        set_channel = f", channel = case channel{' when ? then ?' * len(cases)} else channel end"
        where_channel = f" or channel in ({', '.join('?' * len(cases))})"
    db.execute(f"update cases set author_handle = case when {at_sign} then substr(trim(author_handle), 2) "
               f"else author_handle end{set_channel}, version = version + 1 where {at_sign}{where_channel}",
               [*(name for pair in cases.items() for name in pair), *cases])

    def case_of(case_id: int | None) -> str:
        return f"case {case_id}" if case_id is not None else "no case"

    pairs: dict[tuple[int | None, int | None], list[str]] = {}
    for key, names in spellings.items():
        for old_case, canonical_case, stored in db.execute(
                f"select o.case_id, c.case_id, o.channel from mentions o join mentions c on c.channel = ? "
                f"and c.external_id = o.external_id where o.channel in ({', '.join('?' * len(names))}) "
                "order by c.case_id, o.case_id, o.id", [key, *names]).fetchall():
            pairs.setdefault((old_case, canonical_case), []).append(f"{stored} (today {key})")
    for (old_case, canonical_case), names in list(pairs.items())[:DUPLICATE_POSTS_NAMED]:
        said = f"{len(names)} post(s) under channel {', '.join(sorted(set(names)))}"
        if old_case is None or canonical_case is None or old_case == canonical_case:
            where = (f"both in {case_of(old_case)}" if old_case == canonical_case else
                     f"old rows in {case_of(old_case)}, today's in {case_of(canonical_case)}")
            log.warning("upgrade: %s also stored under today's name (%s): the old rows were left as they were",
                        said, where)
        else:
            log.warning("upgrade: case %s holds %s also stored under today's name in case %s: run "
                        "`doorstep case merge %s %s` to join them (or merge them in the console)", old_case, said,
                        canonical_case, canonical_case, old_case)
    if len(pairs) > DUPLICATE_POSTS_NAMED:
        log.warning("upgrade: %d more cases hold a post stored twice under two channel names: merge each into the "
                    "case holding today's row (doorstep case merge KEEP OTHER)", len(pairs) - DUPLICATE_POSTS_NAMED)


@MIGRATIONS()
def m031_sms_questions_keyed_by_the_last_seven_digits(db: sqlite_utils.Database) -> None:
    """The questions sent by SMS are found by their number's last seven digits (doorstep.dialogue.address_key), no
    longer the last ten, which a number stored with a bracketed trunk zero ("+49 (0)89 1234567") did not share
    with its owner's replies (intl audit). Questions asked before keep their old key otherwise, and an answer to
    one would find nothing. An erased question (no target) keeps no key."""
    db.execute("update questions set address_key = substr(address_key, length(address_key) - 6) "
               "where channel = 'sms' and target is not null and length(address_key) > 7")


#: PostgreSQL: the indexed words of a customer's folded name (m032), as ``Store.customers_named`` asks (this exact
#: text, so the planner takes the GIN index).
CUSTOMER_NAME_DOCUMENT = "to_tsvector('simple', coalesce(name_folded, ''))"

#: How many customers' folded names one statement of m032 writes.
_NAMES_FOLDED_PER_STATEMENT = 400


@MIGRATIONS()
def m032_customer_names_folded(db: sqlite_utils.Database) -> None:
    """Customers are found by their name in any case and spelling: ``customers.name_folded`` holds the words of the
    name's folded spellings (``doorstep.store.orders.folded_name``: "Jürgen Weiß" is "juergen weiss jurgen"), and an
    index of them answers ``Store.customers_named`` (FTS5 ``customer_names_fts`` kept by triggers on SQLite, a GIN
    index on PostgreSQL). The index the inbox searches held "weiß", so a public reply naming the neighbour
    "WEISS JÜRGEN" or "Juergen Weiss" found no customer and went out (intl audit, finding 3). Every stored name is
    folded here; a name written later is folded where it is written (``Store.upsert_customer``)."""
    from doorstep.store.orders import folded_name

    dialect = dialect_of(db)
    if "name_folded" not in db["customers"].columns_dict:
        db["customers"].add_column("name_folded", str)
    if not dialect.postgres:  # filled before the index exists: rebuilt from the filled column below
        for name in ("customer_names_ai", "customer_names_ad", "customer_names_au"):
            db.execute(f"drop trigger if exists {name}")
    rows = [(customer_id, folded_name(name)) for customer_id, name in
            db.execute("select id, name from customers").fetchall()]
    rows = [(customer_id, folded) for customer_id, folded in rows if folded is not None]
    for start in range(0, len(rows), _NAMES_FOLDED_PER_STATEMENT):
        chunk = rows[start:start + _NAMES_FOLDED_PER_STATEMENT]
        given = " union all ".join(["select ? as id, ? as folded"] * len(chunk))
        db.execute(f"update customers set name_folded = g.folded from ({given}) as g where customers.id = g.id",
                   [value for row in chunk for value in row])
    if dialect.postgres:
        db.execute(f"create index if not exists idx_customers_name_folded on customers using gin "
                   f"({CUSTOMER_NAME_DOCUMENT})")
        return
    db.execute("create virtual table if not exists customer_names_fts using fts5(name_folded, content='customers', "
               "content_rowid='rowid', tokenize='unicode61 remove_diacritics 0')")
    db.execute("create trigger customer_names_ai after insert on customers begin "
               "insert into customer_names_fts (rowid, name_folded) values (new.rowid, new.name_folded); end")
    db.execute("create trigger customer_names_ad after delete on customers begin "
               "insert into customer_names_fts (customer_names_fts, rowid, name_folded) "
               "values ('delete', old.rowid, old.name_folded); end")
    db.execute("create trigger customer_names_au after update of name_folded on customers begin "
               "insert into customer_names_fts (customer_names_fts, rowid, name_folded) "
               "values ('delete', old.rowid, old.name_folded); "
               "insert into customer_names_fts (rowid, name_folded) values (new.rowid, new.name_folded); end")
    db.execute("insert into customer_names_fts (customer_names_fts) values ('rebuild')")
