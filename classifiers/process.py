"""The classifier in processes of its own, so an import classifies its next batch while it writes this one.

Why: an import's process spends about a quarter of its CPU classifying (the baseline's VADER and
language check) and the rest storing, one after the other. With a second core, a classifier
process labels batch n+1 while the import stores batch n, and the import's own process is left
with the storing (bench/RESULTS.md, "Classifying in a second process").

How: each process is *spawned* (a fresh interpreter: the console's and listeners' threads make
``fork`` unsafe) and builds its own classifier from a picklable ``factory`` (e.g.
``functools.partial(load_classifier, "baseline")``), so nothing that cannot cross a process
boundary (an ONNX session) ever has to. Each process has at most one batch in hand, and its answer
is read before it is sent another, so neither side can block the other on a full pipe. A process
that is still starting answers nothing: :meth:`ClassifierProcesses.submit` returns None and the
caller classifies that batch itself, so a short import never waits for a process to start.

Errors: an exception in the classifier comes back as one line (its type and message) and is
raised by :meth:`Pending.result` as :class:`ClassifierProcessError`; a process that dies (killed,
out of memory, a crash in native code) is noticed through its sentinel and reported the same way,
with its exit code. The caller decides what a failed batch means (the import stops before writing it).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import sys
import types
from collections.abc import Callable, Iterator, Sequence
from multiprocessing.connection import Connection, wait
from typing import Any

from classifiers import classify
from doorstep.models import Labels

#: A post classified once when a process starts, so that what loads on first use is loaded.
WARM_UP = "where is my parcel? it was due on Monday and the tracking has not moved"
#: Seconds to wait for a process to leave after it is told to (then it is terminated).
STOP_TIMEOUT_S = 5.0


class ClassifierProcessError(RuntimeError):
    """A classifier process failed to label a batch (the message is one line)."""


def default_processes() -> int:
    """Classifier processes an import starts by default: one when this machine lets the import have
    two cores (classifying beside storing), none on one core (they would only take turns)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cores = os.cpu_count() or 1
    return 1 if cores >= 2 else 0


def _serve(conn: Connection, factory: Callable[[], Any], also: Callable[[list[str]], list[Any]] | None) -> None:
    """A classifier process: build the classifier, say so, then label each batch it is sent (and
    work ``also`` out for it)."""
    try:
        classifier = factory()
        # Loaded before the process says it is ready (the baseline's language model loads on first
        # use, ~0.7 s): until then the import classifies in its own process rather than wait.
        classifier.classify([WARM_UP])
    except BaseException as exc:  # noqa: BLE001 - every failure goes back to the parent as one line
        conn.send(("error", _one_line(exc)))
        return
    conn.send(("ready", getattr(classifier, "name", type(classifier).__name__)))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):  # the parent went away
            return
        if message is None:
            return
        texts, addressed = message
        try:
            labels = classify(texts, classifier, addressed=addressed)
            if len(labels) != len(texts):
                raise ClassifierProcessError(f"{len(labels)} labels for {len(texts)} posts")
            extra = also(texts) if also is not None else None
        except BaseException as exc:  # noqa: BLE001
            conn.send(("error", _one_line(exc)))
            continue
        conn.send(("labels", (labels, extra)))


def _one_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split()) or '(no message)'}"


@contextlib.contextmanager
def _no_main_script() -> Iterator[None]:
    """Start a spawned process without it running the caller's main script first.

    ``spawn`` re-runs the parent's ``__main__`` file in the child so that functions defined there
    can be found. Ours are imported by name, and the caller's main may be anything: after a
    Streamlit page ran in this process (the console, AppTest) it is that page, which the child ran
    and died of ("exit code 1 before it answered"). A plain ``__main__`` while the child starts
    spares it that; the caller's is put back at once.
    """
    main = sys.modules.get("__main__")
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        if main is not None:
            sys.modules["__main__"] = main


class _Worker:
    """One classifier process, its end of the pipe and what it has in hand."""

    def __init__(self, context: Any, factory: Callable[[], Any], also: Callable[[list[str]], list[Any]] | None):
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_serve, args=(child, factory, also), daemon=True,
                                       name="doorstep-classifier")
        with _no_main_script():
            self.process.start()
        child.close()
        self.ready = False
        self.busy = False
        #: Why this process can take no more batches (it failed to start, or died).
        self.failed: str | None = None
        #: Whether a batch has been failed with that reason already (it is said once).
        self.reported = False

    def receive(self) -> tuple[str, Any]:
        """The process's next message; a dead process is one line naming its exit code."""
        wait([self.conn, self.process.sentinel])
        if self.conn.poll():
            try:
                return self.conn.recv()
            except (EOFError, OSError):
                pass
        self.process.join(1)
        self.failed = f"the classifier process stopped (exit code {self.process.exitcode}) before it answered"
        return ("dead", self.failed)

    def poll_ready(self) -> None:
        """Has the process finished starting? (Never waits.)"""
        if self.ready or self.failed or self.busy:
            return
        # The sentinel, not is_alive(): a process that has just died may not be reaped yet.
        if self.conn.poll() or wait([self.process.sentinel], 0):
            kind, value = self.receive()
            if kind == "ready":
                self.ready = True
            else:
                self.failed = self.failed or value


class Pending:
    """A batch sent to a classifier process: :meth:`result` waits for its labels."""

    def __init__(self, worker: _Worker | None, count: int, error: str | None = None, remedy: str = ""):
        self._worker, self._count, self._error, self._remedy = worker, count, error, remedy
        self._labels: list[Labels] | None = None
        #: What ``also`` gave for the same texts (None without it), once :meth:`result` has returned.
        self.also: list[Any] | None = None

    def result(self) -> list[Labels]:
        if self._labels is None:
            if self._worker is not None:
                worker, self._worker = self._worker, None
                kind, value = worker.receive()
                worker.busy = False
                if kind == "labels":
                    self._labels, self.also = value
                elif kind == "dead":
                    self._error, worker.reported = value + self._remedy, True
                else:
                    self._error = value
            if self._labels is None:
                raise ClassifierProcessError(f"classifier process: {self._error}")
        if len(self._labels) != self._count or (self.also is not None and len(self.also) != self._count):
            raise ClassifierProcessError(f"classifier process: {len(self._labels)} labels for {self._count} posts")
        return self._labels


class ClassifierProcesses:
    """``processes`` spawned classifier processes, started on the first :meth:`submit`.

    Use as a context manager (or call :meth:`close`): the processes are told to leave, and
    terminated if they do not. They are daemons, so they never outlive the command either way.
    """

    def __init__(self, factory: Callable[[], Any], processes: int = 1, remedy: str = "", *,
                 also: Callable[[list[str]], list[Any]] | None = None):
        if processes < 1:
            raise ValueError("a ClassifierProcesses needs at least one process")
        self.factory = factory
        #: Other work on the same texts, done in the process too (picklable; one result per text):
        #: the import has it find the order and tracking numbers (doorstep.linking.numbers_in).
        self.also = also
        #: Appended to a process's own failures (not the classifier's): how to do without processes.
        self.remedy = f"; {remedy}" if remedy else ""
        self.processes = processes
        self._workers: list[_Worker] = []
        #: Batches sent to the processes (the others were classified by the caller).
        self.batches_sent = 0

    @property
    def started(self) -> bool:
        return bool(self._workers)

    def start(self) -> None:
        """Spawn the processes (they start in the background; nothing waits for them here)."""
        if not self._workers:
            context = multiprocessing.get_context("spawn")
            self._workers = [_Worker(context, self.factory, self.also) for _ in range(self.processes)]

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        """Start the processes and wait until each has built its classifier (tests, benchmarks: an
        import does not wait). A process that failed to start raises ClassifierProcessError."""
        self.start()
        for worker in self._workers:
            if not wait([worker.conn, worker.process.sentinel], timeout_s):
                raise ClassifierProcessError(f"the classifier process did not start within {timeout_s:g} s")
            worker.poll_ready()
            if worker.failed:
                raise ClassifierProcessError(f"classifier process: {worker.failed}{self.remedy}")

    def submit(self, texts: Sequence[str], addressed: Sequence[bool | None] | None = None) -> Pending | None:
        """Send ``texts`` to a process that has started and has nothing in hand; None when there is
        none (the caller classifies them itself). ``addressed`` goes with them (:func:`classifiers.classify`).
        A process that failed to start, or died, is reported by the batch it was (or would have been) sent."""
        self.start()
        for worker in self._workers:
            worker.poll_ready()
            if worker.failed:
                if not worker.reported:
                    worker.reported = True
                    return Pending(None, len(texts), worker.failed + self.remedy)
                continue
            if worker.ready and not worker.busy:
                try:
                    worker.conn.send((list(texts), None if addressed is None else list(addressed)))
                except (OSError, ValueError) as exc:  # a dead process's pipe
                    worker.failed, worker.reported = f"the classifier process cannot be reached ({_one_line(exc)})", True
                    return Pending(None, len(texts), worker.failed + self.remedy)
                worker.busy = True
                self.batches_sent += 1
                return Pending(worker, len(texts), remedy=self.remedy)
        return None

    def close(self) -> None:
        for worker in self._workers:
            try:
                if worker.busy:  # an answer nobody will read: no need to wait for it
                    worker.process.terminate()
                elif not worker.failed:
                    worker.conn.send(None)
            except (OSError, ValueError, EOFError):
                pass
        for worker in self._workers:
            worker.process.join(STOP_TIMEOUT_S)
            if worker.process.is_alive():
                worker.process.terminate()
                worker.process.join(STOP_TIMEOUT_S)
            worker.conn.close()
        self._workers = []

    def __enter__(self) -> ClassifierProcesses:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
