"""Work as jobs on PostgreSQL: procrastinate's queues and tasks, run by ``doorstep worker``.

On SQLite, ``doorstep run`` keeps one process with a thread per job (commands.worker). On
PostgreSQL any number of ``doorstep worker`` processes, on any number of machines, share the
work through procrastinate (a maintained task queue that keeps its jobs in PostgreSQL), so a
reply, its outbox row and its send job commit in one transaction.

The queues, and why each is its own:

``listen``   one job per polling channel per period. A session advisory lock per source (an
             account and its cursor: :func:`doorstep.dialect.exclusive`) makes a second worker
             leave an account another one is polling to it, and is released by PostgreSQL
             itself when a worker dies.
``classify`` posts the listeners fetched, in batches: the classifier (the CPU-heavy part) runs on
             whichever workers have this queue; the labelled batch goes on to ``ingest``.
``ingest``   labelled batches through the pipeline: stored once (unique key), one case per
             thread and customer (per-thread/customer ``pg_advisory_xact_lock``, see
             :meth:`doorstep.store.Store.serialise`).
``send``     one job per outbox message, deferred in the transaction that wrote the message
             (responders.outbox); a sweep re-defers what is due (retries after a backoff, and
             messages left *in doubt* by a worker killed after the network call, which the
             outbox checks on the channel before any re-send).
``alerts``   alert rules, SLA escalations, follow-ups, proactive cases: procrastinate periodic
             tasks, deferred once per period however many workers run (a unique row per period),
             each round under a lock of its own, so a slow round never overlaps the next.
``reports``  the weekly report, periodic likewise.

Jobs left "doing" by a worker that died are retried by a periodic task (procrastinate's
documented stalled-jobs recipe); every task is safe to run twice.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import procrastinate

from doorstep.config import Config
from doorstep.dialect import database_target, exclusive
from doorstep.job_queue import CLASSIFY_TASK, INGEST_TASK, QUEUES, SEND_TASK, apply_schema, defer_job as defer_on
from doorstep.models import Mention
from doorstep.classifying import classify_mentions
from doorstep.pipeline import IngestResult, Pipeline
from doorstep.store import Store
from doorstep.jobs import optional_attribute
from commands.worker import JOB_PROVIDERS

log = logging.getLogger("doorstep.jobs")

#: Posts per classify job (one classifier batch) and per ingest job (one transaction). Ingest
#: batches are smaller: a batch holds the locks of every thread, author and number it names
#: until it commits, so smaller batches collide less and wait less for each other.
BATCH = 500
INGEST_BATCH = 100

#: Seconds an ingest batch waits for the batches ahead of it that share a thread, author or number.
INGEST_LOCK_WAIT_S = 300

#: Hours a succeeded job stays in procrastinate_jobs before the hourly clean-up deletes it.
JOBS_KEPT_HOURS = 24


class _IngestRetry(procrastinate.RetryStrategy):
    """Retries a batch whose transaction failed; not one that was stored post by post already
    (:class:`BatchNotStored`: what is left would fail the same way until someone fixes the cause)."""

    def get_retry_decision(self, *, exception: BaseException, job: Any) -> Any:
        if isinstance(exception, BatchNotStored):
            return None
        return super().get_retry_decision(exception=exception, job=job)


#: A batch whose transaction failed (a lock wait that ran out, a lost connection) rolled back
#: whole and is still staged: it is simply run again, a little later each time.
RETRY = procrastinate.RetryStrategy(max_attempts=8, linear_wait=2)
INGEST_RETRY = _IngestRetry(max_attempts=8, linear_wait=2)

#: Jobs "doing" on a worker without a heartbeat for this long are retried (procrastinate's heartbeat is 10 s).
STALLED_AFTER_S = 30.0

#: Listener jobs that are long-running servers (one per deployment), not polling rounds.
SERVER_JOBS = frozenset({"listen:webhook", "listen:x:stream"})

#: The outbox is not a periodic round here: a job per message, plus the sweep (see sweep_outbox).
OUTBOX_JOB = "outbox"


def periodic_queue(job_name: str) -> str:
    """The queue of a periodic worker job: the weekly report on ``reports``, alerts and the rest on ``alerts``."""
    return "reports" if job_name.startswith("reports") else "alerts"


def conninfo(db: str) -> str:
    """The libpq connection string of a ``--db`` URL."""
    return database_target(db)


def cron_every(seconds: float) -> str:
    """A procrastinate cron (6th column: seconds) that fires about every ``seconds``.

    Periods run on the wall clock (every 30 s: at :00 and :30) so that every worker agrees
    on which period a run belongs to; that is what makes it once per period.
    """
    s = max(1, int(round(seconds)))
    if s < 60:
        return f"* * * * * */{s}"
    minutes = max(1, s // 60)
    if minutes < 60:
        return f"*/{minutes} * * * *"
    hours = max(1, minutes // 60)
    if hours < 24:
        return f"0 */{hours} * * *"
    return "0 0 * * *"


def mention_payload(mentions: Sequence[Mention]) -> list[dict[str, Any]]:
    return [m.model_dump(mode="json", exclude={"id", "case_id"} if m.case_id is None else {"id"}) for m in mentions]


def mentions_from(payload: Sequence[dict[str, Any]]) -> list[Mention]:
    return [Mention.model_validate(p) for p in payload]


# ------------------------------------------------------------------ the process's runtime
@dataclass
class Runtime:
    """What the tasks of one worker process use: the database, the config, the classifier.

    Procrastinate runs synchronous tasks on a pool of threads; each thread keeps its own Store
    (its own connection: a connection has one transaction at a time) and its own worker jobs.
    """

    db: str
    config: Config
    classifier_spec: str | None = None
    _local: threading.local = field(default_factory=threading.local)
    _classifier: Any = None
    _classifier_lock: threading.Lock = field(default_factory=threading.Lock)
    _stores: list[Store] = field(default_factory=list)
    #: The outbox's lane pauses (lane -> until, why), shared by the send jobs of every thread: X timing out
    #: in one job pauses X for the next, which then takes no slot for a 30 s timeout of its own.
    outbox_pauses: dict[str, Any] = field(default_factory=dict)

    def store(self) -> Store:
        store = getattr(self._local, "store", None)
        if store is None:
            store = self._local.store = Store(self.db)
            self._stores.append(store)
        return store

    def classifier(self) -> Any:
        with self._classifier_lock:
            if self._classifier is None:
                from classifiers import load_classifier

                self._classifier = load_classifier(self.classifier_spec or self.config.classifier)
            return self._classifier

    def jobs(self) -> dict[str, Any]:
        """This thread's worker jobs by name (the same objects ``doorstep run`` ticks)."""
        jobs = getattr(self._local, "jobs", None)
        if jobs is None:
            store = self.store()
            pipeline = QueuedPipeline(store, self.config)
            jobs = {}
            for spec in JOB_PROVIDERS:
                provider = optional_attribute(spec)
                for job in provider(store, self.config, pipeline) if provider is not None else []:
                    jobs[job.name] = job
            self._local.jobs = jobs
        return jobs

    def close(self) -> None:
        """Close every thread's store (the job threads end with each try of :func:`keep_working`; the
        next try's threads open stores of their own)."""
        stores, self._stores = self._stores, []
        for store in stores:
            store.close()


_runtime: Runtime | None = None


def runtime() -> Runtime:
    if _runtime is None:
        raise RuntimeError("the job queue's runtime is not set up; start it with `doorstep worker`")
    return _runtime


def set_runtime(value: Runtime | None) -> None:
    global _runtime
    _runtime = value


def queue_posts(store: Store, mentions: Sequence[Mention], stage: str = "classify", size: int = BATCH) -> list[int]:
    """Stage posts in batches (``job_batches``) and defer one ``stage`` job per batch, in the store's
    transaction. ``stage="ingest"``: the posts are labelled already (or stay unlabelled)."""
    import json

    from doorstep.models import utcnow
    from doorstep.store import iso

    task = CLASSIFY_TASK if stage == "classify" else INGEST_TASK
    ids: list[int] = []
    with store.transaction():
        for start in range(0, len(mentions), size):
            posts = json.dumps(mention_payload(mentions[start:start + size]), separators=(",", ":"))
            cursor = store.db.execute("insert into job_batches (stage, posts, created_at) values (?, ?, ?)",
                                      [stage, posts, iso(utcnow())])
            ids.append(int(cursor.lastrowid))
            defer_on(store, task, queue=stage, batch=ids[-1])
    return ids


def _batch(store: Store, batch: int, stage: str) -> list[Mention] | None:
    import json

    rows = store.rows("select posts from job_batches where id = ? and stage = ?", [batch, stage])
    return mentions_from(json.loads(rows[0]["posts"])) if rows else None


class QueuedPipeline(Pipeline):
    """What listeners get on PostgreSQL: fetched posts become ``classify`` jobs, not inline work.

    The batches and their jobs are written in the store's transaction, so a listener's page of
    posts and its cursor commit together (the listener writes both in one transaction): a
    worker killed between fetch and commit leaves neither, and the page is fetched again.
    """

    def ingest(self, mentions: Any) -> IngestResult:
        batch = list(mentions)
        queue_posts(self.store, batch, "classify")
        return IngestResult(received=len(batch))


# ------------------------------------------------------------------ the tasks
def classify_batch(batch: int) -> int:
    """Label a staged batch with this worker's classifier, then hand it to ``ingest`` in smaller batches."""
    rt = runtime()
    store = rt.store()
    mentions = _batch(store, batch, "classify")
    if mentions is None:
        return 0  # classified already (this job ran twice: a worker died after committing)
    todo = [m for m in mentions if not m.outbound and m.labels is None]
    try:
        if todo:
            for mention, labels in zip(todo, classify_mentions(rt.classifier(), todo, rt.config)):
                mention.labels = labels
        with store.transaction():
            taken = store.db.execute("delete from job_batches where id = ? and stage = 'classify'", [batch])
            if taken.rowcount:
                queue_posts(store, mentions, "ingest", size=INGEST_BATCH)
    except Exception as exc:
        _record_not_classified(store, batch, mentions, exc)
        raise  # procrastinate retries the job (RETRY); the posts stay staged meanwhile
    return len(todo)


def _record_not_classified(store: Store, batch: int, mentions: Sequence[Mention], exc: BaseException) -> None:
    """Each failed try of a ``classify`` job, on the health row of the listeners its posts came from.

    Without it a classifier that kept failing (out of memory, a lost model file) showed nowhere until
    the job had run out of retries; the posts were fetched, past the cursor, and not stored. Said with
    :data:`listeners.health.KEPT_FOR_RETRY`, as the ingest job says it. Never raises: the job's own
    failure (and its retry) matters more than this write."""
    from listeners.health import KEPT_FOR_RETRY, record_error

    by_listener: dict[str, int] = {}
    for mention in mentions:
        by_listener[listener_of(mention.channel)] = by_listener.get(listener_of(mention.channel), 0) + 1
    try:
        with store.transaction():
            for name in sorted(by_listener):
                count = by_listener[name]
                record_error(store, name, f"{name}: {count} post{'s' if count != 1 else ''} could not be classified "
                             f"({type(exc).__name__}: {exc}); {'they are' if count != 1 else 'it is'} "
                             f"{KEPT_FOR_RETRY} (job_batches id {batch}, job doorstep.classify)")
    except Exception:  # noqa: BLE001 - a store too broken for this write: the job's traceback says why
        log.exception("classify batch %s: could not write listener health", batch)
    log.error("classify batch %s failed (%s: %s); its %d posts are %s", batch, type(exc).__name__, exc,
              len(mentions), KEPT_FOR_RETRY)


class BatchNotStored(RuntimeError):
    """Some posts of an ingest batch could not be stored, one by one either: they stay staged in
    ``job_batches`` (the job ends ``failed``; retrying it stores them once the cause is fixed) and
    the listener's health says how many and why."""


def listener_of(channel: str) -> str:
    """The listener health row of a post's channel (``x_dm`` posts come from the ``x`` listener)."""
    return channel.removesuffix("_dm")


def _may_pass(exc: BaseException) -> bool:
    """A failure a later try of the whole batch may not meet: a lock wait that ran out, a deadlock,
    a serialization failure, a lost connection. Anything else (a value PostgreSQL refuses, a bug)
    would fail every try the same way."""
    import psycopg

    return isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError))


def _count_stored(store: Store, mention_ids: Sequence[int]) -> None:
    """Add the posts this batch stored to their listeners' ``stored`` (in the batch's transaction, so
    once however often the job runs). On PostgreSQL the listener only queued them: its round counts 0."""
    from listeners.health import add_stored

    if not mention_ids:
        return
    marks = ", ".join("?" for _ in mention_ids)
    counts: dict[str, int] = {}
    for row in store.rows(f"select channel, count(*) as n from mentions where id in ({marks}) group by channel",
                          list(mention_ids)):
        counts[listener_of(row["channel"])] = counts.get(listener_of(row["channel"]), 0) + int(row["n"])
    for name in sorted(counts):  # the same order in every batch: no deadlock between batches
        add_stored(store, name, counts[name])


#: What an ingest job returns for a batch that is no longer staged (a second run of a finished job).
NOTHING_STORED = {"stored": 0, "duplicates": 0, "cases_opened": 0}


@contextmanager
def _staged_batch(store: Store, batch: int) -> Iterator[list[Mention] | None]:
    """The staged posts of ``batch`` (None once stored), inside the transaction that stores them.

    Batches that share a thread, author or number wait for each other (Store.serialise): a whole
    batch ahead may take longer than the store's usual lock timeout (busy_timeout_s), hence the
    longer wait for locks here.
    """
    with store.transaction():
        store.db.execute(f"set local lock_timeout = '{INGEST_LOCK_WAIT_S}s'")
        yield _batch(store, batch, "ingest")


def ingest_batch(batch: int, *, last_try: bool = False) -> dict[str, int]:
    """Store a staged batch through the pipeline (no classifier here: it ran on ``classify``).

    The posts and the batch's removal commit together: run twice, the second run finds no batch.
    A batch that fails in a way a later try would not change (a value PostgreSQL refuses), or on
    its ``last_try``, is stored post by post instead (:func:`_ingest_one_by_one`): one bad post
    must not keep the others out, nor be lost without a word.
    """
    rt = runtime()
    store = rt.store()
    try:
        with _staged_batch(store, batch) as mentions:
            if mentions is None:
                return dict(NOTHING_STORED)
            result = Pipeline(store, rt.config, classifier=None, batch_size=BATCH).ingest(mentions)
            _count_stored(store, result.mention_ids)
            store.db.execute("delete from job_batches where id = ?", [batch])
    except Exception as exc:  # noqa: BLE001 - sorted out below; re-raised when a retry may pass
        if _may_pass(exc) and not last_try:
            raise
        log.warning("ingest batch %s failed (%s: %s); storing its posts one by one", batch, type(exc).__name__, exc)
        return _ingest_one_by_one(store, rt.config, batch, exc)
    return {"stored": result.stored, "duplicates": result.duplicates, "cases_opened": result.cases_opened}


def _ingest_one_by_one(store: Store, config: Config, batch: int, cause: BaseException) -> dict[str, int]:
    """Each post of a failed batch in a savepoint of its own: those that can be stored are; those
    that cannot stay staged in the batch (for a retry) and are named in their listener's health."""
    import json

    from listeners.health import record_error

    total = IngestResult()
    failed: list[tuple[Mention, BaseException]] = []
    try:
        with _staged_batch(store, batch) as mentions:
            if mentions is None:
                return dict(NOTHING_STORED)
            for mention in mentions:
                try:
                    with store.transaction():  # a savepoint: a refused post leaves the others alone
                        total.add(Pipeline(store, config, classifier=None).ingest([mention]))
                except Exception as exc:  # noqa: BLE001 - kept and reported below
                    failed.append((mention, exc))
            _count_stored(store, total.mention_ids)
            if failed:
                kept = [m for m, _ in failed]
                store.db.execute("update job_batches set posts = ? where id = ?",
                                 [json.dumps(mention_payload(kept), separators=(",", ":")), batch])
                _record_not_stored(store, batch, len(mentions), failed)
            else:
                store.db.execute("delete from job_batches where id = ?", [batch])
    except Exception as exc:  # noqa: BLE001 - not even that: say so in health, then fail the job
        try:
            with store.transaction():
                mentions = _batch(store, batch, "ingest") or []
                names = sorted({listener_of(m.channel) for m in mentions}) or ["ingest"]
                for name in names:
                    record_error(store, name, f"{name}: a batch of {len(mentions)} posts could not be stored "
                                 f"({type(cause).__name__}: {cause}; then {type(exc).__name__}: {exc}); "
                                 f"they are kept for a retry (job_batches id {batch})")
        except Exception:  # noqa: BLE001
            log.exception("ingest batch %s: could not write listener health", batch)
        raise
    if failed:
        raise BatchNotStored(f"{len(failed)} of {len(mentions)} posts in ingest batch {batch} could not be stored "
                             f"({type(failed[0][1]).__name__}: {failed[0][1]}); they are kept for a retry")
    return {"stored": total.stored, "duplicates": total.duplicates, "cases_opened": total.cases_opened}


def _record_not_stored(store: Store, batch: int, size: int, failed: list[tuple[Mention, BaseException]]) -> None:
    from listeners.health import record_error

    by_listener: dict[str, list[tuple[Mention, BaseException]]] = {}
    for mention, exc in failed:
        by_listener.setdefault(listener_of(mention.channel), []).append((mention, exc))
    for name in sorted(by_listener):
        posts = by_listener[name]
        first = posts[0][1]
        ids = ", ".join(f"{m.channel} {m.external_id}" for m, _ in posts[:5]) + (", ..." if len(posts) > 5 else "")
        message = (f"{name}: {len(posts)} of {size} posts in ingest batch {batch} could not be stored "
                   f"({type(first).__name__}: {first}; posts {ids}); they are kept for a retry "
                   f"(job_batches id {batch}, job doorstep.ingest)")
        record_error(store, name, message)
        log.error("%s", message)


def _ingest_job(context: procrastinate.JobContext, batch: int) -> dict[str, int]:
    """``ingest_batch`` as procrastinate runs it: the job's last try stores what it can, post by post."""
    attempts = context.job.attempts if context.job is not None else 0
    return ingest_batch(batch, last_try=attempts >= INGEST_RETRY.max_attempts)


def send_message(message_id: int) -> str:
    """Send one outbox message (claimed in one UPDATE: two jobs for one message send it once)."""
    return _outbox_of(runtime()).send_one(message_id)


def _outbox_of(rt: Runtime) -> Any:
    outbox = getattr(rt._local, "outbox", None)
    if outbox is None:
        from responders.outbox import Outbox

        outbox = rt._local.outbox = Outbox(rt.store(), rt.config, pauses=rt.outbox_pauses)
    return outbox


def sweep_outbox(timestamp: int) -> int:
    """Re-queue messages in doubt (lease run out) and defer a send job for every due message.

    A message's job is deferred with its transaction; this catches the rest: retries after a
    backoff, and messages whose worker was killed (their jobs stay "doing" until retried).
    The queueing lock keeps one waiting job per message.
    """
    from doorstep.models import utcnow
    from doorstep.store import iso

    rt = runtime()
    outbox = _outbox_of(rt)
    outbox.recover_in_doubt()
    store = rt.store()
    rows = store.rows("select id from outbound_messages where status = 'queued' and kind != 'report' "
                      "and (next_attempt_at is null or next_attempt_at <= ?) order by id", [iso(utcnow())])
    deferred = 0
    for row in rows:
        try:
            with store.transaction():
                defer_on(store, SEND_TASK, queue="send", queueing_lock=f"send:{row['id']}", message_id=row["id"])
            deferred += 1
        except procrastinate.exceptions.AlreadyEnqueued:
            continue
    return deferred


def poll_channel(timestamp: int, job: str) -> str:
    """One round of a listener. Each of its sources (an account and cursor) is polled under its
    own lock (:func:`listeners.health.poll_sources`): a round that outlasts the period runs
    beside the next period's round on another worker, which polls every *other* account and
    leaves the busy one to its holder, so one slow account (a rate-limit wait) holds up no other."""
    from commands.worker import _named

    rt = runtime()
    try:
        rt.jobs()[job].run_once()
    except Exception as exc:
        if not _named(exc):
            raise  # a bug: a failed job, with its traceback
        # A source that failed (its error is in listener health already) or a missing credential
        # (likewise): one line, as `doorstep run` logs it, and the job ends; the next period tries again.
        # As a failed job it would add a job row and a traceback every poll.
        log.error("job %s failed: %s", job, exc)
        return "failed"
    return "polled"


def run_periodic(timestamp: int, job: str) -> str:
    """One round of a periodic worker job (alerts, SLA escalations, follow-ups, the weekly report).

    Procrastinate defers one job per period however many workers run; the lock keeps a round
    that outlasts its period from running beside the next period's round on another worker
    (that round is skipped: the running one is looking at the same state). A worker that dies
    mid-round frees the lock with its session, so the next period runs as usual.
    """
    rt = runtime()
    with exclusive(rt.db, f"periodic:{job}") as held:
        if not held:
            log.info("%s: the previous round is still running on another worker; skipped this period", job)
            return "skipped"
        rt.jobs()[job].run_once()
        return "ran"


def build_app(db: str, config: Config) -> procrastinate.App:
    """The procrastinate app of this process: every task, and a periodic task per configured job."""
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=conninfo(db)))
    app.task(name=CLASSIFY_TASK, queue="classify", retry=RETRY)(classify_batch)
    app.task(name=INGEST_TASK, queue="ingest", retry=INGEST_RETRY, pass_context=True)(_ingest_job)
    app.task(name=SEND_TASK, queue="send")(send_message)

    from responders.config import responders_settings

    sweep = app.task(name="doorstep.outbox_sweep", queue="send", queueing_lock="doorstep.outbox_sweep")(sweep_outbox)
    app.periodic(cron=cron_every(responders_settings(config).outbox_interval_s))(sweep)

    poll = app.task(name="doorstep.poll", queue="listen")(poll_channel)
    periodic = app.task(name="doorstep.periodic", queue="alerts")(run_periodic)
    for job in _configured_jobs(config):
        if job.name in SERVER_JOBS:
            continue  # servers, not rounds: run by `doorstep listen webhook` / `doorstep listen x` (see README)
        if job.name.startswith("listen:"):
            app.periodic(cron=cron_every(job.interval_s), periodic_id=job.name, queueing_lock=f"poll:{job.name}",
                         task_kwargs={"job": job.name})(poll)
        elif job.name != OUTBOX_JOB:
            app.periodic(cron=cron_every(job.interval_s), periodic_id=job.name, queue=periodic_queue(job.name),
                         queueing_lock=f"periodic:{job.name}", task_kwargs={"job": job.name})(periodic)

    async def retry_stalled_jobs(timestamp: int) -> int:
        """Jobs left "doing" by a worker that stopped sending heartbeats: run them again, each once.

        One round at a time across the shop (an advisory lock; a round finding it held has nothing to do): the
        rounds of one tick, one per queue, ran at once, read the same stalled jobs and put each back several times;
        all but the first failed with tracebacks ("invalid status to retry"), and one that a worker had taken up
        again in between would have run twice (code review). A job whose state changed after the list was read
        (retried by another means) is skipped, not an error."""
        with exclusive(db, "retry_stalled") as held:
            if not held:
                return 0
            retried = 0
            for job in await app.job_manager.get_stalled_jobs(seconds_since_heartbeat=STALLED_AFTER_S):
                try:
                    await app.job_manager.retry_job(job)
                    retried += 1
                except procrastinate.exceptions.ConnectorException as exc:
                    log.info("stalled job %s not retried: %s", job.id, " ".join(str(exc).split()))
            return retried

    # On every queue, so that whichever queues a machine's workers serve, a worker that died mid-job has its job
    # retried: queued on "send" alone, a listening machine's (listen,classify,ingest) killed poll left its classify
    # job "doing" for good (failures audit). One task per queue, each with its own queueing lock (one waiting
    # at a time per queue: a lock shared by all would let one queued where no worker serves block the others).
    for queue in QUEUES:
        retry = app.task(name=f"doorstep.retry_stalled:{queue}", queue=queue,
                         queueing_lock=f"doorstep.retry_stalled:{queue}")(retry_stalled_jobs)
        app.periodic(cron=cron_every(STALLED_AFTER_S), periodic_id=f"retry_stalled:{queue}")(retry)

    @app.periodic(cron="17 * * * *")
    @app.task(name="doorstep.remove_old_jobs", queue="alerts", queueing_lock="doorstep.remove_old_jobs")
    async def remove_old_jobs(timestamp: int) -> None:
        """Finished jobs are kept a day (what ran, when, on which worker), then deleted. Failed polling
        rounds go too (their errors are in listener health); other failed jobs stay for a person
        (a failed ingest job's posts are still staged: retrying the job stores them)."""
        await app.job_manager.delete_old_jobs(nb_hours=JOBS_KEPT_HOURS)
        await app.job_manager.delete_old_jobs(nb_hours=JOBS_KEPT_HOURS, queue="listen", include_failed=True)

    return app


def _configured_jobs(config: Config) -> list[Any]:
    """The worker jobs configured in doorstep.toml (built on a throwaway store only for their names)."""
    store = Store(":memory:")
    try:
        jobs: list[Any] = []
        for spec in JOB_PROVIDERS:
            provider = optional_attribute(spec)
            jobs.extend(provider(store, config, None) if provider is not None else [])
        return jobs
    finally:
        store.close()


def run_worker(db: str, config: Config, *, queues: Sequence[str] | None = None, concurrency: int | None = None,
               classifier: str | None = None, name: str | None = None, wait: bool = True) -> None:
    """Run one worker process until SIGINT/SIGTERM (``wait=False``: until the queues are empty).

    With ``wait`` the worker outlives PostgreSQL going away (a restart, a failover, the network): it
    waits and tries again until stopped (:func:`keep_working`). Before, it exited with
    "ConnectorException: Database error." after ~30 s without the database and nothing restarted it:
    no reply or escalation went out afterwards (PostgreSQL worker audit).
    ``wait=False`` (a backfill, a test) fails as before: nobody waits for it.
    """
    apply_schema(conninfo(db))
    set_runtime(Runtime(db, config, classifier))
    started = time.monotonic()
    log.info("worker %s on queues %s, %s", name or "", ", ".join(queues or QUEUES),
             f"concurrency {concurrency} shared" if concurrency else "one job at a time per queue")
    options: dict[str, Any] = {"queues": list(queues) if queues else None, "concurrency": concurrency, "name": name,
                               "shutdown_graceful_timeout": STOP_GRACE_S,
                               "wait": wait, "stalled_worker_timeout": STALLED_AFTER_S,
                               "fetch_job_polling_interval": 1.0}
    try:
        if wait:
            before = set(threading.enumerate())
            keep_working(lambda: build_app(db, config), options, after_each_try=runtime().close)
            _leave_stuck_jobs(before)
        else:
            # Until the queues are empty: one pool over them, so an ingest job a classify job defers late
            # is still taken (a worker of the ingest queue alone would have stopped, its queue empty).
            build_app(db, config).run_worker(**{**options, "concurrency": concurrency or len(queues or QUEUES)})
    finally:
        runtime().close()
        set_runtime(None)
        log.info("worker stopped after %.0f s", time.monotonic() - started)


def _end_now(sig: signal.Signals) -> None:
    """A second stop signal: end the process now, leaving the jobs under way (run again once stalled, as after a
    kill). Python's own exit would wait for a hung job's thread (audit of stop 39, finding 4)."""
    log.warning("worker: second %s, ending now; the jobs under way run again later", sig.name)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(128 + int(sig))


#: Seconds a stopping worker waits for the jobs under way (a send's timeout is 30 s) before it leaves them.
STOP_GRACE_S = 30.0


def _leave_stuck_jobs(before: set[threading.Thread]) -> None:
    """End the process now where a job's thread is still stuck after the stop (a poll of an X that does not
    answer: 7 tries of 30 s): Python would wait for it at exit. Its job stays "doing" and is run again once
    stalled (``doorstep.retry_stalled``), as after a kill. Only the job threads this run started count
    (procrastinate runs a job in the event loop's executor: "asyncio_N"), never a caller's own threads."""
    stuck = [t for t in threading.enumerate() if t not in before and t.name.startswith("asyncio_")
             and not t.daemon and t.is_alive()]
    deadline = time.monotonic() + 2.0  # idle executor threads are ending now
    for thread in stuck:
        thread.join(max(0.0, deadline - time.monotonic()))
    stuck = [t for t in stuck if t.is_alive()]
    if not stuck:
        return
    log.warning("worker stopped; leaving %d job thread(s) that did not finish within %g s (a network that does not "
                "answer): their jobs run again later", len(stuck), STOP_GRACE_S)
    runtime().close()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


#: Seconds a worker that lost the database waits before it tries again: the first wait, doubled after
#: each try that fails, up to the last. A plain loop rather than tenacity: the wait must end at once on
#: SIGINT/SIGTERM, and start from the first again after a run that worked (:data:`RECONNECT_RESET_AFTER_S`).
RECONNECT_FIRST_S = 2.0
RECONNECT_MAX_S = 60.0
#: A run that lasted this long was working: the next loss starts from the first wait again. (A try
#: while the database is away lasts about 30 s: procrastinate's pool waits that long for a connection.)
RECONNECT_RESET_AFTER_S = 60.0

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def keep_working(make_app: Callable[[], procrastinate.App], options: dict[str, Any],
                 after_each_try: Callable[[], None] = lambda: None) -> None:
    """Run the worker until SIGINT/SIGTERM; where PostgreSQL cannot be reached, one log line and another try.

    Each try is a new App: one whose pool failed to open keeps that closed pool, and every later
    ``run_worker`` on it would fail with "the pool is closed". A run that ends by itself (procrastinate
    stops the worker when its job listener loses the database, and that stop may complete once the
    database is back) is tried again as well: with ``wait`` only a signal ends the worker.
    ``after_each_try`` closes what a try's job threads left open (they end with it).
    """
    stop = threading.Event()
    previous = {sig: signal.getsignal(sig) for sig in _STOP_SIGNALS}
    delay = RECONNECT_FIRST_S
    try:
        _stop_on_signals(stop)
        while not stop.is_set():
            started = time.monotonic()
            try:
                _run_loop(_work_until_stopped(make_app(), options, stop))
                why = "the worker stopped by itself (procrastinate's log above says why)"
            except Exception as exc:
                cause = _lost_database(exc)
                if cause is None:
                    raise  # a broken schema, a bug: every try would meet it again
                if stop.is_set():
                    log.warning("worker stopped; PostgreSQL could not be told (%s)", cause)
                    return
                why = f"database unreachable ({cause})"
            finally:
                _stop_on_signals(stop)  # (the event loop's handlers went with it)
                after_each_try()
            if stop.is_set():
                return
            if time.monotonic() - started >= RECONNECT_RESET_AFTER_S:
                delay = RECONNECT_FIRST_S
            log.warning("%s; trying again in %g s", why, delay)
            _wait_unless_stopped(stop, delay)
            delay = min(delay * 2, RECONNECT_MAX_S)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _run_loop(work: Any) -> None:
    """``asyncio.run(work)``, except that a job thread still stuck at the end (a network that does not answer)
    is not waited for: asyncio.run joins the loop's executor, so one SIGTERM during an X outage left the worker
    alive, sending nothing, for the minutes a poll takes (audit of the per-queue workers)."""
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(work)
    finally:
        try:
            pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
            for task in pending:
                task.cancel()
            if pending:  # a task waiting on a stuck job's thread would wait for ever: a few seconds, then left
                loop.run_until_complete(asyncio.wait(pending, timeout=5.0))
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()  # shuts its executor down without waiting


async def _work_until_stopped(app: procrastinate.App, options: dict[str, Any], stop: threading.Event) -> None:
    """Open ``app`` and run its worker until it ends or a stop signal comes (that ends it gracefully:
    the jobs under way finish, as procrastinate's own handler lets them). A second signal ends the
    process at once, as with procrastinate's handler."""
    loop = asyncio.get_running_loop()

    task = asyncio.create_task(serve(app, options))

    def on_stop() -> None:
        stop.set()
        for sig in _STOP_SIGNALS:  # the next signal ends the process: a second Ctrl-C fell through to a
            loop.remove_signal_handler(sig)  # KeyboardInterrupt that waited minutes for a hung job's thread
            loop.add_signal_handler(sig, _end_now, sig)
        task.cancel()

    for sig in _STOP_SIGNALS:
        loop.add_signal_handler(sig, on_stop)
    if stop.is_set():  # a signal before the handlers above
        task.cancel()
    try:
        while not task.done():
            await asyncio.wait({task}, timeout=1.0)
            if stop.is_set() and not task.done():
                # The jobs under way get STOP_GRACE_S (procrastinate's graceful timeout), and a little for the
                # workers to say so; a job stuck in its thread (a network that does not answer) is left then:
                # procrastinate cannot cancel a thread, and waiting for it kept the worker alive for minutes.
                await asyncio.wait({task}, timeout=STOP_GRACE_S + 5.0)
                return
        await task
    except asyncio.CancelledError:
        if not stop.is_set():
            raise
    finally:
        for sig in _STOP_SIGNALS:
            loop.remove_signal_handler(sig)


async def serve(app: procrastinate.App, options: dict[str, Any]) -> None:
    """Open ``app`` and run its workers on ``options`` until one ends (or this is cancelled).

    Without a ``concurrency``, one procrastinate worker per queue, one job at a time each: a queue's
    jobs never wait for another queue's. (One worker of N slots over N queues is a pool any queue
    can fill: four sends to an X API that stopped answering took all four slots, and alerts,
    listening and reports waited 30 s a send: audit of the per-queue default.) With a
    ``concurrency``, one worker of that many slots shared by the queues, as asked.
    A worker that ends by itself (procrastinate stops one that lost the database) ends them all,
    so :func:`keep_working` starts them again together.
    """
    queues = list(options.get("queues") or QUEUES)
    async with app.open_async():
        if options.get("concurrency"):
            await app.run_worker_async(install_signal_handlers=False, **options)
            return
        name = options.get("name")
        workers = [asyncio.create_task(app.run_worker_async(
            install_signal_handlers=False,
            **{**options, "queues": [queue], "concurrency": 1, "name": f"{name}:{queue}" if name else queue}))
            for queue in queues]
        try:
            done, _ = await asyncio.wait(workers, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for worker in workers:
                worker.cancel()  # a graceful stop: the job under way finishes
            await asyncio.gather(*workers, return_exceptions=True)
        for worker in done:
            worker.result()  # a failure (the database gone) is keep_working's to judge


def _stop_on_signals(stop: threading.Event) -> None:
    """SIGINT/SIGTERM set ``stop`` (between tries, while no event loop runs)."""
    for sig in _STOP_SIGNALS:
        signal.signal(sig, lambda *_: stop.set())


def _lost_database(exc: BaseException) -> str | None:
    """What went wrong in one line where it is PostgreSQL going away (a lost or refused connection, a pool
    that got none), which a later try may not meet; None for anything else."""
    seen: BaseException | None = exc
    while seen is not None:
        if _may_pass(seen):
            return f"{type(seen).__name__}: {' '.join(str(seen).split())}"
        if not isinstance(seen, procrastinate.exceptions.ConnectorException):
            return None
        seen = seen.__cause__
    return None


def _wait_unless_stopped(stop: threading.Event, seconds: float) -> None:
    """Wait ``seconds`` or until stopped, in short slices: a signal handled between them ends the wait."""
    end = time.monotonic() + seconds
    while not stop.is_set() and (left := end - time.monotonic()) > 0:
        stop.wait(min(left, 0.5))
