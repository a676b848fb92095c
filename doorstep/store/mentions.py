"""Posts (mentions): stored once per channel and external id, with their labels."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from doorstep.models import Labels, Mention, utcnow
from doorstep.store.base import MAX_PARAMETERS, StoreBase, _chunks, _json, _marks, _unjson, iso, parse_time


def _label_columns(labels: Labels | None) -> dict[str, Any]:
    if labels is None:
        return dict.fromkeys(
            ("sentiment", "sentiment_scores", "complaint", "complaint_score", "intent", "intent_scores", "urgency", "needs_review",
             "model", "read_language")
        )
    return {
        "sentiment": labels.sentiment,
        "sentiment_scores": _json(labels.sentiment_scores),
        "complaint": int(labels.complaint),
        "complaint_score": labels.complaint_score,
        "intent": labels.intent,
        "intent_scores": _json(labels.intent_scores),
        "urgency": labels.urgency,
        "needs_review": int(labels.needs_review),
        "model": labels.model,
        "read_language": labels.other_language,
    }


def _mention_row(m: Mention, ingested_at: str | None = None) -> dict[str, Any]:
    """The post's columns; ``ingested_at`` (stored form) is now unless given (one time for a batch's rows)."""
    return {
        "id": m.id,
        "channel": m.channel,
        "external_id": m.external_id,
        "text": m.text,
        "created_at": iso(m.created_at),
        "author_id": m.author_id,
        "author_handle": m.author_handle,
        "author_name": m.author_name,
        "author_followers": m.author_followers,
        # The network's own tag first (X's "lang"), else what the classifier identified (not English only).
        "language": m.language or (m.labels.other_language if m.labels is not None else None),
        "url": m.url,
        "thread_id": m.thread_id,
        "in_reply_to": m.in_reply_to,
        "matched": _json(m.matched),
        "outbound": int(m.outbound),
        "raw": _json(m.raw),
        "case_id": m.case_id,
        "account": m.account,
        "by_customer": None if m.by_customer is None else int(m.by_customer),
        **_label_columns(m.labels),
        "ingested_at": ingested_at or iso(utcnow()),
    }


def _mention_from_row(r: dict[str, Any]) -> Mention:
    """A stored post as a :class:`Mention`, built without validation (``model_construct``): what is stored was
    checked on its way in, and checking it again on every read made ``doorstep export mentions`` take 39 s at
    200k posts, half of it in the checks (the scale audit)."""
    labels = None
    if r.get("sentiment"):
        labels = Labels.model_construct(
            sentiment=r["sentiment"],
            sentiment_scores=_unjson(r["sentiment_scores"], {}),
            complaint=bool(r["complaint"]),
            complaint_score=r["complaint_score"] or 0.0,
            intent=r["intent"],
            intent_scores=_unjson(r["intent_scores"], {}),
            urgency=r["urgency"] or 0.0,
            needs_review=bool(r["needs_review"]),
            model=r["model"] or "",
            other_language=r.get("read_language"),
        )
    return Mention.model_construct(
        id=r["id"],
        channel=r["channel"],
        external_id=r["external_id"],
        text=r["text"],
        created_at=parse_time(r["created_at"]),
        author_id=r["author_id"],
        author_handle=r["author_handle"],
        author_name=r["author_name"],
        author_followers=r["author_followers"] or 0,
        language=r["language"],
        url=r["url"],
        thread_id=r["thread_id"],
        in_reply_to=r["in_reply_to"],
        matched=_unjson(r["matched"], []),
        outbound=bool(r["outbound"]),
        raw=_unjson(r["raw"]),
        case_id=r["case_id"],
        account=r.get("account"),
        labels=labels,
        by_customer=None if r.get("by_customer") is None else bool(r["by_customer"]),
    )


def mention_export_row(m: Mention) -> dict[str, Any]:
    """The stable JSON shape of ``doorstep export mentions``; ``doorstep import mentions`` reads it back.

    Every field of the post and of its labels is written (flat, as the import expects), so
    an export imports into a new database without loss. ``id`` and ``case_id`` are for
    reading only: an import assigns them anew (cases are rebuilt by the pipeline).
    """
    out: dict[str, Any] = {
        "channel": m.channel,
        "external_id": m.external_id,
        "text": m.text,
        "author_id": m.author_id,
        "author_handle": m.author_handle,
        "author_name": m.author_name,
        "author_followers": m.author_followers,
        "language": m.language,
        "url": m.url,
        "created_at": iso(m.created_at),
        "thread_id": m.thread_id,
        "in_reply_to": m.in_reply_to,
        "outbound": m.outbound,
        "matched": m.matched,
        "raw": m.raw,
        "case_id": m.case_id,
    }
    if m.labels:
        out.update(m.labels.model_dump())
    return out


def customers_posts_sql(table: str = "") -> str:
    """The posts that speak for their case's customer (``Mention.by_customer`` not false): what a case's peak and
    contact count look at, and what the figures count as complaints. NULL (posts stored before it was recorded,
    our own posts) counts. ``table``: the alias of ``mentions`` in the query ("m")."""
    return f"coalesce({table + '.' if table else ''}by_customer, 1) = 1"


CUSTOMERS_POSTS_SQL = customers_posts_sql()


class MentionStore(StoreBase):
    """Reads and writes of ``mentions``."""

    # ----------------------------------------------------------------- mentions
    def existing_mention_ids(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], int]:
        """Map (channel, external_id) -> stored id for the keys that are already stored."""
        found: dict[tuple[str, str], int] = {}
        by_channel: dict[str, list[str]] = {}
        for channel, external_id in keys:
            by_channel.setdefault(channel, []).append(external_id)
        for channel, ids in by_channel.items():
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                sql = (
                    "select id, external_id from mentions where channel = ? and external_id in "
                    f"({','.join('?' * len(chunk))})"
                )
                for row in self.db.execute(sql, [channel, *chunk]).fetchall():
                    found[(channel, row[1])] = row[0]
        return found

    def insert_mention(self, mention: Mention) -> int:
        row = _mention_row(mention)
        row.pop("id", None)
        cursor = self.db.execute(
            f"insert into mentions ({', '.join(row)}) values ({', '.join('?' * len(row))})", list(row.values())
        )
        return int(cursor.lastrowid or 0)

    def insert_mentions(self, mentions: Sequence[Mention]) -> list[int]:
        """Store new posts, many rows per INSERT, and return their ids in the same order.

        Why not one INSERT per post: SQLite's full-text index flushes its pending terms at
        every statement that writes it (a statement savepoint), so one-row inserts wrote a tiny
        index segment per post and merged them again, most of an import's write time.
        """
        if not mentions:
            return []
        now = iso(utcnow())  # written together: one ingestion time (to the second) for the statement's posts
        rows = [_mention_row(m, now) for m in mentions]
        for row in rows:
            row.pop("id", None)
        columns = list(rows[0])
        per_statement = max(1, MAX_PARAMETERS // len(columns))
        one = f"({_marks(columns)})"
        for start in range(0, len(rows), per_statement):
            chunk = rows[start : start + per_statement]
            self.db.execute(
                f"insert into mentions ({', '.join(columns)}) values {', '.join([one] * len(chunk))}",
                [value for row in chunk for value in row.values()],
            )
        ids = self.existing_mention_ids((m.channel, m.external_id) for m in mentions)
        return [ids[(m.channel, m.external_id)] for m in mentions]

    def set_mention_case(self, mention_id: int, case_id: int) -> None:
        self.db.execute("update mentions set case_id = ? where id = ?", [case_id, mention_id])

    def set_mentions_by_customer(self, flags: Iterable[tuple[int, bool]]) -> None:
        """Record again whether posts (by id) speak for their case's customer: after an agent moved
        posts between cases (doorstep/regroup.py), the case they are in may have another customer."""
        for mention_id, flag in flags:
            self.db.execute("update mentions set by_customer = ? where id = ?", [int(flag), mention_id])

    def set_mention_labels(self, mention_id: int, labels: Labels) -> None:
        row = _label_columns(labels)
        self.db.execute(
            f"update mentions set {', '.join(f'{k} = ?' for k in row)} where id = ?", [*row.values(), mention_id]
        )

    def get_mention(self, mention_id: int) -> Mention | None:
        rows = self.rows("select * from mentions where id = ?", [mention_id])
        return _mention_from_row(rows[0]) if rows else None

    def mention_by_external_id(self, channel: str, external_id: str) -> Mention | None:
        rows = self.rows("select * from mentions where channel = ? and external_id = ?", [channel, external_id])
        return _mention_from_row(rows[0]) if rows else None

    def mention_threads(self, channel: str, external_ids: Iterable[str]) -> dict[str, tuple[str | None, int | None]]:
        """external id -> (thread id, case id) of the stored posts among ``external_ids``: what a
        reply needs of the post it answers, for a whole batch in one query per chunk."""
        found: dict[str, tuple[str | None, int | None]] = {}
        for chunk in _chunks(external_ids):
            for external_id, thread_id, case_id in self.db.conn.execute(
                "select external_id, thread_id, case_id from mentions where channel = ? and external_id in "
                f"({_marks(chunk)})", [channel, *chunk],
            ).fetchall():
                found[external_id] = (thread_id, case_id)
        return found

    def mentions_for_case(self, case_id: int) -> list[Mention]:
        rows = self.db.query("select * from mentions where case_id = ? order by created_at, id", [case_id])
        return [_mention_from_row(r) for r in rows]

    def peak_mention(self, case_id: int) -> Mention | None:
        """The case's most serious inbound post of its customer (complaint first, then urgency).

        Posts flagged as not the customer's (a stranger answering in the thread, see
        ``Mention.by_customer``) are left out: they must not set the customer's priority. Posts
        stored before the flag was recorded (NULL) count, as they always did."""
        rows = self.rows(
            f"select * from mentions where case_id = ? and outbound = 0 and {CUSTOMERS_POSTS_SQL} "
            "order by complaint desc, urgency desc, id limit 1",
            [case_id],
        )
        return _mention_from_row(rows[0]) if rows else None

    def peak_mentions(self, case_ids: Iterable[int]) -> dict[int, Mention]:
        """:meth:`peak_mention` of many cases (those with an inbound post), in one query per chunk."""
        found: dict[int, Mention] = {}
        for chunk in _chunks(case_ids):
            for r in self.rows(
                    "select * from (select m.*, row_number() over (partition by case_id "
                    "order by complaint desc, urgency desc, id) as peak_rank from mentions m "
                    f"where case_id in ({_marks(chunk)}) and outbound = 0 and {CUSTOMERS_POSTS_SQL}) as ranked "
                    "where peak_rank = 1", chunk):
                found[r["case_id"]] = _mention_from_row(r)
        return found

    def thread(self, channel: str, thread_id: str) -> list[Mention]:
        rows = self.db.query(
            "select * from mentions where channel = ? and thread_id = ? order by created_at, id", [channel, thread_id]
        )
        return [_mention_from_row(r) for r in rows]

    def iter_mentions(self, batch: int = 1000) -> Iterator[Mention]:
        last = 0
        while True:
            rows = list(self.db.query("select * from mentions where id > ? order by id limit ?", [last, batch]))
            if not rows:
                return
            for row in rows:
                yield _mention_from_row(row)
            last = rows[-1]["id"]

