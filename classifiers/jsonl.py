"""The ``doorstep classify`` file contract: JSONL posts in, JSONL labels out.

Input, one JSON object per line (blank lines are skipped, other keys ignored)::

    {"id": "1723", "text": "Where is my parcel?"}
    {"id": "1724", "text": "still nothing, this is a joke", "addressed": true}

``addressed`` (optional, true or false) says whether the post is written to you: true for a reply
in a thread or a private message whose text has no @mention; false for a post that reached you
only through a keyword search and names none of your handles, where an @mention of someone else
("@bestie ugh") should not count. A model that reads it keeps the sentiment transfer of
``complaint_score`` for posts written to you (classifiers/onnx_backend.py); without the key, the
text alone decides (an @mention counts). The output is the same contract either way.

Output, one JSON object per input line, in input order::

    {"id": "1723", "sentiment": "neutral", "sentiment_scores": {"negative": 0.21, ...},
     "complaint": true, "complaint_score": 0.88, "intent": "where_is_my_order",
     "intent_scores": {"where_is_my_order": 0.76, ...}, "urgency": 0.35, "needs_review": false}

``id`` is echoed exactly as given (a string or an integer). Scores are rounded to
4 decimals, so a score dict sums to 1 within about 1e-3.

Bad input (invalid JSON, a missing field, bytes that are not UTF-8, a lone surrogate such as
a cut-off emoji ``"\\ud83d"`` in ``id`` or ``text``) stops the run with
``ValueError("line N: <reason>")`` (N counts every line of the file, blank ones
included, from 1). Every good line *before* line N
has already been classified and written, and nothing after it, so the output is
always a complete prefix of the answer: fix the line and rerun, or resume from
line N. Stopping beats writing error objects because a downstream loader that
expects labels on every row would otherwise fail later and further from the cause.

Lines are read and classified ``batch_size`` at a time, so memory stays flat
however large the file. A classifier that says it may be called from two threads at once
(``concurrent_calls = True``, as the ONNX one does) gets the next batch while it finishes the
current one, so the model never waits for the labelling of the batch before; batches are still
written in input order, and each is the same batch, so the output is the same.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TextIO

from classifiers import Classifier, classify
from doorstep.models import Labels

#: Decimal places kept for every score in the output.
SCORE_DIGITS = 4
#: Seconds between two progress lines.
PROGRESS_EVERY_S = 1.0


#: One parsed input line: its id, its text and whether it is marked written to someone.
Post = tuple[str | int, str, bool | None]

#: Half of a UTF-16 pair with no other half: JSON's "\ud83d" escape of an emoji cut off by an export.
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _check_surrogates(number: int, key: str, value: str) -> None:
    """Refuse a lone surrogate by line and field, as any other bad line.

    Why: JSON lets it through, but the tokenizer refuses it for the whole batch (a TypeError naming no
    line, and no line of the batch written) and an ``id`` holding one cannot be written as UTF-8."""
    if value.isascii():
        return
    found = _LONE_SURROGATE.search(value)
    if found is not None:
        raise ValueError(f"line {number}: \"{key}\" holds a lone surrogate (a cut-off emoji) at character "
                         f"{found.start() + 1}; remove it or export the posts again")


def _parse_line(number: int, line: str) -> Post:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"line {number}: not valid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(record, dict):
        raise ValueError(f"line {number}: expected a JSON object with \"id\" and \"text\", got {type(record).__name__}")
    if "id" not in record:
        raise ValueError(f"line {number}: missing \"id\"")
    post_id = record["id"]
    if isinstance(post_id, bool) or not isinstance(post_id, (str, int)):
        raise ValueError(f"line {number}: \"id\" must be a string or an integer, got {type(post_id).__name__}")
    if isinstance(post_id, str):
        _check_surrogates(number, "id", post_id)
    if "text" not in record:
        raise ValueError(f"line {number}: missing \"text\"")
    text = record["text"]
    if not isinstance(text, str):
        raise ValueError(f"line {number}: \"text\" must be a string, got {type(text).__name__}")
    _check_surrogates(number, "text", text)
    addressed = record.get("addressed")  # absent: not told (None), so the text's @mention may stand in
    if addressed is not None and not isinstance(addressed, bool):
        raise ValueError(f"line {number}: \"addressed\" must be true or false, got {json.dumps(addressed)}")
    return post_id, text, addressed


def _rounded(scores: dict[str, float]) -> dict[str, float]:
    return {label: round(p, SCORE_DIGITS) for label, p in scores.items()}


def output_row(post_id: str | int, labels: Labels) -> dict[str, Any]:
    """One output object: the stable contract above, field for field."""
    return {
        "id": post_id,
        "sentiment": labels.sentiment,
        "sentiment_scores": _rounded(labels.sentiment_scores),
        "complaint": labels.complaint,
        "complaint_score": round(labels.complaint_score, SCORE_DIGITS),
        "intent": labels.intent,
        "intent_scores": _rounded(labels.intent_scores),
        "urgency": round(labels.urgency, SCORE_DIGITS),
        "needs_review": labels.needs_review,
    }


def _lines(infile: TextIO) -> Iterator[str | ValueError]:
    """The lines of ``infile``, each decoded on its own, so a line that is not UTF-8 is reported by
    number and every line before it is still classified.

    (Decoding the stream as a whole fails a whole read-ahead chunk at once, up to 8 KB of good
    lines before the bad one, and says nothing of where the bad bytes were.)
    """
    raw = getattr(infile, "buffer", None)
    if raw is None:  # already text (io.StringIO, a test): nothing to decode
        for line in infile:  # not "yield from": closing this generator would close the caller's file
            yield line
        return
    # readline, not iteration: click wraps a piped stdin in a stream proxy that is not iterable.
    for number, data in enumerate(iter(raw.readline, b""), start=1):
        try:
            yield data.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield ValueError(f"line {number}: not valid UTF-8 (byte {exc.start + 1} of the line is {data[exc.start]:#04x}); "
                             "save the file as UTF-8 and rerun")
            return


def _batches(infile: TextIO, batch_size: int) -> Iterator[tuple[list[Post], ValueError | None]]:
    """Yield parsed batches; a bad line ends the stream with the lines before it and the error."""
    batch: list[Post] = []
    for number, line in enumerate(_lines(infile), start=1):
        if isinstance(line, ValueError):
            yield batch, line
            return
        if number == 1:
            line = line.removeprefix("\ufeff")  # a byte-order mark left by some Windows editors
        if not line.strip():
            continue
        try:
            batch.append(_parse_line(number, line))
        except ValueError as error:
            yield batch, error
            return
        if len(batch) >= batch_size:
            yield batch, None
            batch = []
    if batch:
        yield batch, None


def classify_jsonl(
    infile: TextIO, outfile: TextIO, classifier: Classifier, batch_size: int = 2048, progress: bool = False
) -> int:
    """Classify every ``{"id", "text"}`` line of ``infile`` into ``outfile``; returns the lines written.

    ``progress`` prints a running count and rate to stderr (never to ``outfile``,
    which may be stdout feeding another program).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    written = 0
    started = last_report = time.monotonic()
    # At most two batches in flight: the one being finished and the next; results are taken in order.
    ahead = 2 if getattr(classifier, "concurrent_calls", False) else 0
    pool = ThreadPoolExecutor(ahead, thread_name_prefix="classify-batch") if ahead else None
    pending: deque[tuple[list[Post], Future[list[Labels]] | list[Labels]]] = deque()

    def classify_batch(batch: list[Post]) -> list[Labels]:
        return classify([text for _, text, _ in batch], classifier, addressed=[to for _, _, to in batch])

    def write_oldest() -> None:
        nonlocal written, last_report
        batch, job = pending.popleft()
        labels = job.result() if isinstance(job, Future) else job
        if len(labels) != len(batch):
            raise RuntimeError(f"classifier {classifier.name!r} returned {len(labels)} labels for {len(batch)} texts")
        rows = (output_row(post_id, lab) for (post_id, _, _), lab in zip(batch, labels))
        outfile.write("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
        written += len(batch)
        if progress and time.monotonic() - last_report >= PROGRESS_EVERY_S:
            last_report = time.monotonic()
            _report(written, last_report - started, final=False)

    try:
        for batch, error in _batches(infile, batch_size):
            if batch:
                pending.append((batch, pool.submit(classify_batch, batch) if pool else classify_batch(batch)))
            while pending and (error is not None or len(pending) >= max(ahead, 1)):
                write_oldest()
            if error is not None:
                outfile.flush()
                if progress:
                    _report(written, time.monotonic() - started, final=True)
                raise error
        while pending:
            write_oldest()
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    outfile.flush()
    if progress:
        _report(written, time.monotonic() - started, final=True)
    return written


def _report(count: int, elapsed: float, final: bool) -> None:
    rate = count / elapsed if elapsed > 0 else 0.0
    end = "\n" if final else "\r"
    sys.stderr.write(f"classified {count:,} posts ({rate:,.0f}/s){end}")
    sys.stderr.flush()
