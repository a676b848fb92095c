"""Speed of the classifier as ``doorstep classify`` runs it: load time, posts/s, peak memory.

Run from the repository root, e.g.::

    .venv/bin/python bench/classifier_bench.py --model onnx --posts 5000

It times :func:`classifiers.load_classifier` (load), then :func:`classifiers.jsonl.classify_jsonl`
over a JSONL file of real tweets (TweetEval validation + the customer tweets of the twcs sample
from $DOORSTEP_SHARED, repeated to ``--posts``; the team's delivery posts when shared data is
absent), and reads the peak resident memory of this process. Wall time *and* CPU time are
reported because the 2 cores are often shared: posts per CPU-second x 2 is what two idle cores
would do. Results go to stdout as JSON (and ``--append`` adds a line to a JSONL log).

``--command`` times what issue 15 names instead: the ``doorstep classify`` command itself, as its
own process, on ``--posts`` TweetEval tweets (the training split's: the test split's length, the
test split itself staying unseen). A one-post run of the same command is its load (start, imports,
model); posts/s after load = posts / (whole run - that). Peak memory is the command's own.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def sample_posts(n: int) -> tuple[list[str], str]:
    shared = Path(os.environ.get("DOORSTEP_SHARED") or REPO.parent / "shared") / "data"
    texts: list[str] = []
    source = "delivery_examples"
    if shared.is_dir():
        with (shared / "tweeteval-sentiment" / "val.tsv").open(encoding="utf-8", newline="") as f:
            texts += [row["text"] for row in csv.DictReader(f, delimiter="\t")]
        with (shared / "twcs-sample" / "twcs_sample.csv").open(encoding="utf-8", newline="") as f:
            texts += [row["text"] for row in csv.DictReader(f) if row["inbound"] == "True"]
        source = "tweeteval val + twcs customer tweets"
    else:
        from classifiers.delivery_examples import held_out_examples, training_examples

        texts = [e.text for e in training_examples() + held_out_examples()]
    out = (texts * (n // len(texts) + 1))[:n]
    return out, source


def tweeteval_posts(n: int) -> list[str]:
    """The first ``n`` TweetEval *training* tweets: the length of its test split's tweets, which
    issue 15 names as the load, without reading the test split (an independent yardstick)."""
    shared = Path(os.environ.get("DOORSTEP_SHARED") or REPO.parent / "shared") / "data"
    with (shared / "tweeteval-sentiment" / "train.tsv").open(encoding="utf-8", newline="") as f:
        texts = [row["text"] for row in csv.DictReader(f, delimiter="\t")]
    return (texts * (n // len(texts) + 1))[:n]


def run_command(path: Path, out: Path, model: str) -> tuple[float, float, float]:
    """Run ``doorstep classify -i path -o out`` as its own process: (wall s, CPU s, peak RSS MB)."""
    import subprocess

    started = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-m", "commands", "classify", "--model", model, "-i", str(path),
                              "-o", str(out)], cwd=REPO)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode:
        raise SystemExit(f"doorstep classify exited with {child.returncode}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def command_bench(args: argparse.Namespace) -> dict[str, object]:
    """The whole ``doorstep classify`` command, as a user runs it: a one-post run gives the load
    (start, imports, model), the full run less that is the time spent on posts."""
    import tempfile

    texts = tweeteval_posts(args.posts)
    with tempfile.TemporaryDirectory() as tmp:
        one, many, out = Path(tmp) / "one.jsonl", Path(tmp) / "posts.jsonl", Path(tmp) / "out.jsonl"
        one.write_text(json.dumps({"id": 0, "text": texts[0]}) + "\n", encoding="utf-8")
        many.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(texts)), encoding="utf-8")
        load_wall, load_cpu, load_rss = run_command(one, out, args.model)
        wall, cpu, rss = run_command(many, out, args.model)
        lines = out.read_text(encoding="utf-8").count("\n")
    if lines != len(texts):
        raise SystemExit(f"expected {len(texts)} output lines, got {lines}")
    return {
        "posts": len(texts),
        "source": "tweeteval train (first posts), through `python -m commands classify`",
        "command_s": round(wall, 2),
        "posts_per_s_whole_command": round(len(texts) / wall, 1),
        "load_s": round(load_wall, 2),
        "posts_per_s_after_load": round(len(texts) / (wall - load_wall), 1),
        "command_cpu_s": round(cpu, 2),
        "peak_rss_mb": round(rss, 1),
        "load_peak_rss_mb": round(load_rss, 1),
    }


def _cpu_name() -> str:
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.machine()
    name = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "")
    flags = next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), [])
    simd = "avx512" if "avx512f" in flags else "avx2" if "avx2" in flags else "sse"
    return f"{platform.machine()} {name} ({simd})".strip()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="onnx", help="classifier spec (default onnx)")
    parser.add_argument("--posts", type=int, default=5000)
    parser.add_argument("--batch-size", type=int, default=2048, help="classify_jsonl batch size (the CLI default)")
    parser.add_argument("--append", default=None, help="append the result as one JSON line to this file")
    parser.add_argument("--command", action="store_true",
                        help="time the `doorstep classify` command itself on TweetEval-length tweets instead")
    args = parser.parse_args()
    if args.command:
        return report(command_bench(args), args.append)

    texts, source = sample_posts(args.posts)
    payload = "".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(texts))

    wall0, cpu0 = time.perf_counter(), time.process_time()
    from classifiers import load_classifier
    from classifiers.jsonl import classify_jsonl

    classifier = load_classifier(args.model)
    load_s = time.perf_counter() - wall0
    load_cpu = time.process_time() - cpu0

    out = io.StringIO()
    wall1, cpu1 = time.perf_counter(), time.process_time()
    classify_jsonl(io.StringIO(payload), out, classifier, batch_size=args.batch_size)
    wall = time.perf_counter() - wall1
    cpu = time.process_time() - cpu1
    lines = out.getvalue().count("\n")
    if lines != len(texts):
        raise SystemExit(f"expected {len(texts)} output lines, got {lines}")
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result = {
        "model": getattr(classifier, "name", args.model),
        "posts": len(texts),
        "source": source,
        "batch_size": args.batch_size,
        "load_s": round(load_s, 2),
        "load_cpu_s": round(load_cpu, 2),
        "classify_wall_s": round(wall, 2),
        "posts_per_s": round(len(texts) / wall, 1),
        "classify_cpu_s": round(cpu, 2),
        "posts_per_cpu_s": round(len(texts) / cpu, 1),
        "peak_rss_mb": round(peak_mb, 1),
    }
    return report(result, args.append)


def report(result: dict[str, object], append: str | None) -> int:
    """Add where and when it ran, print it as JSON, and append it as one line to ``append``."""
    result = result | {
        "loadavg_1m_after": round(os.getloadavg()[0], 2),
        "machine": f"{_cpu_name()}, {os.cpu_count()} CPUs, {platform.python_implementation()} {platform.python_version()}",
        "command": "python bench/classifier_bench.py " + " ".join(sys.argv[1:]),
        "at": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    print(json.dumps(result, indent=2))
    if append:
        with open(append, "a", encoding="utf-8") as f:
            f.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
